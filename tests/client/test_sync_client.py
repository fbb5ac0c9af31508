"""`wsapp.client.Client` against real servers: sends and acks, handlers and iteration,
refusals with the server's reason, retry limits, plain endpoints, gaps, emit."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from tests.client.support import CLIENT_ENV, FAST, Restartable, new_room
from tests.support.servers import free_port
from wsapp.client import (
    AckTimeout,
    Client,
    ClientClosed,
    ClientError,
    ConnectFailed,
    GaveUp,
    InvalidURL,
    NotSent,
    Refused,
    Rejected,
    Unauthorized,
)


def test_send_returns_the_acked_id_and_handlers_see_the_room(client_server) -> None:
    url = client_server.url(f"/chat/{new_room()}")
    seen: dict[str, list[dict[str, Any]]] = {}
    arrived = threading.Event()
    with Client() as bob, Client() as ann:
        for kind in ("connect", "message", "join", "ack", "*"):
            bob.on(kind, lambda e, k=kind: seen.setdefault(k, []).append(e))
        bob.on("message", lambda e: arrived.set() if e["text"] == "hi bob" else None)
        hello = bob.connect(url, name="bob")
        assert hello is not None and hello["type"] == "hello" and hello["name"] == "bob"
        ann.connect(url, name="ann")
        message_id = ann.send("hi bob")
        assert isinstance(message_id, str)
        assert arrived.wait(5)
        assert bob.last_id == message_id
    assert seen["connect"][0]["hello"]["name"] == "bob" and not seen["connect"][0]["reconnect"]
    assert [e["name"] for e in seen["join"]] == ["ann"]
    assert [(e["text"], e["id"]) for e in seen["message"]] == [("hi bob", message_id)]
    assert "ack" not in seen  # bob sent nothing
    assert len(seen["*"]) >= 3


def test_iteration_and_wait_false_futures(client_server) -> None:
    url = client_server.url(f"/chat/{new_room()}")
    with Client() as reader, Client() as writer:
        reader.connect(url, name="r")  # no handler: events are queued for iteration
        writer.connect(url, name="w")
        futures = [writer.send(f"n{i}", wait=False) for i in range(200)]
        ids = [f.result(10) for f in futures]
        assert len(set(ids)) == 200
        texts = []
        for event in reader:
            if event["type"] == "message":
                texts.append(event["text"])
                if len(texts) == 200:
                    break
        assert texts == [f"n{i}" for i in range(200)]
        with pytest.raises(TimeoutError):
            reader.receive(timeout=0.2)


def test_a_guest_name_is_kept_across_reconnects(client_server) -> None:
    url = client_server.url(f"/chat/{new_room()}")
    with Client() as guest:
        hello = guest.connect(url)
        assert hello["name"].startswith("guest-")
        assert guest.name == hello["name"]
        assert f"name={guest.name}" in guest._core.connect_url()


def test_a_message_the_server_refuses_raises_rejected(client_server) -> None:
    url = client_server.url(f"/chat/{new_room()}")
    errors: list[dict[str, Any]] = []
    with Client() as c:
        c.on("error", errors.append)
        c.connect(url)
        with pytest.raises(Rejected) as info:
            c.send("x" * 20000)
        assert info.value.code == "message_too_large"
        with pytest.raises(Rejected) as info:
            c.send("")
        assert info.value.code == "empty_message"
        assert isinstance(c.send("fine"), str)  # the connection is still good
    assert [e["code"] for e in errors] == ["message_too_large", "empty_message"]


def test_emit_follows_the_documented_event_shape(client_server) -> None:
    """Named events: today's server answers unknown_type (the event relay is being built);
    once it relays events, emit returns the ack's id and the room gets the event."""
    url = client_server.url(f"/chat/{new_room()}")
    with Client() as c:
        c.connect(url)
        try:
            acked = c.emit("action", {"task": 1})
        except Rejected as exc:
            assert exc.code == "unknown_type", exc
        else:
            assert acked is None or isinstance(acked, str)


@pytest.mark.parametrize("path, reason", [
    ("/chat/bad%20room", "invalid room name"),
    ("/chat/ok?name=" + "n" * 40, "invalid name"),
    ("/chat/ok?since=nope", "invalid since"),
])
def test_a_refused_handshake_raises_with_the_server_reason(client_server, path: str,
                                                           reason: str) -> None:
    with pytest.raises(Refused) as info:
        Client().connect(client_server.url(path))
    assert info.value.status == 400
    assert info.value.reason.startswith(reason), info.value.reason
    assert "HTTP 400" in str(info.value) and reason in str(info.value)
    assert info.value.permanent


