"""examples/progress served as its README says, in both modes, over real sockets: every update
arrives when it is sent (not at the end), pings are answered while the task works, and
keepalive (1 s interval, 1 s timeout) never cuts the stream."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.examples.test_classic_echo import command
from tests.support.servers import ROOT
from tests.support.userapp import clean_env, new_port, serving

EXAMPLE = ROOT / "examples" / "progress"
STEPS = 40  # 100 ms each: 4 s, four keepalive rounds


@pytest.mark.parametrize("mode", ["serve", "gunicorn"])
def test_progress_example(mode: str) -> None:
    port = new_port()
    env = clean_env(PYTHONPATH=str(ROOT), WSAPP_PING_INTERVAL="1", WSAPP_PING_TIMEOUT="1")
    with serving(EXAMPLE, command(mode, port), port=port, env=env, mode=mode) as srv:
        with urllib.request.urlopen(srv.http_url("/"), timeout=10) as page:
            assert b"/progress" in page.read()
        with pytest.raises(InvalidStatus) as info:
            connect(srv.url("/progress?steps=100000"), open_timeout=10)
        assert info.value.response.status_code == 400

        with connect(srv.url(f"/progress?steps={STEPS}"), open_timeout=10) as ws:
            first = json.loads(ws.recv(timeout=10))
            assert first == {"event": "started", "steps": STEPS}
            opened = time.monotonic()
            arrivals: list[float] = []
            pongs: list[float] = []
            for step in range(1, STEPS + 1):
                update = json.loads(ws.recv(timeout=10))
                arrivals.append(time.monotonic() - opened)
                assert update["event"] == "progress" and update["step"] == step
                if step % 10 == 5:  # a ping in the middle of the work
                    sent = time.monotonic()
                    assert ws.ping().wait(2.0)
                    pongs.append(time.monotonic() - sent)
            done = json.loads(ws.recv(timeout=10))
            assert done["event"] == "done" and len(done["digest"]) == 64
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
        # Each update when its step is done: step k after about k * 100 ms, none held back.
        for k, at in enumerate(arrivals, start=1):
            assert at >= k * 0.1 - 0.15, (k, at)
            assert at <= k * 0.1 + 2.0, (k, at)
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
        assert max(gaps) < 0.6 and sorted(gaps)[len(gaps) // 2] > 0.05, gaps
        assert max(pongs) < 0.2, pongs
        log = srv.log_text()
    assert "keepalive timeout" not in log and "Traceback" not in log, log[-3000:]
