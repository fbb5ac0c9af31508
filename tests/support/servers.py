"""Start real wsapp server processes for the tests (no in-process shortcuts).

Every server runs as a subprocess on an ephemeral loopback port, exactly as a user
would start it, and its combined output is kept so a test can assert on log lines.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
GUNICORN = str(Path(PYTHON).with_name("gunicorn"))
UWSGI = str(Path(PYTHON).with_name("uwsgi"))
UWSGI_INI = ROOT / "deploy" / "uwsgi.ini"


# Servers listen on ports below the kernel's ephemeral range (32768-60999 here and by
# default), so a client's source port can never take a server's port between the check
# and the server's own bind, or while a test restarts a server on the same port. Each
# pytest-xdist worker (PYTEST_XDIST_WORKER=gwN) takes its own slice, so workers never
# hand out the same port either.
PORT_BASE = 20000
PORTS_PER_WORKER = 2000
_port_cursor: dict[str, int] = {}


def _port_slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    start = PORT_BASE + (index % 6) * PORTS_PER_WORKER
    return range(start, start + PORTS_PER_WORKER)


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on loopback, from this worker's slice below the ephemeral range."""
    ports = _port_slice()
    cursor = _port_cursor.setdefault(host, random.randrange(len(ports)))
    for step in range(len(ports)):
        port = ports[(cursor + step) % len(ports)]
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _port_cursor[host] = (cursor + step + 1) % len(ports)
        return port
    raise RuntimeError(f"no free port in {ports} on {host}")


def wait_for_port(
    host: str, port: int, timeout: float = 15.0, proc: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


@dataclass
class ServerProcess:
    """A running server subprocess with its address and captured log."""

    mode: str
    host: str
    port: int
    proc: subprocess.Popen
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def url(self, path: str = "/", scheme: str = "ws") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    def http_url(self, path: str = "/") -> str:
        return self.url(path, scheme="http")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, needle: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()
            if needle in text:
                return text
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} not in server log:\n{self.log_text()[-3000:]}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def server_command(
    mode: str, host: str, port: int, extra: list[str] | None = None, app: str | None = None
) -> list[str]:
    """The command line of a server; `app` ("module:attr") serves a user's app instead."""
    if mode == "serve":
        return [PYTHON, "-m", "wsapp", "serve", "--host", host, "--port", str(port), *(extra or []),
                *([app] if app is not None else [])]
    if mode == "gunicorn":
        return [GUNICORN, "-c", str(ROOT / "gunicorn.conf.py"), "-b", f"{host}:{port}",
                *(extra or []), app or "wsgi:app"]
    if mode == "uwsgi":  # deploy/uwsgi.ini reads its bind from WSAPP_BIND, as users run it
        bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return ["/usr/bin/env", f"WSAPP_BIND={bind}", UWSGI, "--ini", str(UWSGI_INI),
                *(extra or []), *(["--set-ph", f"wsapp-app={app}"] if app is not None else [])]
    raise ValueError(mode)


def start_server(
    mode: str = "serve",
    env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    extra_args: list[str] | None = None,
    log_dir: Path | None = None,
    app: str | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> ServerProcess:
    """Start `python -m wsapp serve`, gunicorn or uWSGI and wait until it accepts connections.

    `preexec_fn` runs in the child before the server starts (e.g. to set an rlimit)."""
    port = port or free_port(host)
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="wsapp-test-"))
    log_path = log_dir / f"{mode}-{port}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        server_command(mode, host, port, extra_args, app),
        cwd=ROOT,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )
    server = ServerProcess(mode, host, port, proc, log_path, env or {})
    try:
        wait_for_port(host, port, proc=proc)
    except Exception:
        server.stop()
        raise RuntimeError(f"{mode} server failed to start:\n{server.log_text()[-3000:]}") from None
    return server


@contextlib.contextmanager
def running_server(mode: str = "serve", **kwargs) -> Iterator[ServerProcess]:
    server = start_server(mode, **kwargs)
    try:
        yield server
    finally:
        server.stop()
        if server.proc.poll() is None:
            os.killpg(server.proc.pid, signal.SIGKILL)
