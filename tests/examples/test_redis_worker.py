"""examples/redis_worker: tasks pushed to a Redis list reach the chat room exactly once
and in order, while the chat server is SIGKILLed and restarted every couple of seconds
and the worker itself is SIGKILLed once and started again."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from typing import Any

import pytest

from tests.client.support import CLIENT_ENV, FAST, Restartable, new_room
from tests.support.redis_server import running_redis
from tests.support.servers import PYTHON, ROOT
from tests.support.userapp import clean_env
from wsapp.client import Client

WORKER = ROOT / "examples" / "redis_worker" / "worker.py"
TASKS = 300


def start_worker(url: str, redis_url: str, log: Any) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, str(WORKER), url, "--redis", redis_url, "--queue", "jobs"],
                            cwd=ROOT, env=clean_env(PYTHONPATH=str(ROOT)), stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.timeout(120)
def test_worker_delivers_every_task_once_through_restarts(tmp_path) -> None:
    with running_redis() as redis:
        env = {**CLIENT_ENV, "WSAPP_REDIS_URL": redis.url}
        with Restartable(env) as server:
            url = server.url(f"/chat/{new_room('jobs')}")
            got: list[dict[str, Any]] = []
            with Client(backoff=FAST) as reader:
                reader.on("message", got.append)
                reader.connect(url, name="reader")
                log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed below
                worker = start_worker(url, redis.url, log)
                r = redis.client()
                stop = threading.Event()

                def chaos() -> None:
                    while not stop.wait(2.0):
                        server.kill()
                        time.sleep(0.3)
                        server.start()

                restarts = threading.Thread(target=chaos, daemon=True)
                restarts.start()
                try:
                    for i in range(TASKS):
                        r.lpush("jobs", json.dumps({"id": i, "text": f"task {i}"}))
                        time.sleep(0.02)
                        if i == TASKS // 2:  # the worker crashes too, mid-stream
                            worker.send_signal(signal.SIGKILL)
                            worker.wait(10)
                            worker = start_worker(url, redis.url, log)
                    deadline = time.monotonic() + 60
                    while len(got) < TASKS and time.monotonic() < deadline:
                        time.sleep(0.05)
                    stop.set()
                    restarts.join(20)
                    time.sleep(0.5)  # a duplicate would arrive now
                finally:
                    stop.set()
                    worker.send_signal(signal.SIGTERM)
                    try:
                        status = worker.wait(10)
                    except subprocess.TimeoutExpired:
                        worker.kill()
                        status = None
                    log.close()
                output = (tmp_path / "worker.log").read_text(errors="replace")
                assert server.starts >= 3, "the server was not restarted"
                texts = [m["text"] for m in got]
                assert texts == [f"task {i}" for i in range(TASKS)], output[-3000:]
                assert len({m["id"] for m in got}) == TASKS
                assert r.llen("jobs") == 0 and r.llen("jobs:processing") == 0
                assert r.llen("jobs:failed") == 0
                assert "Traceback" not in output, output[-3000:]
                assert status == 0, "SIGTERM did not stop the worker cleanly"
