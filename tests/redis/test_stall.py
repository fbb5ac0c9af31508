"""A stalled Redis (SIGSTOP) must not make wsapp lie (issue 13 item 3).

Real redis-server processes, stopped with SIGSTOP and always continued (SIGCONT) in a
``finally``. What must hold: no message is both refused and delivered; a message whose
answer did not come is reported as ``outcome_unknown`` and is not published behind its
sender's back when Redis wakes up; a retry with the same ref cannot publish twice;
``/readyz`` turns 503 within 3 s of Redis not answering and 200 again within seconds of
SIGCONT.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import gevent
import pytest

from tests.chat.clients import ChatClient
from tests.support.redis_server import RedisServer, running_redis
from tests.support.servers import ServerProcess, running_server
from wsapp.chat.broker import BrokerUnavailable, Message, OutcomeUnknown
from wsapp.chat.broker.redis import RedisBroker

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as r:
        yield r


@contextlib.contextmanager
def stopped(redis_server: RedisServer) -> Iterator[float]:
    """Redis frozen (SIGSTOP) inside the block; continued (SIGCONT) whatever happens."""
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        yield time.monotonic()
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)


def room() -> str:
    return f"r-{uuid.uuid4().hex[:10]}"


def readyz(srv: ServerProcess) -> int:
    try:
        with urllib.request.urlopen(srv.http_url("/readyz"), timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_readyz(srv: ServerProcess, status: int, timeout: float) -> float:
    started = time.monotonic()
    while readyz(srv) != status:
        assert time.monotonic() - started < timeout, f"/readyz not {status} within {timeout}s"
        time.sleep(0.05)
    return time.monotonic() - started


def history_texts(srv: ServerProcess, r: str) -> list[str]:
    with urllib.request.urlopen(srv.http_url(f"/api/rooms/{r}/messages"), timeout=5) as resp:
        return [m["text"] for m in json.load(resp)["messages"]]


# ---- the broker alone --------------------------------------------------------------------


def test_a_publish_into_a_stall_is_unknown_not_published_late_and_retry_safe(
    redis_server: RedisServer,
) -> None:
    b = RedisBroker(redis_server.url, backoff_max=0.3)
    b.start()
    try:
        r = room()
        got: list[Message] = []
        b.subscribe(r, lambda e: got.append(e) if isinstance(e, Message) else None)
        b.publish(r, "ann", "warm", sender="c1", ref="0")  # the script is loaded
        with stopped(redis_server):
            started = time.monotonic()
            with pytest.raises(OutcomeUnknown):
                b.publish(r, "ann", "into the stall", sender="c1", ref="1")
            assert time.monotonic() - started < b.link.timeout + 0.5
            assert not b.healthy()
            with pytest.raises(BrokerUnavailable) as refused:  # down now: fails at once
                b.publish(r, "ann", "refused", sender="c1", ref="2")
            assert not isinstance(refused.value, OutcomeUnknown)
            gevent.sleep(2.0)
        deadline = time.monotonic() + 10
        while not b.healthy():
            assert time.monotonic() < deadline, "no recovery after SIGCONT"
            gevent.sleep(0.02)
        gevent.sleep(0.3)  # anything Redis ran late would have been delivered by now
        assert [m.text for m in b.history(r)] == ["warm"]  # the late command did nothing
        retried = b.publish(r, "ann", "into the stall", sender="c1", ref="1")
        assert b.publish(r, "ann", "into the stall", sender="c1", ref="1") == retried
        deadline = time.monotonic() + 5
        while len(got) < 2:
            assert time.monotonic() < deadline
            gevent.sleep(0.01)
        gevent.sleep(0.2)
        assert [m.text for m in got] == ["warm", "into the stall"]
        assert [m.text for m in b.history(r)] == ["warm", "into the stall"]
    finally:
        b.close()


# ---- a real server -----------------------------------------------------------------------


def redis_env(redis_server: RedisServer) -> dict[str, str]:
    return {"WSAPP_REDIS_URL": redis_server.url, "WSAPP_RATE_LIMIT": "0"}


def test_readyz_turns_503_within_3s_of_a_stall_and_200_after_sigcont(
    redis_server: RedisServer,
) -> None:
    with running_server("serve", env=redis_env(redis_server)) as srv:
        wait_readyz(srv, 200, 10)
        with stopped(redis_server):
            took = wait_readyz(srv, 503, 6)
            assert took < 3.0, f"/readyz said ready {took:.1f}s into the stall"
            time.sleep(2)
            assert readyz(srv) == 503  # and stays so while Redis does not answer
            with urllib.request.urlopen(srv.http_url("/healthz"), timeout=2) as resp:
                assert resp.status == 200  # alive all along
        assert wait_readyz(srv, 200, 6) < 5
        assert "Traceback" not in srv.log_text()


def test_no_message_is_both_refused_and_delivered_across_a_10s_stall(
    redis_server: RedisServer,
) -> None:
    senders, per_sender = 4, 3
    with running_server("serve", env=redis_env(redis_server)) as srv:
        wait_readyz(srv, 200, 10)
        r = room()
        observer = ChatClient(srv, r, "observer")
        clients = [ChatClient(srv, r, f"s{i}") for i in range(senders)]
        answers: dict[str, dict] = {}  # ref -> ack or error event
        lock = threading.Lock()

        def read_answers(c: ChatClient, want: set[str], timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with lock:
                    if want <= answers.keys():
                        return
                try:
                    event = c.next(timeout=0.5)
                except TimeoutError:
                    continue
                if event["type"] in ("ack", "error") and event.get("ref") in want:
                    with lock:
                        answers[event["ref"]] = event

        for i, c in enumerate(clients):  # warm: every sender's path (and the script) works
            c.say(f"warm-{i}", ref=f"warm-{i}")
            read_answers(c, {f"warm-{i}"}, 10)
        texts = {f"m-{i}-{j}": f"text {i}.{j}" for i in range(senders) for j in range(per_sender)}

        def talk(i: int) -> None:
            c = clients[i]
            refs = {f"m-{i}-{j}" for j in range(per_sender)}
            for j in range(per_sender):
                c.say(texts[f"m-{i}-{j}"], ref=f"m-{i}-{j}")
                time.sleep(1.0)
            read_answers(c, refs, 30)

        with stopped(redis_server) as stalled_at:
            threads = [threading.Thread(target=talk, args=(i,)) for i in range(senders)]
            for t in threads:
                t.start()
            took = wait_readyz(srv, 503, 6)
            assert took < 3.0
            assert time.monotonic() - stalled_at < 3.5
            time.sleep(max(0.0, 10.0 - (time.monotonic() - stalled_at)))
        wait_readyz(srv, 200, 10)
        for t in threads:
            t.join(40)
        assert set(answers) >= set(texts), sorted(set(texts) - set(answers))
        time.sleep(1.0)  # anything Redis ran late would be delivered by now

        delivered: list[str] = []
        with contextlib.suppress(TimeoutError):
            while True:
                event = observer.next(timeout=0.5)
                if event["type"] == "message":
                    delivered.append(event["text"])
        stored = history_texts(srv, r)
        kinds: dict[str, int] = {}
        for ref, text in texts.items():
            event = answers[ref]
            kind = event["type"] if event["type"] == "ack" else event["code"]
            kinds[kind] = kinds.get(kind, 0) + 1
            if kind == "ack":
                assert delivered.count(text) == 1 and stored.count(text) == 1, (ref, kind)
            elif kind == "unavailable":  # refused: never delivered, never stored
                assert text not in delivered and text not in stored, (ref, event)
            else:
                assert kind == "outcome_unknown", event
                assert delivered.count(text) <= 1 and stored.count(text) <= 1
        assert kinds.get("ack", 0) < len(texts), kinds  # the stall was felt

        # Retrying every message that was not acked, with the same ref, on the same
        # connection: each ends up delivered exactly once.
        for i, c in enumerate(clients):
            retry = {f"m-{i}-{j}" for j in range(per_sender)
                     if answers[f"m-{i}-{j}"]["type"] != "ack"}
            with lock:
                for ref in retry:
                    answers.pop(ref)
            for ref in sorted(retry):
                c.say(texts[ref], ref=ref)
            read_answers(c, retry, 15)
            for ref in retry:
                assert answers[ref]["type"] == "ack", answers[ref]
        time.sleep(0.5)
        stored = history_texts(srv, r)
        for text in texts.values():
            assert stored.count(text) == 1, (text, stored)
        for c in (observer, *clients):
            c.close()
        assert "Traceback" not in srv.log_text()
        print(f"answers during the stall: {kinds}")
