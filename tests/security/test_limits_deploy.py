"""Limits that match the deployment (issue 13 item 8), against real gunicorn and servers.

- WSAPP_MAX_CONN_PER_IP holds over all workers of one gunicorn master (a shared table),
  also after a worker holding connections is SIGKILLed;
- WSAPP_MAX_CONNECTIONS defaults to what the file limit allows, so with `ulimit -n 256`
  new clients get 503 while /healthz and open sockets keep working, and running out of
  descriptors anyway neither spins nor logs tracebacks.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.rawws import HandshakeFailed, RawWS
from tests.support.redis_server import shared_redis
from tests.support.servers import ServerProcess, running_server
from wsapp import fdlimits, ipcap
from wsapp.settings import Settings

from .conftest import connect, http_get

pytestmark = pytest.mark.timeout(120)

CAP = 100


def _try(srv: ServerProcess, timeout: float) -> RawWS | int:
    try:
        return connect(srv, timeout=timeout)
    except HandshakeFailed as exc:
        return exc.response.status


def _open(
    srv: ServerProcess, n: int, timeout: float = 5.0, wave: int = 10
) -> tuple[list[RawWS], list[int]]:
    """Try `n` upgrades to /echo: the open sockets and the refusal codes.

    In waves of `wave` at once with a pause between: a gevent worker that wakes up accepts
    everything waiting, so a single burst often lands on one worker only."""
    results: list[RawWS | int] = []
    with ThreadPoolExecutor(wave) as pool:
        for start in range(0, n, wave):
            results += pool.map(lambda _: _try(srv, timeout), range(start, min(n, start + wave)))
            time.sleep(0.02)
    return [r for r in results if isinstance(r, RawWS)], [r for r in results if isinstance(r, int)]


def _pids_that_opened(srv: ServerProcess) -> list[int]:
    return [int(p) for p in re.findall(r"wsapp\.handler \[(\d+)\] ws open", srv.log_text())]


def _wait_for_closes(srv: ServerProcess, n: int, timeout: float = 10.0) -> None:
    """Until the server has logged `n` socket closes (each logged just before its slot is
    given back, in the same greenlet)."""
    deadline = time.monotonic() + timeout
    while srv.log_text().count(" ws close conn=") < n:
        assert time.monotonic() < deadline, "the server did not see the closes"
        time.sleep(0.05)
    time.sleep(0.1)


def _close_all(sockets: list[RawWS]) -> None:
    for ws in sockets:
        with contextlib.suppress(Exception):
            ws.close()


@pytest.fixture
def two_workers():
    env = {
        "WSAPP_REDIS_URL": shared_redis().url,
        "WSAPP_WORKERS": "2",
        "WSAPP_MAX_CONN_PER_IP": str(CAP),
        "WSAPP_PING_INTERVAL": "0",
        "WSAPP_LOG_LEVEL": "INFO",
    }
    with running_server("gunicorn", env=env) as srv:
        srv.wait_for_log("redis broker: connected", timeout=15)
        yield srv


def _open_until_refused(srv: ServerProcess, most: int, deadline: float) -> tuple[list[RawWS], int]:
    """Open sockets until one is refused 429 (retrying other failures until `deadline`)."""
    held: list[RawWS] = []
    while len(held) <= most:
        try:
            held.append(connect(srv, timeout=5))
        except HandshakeFailed as exc:
            if exc.response.status == 429:
                return held, 429
            assert time.monotonic() < deadline, f"refused {exc.response.status}"
            time.sleep(0.1)
    return held, 0


def test_per_ip_cap_holds_across_two_gunicorn_workers(two_workers) -> None:
    srv = two_workers
    held, refused = _open(srv, 130)
    try:
        opened_by = set(_pids_that_opened(srv))
        assert len(opened_by) == 2, f"all sockets went to one worker ({opened_by}): nothing shown"
        assert len(held) == CAP, f"{len(held)} accepted from one address with a cap of {CAP}"
        assert refused == [429] * 30
        srv.wait_for_log(f"429 too many connections from this address (limit {CAP})")
        # Closed sockets give their slots back (once each): as many new ones get in, no more.
        _close_all(held[:20])
        del held[:20]
        _wait_for_closes(srv, 20)
        more, refused = _open(srv, 21)
        held += more
        assert len(more) == 20 and refused == [429]
        for ws in held[::10]:
            ws.echo("still served")
    finally:
        _close_all(held)


def test_a_killed_workers_connections_are_freed(two_workers) -> None:
    """SIGKILL a worker holding connections: the master frees its count in the shared table,
    so the address gets back exactly what the dead worker held."""
    srv = two_workers
    held, refused = _open(srv, CAP + 1)
    try:
        assert len(held) == CAP and refused == [429]
        opened = _pids_that_opened(srv)
        assert len(set(opened)) == 2, f"all sockets went to one worker ({set(opened)})"
        victim = max(set(opened), key=opened.count)
        os.kill(victim, signal.SIGKILL)
        srv.wait_for_log(f"Worker (pid:{victim}) was sent SIGKILL", timeout=10)
        # The dead worker's sockets are gone; the survivor's still work.
        alive = []
        for ws in held:
            try:
                ws.echo("alive?", timeout=2)
                alive.append(ws)
            except Exception:
                ws.close()
        held = alive
        assert 0 < len(held) < CAP
        more, status = _open_until_refused(srv, CAP, time.monotonic() + 15)
        held += more
        assert status == 429
        assert len(held) == CAP, f"{len(held)} open after the kill: the dead worker's count leaked"
    finally:
        _close_all(held)


# ---- WSAPP_MAX_CONNECTIONS and the file limit ----------------------------------------------

NOFILE = 256


def _nofile(limit: int = NOFILE, hard: int | None = None):
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard or limit))

    return set_limit


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_pid(srv: ServerProcess) -> int:
    """The process serving the sockets: the embedded server, or gunicorn's only worker."""
    if srv.mode == "serve":
        return srv.proc.pid
    return int(http_get(srv, "/healthz")[1].split('"pid":')[1].split(",")[0])