def test_a_refusal_is_not_retried_even_with_retry(client_server) -> None:
    started = time.monotonic()
    with pytest.raises(Refused):
        Client(backoff=FAST, max_tries=50).connect(client_server.url("/chat/a%20b"), retry=True)
    assert time.monotonic() - started < 2


def test_unauthorized_without_a_token_and_admitted_with_one(token_server) -> None:
    url = token_server.url(f"/chat/{new_room()}")
    with pytest.raises(Unauthorized) as info:
        Client().connect(url)
    assert info.value.status == 401 and info.value.reason
    import os
    import subprocess
    import sys

    from tests.support.servers import ROOT

    env = {**os.environ, "WSAPP_SECRET": "client-test-secret"}
    token = subprocess.run([sys.executable, "-m", "wsapp", "token", "--room", "*", "--name",
                            "tok"], capture_output=True, text=True, env=env, cwd=ROOT,
                           check=True, timeout=30).stdout.strip()
    with Client() as c:
        hello = c.connect(url, token=token)
        assert hello["name"] == "tok"
        assert isinstance(c.send("with a token"), str)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/echo", "ws://127.0.0.1:99999/", "ws:///x", ""])
def test_a_bad_url_is_invalid_url_before_any_connection(url: str) -> None:
    with pytest.raises(InvalidURL):
        Client().connect(url)


def test_the_retry_limit_ends_with_a_clear_error() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(GaveUp) as info:
        Client(backoff=FAST, max_tries=3).connect(f"ws://127.0.0.1:{port}/echo", retry=True)
    assert info.value.tries == 3
    assert isinstance(info.value.last_error, ConnectFailed)
    assert "gave up connecting after 3 attempts" in str(info.value)
    assert "connection refused" in str(info.value)
    with pytest.raises(GaveUp) as info:
        Client(backoff=FAST, max_time=0.8).connect(f"ws://127.0.0.1:{port}/echo", retry=True)
    assert 0.7 <= info.value.elapsed < 2.5
    assert time.monotonic() - started < 5
    with pytest.raises(ConnectFailed, match="connection refused"):
        Client().connect(f"ws://127.0.0.1:{port}/echo")  # no retry: the first failure


def test_a_server_that_is_not_websocket_is_a_clear_failure() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        time.sleep(0.5)
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        with pytest.raises(Refused) as info:
            Client().connect(f"ws://127.0.0.1:{listener.getsockname()[1]}/chat/x")
        assert info.value.status == 200
    finally:
        listener.close()


def test_plain_echo_endpoint_text_and_binary(client_server) -> None:
    with Client() as c:
        assert c.connect(client_server.url("/echo")) is None
        assert not c.is_chat
        assert c.send("one") is None
        c.send(b"\x00\x01two")
        first, second = c.receive(timeout=5), c.receive(timeout=5)
    assert first["type"] == "connect" and first["hello"] is None
    assert second == {"type": "message", "text": "one"}
    assert c.receive(timeout=5) == {"type": "message", "data": b"\x00\x01two"}


def test_http_and_schemeless_urls_are_converted(client_server) -> None:
    for url in (client_server.http_url("/echo"), f"127.0.0.1:{client_server.port}/echo"):
        with Client(queue_events=True) as c:
            c.connect(url)
            assert c.url.startswith("ws://")
            c.send("hello")
            events = [c.receive(timeout=5) for _ in range(2)]
            assert events[1] == {"type": "message", "text": "hello"}


def test_a_lost_history_is_one_gap_event() -> None:
    """hello.recovered false (since= older than the history kept) is surfaced once."""
    room = new_room("gap")
    env = {**CLIENT_ENV, "WSAPP_HISTORY": "3"}
    with Restartable(env) as small:
        url = small.url(f"/chat/{room}")
        with Client() as w:
            w.connect(url)
            old = w.send("old")
            for i in range(5):
                w.send(f"later {i}")
        gaps: list[dict[str, Any]] = []
        with Client() as late:
            late.on("gap", gaps.append)
            hello = late.connect(url, since=old)
            assert hello["recovered"] is False
            assert late.recovered is False and late.gaps == 1
    assert len(gaps) == 1 and gaps[0]["since"] == old


