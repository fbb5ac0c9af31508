"""examples/command_stream served as its README says, in both modes, over real sockets: the
fixed command's lines arrive as it prints them, the close says its exit status, what the
client sends never reaches it, a client that leaves has its process killed, and more than
MAX_RUNNING commands at once get 503."""

from __future__ import annotations

import contextlib
import os
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.examples.test_classic_echo import command
from tests.support.servers import ROOT
from tests.support.userapp import clean_env, new_port, serving

EXAMPLE = ROOT / "examples" / "command_stream"
LINES, INTERVAL, MAX_RUNNING = 20, 0.2, 4  # as in lines.py and app.py


def gone(pid: int) -> bool:
    """The process has exited and been reaped (no zombie left behind)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_gone(pid: int, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module", params=["serve", "gunicorn"])
def srv(request):
    port = new_port()
    env = clean_env(PYTHONPATH=str(ROOT), WSAPP_PING_INTERVAL="1", WSAPP_PING_TIMEOUT="1")
    with serving(EXAMPLE, command(request.param, port), port=port, env=env,
                 mode=request.param) as server:
        yield server


def test_lines_arrive_as_printed_and_the_close_has_the_exit_status(srv):
    with connect(srv.url("/run"), open_timeout=10) as ws:
        assert ws.recv(timeout=10).startswith("pid ")
        started = time.monotonic()
        ws.send("rm -rf /")  # read and dropped: nothing from the client reaches the command
        arrivals = []
        for n in range(1, LINES + 1):
            assert ws.recv(timeout=10) == f"line {n} of {LINES}"
            arrivals.append(time.monotonic() - started)
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1000, "exit 0")
    for n, at in enumerate(arrivals, start=1):  # streamed, not collected until the end
        assert n * INTERVAL - 0.15 <= at <= n * INTERVAL + 1.0, (n, at)


def test_a_client_that_leaves_has_its_command_killed(srv):
    with connect(srv.url("/run"), open_timeout=10) as ws:
        pid = int(ws.recv(timeout=10).split()[1])
        assert ws.recv(timeout=10) == f"line 1 of {LINES}"
        assert not gone(pid)
    assert wait_gone(pid), f"command {pid} still running after its client left"
    assert "Traceback" not in srv.log_text()


def test_more_than_max_running_commands_get_503(srv):
    with contextlib.ExitStack() as stack:
        pids = []
        for _ in range(MAX_RUNNING):
            ws = stack.enter_context(connect(srv.url("/run"), open_timeout=10))
            pids.append(int(ws.recv(timeout=10).split()[1]))
        with pytest.raises(InvalidStatus) as info:
            connect(srv.url("/run"), open_timeout=10)
        assert info.value.response.status_code == 503
    for pid in pids:
        assert wait_gone(pid)
    with connect(srv.url("/run"), open_timeout=10) as ws:  # slots are given back
        assert ws.recv(timeout=10).startswith("pid ")
