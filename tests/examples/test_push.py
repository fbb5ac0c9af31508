"""examples/push served as its README says, in both modes, over real sockets."""

from __future__ import annotations

import itertools
import json
import time
import urllib.request

import pytest
from websockets.sync.client import connect

from tests.support.servers import GUNICORN, PYTHON, ROOT
from tests.support.userapp import clean_env, new_port, serving

EXAMPLE = ROOT / "examples" / "push"


def command(mode: str, port: int) -> list[str]:
    if mode == "serve":
        return [PYTHON, "-m", "wsapp", "serve", "app:app", "--port", str(port)]
    return [GUNICORN, "-c", "../../gunicorn.conf.py", "-b", f"127.0.0.1:{port}", "app:app"]


@pytest.mark.parametrize("mode", ["serve", "gunicorn"])
def test_push_example(mode: str) -> None:
    port = new_port()
    env = clean_env(PYTHONPATH=str(ROOT), PUSH_STEPS="5", PUSH_EVERY="0.2")
    with serving(EXAMPLE, command(mode, port), port=port, env=env, mode=mode) as srv:
        with urllib.request.urlopen(srv.http_url("/"), timeout=10) as page:
            assert page.status == 200 and b'"/ws"' in page.read()
        with connect(srv.url("/ws"), open_timeout=10) as a, connect(srv.url("/ws")) as b:
            hello_a, hello_b = json.loads(a.recv(timeout=10)), json.loads(b.recv(timeout=10))
            assert hello_a["type"] == hello_b["type"] == "hello"
            with urllib.request.urlopen(srv.http_url("/push"), timeout=10) as answer:
                assert json.loads(answer.read()) == {"pushed": True}
            pushed = {"type": "event", "event": "push", "room": "news",
                      "data": {"data": "test message!"}}
            assert json.loads(a.recv(timeout=10)) == pushed
            assert json.loads(b.recv(timeout=10)) == pushed

            a.send("start")
            started = time.monotonic()
            steps, arrivals = [], []
            while True:
                event = json.loads(a.recv(timeout=10))
                assert event["room"] == hello_a["id"]  # to that page only
                if event["event"] == "done":
                    break
                steps.append(event["data"])
                arrivals.append(time.monotonic() - started)
            assert steps == [{"step": i, "of": 5} for i in range(1, 6)]
            gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
            assert all(0.1 < gap < 0.5 for gap in gaps), gaps  # one every PUSH_EVERY
            with pytest.raises(TimeoutError):
                b.recv(timeout=0.3)  # the other page got none of it
