"""`WebSockets` routes of a user's app (tests/extension/extapp.py) in both serving modes, over
real sockets: the view API, subprotocols, per-route limits, the end-of-connection contract,
keepalive while a view only sends or sleeps, HTTP refusals, origin check, metrics labels,
and SIGTERM."""

from __future__ import annotations

import re
import signal
import time
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.support.rawws import Op, RawWS, encode_frame
from tests.support.servers import ServerProcess, running_server

APP = "tests.extension.extapp:app"
ENV = {
    "WSAPP_PING_INTERVAL": "1",
    "WSAPP_PING_TIMEOUT": "1",
    "WSAPP_RATE_LIMIT": "0",
    "WSAPP_MAX_MESSAGE_BYTES": "100000",  # routes may set their own, above or below
}


@pytest.fixture(scope="module", params=["serve", "gunicorn"])
def srv(request):
    with running_server(request.param, env=ENV, app=APP) as server:
        yield server


def closed_by_server(ws) -> tuple[int, str]:
    """Wait for the server's close frame; (code, reason)."""
    with pytest.raises(ConnectionClosed) as info:
        while True:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None, "no close frame (1006)"
    return info.value.rcvd.code, info.value.rcvd.reason


def close_line(srv: ServerProcess, path: str, since: int = 0) -> str:
    """The `ws close` log line of the first connection to `path` logged after offset `since`."""
    deadline = time.monotonic() + 5
    pattern = re.compile(rf"^.*ws close conn=\S+ path={re.escape(path)} .*$", re.M)
    while time.monotonic() < deadline:
        match = pattern.search(srv.log_text(), since)
        if match:
            return match.group(0)
        time.sleep(0.05)
    raise AssertionError(f"no close line for {path}:\n{srv.log_text()[-3000:]}")


@pytest.mark.parametrize("path", ["/ext/echo", "/classic/echo"])
def test_echo_text_and_binary_byte_for_byte(srv, path):
    messages = ["héllo ✓", "", b"", bytes(range(256)), b"\x00\xff" * 20_000]
    with connect(srv.url(path), max_size=None) as ws:
        for message in messages:
            ws.send(message)
            back = ws.recv(timeout=5)
            assert type(back) is type(message) and back == message


def test_a_view_that_hands_the_socket_to_serve_is_not_closed(srv):
    with connect(srv.url("/ext/served")) as ws:
        for i in range(3):
            time.sleep(0.1)  # long after the view returned
            ws.send(f"m{i}")
            assert ws.recv(timeout=5) == f"m{i}"


@pytest.mark.parametrize(
    ("offer", "chosen"),
    [
        (["chat.v1", "chat.v2"], "chat.v2"),  # the route's preference, not the client's order
        (["chat.v1"], "chat.v1"),
        (["other", "chat.v1"], "chat.v1"),
        (["other"], None),
        (None, None),
    ],
)
def test_subprotocol_negotiation(srv, offer, chosen):
    with connect(srv.url("/ext/rooms/lobby"), subprotocols=offer) as ws:
        assert ws.recv(timeout=5) == f"lobby {chosen}"
        assert ws.subprotocol == chosen
        assert ws.response.headers.get("Sec-WebSocket-Protocol") == chosen


def test_a_route_without_subprotocols_names_none(srv):
    with connect(srv.url("/ext/echo"), subprotocols=["chat.v2"]) as ws:
        assert "Sec-WebSocket-Protocol" not in ws.response.headers
        ws.send("x")
        assert ws.recv(timeout=5) == "x"


def test_url_variables_blueprint_and_init_app_later(srv):
    with connect(srv.url("/ext/later/21")) as ws:
        assert ws.recv(timeout=5) == "42"
        assert closed_by_server(ws) == (1000, "")
    with connect(srv.url("/bp/things/spoon")) as ws:
        assert ws.recv(timeout=5) == "thing spoon"


