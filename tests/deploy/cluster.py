"""A real deployment for the tests: redis-server, gunicorn instances, nginx in front.

Everything runs as real processes on loopback ports: one redis-server, N gunicorn
instances (each with WSAPP_WORKERS workers, the Redis broker) and nginx using
deploy/nginx.conf rendered with the test ports. Clients connect through nginx from a
chosen source address; ``ip_hash`` keys on the first three octets, so 127.0.0.1 and
127.0.1.1 can land on different backends (``Cluster.sources`` finds one per backend).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.chat.clients import ChatClient
from tests.support.redis_server import RedisServer
from tests.support.servers import ROOT, ServerProcess, free_port, start_server, wait_for_port

sys.path.insert(0, str(ROOT / "deploy"))
from render_nginx import render_site, render_standalone  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
PRESENCE_TTL = 2.0

BACKEND_ENV = {
    "WSAPP_WORKERS": "2",
    "WSAPP_PRESENCE_TTL": str(PRESENCE_TTL),
    "WSAPP_TRUSTED_PROXIES": "1",
    "WSAPP_HISTORY": "500",
    "WSAPP_CLOSE_TIMEOUT": "0.5",
    "WSAPP_RATE_LIMIT": "0",
    "WSAPP_MAX_CONN_PER_IP": "0",
    "WSAPP_PING_INTERVAL": "5",
    "WSAPP_LOG_LEVEL": "INFO",
}


def http(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Client(ChatClient):
    """A chat client connected through nginx from a given source address."""

    def __init__(
        self, port: int, room: str, name: str, source: str = "127.0.0.1", since: str | None = None
    ) -> None:
        self.room, self.name, self.source = room, name, source
        sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
        query = urlencode({"name": name, **({"since": since} if since else {})})
        self._connect(f"ws://127.0.0.1:{port}/chat/{room}?{query}", sock)

    def say_until_acked(self, text: str, timeout: float = 10.0) -> dict[str, Any]:
        """Send `text` with a ref until it is acked; `unavailable` errors mean "try again"."""
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            attempt += 1
            ref = f"{text}-{attempt}"
            self.say(text, ref=ref)
            while True:
                event = self.next(max(0.01, deadline - time.monotonic()))
                if event["type"] == "ack" and event.get("ref") == ref:
                    return event
                if event["type"] == "error" and event.get("ref") == ref:
                    assert event["code"] == "unavailable", event
                    assert time.monotonic() < deadline, (
                        f"{self.name}: still unavailable after {timeout}s"
                    )
                    time.sleep(0.2)
                    break

    def message_with(self, text: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next message event whose text is `text` (anything else skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_of("message", max(0.01, deadline - time.monotonic()))
            if event["text"] == text:
                return event


class Cluster:
    def __init__(self, backends: int = 2) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="wsapp-cluster-"))
        self.redis = RedisServer()
        self.backend_ports = [free_port() for _ in range(backends)]
        self.backends: list[ServerProcess | None] = [None] * backends
        self.nginx_port = free_port()
        self.nginx: subprocess.Popen | None = None
        self._sources: dict[int, str] | None = None

    # ---- processes

    def start(self) -> Cluster:
        self.redis.start()
        for i in range(len(self.backends)):
            self.start_backend(i)
        self.start_nginx()
        return self

    @property
    def env(self) -> dict[str, str]:
        return {**BACKEND_ENV, "WSAPP_REDIS_URL": self.redis.url}

    def start_backend(self, i: int) -> ServerProcess:
        srv = start_server("gunicorn", env=self.env, port=self.backend_ports[i], log_dir=self.dir)
        self.backends[i] = srv
        deadline = time.monotonic() + 15
        while srv.log_text().count("redis broker: connected") < 2:
            assert time.monotonic() < deadline, srv.log_text()[-3000:]
            time.sleep(0.05)
        return srv

    def backend(self, i: int) -> ServerProcess:
        srv = self.backends[i]
        assert srv is not None
        return srv

    def kill_backend(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Signal the whole gunicorn instance (master and workers: one process group)."""
        srv = self.backend(i)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(srv.proc.pid, sig)
        srv.proc.wait(15)

    def start_nginx(self) -> None:
        prefix = self.dir / "nginx"
        site = render_site(
            [f"127.0.0.1:{p}" for p in self.backend_ports],
            listen=f"127.0.0.1:{self.nginx_port}",
            static_root=ROOT / "static",
            upstream_options="max_fails=1 fail_timeout=1s",
        )
        conf = render_standalone(prefix, site)
        (prefix / "nginx.conf").write_text(conf)
        log = open(self.dir / "nginx.out", "wb")  # noqa: SIM115 - lives with the process
        self.nginx = subprocess.Popen(
            [
                NGINX,
                "-p", f"{prefix}/",
                "-e", f"{prefix}/logs/error.log",
                "-c", f"{prefix}/nginx.conf",
                "-g", "daemon off;",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port("127.0.0.1", self.nginx_port, proc=self.nginx)

    def stop(self) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGTERM)
            try:
                self.nginx.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.nginx.pid, signal.SIGKILL)
        for srv in self.backends:
            if srv is not None and srv.alive():
                srv.stop()
                if srv.alive():
                    os.killpg(srv.proc.pid, signal.SIGKILL)
        self.redis.stop()

    # ---- helpers

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.nginx_port}{path}"

    def client(
        self,
        room: str,
        name: str,
        backend: int | None = None,
        source: str | None = None,
        since: str | None = None,
    ) -> Client:
        if source is None:
            source = self.sources[backend] if backend is not None else "127.0.0.1"
        return Client(self.nginx_port, room, name, source, since)

    def backend_of(self, conn_id: str, timeout: float = 3.0) -> int:
        """Which backend accepted the connection `conn_id` (from the backends' logs)."""
        needle = f"conn={conn_id} "
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, srv in enumerate(self.backends):
                if srv is not None and needle in srv.log_text():
                    return i
            time.sleep(0.02)
        raise AssertionError(f"connection {conn_id} in no backend log")

    @property
    def sources(self) -> dict[int, str]:
        """A client source address per backend (ip_hash spreads /24s, not addresses)."""
        if self._sources is None:
            found: dict[int, str] = {}
            for third in range(0, 40):
                src = f"127.0.{third}.1"
                c = Client(self.nginx_port, "probe", "probe", src)
                try:
                    found.setdefault(self.backend_of(c.id), src)
                finally:
                    c.close()
                if len(found) == len(self.backends):
                    break
            assert len(found) == len(self.backends), f"ip_hash put every source on {found}"
            self._sources = found
        return self._sources

    def log_sizes(self) -> list[int]:
        """Where each backend's log ends now (for `wait_workers_reconnected`)."""
        return [len(srv.log_text()) if srv is not None else 0 for srv in self.backends]

    def wait_workers_reconnected(self, since: list[int], timeout: float = 15.0) -> None:
        """Every worker of every backend logged its Redis reconnect after `since`.

        /readyz reaches whichever worker the kernel hands the connection to, so it cannot
        tell that *all* workers are back; the next test's clients may land on any of them."""
        want = int(self.env["WSAPP_WORKERS"])
        deadline = time.monotonic() + timeout
        for i, srv in enumerate(self.backends):
            if srv is None:
                continue
            while True:
                tail = srv.log_text()[since[i]:]
                pids = set(re.findall(r"\[(\d+)\] redis broker: reconnected to", tail))
                if len(pids) >= want:
                    break
                assert time.monotonic() < deadline, (
                    f"backend {i}: only workers {pids} reconnected to Redis"
                )
                time.sleep(0.05)

    def wait_ready(self, i: int, ready: bool, timeout: float = 10.0, hits: int = 6) -> float:
        """Poll /readyz of backend i directly until `hits` answers in a row say `ready`."""
        srv = self.backend(i)
        started = time.monotonic()
        streak = 0
        while streak < hits:
            assert time.monotonic() - started < timeout, f"backend {i} /readyz never became {ready}"
            status, _ = http(srv.http_url("/readyz"), timeout=2)
            streak = streak + 1 if (status == 200) == ready else 0
            time.sleep(0.02)
        return time.monotonic() - started
