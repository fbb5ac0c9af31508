"""examples/behind_nginx as its README says: the app under gunicorn with wsapp's worker, a real
nginx in front started from a temporary prefix with the example's nginx.conf (only its two
tagged port lines changed). Through nginx: echo byte for byte, the client's own address seen
by the app, same-site Origin accepted and cross-site 403, keepalive pings passing both ways,
and SIGTERM to gunicorn reaching the client as close 1001."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.support.servers import GUNICORN, ROOT, ServerProcess, free_port, wait_for_port
from tests.support.userapp import ECHO_MESSAGES, clean_env, new_port, serving

EXAMPLE = ROOT / "examples" / "behind_nginx"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SOURCE = "127.0.1.1"  # a client address that is not nginx's own 127.0.0.1

pytestmark = pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is not installed")


def render(conf: str, listen: int, upstream: int) -> str:
    """The example's nginx.conf with other ports: only the lines tagged `# example-...`."""
    out = []
    for line in conf.splitlines():
        if line.rstrip().endswith("# example-listen"):
            line = f"        listen 127.0.0.1:{listen};  # example-listen"
        elif line.rstrip().endswith("# example-upstream"):
            line = f"        server 127.0.0.1:{upstream};  # example-upstream"
        out.append(line)
    assert out != conf.splitlines(), "tagged lines not found"
    return "\n".join(out) + "\n"


@pytest.fixture
def nginx_port(backend: ServerProcess) -> Iterator[int]:
    prefix = Path(tempfile.mkdtemp(prefix="wsapp-nginx-example-"))
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir()
        (prefix / sub).chmod(0o755)  # workers run as `nobody` when nginx starts as root
    prefix.chmod(0o755)
    port = free_port()
    conf = render((EXAMPLE / "nginx.conf").read_text(), port, backend.port)
    (prefix / "nginx.conf").write_text(conf)
    with open(prefix / "nginx.out", "wb") as out:
        proc = subprocess.Popen(
            [NGINX, "-p", f"{prefix}/", "-e", "logs/error.log", "-c", "nginx.conf",
             "-g", "daemon off;"],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture
def backend() -> Iterator[ServerProcess]:
    port = new_port()
    env = clean_env(PYTHONPATH=str(ROOT), WSAPP_TRUSTED_PROXIES="1",
                    WSAPP_PING_INTERVAL="1", WSAPP_PING_TIMEOUT="1")
    cmd = [GUNICORN, "-c", "../../gunicorn.conf.py", "-b", f"127.0.0.1:{port}", "app:app"]
    with serving(EXAMPLE, cmd, port=port, env=env, mode="gunicorn") as srv:
        yield srv


def via_nginx(port: int, path: str, **kwargs):
    """A client connected to nginx from SOURCE."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(SOURCE, 0))
    return connect(f"ws://127.0.0.1:{port}{path}", sock=sock, open_timeout=10, max_size=None,
                   **kwargs)


def test_the_example_behind_a_real_nginx(backend: ServerProcess, nginx_port: int) -> None:
    with via_nginx(nginx_port, "/echo") as ws:
        for message in ECHO_MESSAGES:
            ws.send(message)
            back = ws.recv(timeout=10)
            assert type(back) is type(message) and back == message
    with via_nginx(nginx_port, "/whoami") as ws:
        assert ws.recv(timeout=10) == SOURCE  # X-Forwarded-For, trusted: not nginx's address

    with via_nginx(nginx_port, "/echo", origin=f"http://127.0.0.1:{nginx_port}") as ws:
        ws.send("same site")
        assert ws.recv(timeout=10) == "same site"
    with pytest.raises(InvalidStatus) as info:
        via_nginx(nginx_port, "/echo", origin="http://evil.example")
    assert info.value.response.status_code == 403

    with via_nginx(nginx_port, "/ticker") as ws:
        # 1 s pings with 1 s to answer: they cross nginx both ways for 3 s of ticks.
        assert [ws.recv(timeout=5) for _ in range(4)] == [f"tick {n}" for n in range(4)]
        started = time.monotonic()
        assert ws.ping(b"through nginx").wait(2.0)
        assert time.monotonic() - started < 0.2
        backend.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert backend.proc.wait(timeout=20) == 0
    log = backend.log_text()
    assert "closed 1 WebSocket(s) with 1001 for shutdown" in log, log[-3000:]
    assert "keepalive timeout" not in log and "Traceback" not in log, log[-3000:]
    assert f"peer={SOURCE} (via 127.0.0.1:" in log  # the log names the client, then nginx