def test_route_max_message_bytes_below_the_default(srv):
    with connect(srv.url("/ext/small")) as ws:
        ws.send("a" * 1000)  # inclusive
        assert ws.recv(timeout=5) == "a" * 1000
        ws.send(b"b" * 1001)
        assert closed_by_server(ws)[0] == 1009


def test_route_limit_applies_to_frames_sent_with_the_handshake(srv):
    """A frame in the same TCP write as the request is parsed with the route's limit too
    (it is set before the reader starts): 1001 bytes to a 1000-byte route, close 1009."""
    early = encode_frame(Op.BINARY, b"x" * 1001)
    with RawWS.connect(srv.url("/ext/small"), early_data=early, timeout=5) as ws:
        assert ws.expect_close(1009)[0] == 1009
    with RawWS.connect(srv.url("/ext/small"), early_data=encode_frame(Op.TEXT, b"x" * 1000),
                       timeout=5) as ws:
        assert ws.recv_message() == (Op.TEXT, b"x" * 1000)


def test_route_max_message_bytes_above_the_default(srv):
    payload = b"\x01" * 250_000
    with connect(srv.url("/ext/large"), max_size=None) as ws:
        ws.send(payload)
        assert ws.recv(timeout=10) == payload
    with connect(srv.url("/ext/echo"), max_size=None) as ws:  # WSAPP_MAX_MESSAGE_BYTES=100000
        ws.send(payload)
        assert closed_by_server(ws)[0] == 1009


def test_send_only_route_lives_through_keepalive(srv):
    """Pings every second with 1 s to answer; the view never receives; 16 messages in 8 s."""
    started = time.monotonic()
    with connect(srv.url("/ext/ticker")) as ws:
        assert [ws.recv(timeout=5) for _ in range(16)] == [f"tick {i}" for i in range(16)]
        assert time.monotonic() - started >= 7.5
        assert closed_by_server(ws) == (1000, "")  # the view returned
    assert "keepalive timeout" not in srv.log_text()


def test_ping_answered_while_the_view_sleeps(srv):
    with connect(srv.url("/ext/sleepy")) as ws:
        assert ws.recv(timeout=5) == "ready"  # the view is now in its 3 s time.sleep()
        for _ in range(3):
            started = time.monotonic()
            assert ws.ping(b"there?").wait(2.0)
            assert time.monotonic() - started < 0.2
        ws.send("after the nap")
        assert ws.recv(timeout=5) == "after the nap"


def test_an_exception_closes_1011_with_one_log_line(srv):
    tag = f"t{time.monotonic_ns()}"
    since = len(srv.log_text())
    with connect(srv.url(f"/ext/boom?tag={tag}")) as ws:
        ws.send("go")
        assert closed_by_server(ws) == (1011, "internal server error")
    assert "code=1011 by=server cause=internal_error" in close_line(srv, "/ext/boom", since)
    log = srv.wait_for_log(f"RuntimeError: boom {tag}")[since:]
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Exception in WebSocket view /ext/boom" in errors[0], log
    assert log.count("Traceback") == 1 and log.count(f"RuntimeError: boom {tag}") == 1, log
    assert "Exception on /ext/boom" not in log  # not Flask's 500 path as well


@pytest.mark.parametrize("path", ["/ext/send-after-close", "/classic/send-after-close"])
def test_connection_closed_leaving_a_view_is_a_normal_end(srv, path):
    since = len(srv.log_text())
    with connect(srv.url(path)) as ws:
        assert ws.recv(timeout=5) == "ready"
        ws.close(4001, "client leaves")
    line = close_line(srv, path, since)
    assert "code=4001 by=client cause=client" in line
    time.sleep(0.3)  # anything the view's end would log comes right after
    log = srv.log_text()[since:]
    assert "Traceback" not in log and f"Exception on {path}" not in log, log
    assert "ConnectionClosed" not in log and "connection closed (" not in log, log


