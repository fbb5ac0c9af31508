"""`python -m wsapp client|publish` (wsapp/cli/) against real servers, with a test for
each rough edge of issue 16: URLs (http://, no scheme, bad ones: no traceback), the
server's refusal reason, encoded room names, bounded retries with a non-zero exit,
accurate close wording, marked echo replies, --help examples and --version."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time

import pytest

from tests.chat.clients import ChatClient, Collector
from tests.chat.conftest import new_room
from tests.client.support import CLIENT_ENV, Restartable
from tests.support.servers import ROOT, free_port
from wsapp import __version__
from wsapp.cli.output import format_event, status_line
from wsapp.cli.publish import pacer, run_publish

ENV = {k: v for k, v in os.environ.items() if not k.startswith("WSAPP_")}


def cli(*args: str, stdin: str = "", timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wsapp", *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=ENV)


# ---- formatting and pacing (no sockets)


def test_format_event_and_status_lines() -> None:
    msg = {"type": "message", "id": "1-0", "name": "ann", "text": "hi", "ts": 0}
    assert format_event(msg).endswith("<ann> hi")
    assert format_event({**msg, "replay": True}).endswith("(history)")
    assert format_event({"type": "message", "text": "echoed"}) == "< echoed"
    assert format_event({"type": "message", "data": b"abc"}) == "< [binary, 3 bytes]"
    assert format_event({"type": "join", "name": "bob"}) == "* bob joined"
    assert format_event({"type": "error", "code": "c", "reason": "r"}) == "! c: r"
    assert format_event({"type": "ack", "ref": "1", "id": "2"}) is None
    deploy = {"type": "event", "event": "deploy", "data": {"v": 2}, "sender": {"name": "ci"}}
    assert format_event(deploy) == '~ <ci> deploy {"v": 2}'
    assert format_event({"type": "event", "event": "typing", "data": {}}) is None
    lost = {"type": "disconnect", "code": 1006, "reason": "", "by": None, "reconnecting": True}
    assert status_line(lost) == "connection lost (no close frame); reconnecting"
    mine = {"type": "disconnect", "code": 1000, "reason": "bye", "by": "client"}
    assert status_line(mine) == "closed by the client (1000 bye)"
    theirs = {"type": "disconnect", "code": 1001, "reason": "going away", "by": "server"}
    assert status_line(theirs) == "closed by the server (1001 going away)"
    hello = {"type": "hello", "room": "r", "name": "me", "id": "1", "members": ["me", "you"]}
    line = status_line({"type": "connect", "hello": hello, "reconnect": True})
    assert line.startswith("reconnected: #r as me") and "me, you" in line
    assert "no longer in history" in status_line({"type": "gap"})


def test_publish_pacing_stays_under_the_rate() -> None:
    pace = pacer(rate=200.0, burst=5)
    t0 = time.monotonic()
    for _ in range(25):
        pace()
    assert 0.08 <= time.monotonic() - t0 < 0.5  # 5 at once, then 20 at 200/s = 0.1 s
    unpaced = pacer(rate=None, burst=1)
    t0 = time.monotonic()
    for _ in range(1000):
        unpaced()
    assert time.monotonic() - t0 < 0.05


# ---- publish


def test_publish_sends_every_line_in_order(chat_server) -> None:
    room = new_room("pub")
    lines = [f"log line {i}" for i in range(40)]
    with ChatClient(chat_server, room, "reader") as reader:
        got = Collector(reader, len(lines))
        got.start()
        err = io.StringIO()
        status = run_publish(chat_server.url(f"/chat/{room}"), name="logbot",
                             stdin=io.StringIO("\n".join(lines) + "\n\n"), stderr=err, rate=None)
        assert status == 0, err.getvalue()
        got.join(10)
        assert [m["text"] for m in got.messages] == lines
        assert {m["name"] for m in got.messages} == {"logbot"}


def test_publish_command_line(chat_serve_server) -> None:
    room = new_room("pubcli")
    with ChatClient(chat_serve_server, room, "reader") as reader:
        proc = cli("publish", chat_serve_server.url(f"/chat/{room}"), "--name", "tail",
                   stdin="first\nsecond\n")
        assert proc.returncode == 0, proc.stderr
        assert [m["text"] for m in reader.messages(2)] == ["first", "second"]


def test_publish_to_a_server_that_is_down_stops_at_retries_with_exit_1() -> None:
    url = f"ws://127.0.0.1:{free_port()}/chat/ops"
    started = time.monotonic()
    proc = cli("publish", url, "--retries", "2", stdin="hi\n")
    assert proc.returncode == 1
    assert time.monotonic() - started < 15
    assert "gave up connecting after 2 attempts" in proc.stderr
    assert "connection refused" in proc.stderr and "nothing published" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_publish_timeout_bounds_an_outage() -> None:
    url = f"ws://127.0.0.1:{free_port()}/chat/ops"
    started = time.monotonic()
    proc = cli("publish", url, "--retries", "1000", "--timeout", "1.5", stdin="hi\n")
    assert proc.returncode == 1
    assert time.monotonic() - started < 12
    assert "gave up connecting" in proc.stderr


def test_publish_counts_refused_lines_and_exits_1(chat_server) -> None:
    err = io.StringIO()
    status = run_publish(chat_server.url(f"/chat/{new_room()}"), rate=None,
                         stdin=io.StringIO("ok\n" + "x" * 20000 + "\nok too\n"), stderr=err)
    assert status == 1
    assert "message_too_large" in err.getvalue()
    assert "1 of 3 lines not delivered (1 refused" in err.getvalue()


def test_publish_needs_a_chat_url(server) -> None:
    err = io.StringIO()
    assert run_publish(server.url("/echo"), stdin=io.StringIO("x\n"), stderr=err) == 2
    assert "needs a /chat/<room> URL" in err.getvalue()


# ---- client: URLs, refusals


def test_http_and_schemeless_urls_work_and_echo_replies_are_marked(serve_server) -> None:
    for url in (serve_server.http_url("/echo"), f"127.0.0.1:{serve_server.port}/echo"):
        proc = cli("client", url, stdin="one\ntwo\n")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == ["< one", "< two"]
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("url, says", [
    ("ftp://127.0.0.1/echo", "unsupported scheme 'ftp'"),
    ("ws://127.0.0.1:99999/echo", "invalid URL"),
    ("ws:///echo", "no host"),
])
def test_a_bad_url_is_one_clear_line_and_exit_2(url: str, says: str) -> None:
    proc = cli("client", url, stdin="x\n")
    assert proc.returncode == 2
    assert says in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_a_refused_handshake_prints_the_server_reason(chat_serve_server) -> None:
    proc = cli("client", chat_serve_server.url("/chat/ok?name=" + "n" * 40), stdin="x\n")
    assert proc.returncode == 1
    assert "refused: HTTP 400: invalid name" in proc.stderr, proc.stderr


def test_a_room_name_with_a_space_is_encoded(chat_serve_server) -> None:
    """The space is sent as %20: the request is well-formed and the chat view refuses the
    room name itself (400 with its reason), instead of a malformed request line."""
    proc = cli("client", chat_serve_server.url("/chat/bad room"), stdin="x\n")
    assert proc.returncode == 1
    assert "refused: HTTP 400: invalid room name" in proc.stderr, proc.stderr
    chat_serve_server.wait_for_log("chat handshake refused (400 invalid room name")


def test_a_connection_that_cannot_be_made_exits_1() -> None:
    proc = cli("client", f"ws://127.0.0.1:{free_port()}/chat/x", stdin="x\n")
    assert proc.returncode == 1
    assert "connection refused" in proc.stderr and "Traceback" not in proc.stderr


# ---- client: sessions and wording


def test_end_of_input_closes_with_accurate_wording(serve_server) -> None:
    proc = cli("client", serve_server.url("/echo"), stdin="hi\n")
    assert proc.returncode == 0
    assert "* closed by the client (1000" in proc.stderr
    assert "closed by the server" not in proc.stderr


def test_client_prints_events_and_sends_lines(chat_server) -> None:
    room = new_room("cli")
    with ChatClient(chat_server, room, "ann") as ann:
        ann.say("before you came")
        ann.next_of("message")
        proc = cli("client", chat_server.url(f"/chat/{room}"), "--name", "cli-user",
                   stdin="hello from the cli\n")
        assert proc.returncode == 0, proc.stderr
        assert f"* connected: #{room} as cli-user" in proc.stderr
        assert "<ann> before you came  (history)" in proc.stdout
        assert "<cli-user> hello from the cli" in proc.stdout
        assert ann.next_of("message")["text"] == "hello from the cli"


class Session:
    """`python -m wsapp client` as a process with a live stdin; its output collected."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "wsapp", "client", url, "--name", "watcher"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=ROOT, env=ENV, bufsize=1)
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=lambda s=stream, ls=lines: ls.extend(iter(s.readline, "")),
                             daemon=True).start()

    def wait_for(self, lines: list[str], text: str, count: int = 1, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while sum(text in line for line in list(lines)) < count:
            assert time.monotonic() < deadline, f"{text!r} x{count} not in {lines}"
            time.sleep(0.02)

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def end(self, timeout: float = 20) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@pytest.mark.timeout(90)
def test_restarts_are_worded_accurately_and_a_lost_history_is_said_once() -> None:
    """SIGTERM: the server closes 1001; SIGKILL: the connection is lost without a close
    frame. Each restart of a memory-broker server loses the room's history, said once."""
    with Restartable(CLIENT_ENV) as server:
        session = Session(server.url(f"/chat/{new_room('words')}"))
        try:
            session.wait_for(session.err, "* connected: #")
            session.say("first")
            session.wait_for(session.out, "<watcher> first")
            server.stop()  # SIGTERM
            session.wait_for(session.err, "closed by the server (1001")
            assert "reconnecting" in [line for line in session.err if "1001" in line][0]
            server.start()
            session.wait_for(session.err, "* reconnected: #")
            session.wait_for(session.err, "no longer in history")
            server.kill()
            session.wait_for(session.err, "* connection lost (no close frame); reconnecting")
            server.start()
            session.wait_for(session.err, "* reconnected: #", count=2)
            session.wait_for(session.err, "no longer in history", count=2)
            session.say("second")
            session.wait_for(session.out, "<watcher> second")
            assert session.end() == 0, session.err
            time.sleep(0.1)
            assert sum("no longer in history" in line for line in session.err) == 2, session.err
            assert "closed by the client (1000" in "".join(session.err)
            assert not any("Traceback" in line for line in session.err)
        finally:
            session.kill()


# ---- help and version


def test_help_has_examples_and_describes_the_url() -> None:
    for command in ("client", "publish"):
        proc = cli(command, "--help")
        assert proc.returncode == 0
        assert "examples:" in proc.stdout and f"python -m wsapp {command}" in proc.stdout
        assert "ws:// or wss:// URL" in proc.stdout
    publish = cli("publish", "--help").stdout
    assert "--retries" in publish and "--timeout" in publish and "Exit status" in publish


def test_version() -> None:
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"wsapp {__version__}"
