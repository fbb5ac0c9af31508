"""The chat rate limit counts messages when they arrive, not when a stalled broker lets
them be processed (issue 13 item 4): senders well under the rate are never closed 1008
for the backlog a Redis stall left behind."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import uuid

import pytest

from tests.chat.clients import ChatClient
from tests.support.redis_server import running_redis
from tests.support.servers import running_server

pytestmark = pytest.mark.timeout(120)


def test_senders_under_the_rate_survive_a_redis_stall():
    # 4 msg/s against a limit of 5/s with a burst of 3: the messages that pile up while
    # publishes wait for the stalled Redis (until it is marked down), counted when they
    # are processed, would be one burst over 3 and closed 1008.
    env = {"WSAPP_RATE_LIMIT": "5", "WSAPP_RATE_BURST": "3", "WSAPP_PING_INTERVAL": "0"}
    with running_redis() as redis, running_server(
        "serve", env={**env, "WSAPP_REDIS_URL": redis.url}
    ) as srv:
        room = f"rate-{uuid.uuid4().hex[:8]}"
        clients = [ChatClient(srv, room, f"s{i}") for i in range(3)]
        stop = threading.Event()
        answers: list[list[dict]] = [[] for _ in clients]
        errors: list[BaseException] = []

        def send(index: int) -> None:
            client = clients[index]
            n = 0
            with contextlib.suppress(Exception):
                while not stop.is_set():
                    client.say(f"{index}-{n}", ref=f"{index}-{n}")
                    n += 1
                    time.sleep(0.25)

        def read(index: int) -> None:
            client = clients[index]
            try:
                while not stop.is_set() or len(answers[index]) < 1:
                    event = client.next(timeout=30)
                    if event["type"] in ("ack", "error"):
                        answers[index].append(event)
            except Exception as exc:  # noqa: BLE001 - the close is what the test looks at
                if not stop.is_set():
                    errors.append(exc)

        threads = [threading.Thread(target=f, args=(i,), daemon=True)
                   for i in range(len(clients)) for f in (send, read)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        redis.proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(8.0)
        finally:
            redis.proc.send_signal(signal.SIGCONT)
        time.sleep(6.0)  # the backlog is worked off
        stop.set()
        for client in clients:
            client.say("last", ref="last")
        time.sleep(1.0)
        log = srv.log_text()
        assert "rate limit exceeded" not in log, log[-2000:]
        assert not errors, errors
        for client in clients:
            client.close()
        # every sender is still answered after the stall: acks again
        assert all(any(a["type"] == "ack" for a in got[-5:]) for got in answers), [
            json.dumps(got[-3:]) for got in answers]
