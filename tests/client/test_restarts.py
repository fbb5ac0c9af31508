"""At-least-once without duplicates across server crashes, for both clients.

A sender sends 1,000 messages while the server (Redis broker, so history and the
server's memory of refs survive) is SIGKILLed and started again twice; a second client
reads the room through the same crashes. Every send must be acked, and the reader must
see every message exactly once and in order, including those sent while the server was
down (they waited in the outbox)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from tests.client.support import CLIENT_ENV, FAST, Restartable, new_room
from wsapp.client import AsyncClient, Client, GaveUp, NotSent, Unconfirmed

TOTAL = 1000
GAP = 0.004  # seconds between sends: the 1,000 span both crashes


class Chaos(threading.Thread):
    """Kill the server twice while the sender runs; record when it was down."""

    def __init__(self, server: Restartable, cycles: int = 2, up: float = 1.0, down: float = 0.5):
        super().__init__(daemon=True)
        self.server, self.cycles, self.up, self.down = server, cycles, up, down
        self.outages: list[tuple[float, float]] = []  # (killed, listening again)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for _ in range(self.cycles):
                time.sleep(self.up)
                killed = time.monotonic()
                self.server.kill()
                time.sleep(self.down)
                self.server.start()
                self.outages.append((killed, time.monotonic()))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def was_down(self, t: float) -> bool:
        return any(start <= t <= end for start, end in self.outages)


def check(texts: list[str], ids: list[str], acked: list[Any], sent_at: list[float],
          chaos: Chaos) -> None:
    assert chaos.error is None, chaos.error
    assert len(chaos.outages) == 2
    assert all(isinstance(a, str) for a in acked), [a for a in acked if not isinstance(a, str)][:5]
    assert len(set(acked)) == TOTAL, "two sends acked with one id"
    assert len(ids) == len(set(ids)), "a message delivered twice"
    assert texts == [f"m{i}" for i in range(TOTAL)], "lost, duplicated or out of order"
    assert ids == acked, "the reader's ids are not the acked ids, in order"
    while_down = [i for i, t in enumerate(sent_at) if chaos.was_down(t)]
    assert len(while_down) >= 20, f"only {len(while_down)} sends while the server was down"


@pytest.fixture
def crashing(redis):
    env = {**CLIENT_ENV, "WSAPP_REDIS_URL": redis.url, "WSAPP_PING_INTERVAL": "5"}
    with Restartable(env) as server:
        yield server


@pytest.mark.timeout(90)
def test_sync_client_1000_messages_through_two_crashes(crashing: Restartable) -> None:
    url = crashing.url(f"/chat/{new_room('crash')}")
    texts: list[str] = []
    ids: list[str] = []
    done = threading.Event()

    def on_message(event: dict[str, Any]) -> None:
        if event.get("name") == "tx":
            texts.append(event["text"])
            ids.append(event["id"])
            if len(texts) >= TOTAL:
                done.set()

    with Client(backoff=FAST, max_time=30) as reader, Client(backoff=FAST, max_time=30) as sender:
        reader.on("message", on_message)
        reader.connect(url, name="rx")
        sender.connect(url, name="tx")
        chaos = Chaos(crashing)
        chaos.start()
        futures, sent_at = [], []
        for i in range(TOTAL):
            sent_at.append(time.monotonic())
            futures.append(sender.send(f"m{i}", wait=False))
            time.sleep(GAP)
        chaos.join(40)
        acked = [f.result(30) for f in futures]
        assert done.wait(30), f"reader got {len(texts)} of {TOTAL}"
        time.sleep(0.3)  # a duplicate would arrive now
        assert reader.gaps == 0 and sender.gaps == 0
    check(texts, ids, acked, sent_at, chaos)


@pytest.mark.timeout(90)
def test_async_client_1000_messages_through_two_crashes(crashing: Restartable) -> None:
    url = crashing.url(f"/chat/{new_room('acrash')}")

    async def scenario() -> tuple[list[str], list[str], list[Any], list[float], Chaos]:
        texts: list[str] = []
        ids: list[str] = []
        async with AsyncClient(backoff=FAST, max_time=30) as reader, \
                AsyncClient(backoff=FAST, max_time=30) as sender:

            async def collect() -> None:
                async for event in reader:
                    if event["type"] == "message" and event.get("name") == "tx":
                        texts.append(event["text"])
                        ids.append(event["id"])
                        if len(texts) >= TOTAL:
                            return

            await reader.connect(url, name="rx")
            await sender.connect(url, name="tx")
            reading = asyncio.create_task(collect())
            chaos = Chaos(crashing)
            chaos.start()
            futures, sent_at = [], []
            for i in range(TOTAL):
                sent_at.append(time.monotonic())
                futures.append(await sender.send(f"m{i}", wait=False))
                await asyncio.sleep(GAP)
            await asyncio.to_thread(chaos.join, 40)
            acked = await asyncio.wait_for(asyncio.gather(*futures), 30)
            await asyncio.wait_for(reading, 30)
            await asyncio.sleep(0.3)
            assert reader.gaps == 0 and sender.gaps == 0
        return texts, ids, list(acked), sent_at, chaos

    check(*asyncio.run(scenario()))


@pytest.mark.timeout(60)
def test_server_gone_for_good_ends_with_gave_up_and_honest_failures(redis) -> None:
    """The server dies and never comes back: the retry limit ends the client with GaveUp,
    and a message queued meanwhile fails as NotSent (it was never written)."""
    env = {**CLIENT_ENV, "WSAPP_REDIS_URL": redis.url}
    server = Restartable(env).start()
    try:
        client = Client(backoff=FAST, max_time=1.5)
        seen: list[dict[str, Any]] = []
        client.on("*", seen.append)
        client.connect(server.url(f"/chat/{new_room('gone')}"), name="left")
        assert isinstance(client.send("before"), str)
        server.kill()
        started = time.monotonic()
        future = client.send("after", wait=False)
        with pytest.raises(GaveUp) as info:
            client.wait(10)
        assert time.monotonic() - started < 6
        assert "connection refused" in str(info.value)
        exc = future.exception(1)
        assert isinstance(exc, NotSent) and not isinstance(exc, Unconfirmed), exc
        client.close()  # joins the dispatcher: every handler has run
        kinds = [e["type"] for e in seen]
        assert "disconnect" in kinds and seen[-1].get("fatal") is True, seen[-3:]
    finally:
        server.stop()