def test_sends_while_the_server_is_down_wait_in_the_outbox(client_server) -> None:
    room = new_room("outbox")
    with Restartable(CLIENT_ENV) as server:
        url = server.url(f"/chat/{room}")
        statuses: list[dict[str, Any]] = []
        with Client(backoff=FAST) as c:
            c.on("*", statuses.append)
            c.connect(url, name="patient")
            server.kill()
            futures = [c.send(f"queued {i}", wait=False) for i in range(3)]
            with pytest.raises(AckTimeout) as info:
                c.send("timed out but still queued", timeout=0.3)
            assert not info.value.future.done()
            time.sleep(0.3)
            assert c.unacked == 4 and not c.connected
            server.start()
            ids = [f.result(15) for f in futures] + [info.value.future.result(15)]
            assert len(set(ids)) == 4
            with Client(queue_events=True) as reader:
                reader.connect(url)
                msgs = [e for e in _events(reader, 0.5) if e["type"] == "message"]
            assert [m["text"] for m in msgs] == [f"queued {i}" for i in range(3)] + [
                "timed out but still queued"]
    kinds = [e["type"] for e in statuses]
    assert "disconnect" in kinds and kinds.count("connect") >= 2
    disconnect = next(e for e in statuses if e["type"] == "disconnect")
    assert disconnect["by"] is None and disconnect["reconnecting"] is True
    assert any(e.get("code") == "connect_failed" for e in statuses)


def _events(client: Client, quiet: float) -> list[dict[str, Any]]:
    out = []
    while True:
        try:
            out.append(client.receive(timeout=quiet))
        except TimeoutError:
            return out


def test_close_is_idempotent_and_ends_sends(client_server) -> None:
    c = Client()
    c.connect(client_server.url(f"/chat/{new_room()}"))
    c.close()
    c.close()
    assert c.ended and c.error is None
    with pytest.raises(ClientClosed):
        c.send("late")
    with pytest.raises(ClientError):
        c.connect(client_server.url("/echo"))
    with pytest.raises(ClientError, match="connect"):
        Client().send("never connected")


def test_close_fails_unsent_messages_as_not_sent(client_server) -> None:
    with Restartable(CLIENT_ENV) as server:
        c = Client(backoff=FAST)
        c.connect(server.url(f"/chat/{new_room()}"))
        server.kill()
        future = c.send("never went out", wait=False)
        c.close(timeout=0.2)
        exc = future.exception(1)
        assert isinstance(exc, NotSent), exc


def test_a_handler_may_send_and_wait_for_its_ack(client_server) -> None:
    url = client_server.url(f"/chat/{new_room()}")
    answered: list[str] = []
    with Client() as bot, Client(queue_events=True) as user:

        def reply(event: dict[str, Any]) -> None:
            if event.get("name") == "user":
                answered.append(bot.send(f"re: {event['text']}"))

        bot.on("message", reply)
        bot.connect(url, name="bot")
        user.connect(url, name="user")
        user.send("ping")
        deadline = time.monotonic() + 5
        while not answered and time.monotonic() < deadline:
            time.sleep(0.01)
    assert answered and isinstance(answered[0], str)


def test_a_permanent_close_code_ends_the_client(client_server) -> None:
    """Binary frames in chat are closed 1003: reconnecting would repeat it."""
    with Client(backoff=FAST) as c:
        c.connect(client_server.url(f"/chat/{new_room()}"), chat=False)  # force raw frames
        c.send(b"\x00binary")
        with pytest.raises(ClientClosed, match="1003"):
            c.wait(5)


GEVENT_SCRIPT = """
from gevent import monkey; monkey.patch_all()
import sys, gevent
from wsapp.client import Client
url = sys.argv[1]
with Client(queue_events=True) as reader, Client() as writer:
    reader.connect(url, name="r")
    writer.connect(url, name="w")
    ticks = []
    ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.001)) for _ in range(50)])
    ids = [g.get() for g in [gevent.spawn(writer.send, f"g{i}") for i in range(100)]]
    texts = set()
    while len(texts) < 100:
        event = reader.receive(timeout=5)
        if event["type"] == "message":
            texts.add(event["text"])
    ticker.join(5)
    assert len(set(ids)) == 100 and texts == {f"g{i}" for i in range(100)}, texts
    assert len(ticks) == 50  # other greenlets ran while 100 sends waited for their acks
print("ok")
"""


def test_client_under_gevent_monkey_patching(client_server) -> None:
    """100 greenlets sending at once through one Client, after monkey.patch_all()."""
    import subprocess
    import sys

    from tests.support.servers import ROOT

    proc = subprocess.run([sys.executable, "-c", GEVENT_SCRIPT,
                           client_server.url(f"/chat/{new_room('gevent')}")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_sends_from_many_threads(client_server) -> None:
    url = client_server.url(f"/chat/{new_room('threads')}")
    ids: list[str] = []
    with Client() as c:
        c.connect(url)

        def burst(n: int) -> None:
            for i in range(50):
                ids.append(c.send(f"t{n}-{i}"))

        threads = [threading.Thread(target=burst, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert len(set(ids)) == 200
