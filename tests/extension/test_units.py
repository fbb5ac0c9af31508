"""The extension's rules without a server: subprotocol selection (RFC 6455 4.2.2), route
option checks, the ConnectionClosed handler, bounded metrics labels, close codes a view may
send. Sockets, where one is needed, are a real socket pair (tests/support/socketpair_ws.py)."""

from __future__ import annotations

import pytest
from flask import Flask
from geventwebsocket.exceptions import WebSocketError

from tests.support.socketpair_ws import FakeHandler, make_pair
from wsapp import ConnectionClosed, WebSockets, metrics
from wsapp.engine.websocket import WebSocket
from wsapp.extension import install_close_handler, negotiate_subprotocol
from wsapp.protocol.handshake import (
    offered_subprotocols,
    select_subprotocol,
    subprotocol_header,
    upgrade_response,
)
from wsapp.route_checks import NO_UPGRADE_FIX
from wsapp.settings import Settings

UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


# --- subprotocols -----------------------------------------------------------------------


def test_offered_subprotocols_are_a_comma_list_in_client_order():
    environ = {"HTTP_SEC_WEBSOCKET_PROTOCOL": " chat.v1 ,, chat.v2,x "}
    assert offered_subprotocols(environ) == ["chat.v1", "chat.v2", "x"]
    assert offered_subprotocols({}) == []


def test_the_server_preference_wins_and_names_compare_exactly():
    assert select_subprotocol(["a", "b"], ["b", "a"]) == "b"
    assert select_subprotocol(["Chat"], ["chat"]) is None
    assert select_subprotocol([], ["a"]) is None
    assert select_subprotocol(["a"], []) is None


def test_the_101_names_the_chosen_subprotocol_and_only_a_token():
    head = upgrade_response("dGhlIHNhbXBsZSBub25jZQ==", subprotocol_header("chat.v2"))
    assert b"\r\nSec-WebSocket-Protocol: chat.v2\r\n" in head
    assert b"Sec-WebSocket-Protocol" not in upgrade_response("dGhlIHNhbXBsZSBub25jZQ==",
                                                              subprotocol_header(None))
    for bad in ("a b", "x\r\nSet-Cookie: y", "", "a,b"):
        with pytest.raises(ValueError):
            subprotocol_header(bad)


def test_negotiate_subprotocol_for_a_classic_view_before_the_handshake():
    from gevent import socket

    server_sock, client_sock = socket.socketpair()
    environ = {"PATH_INFO": "/t", "HTTP_SEC_WEBSOCKET_PROTOCOL": "v1, v2"}
    ws = WebSocket(environ, FakeHandler(server_sock), Settings())
    assert negotiate_subprotocol(ws, ["v3", "v2", "v1"]) == "v2" == ws.subprotocol
    server_sock.close()
    client_sock.close()
    accepted, client = make_pair()
    with pytest.raises(RuntimeError):
        negotiate_subprotocol(accepted, ["v1"])
    accepted.abort()
    client.close()


# --- route options ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"subprotocols": "chat"}, TypeError),
        ({"subprotocols": ["ok", "not ok"]}, ValueError),
        ({"subprotocols": ["a", "a"]}, ValueError),
        ({"max_message_bytes": 0}, ValueError),
        ({"max_message_bytes": True}, ValueError),
        ({"max_message_bytes": "1000"}, ValueError),
        ({"max_message_bytes": (1 << 31) + 1}, ValueError),
        ({"websocket": False}, ValueError),
    ],
)
def test_bad_route_options_fail_at_declaration(options, error):
    sockets = WebSockets()
    with pytest.raises(error):
        sockets.route("/x", **options)


def test_async_views_are_refused():
    sockets = WebSockets()

    async def view(ws):
        pass

    with pytest.raises(TypeError):
        sockets.route("/x")(view)


def test_settings_given_to_the_extension_serve_the_connections():
    from wsapp.engine import registry

    before = registry.current().settings
    try:
        mine = Settings(max_message_bytes=4096, ping_interval=5.0)
        sockets = WebSockets(Flask("configured"), settings=mine)
        assert registry.current().settings is mine and sockets.settings is mine
        assert WebSockets().settings is mine  # the process's, when none are given
    finally:
        registry.configure(before)


