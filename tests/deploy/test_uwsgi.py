"""wsapp under uWSGI (deploy/uwsgi.ini), against real uWSGI processes on loopback.

The conformance, chat, classic-route and SIGTERM suites run in the "uwsgi" mode too; these
tests cover what only uWSGI has: its graceful reload (SIGHUP), its master's checks before
the fork, what its HTTP parser lets through, and its request log.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.security.rawhttp import get, upgrade
from tests.support.servers import ROOT, free_port, running_server, server_command

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.classic_routes:app"
FAST_CLOSE = {"WSAPP_CLOSE_TIMEOUT": "0.5", "WSAPP_LOG_LEVEL": "INFO"}


def _close_code(ws, timeout: float = 5.0) -> int | None:
    """The close code the server sent (None: no close frame, i.e. 1006)."""
    with pytest.raises(ConnectionClosed) as info:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    return info.value.rcvd.code if info.value.rcvd is not None else None


def _open_mixed(srv, stack: contextlib.ExitStack) -> list:
    """Sockets of every kind: views that hold their uWSGI request (a classic echo loop, a
    view asleep before its first receive) and sockets that left it (echo, chat)."""
    clients = [stack.enter_context(connect(srv.url(path))) for path in (
        "/classic-echo", "/sleepy", "/echo", "/chat/lobby?name=ann",
    )]
    clients[0].send("hi")
    assert clients[0].recv(timeout=5) == "hi"
    clients[2].send("hi")
    assert clients[2].recv(timeout=5) == "hi"
    return clients


def test_graceful_reload_then_stop_give_every_socket_1001():
    """SIGHUP to the master (uwsgi --reload): every socket closed 1001 at once, also those
    whose view holds its request (uWSGI waits for those before it reloads), and the new
    workers serve. Then SIGINT (uwsgi --stop): 1001 again, exit status 0."""
    with running_server("uwsgi", env=FAST_CLOSE, app=APP) as srv:
        srv.wait_for_log("worker 1 (app tests.apps.classic_routes:app)")
        with contextlib.ExitStack() as stack:
            clients = _open_mixed(srv, stack)
            started = time.monotonic()
            srv.signal(signal.SIGHUP)
            assert [_close_code(ws) for ws in clients] == [1001] * 4
            assert time.monotonic() - started < 2.0
        srv.wait_for_log("closed 4 WebSocket(s) with 1001 for graceful reload")
        deadline = time.monotonic() + 15
        while True:  # the master re-executes itself; its listening socket stays open
            with contextlib.suppress(OSError, ConnectionClosed, TimeoutError), connect(
                srv.url("/echo"), open_timeout=2
            ) as ws:
                ws.send("after reload")
                assert ws.recv(timeout=5) == "after reload"
                break
            assert time.monotonic() < deadline, srv.log_text()[-3000:]
            time.sleep(0.1)
        assert srv.alive()

        with contextlib.ExitStack() as stack:
            clients = _open_mixed(srv, stack)
            srv.signal(signal.SIGINT)
            assert [_close_code(ws) for ws in clients] == [1001] * 4
        assert srv.proc.wait(15) == 0
        log = srv.log_text()
        assert "closed 4 WebSocket(s) with 1001 for shutdown" in log
        assert "Traceback" not in log


def _run_to_exit(env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess:
    port = free_port()
    return subprocess.run(
        server_command("uwsgi", "127.0.0.1", port), cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, **env}, timeout=timeout,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WSAPP_MAX_MESSAGE_BYTES": "lots"}, "WSAPP_MAX_MESSAGE_BYTES must be an integer"),
        ({"WSAPP_WORKERS": "2"}, "WSAPP_WORKERS=2 needs WSAPP_REDIS_URL"),
    ],
    ids=["bad-value", "workers-without-redis"],
)
def test_bad_configuration_stops_the_master_before_any_worker(env, message):
    done = _run_to_exit(env)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout + done.stderr
    assert f"wsapp: configuration error: {message}" in out
    assert "spawned uWSGI worker" not in out


def test_uwsgi_workers_option_without_redis_is_refused():
    """`--workers 2` on uWSGI's command line, not through WSAPP_WORKERS: still refused."""
    port = free_port()
    cmd = [*server_command("uwsgi", "127.0.0.1", port), "--workers", "2"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "2 uWSGI workers need WSAPP_REDIS_URL" in done.stdout + done.stderr


@pytest.fixture(scope="module")
def uwsgi_server():
    env = {"WSAPP_API_TOKEN": "uwsgi-api-token", "WSAPP_LOG_LEVEL": "INFO"}
    with running_server("uwsgi", env=env) as srv:
        srv.wait_for_log("wsapp under uWSGI")
        yield srv


def test_access_log_is_wsapps_escaped_and_redacted_line(uwsgi_server):
    """uWSGI's own request log (raw target, tokens included) is off; wsapp's line is there."""
    srv = uwsgi_server
    assert get(srv, "/healthz?token=SECRETuwsgi1").status == 200
    assert get(srv, "/api/rooms?x=%1b%5b31m&api_key=SECRETuwsgi2").status in (200, 401)
    text = srv.wait_for_log('"GET /api/rooms?x=%1b%5b31m&api_key=[redacted] HTTP/1.1"')
    assert '"GET /healthz?token=[redacted] HTTP/1.1" 200' in text
    assert "SECRETuwsgi" not in text
    assert "[pid:" not in text  # uWSGI's request-log format


def test_forwarded_proto_from_an_untrusted_client_is_ignored(uwsgi_server):
    """uWSGI sets wsgi.url_scheme from any client's X-Forwarded-Proto; wsapp does not trust
    it without WSAPP_TRUSTED_PROXIES, so an https Origin stays cross-origin over http."""
    srv = uwsgi_server
    origin = f"https://{srv.host}:{srv.port}"
    assert upgrade(srv, headers={"Origin": origin, "X-Forwarded-Proto": "https"}).status == 403
    assert upgrade(srv, headers={"Origin": origin, "X-Forwarded-Ssl": "on"}).status == 403
    assert upgrade(srv, headers={"Origin": f"http://{srv.host}:{srv.port}"}).status == 101


@pytest.mark.parametrize(
    "headers",
    [{"X-Thing": "a\x01b"}, {"Origin": "http://x\x1bFAKE"}, {"Bad Name": "x"}],
    ids=["control-character", "escape-in-origin", "space-in-name"],
)
def test_what_uwsgis_parser_lets_through_is_400(uwsgi_server, headers):
    srv = uwsgi_server
    resp = upgrade(srv, headers=headers)
    assert resp.status == 400, resp
    assert get(srv, "/healthz", headers=headers).status == 400
    text = srv.wait_for_log("request refused")
    assert not re.search(r"[\x00-\x08\x0b-\x1f]", text)


def test_the_host_check_sees_uwsgis_listener(uwsgi_server):
    """A loopback listener serves the loopback names only (DNS rebinding), as elsewhere."""
    srv = uwsgi_server
    assert get(srv, "/healthz", host="evil.example").status == 400
    assert upgrade(srv, host="evil.example").status == 400
    assert get(srv, "/healthz", host="localhost").status == 200