@pytest.mark.parametrize("mode", ["serve", "gunicorn"])
def test_classic_routes_of_an_app_without_the_extension(mode):
    """Served by wsapp, a plain Flask app's classic view ends normally on ConnectionClosed;
    another exception is still Flask's one `Exception on` line and close 1011."""
    with running_server(mode, env=ENV, app="tests.extension.classicapp:app") as server:
        with connect(server.url("/classic/send-after-close")) as ws:
            assert ws.recv(timeout=5) == "ready"
            ws.close(4001, "client leaves")
        assert "code=4001" in close_line(server, "/classic/send-after-close")
        with connect(server.url("/classic/boom")) as ws:
            ws.send("go")
            assert closed_by_server(ws)[0] == 1011
        log = server.wait_for_log("RuntimeError: classic boom")
        close_line(server, "/classic/boom")
    assert log.count("Traceback") == 1, log
    assert "Exception on /classic/boom" in log and "Exception on /classic/send" not in log


def test_view_api_close_code_reason_and_receive_timeout(srv):
    with connect(srv.url("/ext/custom-close")) as ws:
        assert ws.recv(timeout=5) == "bye soon"
        assert closed_by_server(ws) == (4000, "custom reason")
    assert "custom-close: close_code=4000 close_reason=custom reason closed=True" in (
        srv.wait_for_log("custom-close:")
    )
    with connect(srv.url("/ext/receive-timeout")) as ws:
        assert ws.recv(timeout=5) == "ready"
        assert ws.recv(timeout=5) == "timeout -> None, closed=False"
    with connect(srv.url("/ext/returns")) as ws:
        assert ws.recv(timeout=5) == "one and done"
        assert closed_by_server(ws) == (1000, "")


def test_a_view_refuses_with_plain_http_before_using_the_socket(srv):
    with pytest.raises(InvalidStatus) as info:
        connect(srv.url("/ext/refuse"), open_timeout=5)
    assert info.value.response.status_code == 403
    assert info.value.response.body == b"no token\n"
    with pytest.raises(InvalidStatus) as info:
        connect(srv.url("/ext/abort"), open_timeout=5)
    assert info.value.response.status_code == 401
    with connect(srv.url("/ext/refuse?token=yes")) as ws:
        assert ws.recv(timeout=5) == "welcome"


@pytest.mark.parametrize("path", ["/ext/echo", "/ext/rooms/x", "/classic/echo"])
def test_cross_site_origin_is_refused_403(srv, path):
    with pytest.raises(InvalidStatus) as info:
        connect(srv.url(path), origin="http://evil.example", open_timeout=5)
    assert info.value.response.status_code == 403
    same = f"http://{srv.host}:{srv.port}"
    with connect(srv.url(path), origin=same, subprotocols=["chat.v1"]) as ws:
        ws.send("same site")


def test_metrics_are_labelled_by_route_rule(srv):
    for room in ("a", "b", "c"):
        with connect(srv.url(f"/ext/rooms/{room}")) as ws:
            ws.recv(timeout=5)
    deadline = time.monotonic() + 5
    while True:
        with urllib.request.urlopen(srv.http_url("/metrics"), timeout=5) as response:
            text = response.read().decode()
        found = re.search(r'^wsapp_connections_total\{endpoint="/ext/rooms/<room>"\} (\S+)$',
                          text, re.M)
        if found and float(found.group(1)) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert found and float(found.group(1)) >= 3, text[-2000:]
    assert 'endpoint="/ext/rooms/a"' not in text  # the rule, never the client's path


@pytest.mark.parametrize("mode", ["serve", "gunicorn"])
def test_sigterm_closes_extension_routes_with_1001(mode):
    with running_server(mode, env=ENV, app=APP) as server:
        with connect(server.url("/ext/echo")) as echo, connect(server.url("/ext/ticker")) as tick:
            echo.send("before")
            assert echo.recv(timeout=5) == "before"
            assert tick.recv(timeout=5) == "tick 0"
            server.signal(signal.SIGTERM)
            assert closed_by_server(echo)[0] == 1001
            assert closed_by_server(tick)[0] == 1001
        assert server.proc.wait(timeout=20) == 0
        log = server.log_text()
    assert "closed 2 WebSocket(s) with 1001 for shutdown" in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