def test_routes_reach_every_app_declared_before_or_after_init_app():
    sockets = WebSockets()

    @sockets.route("/before")
    def before(ws):
        pass

    first, second = Flask("first"), Flask("second")
    sockets.init_app(first)
    sockets.init_app(second)
    sockets.init_app(second)  # twice: nothing registered twice

    @sockets.route("/after/<int:n>", endpoint="after_n")
    def after(ws, n):
        pass

    for app in (first, second):
        rules = {rule.rule: rule for rule in app.url_map.iter_rules()}
        assert rules["/before"].websocket and rules["/after/<int:n>"].websocket
        assert rules["/after/<int:n>"].endpoint == "after_n"
        assert app.extensions["wsapp.websockets"] is sockets
        assert "wsapp.route_checks" in app.extensions
    assert sockets.app is None
    assert before.__name__ == "before"  # the decorator returns the view unchanged


def test_without_wsapps_server_an_upgrade_gets_501_naming_the_fix():
    app = Flask("plain")
    sockets = WebSockets(app)

    @sockets.route("/ws")
    def ws_view(ws):
        raise AssertionError("never runs without a WebSocket")

    response = app.test_client().get("/ws", headers=UPGRADE)
    assert response.status_code == 501
    assert NO_UPGRADE_FIX in response.get_data(as_text=True)


# --- ConnectionClosed in plain requests, and handler precedence -------------------------


def test_connection_closed_in_a_plain_request_is_still_a_500():
    app = Flask("plain")
    install_close_handler(app)

    @app.get("/send")
    def send():
        raise ConnectionClosed(1006, "gone")

    assert app.test_client().get("/send").status_code == 500


def test_install_close_handler_is_idempotent_and_yields_to_the_apps_own():
    app = Flask("mine")

    @app.errorhandler(WebSocketError)
    def mine(exc):
        return "mine", 200

    install_close_handler(app)
    assert ConnectionClosed not in app.error_handler_spec[None][None]
    other = Flask("other")
    install_close_handler(other)
    handler = other.error_handler_spec[None][None][ConnectionClosed]
    install_close_handler(other)
    assert other.error_handler_spec[None][None][ConnectionClosed] is handler


# --- metrics labels ---------------------------------------------------------------------


def test_route_labels_are_bounded(monkeypatch):
    monkeypatch.setattr(metrics, "_route_labels", set())
    rules = [f"/r{i}/<x>" for i in range(metrics.MAX_ROUTE_LABELS + 5)]
    labels = [metrics.endpoint_of(f"/r{i}/anything", rule) for i, rule in enumerate(rules)]
    assert labels[: metrics.MAX_ROUTE_LABELS] == rules[: metrics.MAX_ROUTE_LABELS]
    assert set(labels[metrics.MAX_ROUTE_LABELS:]) == {"other"}
    assert metrics.endpoint_of("/r0/again", rules[0]) == rules[0]  # known ones keep theirs
    assert metrics.endpoint_of("/echo") == "echo"
    assert metrics.endpoint_of("/chat/lobby") == "chat"
    assert metrics.endpoint_of("/anything") == "other"


# --- closing from a view ----------------------------------------------------------------


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2000, 5000])
def test_a_view_cannot_send_a_reserved_close_code(code):
    ws, client = make_pair()
    with pytest.raises(ValueError):
        ws.close(code)
    assert not ws.closed
    ws.abort()
    client.close()


def test_close_takes_reason_and_gevent_websockets_message_keyword():
    ws, client = make_pair(close_timeout=0.2)
    ws.close(4000, reason="by reason")
    assert (ws.close_code, ws.close_reason) == (4000, "by reason")
    client.close()
    ws, client = make_pair(close_timeout=0.2)
    ws.close(1000, message=b"by message")
    assert (ws.close_code, ws.close_reason) == (1000, "by message")
    client.close()
