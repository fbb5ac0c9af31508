"""`python -m wsapp client|publish` (wsapp/cli_client.py) against a real server."""

from __future__ import annotations

import contextlib
import io
import os
import random
import subprocess
import sys
import threading
import time

from tests.chat.clients import ChatClient, Collector
from tests.chat.conftest import new_room
from tests.support.servers import ROOT
from wsapp import cli_client
from wsapp.cli_client import (
    ChatSession,
    backoff_delays,
    format_event,
    run_client,
    run_publish,
    with_query,
)


def test_connect_url_keeps_the_given_name_and_adds_since() -> None:
    s = ChatSession("ws://h/chat/r?name=given")
    assert s._connect_url() == "ws://h/chat/r?name=given"
    s.last_id = "7-1"
    assert s._connect_url() == "ws://h/chat/r?name=given&since=7-1"
    s.name = "guest-ab12"
    assert s._connect_url() == "ws://h/chat/r?name=guest-ab12&since=7-1"


def test_with_query_and_backoff() -> None:
    assert with_query("ws://h/chat/r?name=a", since="5-1") == "ws://h/chat/r?name=a&since=5-1"
    assert with_query("ws://h/chat/r?since=1-0&name=a", since="2-0", name=None) == "ws://h/chat/r?since=2-0"
    delays = backoff_delays(base=0.5, cap=4, rng=lambda: 0.0)
    assert [next(delays) for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    jittered = backoff_delays(rng=random.Random(1).random)
    assert all(0.5 <= d <= 10 * 1.25 for d in (next(jittered) for _ in range(10)))


def test_publish_pacing_stays_under_the_rate() -> None:
    pace = cli_client._pacer(rate=200.0, burst=5)
    t0 = time.monotonic()
    for _ in range(25):
        pace()
    elapsed = time.monotonic() - t0
    assert 0.08 <= elapsed < 0.5  # 5 at once, then 20 at 200/s = 0.1 s
    unpaced = cli_client._pacer(rate=None, burst=1)
    t0 = time.monotonic()
    for _ in range(1000):
        unpaced()
    assert time.monotonic() - t0 < 0.05


def test_format_event() -> None:
    msg = {"type": "message", "id": "1-0", "name": "ann", "text": "hi", "ts": 0}
    assert format_event(msg).endswith("<ann> hi")
    assert format_event({**msg, "replay": True}).endswith("(history)")
    assert format_event({"type": "join", "name": "bob"}) == "* bob joined"
    assert format_event({"type": "leave", "name": "bob"}) == "* bob left"
    assert format_event({"type": "error", "code": "c", "reason": "r"}) == "! c: r"
    hello = format_event({"type": "hello", "room": "r", "name": "me", "id": "1", "members": ["me", "you"]})
    assert "#r" in hello and "me, you" in hello


def test_publish_sends_every_line_in_order(chat_server) -> None:
    room = new_room("pub")
    lines = [f"log line {i}" for i in range(40)]
    with ChatClient(chat_server, room, "reader") as reader:
        got = Collector(reader, len(lines))
        got.start()
        err = io.StringIO()
        status = run_publish(
            chat_server.url(f"/chat/{room}"),
            name="logbot",
            stdin=io.StringIO("\n".join(lines) + "\n\n"),
            stderr=err,
            rate=None,
        )
        assert status == 0, err.getvalue()
        got.join(10)
        assert [m["text"] for m in got.messages] == lines
        assert {m["name"] for m in got.messages} == {"logbot"}


def test_publish_command_line(chat_serve_server) -> None:
    room = new_room("pubcli")
    with ChatClient(chat_serve_server, room, "reader") as reader:
        proc = subprocess.run(
            [sys.executable, "-m", "wsapp", "publish", chat_serve_server.url(f"/chat/{room}"), "--name", "tail"],
            input="first\nsecond\n",
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if not k.startswith("WSAPP_")},
        )
        assert proc.returncode == 0, proc.stderr
        assert [m["text"] for m in reader.messages(2)] == ["first", "second"]


def test_publish_to_a_refused_url_fails(chat_serve_server) -> None:
    err = io.StringIO()
    status = run_publish(chat_serve_server.url("/chat/bad%20room"), stdin=io.StringIO("x\n"), stderr=err, max_attempts=1)
    assert status == 1
    assert "400" in err.getvalue()


