"""Test clients for the chat integration tests: a `websockets` client that keeps reading in
its own thread (so it never slows the server down), and a stalled raw reader."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import struct
import threading
import time
from typing import Any
from urllib.parse import urlencode

from websockets.sync.client import connect

from tests.support.closing import close_code_of
from tests.support.servers import ServerProcess


def chat_url(srv: ServerProcess, room: str, **params: str | None) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return srv.url(f"/chat/{room}" + (f"?{query}" if query else ""))


class ChatClient:
    """A chat member. Events are read as they come (unbounded buffer) and parsed as JSON."""

    def __init__(
        self,
        srv: ServerProcess,
        room: str,
        name: str | None = "tester",
        since: str | None = None,
        token: str | None = None,
    ) -> None:
        self.room = room
        self._connect(chat_url(srv, room, name=name, since=since, token=token))

    def _connect(self, url: str, sock: socket.socket | None = None) -> None:
        """Open the WebSocket (over `sock` if given) and read the `hello` event."""
        self.ws = connect(
            url,
            sock=sock,
            open_timeout=5,
            close_timeout=2,
            max_queue=None,
            ping_interval=None,  # the server pings; websockets answers in its reader thread
            legacy=True,
        )
        self.hello = self.next()
        assert self.hello["type"] == "hello", self.hello
        self.id: str = self.hello["id"]

    def send_json(self, obj: dict[str, Any]) -> None:
        self.ws.send(json.dumps(obj))

    def say(self, text: str, ref: str | None = None) -> None:
        self.send_json(
            {"type": "message", "text": text, **({"ref": ref} if ref is not None else {})}
        )

    def next(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads(self.ws.recv(timeout=timeout))

    def next_of(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next event of `kind`, skipping others."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next(max(0.01, deadline - time.monotonic()))
            if event["type"] == kind:
                return event

    def messages(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The next `n` message events (other events skipped)."""
        deadline = time.monotonic() + timeout
        out: list[dict[str, Any]] = []
        while len(out) < n:
            event = self.next(max(0.01, deadline - time.monotonic()))
            if event["type"] == "message":
                out.append(event)
        return out

    def nothing_within(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            event = self.ws.recv(timeout=seconds)
            raise AssertionError(f"unexpected event: {event}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()

    def drop(self) -> None:
        """Lose the connection without a close frame (as when a network goes away)."""
        with contextlib.suppress(OSError):
            self.ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.ws.socket.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(Exception):
            self.ws.close_socket()

    def close_code(self, timeout: float = 5.0) -> int | None:
        """Read until the server closes; return its close code."""
        return close_code_of(self.ws, timeout)

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Collector(threading.Thread):
    """Read a client's messages in the background until `want` of them arrived."""

    def __init__(self, client: ChatClient, want: int, timeout: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.client, self.want, self.timeout = client, want, timeout
        self.messages: list[dict[str, Any]] = []
        self.others: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            while len(self.messages) < self.want:
                event = self.client.next(max(0.01, deadline - time.monotonic()))
                (self.messages if event["type"] == "message" else self.others).append(event)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def _read_http_head(sock: socket.socket) -> tuple[int, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during handshake")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), rest


def _read_exact(sock: socket.socket, buf: bytes, n: int) -> bytes:
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed early")
        buf += chunk
    return buf


def _frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


class StalledReader:
    """A raw WebSocket client that reads its hello and then never reads again.

    Its receive buffer is tiny, so the server's writes back up quickly. It keeps sending
    unsolicited pongs (a valid heartbeat), so keepalive does not mistake it for dead:
    it is alive, just not reading."""

    def __init__(
        self, srv: ServerProcess, room: str, name: str = "stalled", rcvbuf: int = 4096
    ) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect((srv.host, srv.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /chat/{room}?name={name} HTTP/1.1\r\nHost: {srv.host}:{srv.port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status, rest = _read_http_head(self.sock)
        assert status == 101, status
        # read the hello frame (unmasked text), nothing more
        buf = _read_exact(self.sock, rest, 2)
        n, start = buf[1] & 0x7F, 2
        if n == 126:
            buf = _read_exact(self.sock, buf, 4)
            n, start = struct.unpack("!H", buf[2:4])[0], 4
        buf = _read_exact(self.sock, buf, start + n)
        self.hello = json.loads(buf[start : start + n])
        self.id = self.hello["id"]
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self.sock.sendall(_frame(0xA, b"alive"))
            except OSError:
                return

    def closed_by_server(self, timeout: float = 5.0) -> bool:
        """Now read everything: True if the server ended the TCP connection."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                return True
            except TimeoutError:
                return False
            if not chunk:
                return True
        return False

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.close()
