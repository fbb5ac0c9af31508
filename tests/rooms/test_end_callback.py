"""WebSocket.add_end_callback (the engine hook Rooms leaves rooms with), over a socket pair."""

from __future__ import annotations

import logging

import gevent

from tests.support.socketpair_ws import make_pair
from wsapp.protocol.frames import Opcode, encode_frame


def _peer_closes(client) -> None:
    client.sendall(encode_frame(Opcode.CLOSE, b"\x03\xe8", mask=b"abcd"))


def test_callbacks_run_once_in_order_when_the_peer_closes() -> None:
    ws, client = make_pair()
    calls: list[str] = []
    ws.add_end_callback(lambda: calls.append(f"a:{ws.state.name}"))
    ws.add_end_callback(lambda: calls.append("b"))
    _peer_closes(client)
    assert ws.receive() is None
    with gevent.Timeout(5):
        while len(calls) < 2:
            gevent.sleep(0.01)
    gevent.sleep(0.1)
    assert calls == ["a:CLOSED", "b"]  # TCP is gone by then


def test_callbacks_run_when_the_connection_is_dropped_without_a_close_frame() -> None:
    ws, client = make_pair()
    done = gevent.event.Event()
    ws.add_end_callback(done.set)
    client.close()
    assert done.wait(5)


def test_callbacks_run_for_a_socket_served_by_its_reader() -> None:
    ws, client = make_pair()
    done = gevent.event.Event()
    ws.add_end_callback(done.set)
    ws._handle = lambda batch: None  # as serve() leaves it (the socket pair has no request)
    _peer_closes(client)
    assert done.wait(5)


def test_added_after_the_end_runs_at_once() -> None:
    ws, client = make_pair()
    _peer_closes(client)
    assert ws.receive() is None
    ws.wait_closed(5)
    gevent.sleep(0.05)
    calls: list[int] = []
    ws.add_end_callback(lambda: calls.append(1))
    assert calls == [1]


def test_a_failing_callback_is_logged_and_the_others_still_run(caplog) -> None:
    ws, client = make_pair()
    calls: list[str] = []

    def broken() -> None:
        raise RuntimeError("broken callback")

    ws.add_end_callback(broken)
    ws.add_end_callback(lambda: calls.append("after"))
    with caplog.at_level(logging.ERROR, logger="wsapp.ws"):
        ws.close(1000, "")
        with gevent.Timeout(5):
            while not calls:
                gevent.sleep(0.01)
    assert calls == ["after"]
    assert "end-of-connection callback failed" in caplog.text and "broken callback" in caplog.text