def test_client_prints_events_and_sends_lines(chat_server) -> None:
    room = new_room("cli")
    with ChatClient(chat_server, room, "ann") as ann:
        ann.say("before you came")
        ann.next_of("message")
        out, err = io.StringIO(), io.StringIO()
        status = run_client(
            chat_server.url(f"/chat/{room}"), name="cli-user", stdin=io.StringIO("hello from the cli\n"), stdout=out, stderr=err
        )
        assert status == 0, err.getvalue()
        text = out.getvalue()
        assert f"* joined #{room} as cli-user" in text
        assert "<ann> before you came  (history)" in text
        assert ann.next_of("message")["text"] == "hello from the cli"


def test_client_echo_mode(server) -> None:
    out = io.StringIO()
    assert run_client(server.url("/echo"), stdin=io.StringIO("one\ntwo\n"), stdout=out, stderr=io.StringIO()) == 0
    assert out.getvalue().splitlines()[:2] == ["one", "two"]


def test_client_refused_at_handshake(chat_serve_server) -> None:
    err = io.StringIO()
    status = run_client(
        chat_serve_server.url("/chat/ok?name=" + "n" * 40), stdin=io.StringIO("x\n"), stdout=io.StringIO(), stderr=err
    )
    assert status == 1
    assert "HTTP 400" in err.getvalue() and "invalid name" in err.getvalue()


def test_session_reconnects_and_resumes_without_gap_or_duplicate(chat_serve_server) -> None:
    """Cut the CLI's connection repeatedly while messages flow: it reconnects with since=
    and ends up with exactly the room's stream."""
    srv = chat_serve_server
    room = new_room("clires")
    total = 400
    seen: list[dict] = []
    lock = threading.Lock()

    def on_event(event: dict) -> None:
        if event.get("type") == "message":
            with lock:
                seen.append(event)

    statuses: list[str] = []
    session = ChatSession(
        srv.url(f"/chat/{room}"),
        name="roamer",
        on_event=on_event,
        on_status=statuses.append,
        backoff=lambda: backoff_delays(base=0.01, cap=0.05),
    )
    session.start()
    assert session.wait_connected(5)
    sender = ChatClient(srv, room, "sender")
    watcher = ChatClient(srv, room, "watcher")
    watch = Collector(watcher, total)
    watch.start()

    def pump() -> None:
        for i in range(total):
            sender.ws.send(f"q{i}")
            time.sleep(0.001)

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    cuts = 0
    while pumper.is_alive() and cuts < 6:
        time.sleep(0.05)
        ws = session._ws
        if ws is not None:
            ws.sock.shutdown(2)  # the network goes away under the client
            cuts += 1
    pumper.join(20)
    watch.join(20)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with lock:
            if seen and seen[-1]["text"] == f"q{total - 1}":
                break
        time.sleep(0.02)
    session.stop()
    sender.close()
    watcher.close()
    assert cuts >= 3 and sum("reconnecting" in s for s in statuses) >= 3, statuses
    ids = [e["id"] for e in seen]
    assert len(ids) == len(set(ids)), "duplicates"
    assert ids == [m["id"] for m in watch.messages], "gap"


def test_session_resends_lines_typed_while_disconnected(chat_serve_server) -> None:
    srv = chat_serve_server
    room = new_room("resend")
    with ChatClient(srv, room, "reader") as reader:
        session = ChatSession(srv.url(f"/chat/{room}"), name="typist", backoff=lambda: backoff_delays(base=0.2, cap=0.2))
        session.start()
        assert session.wait_connected(5)
        session.submit("one")
        assert session.drain(5)
        session._ws.sock.shutdown(2)
        time.sleep(0.05)
        session.submit("two")  # typed while the connection is down
        session.submit("three")
        assert session.drain(10), session.outbox
        session.stop()
        texts = [m["text"] for m in reader.messages(3)]
        assert texts == ["one", "two", "three"]
        extra = []
        with contextlib.suppress(TimeoutError):
            while True:
                extra.append(reader.next(timeout=0.2))
        assert [e for e in extra if e["type"] == "message"] == []  # nothing sent twice


def test_module_exports() -> None:
    assert callable(cli_client.run_client) and callable(cli_client.run_publish)
