"""Clients of the rooms test routes (tests/rooms/routes.py): a reading member and a stalled one."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from websockets.sync.client import connect

from tests.chat.clients import StalledReader, _read_exact, _read_http_head
from tests.support.servers import ServerProcess


class RoomMember:
    """A `websockets` client on /ws/room/<room> (or another route that says "joined")."""

    def __init__(self, srv: ServerProcess, path: str) -> None:
        self.ws = connect(srv.url(path), open_timeout=10, close_timeout=2, max_queue=None,
                          max_size=None, ping_interval=None, legacy=True)
        self.joined = self.next()
        assert self.joined["type"] == "joined", self.joined
        self.id: str = self.joined["id"]

    def next(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads(self.ws.recv(timeout=timeout))

    def command(self, **command: Any) -> dict[str, Any]:
        """Send a command to the route and return its "ok" (events before it are dropped)."""
        self.ws.send(json.dumps(command))
        while True:
            reply = self.next()
            if reply["type"] == "ok":
                return reply

    def events(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        out = []
        while len(out) < n:
            out.append(self.next(max(0.01, deadline - time.monotonic())))
        return out

    def nothing_within(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            frame = self.ws.recv(timeout=seconds)
            raise AssertionError(f"unexpected frame: {frame}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()

    def __enter__(self) -> RoomMember:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StalledMember(StalledReader):
    """A raw client on /ws/room/<room> that reads its first frame and never reads again
    (StalledReader's heartbeat and checks, our route's handshake)."""

    def __init__(self, srv: ServerProcess, room: str, rcvbuf: int = 4096) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5)
        self.sock.connect((srv.host, srv.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws/room/{room} HTTP/1.1\r\nHost: {srv.host}:{srv.port}\r\n"
                f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        status, rest = _read_http_head(self.sock)
        assert status == 101, status
        buf = _read_exact(self.sock, rest, 2)
        n = buf[1] & 0x7F
        assert n < 126
        self.hello = json.loads(_read_exact(self.sock, buf, 2 + n)[2 : 2 + n])
        self.id = self.hello["id"]
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()


def post_json(srv: ServerProcess, path: str, body: Any, headers: dict[str, str] | None = None,
              ) -> tuple[int, Any]:
    request = urllib.request.Request(
        srv.http_url(path), data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def get_json(srv: ServerProcess, path: str) -> Any:
    with urllib.request.urlopen(srv.http_url(path), timeout=10) as response:
        return json.loads(response.read())


def members_of(srv: ServerProcess, room: str) -> list[str]:
    return [m["id"] for m in get_json(srv, f"/members/{room}")["members"]]


def wait_members(srv: ServerProcess, room: str, expected: list[str], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while sorted(got := members_of(srv, room)) != sorted(expected):
        assert time.monotonic() < deadline, f"members of {room}: {got}, expected {expected}"
        time.sleep(0.05)