def _fill(srv: ServerProcess, most: int) -> tuple[list[RawWS], HandshakeFailed]:
    """Open WebSockets until one is refused (at most `most`)."""
    held: list[RawWS] = []
    for _ in range(most):
        try:
            held.append(connect(srv, timeout=5))
        except HandshakeFailed as exc:
            return held, exc
    _close_all(held)
    raise AssertionError(f"{most} WebSockets and none refused")


@pytest.mark.parametrize("mode", ["serve", "gunicorn"])
def test_default_connection_limit_leaves_descriptors_for_healthz(mode: str) -> None:
    """`ulimit -n 256`: the 503 comes before descriptors run out, so /healthz and the open
    sockets keep working and nothing is logged but the refusals."""
    env = {"WSAPP_MAX_CONN_PER_IP": "0", "WSAPP_PING_INTERVAL": "0"}
    want = NOFILE - fdlimits.headroom(NOFILE, redis=False)
    with running_server(mode, env=env, preexec_fn=_nofile()) as srv:
        held, refused = _fill(srv, NOFILE + 10)
        try:
            assert len(held) == want
            assert refused.response.status == 503 and refused.response.header("retry-after")
            for _ in range(5):
                assert connect_status(srv) == 503
                status, body = http_get(srv, "/healthz")
                assert status == 200 and f'"connections":{want}' in body.replace(" ", "")
            for ws in held[:: max(1, want // 10)]:
                ws.echo("still open")
        finally:
            _close_all(held)
        log = srv.wait_for_log("503 server at connection capacity")
        assert "Traceback" not in log and "EMFILE" not in log and "Too many open files" not in log
        assert f"connections: at most {want} WebSockets per process (RLIMIT_NOFILE {NOFILE};" in log


def test_soft_file_limit_is_raised_to_the_hard_limit() -> None:
    with running_server("serve", preexec_fn=_nofile(NOFILE, 1024)) as srv:
        want = 1024 - fdlimits.headroom(1024, redis=False)
        srv.wait_for_log(
            f"connections: at most {want} WebSockets per process "
            f"(RLIMIT_NOFILE 1024, raised from {NOFILE};"
        )
        with open(f"/proc/{srv.proc.pid}/limits") as f:
            assert re.search(r"Max open files\s+1024\s+1024", f.read())


def connect_status(srv: ServerProcess) -> int:
    try:
        connect(srv, timeout=5).close()
    except HandshakeFailed as exc:
        return exc.response.status
    return 101


@pytest.mark.parametrize("mode", ["serve", "gunicorn"])
def test_out_of_descriptors_answers_503_and_does_not_spin(mode: str) -> None:
    """An explicit WSAPP_MAX_CONNECTIONS above what the file limit holds: descriptors do run
    out. New clients are answered 503 at once instead of hanging in the backlog, one log
    line says so (no traceback), the process does not spin, and it recovers."""
    env = {
        "WSAPP_MAX_CONN_PER_IP": "0",
        "WSAPP_PING_INTERVAL": "0",
        "WSAPP_MAX_CONNECTIONS": "100000",
    }
    with running_server(mode, env=env, preexec_fn=_nofile()) as srv:
        pid = _server_pid(srv)
        held, refused = _fill(srv, NOFILE + 10)
        try:
            assert len(held) > NOFILE - 40
            assert refused.response.status == 503
            assert b"out of file descriptors" in refused.response.body
            cpu = _cpu_seconds(pid)
            started = time.monotonic()
            for _ in range(20):
                assert connect_status(srv) == 503  # answered at once, not left in the backlog
                time.sleep(0.1)
            assert time.monotonic() - started < 10
            assert _cpu_seconds(pid) - cpu < 0.5, "the server spins while out of descriptors"
            held[0].echo("open sockets still work")
        finally:
            _close_all(held)
        deadline = time.monotonic() + 10
        while http_get(srv, "/healthz")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert connect_status(srv) == 101
        log = srv.wait_for_log("file descriptors available again")
        assert "out of file descriptors (EMFILE, RLIMIT_NOFILE 256)" in log
        assert "WSAPP_MAX_CONNECTIONS=100000 is more than the file limit allows" in log
        assert "Traceback" not in log


# ---- the shared table itself, across real forked processes --------------------------------


def _in_child(table: ipcap.SharedIpCounts, job, exit_code: int = 0) -> int:
    """Fork; in the child claim a row, run `job(table)`, write its result to a pipe, exit
    (`exit_code` != 0: die at once, releasing nothing). Returns the child's pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            table.claim_row(os.getpid(), os.getppid())
            job(table)
        finally:
            os._exit(exit_code)
    return pid


def test_table_admits_exactly_the_cap_when_workers_race() -> None:
    table = ipcap.SharedIpCounts(rows=4)
    attempts, cap = 3000, 1000

    def race(t: ipcap.SharedIpCounts) -> None:
        for _ in range(attempts):
            t.try_acquire("198.51.100.7", cap, time.sleep)

    pids = [_in_child(table, race) for _ in range(3)]
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0
    assert table.count("198.51.100.7") == cap


def test_a_dead_workers_row_is_reclaimed_by_the_next_worker() -> None:
    """Without the master's child_exit hook: a worker that died holding slots (here not
    even reaped yet: a zombie) is cleared by the next worker that claims a row."""
    table = ipcap.SharedIpCounts(rows=2)

    def hold(t: ipcap.SharedIpCounts) -> None:
        for _ in range(7):
            assert t.try_acquire("203.0.113.9", 10, time.sleep)

    dead = _in_child(table, hold, exit_code=3)
    deadline = time.monotonic() + 5
    while table.count("203.0.113.9") < 7 or _state(dead) != "Z":  # died, not reaped
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert table.count("203.0.113.9") == 7
    # This process, the dead worker's parent, plays the next worker of the same master.
    assert table.claim_row(os.getpid(), master=os.getpid()) is not None
    assert table.count("203.0.113.9") == 0
    assert dead not in list(table.owners)
    os.waitpid(dead, 0)


def test_release_gives_back_only_what_was_taken(monkeypatch) -> None:
    table = ipcap.SharedIpCounts(rows=2)
    table.claim_row(os.getpid(), os.getppid())
    monkeypatch.setattr(ipcap, "_table", table)
    monkeypatch.setattr(ipcap, "_held", Counter())
    settings = Settings(max_conn_per_ip=2)
    assert ipcap.admit("192.0.2.1", settings) is None
    assert ipcap.admit("192.0.2.1", settings) is None
    assert ipcap.admit("192.0.2.1", settings).code == 429
    ipcap.release("192.0.2.2")  # never admitted: nothing to give back
    assert table.count("192.0.2.1") == 2 or table.slot("192.0.2.1") == table.slot("192.0.2.2")
    for _ in range(3):
        ipcap.release("192.0.2.1")  # the third is one too many: ignored
    assert table.count("192.0.2.1") == 0
    assert ipcap.admit("192.0.2.1", settings) is None


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]
