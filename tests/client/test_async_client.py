"""`wsapp.client.AsyncClient` against real servers: the same behaviour as `Client`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.client.support import CLIENT_ENV, FAST, Restartable, new_room
from tests.support.servers import free_port
from wsapp.client import (
    AckTimeout,
    AsyncClient,
    ClientClosed,
    ConnectFailed,
    GaveUp,
    InvalidURL,
    NotSent,
    Refused,
    Rejected,
    Unauthorized,
)


def run(coro: Any, timeout: float = 30.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_send_ack_handlers_sync_and_async(client_server) -> None:
    url = client_server.url(f"/chat/{new_room()}")

    async def scenario() -> None:
        got: list[tuple[str, str]] = []
        arrived = asyncio.Event()

        async def on_message(event: dict[str, Any]) -> None:
            await asyncio.sleep(0)
            got.append((event["text"], event["id"]))
            arrived.set()

        joined: list[str] = []
        async with AsyncClient() as bob, AsyncClient() as ann:
            bob.on("message", on_message)
            bob.on("join", lambda e: joined.append(e["name"]))
            hello = await bob.connect(url, name="bob")
            assert hello["name"] == "bob"
            await ann.connect(url, name="ann")
            message_id = await ann.send("hi")
            await asyncio.wait_for(arrived.wait(), 5)
            assert got == [("hi", message_id)] and joined == ["ann"]
            assert bob.last_id == message_id

    run(scenario())


def test_iteration_and_futures(client_server) -> None:
    url = client_server.url(f"/chat/{new_room()}")

    async def scenario() -> None:
        async with AsyncClient() as reader, AsyncClient() as writer:
            await reader.connect(url)
            await writer.connect(url)
            futures = [await writer.send(f"n{i}", wait=False) for i in range(200)]
            ids = await asyncio.gather(*futures)
            assert len(set(ids)) == 200
            texts = []
            async for event in reader:
                if event["type"] == "message":
                    texts.append(event["text"])
                    if len(texts) == 200:
                        break
            assert texts == [f"n{i}" for i in range(200)]
            with pytest.raises(TimeoutError):
                await reader.receive(timeout=0.2)

    run(scenario())


def test_rejected_and_emit(client_server) -> None:
    url = client_server.url(f"/chat/{new_room()}")

    async def scenario() -> None:
        async with AsyncClient() as c:
            await c.connect(url)
            with pytest.raises(Rejected) as info:
                await c.send("x" * 20000)
            assert info.value.code == "message_too_large"
            try:
                acked = await c.emit("action", {"task": 1})
            except Rejected as exc:  # the event relay is not on this server yet
                assert exc.code == "unknown_type"
            else:
                assert acked is None or isinstance(acked, str)

    run(scenario())


def test_refusals_bad_urls_and_the_retry_limit(client_server, token_server) -> None:
    port = free_port()

    async def scenario() -> None:
        with pytest.raises(Refused) as info:
            await AsyncClient().connect(client_server.url("/chat/bad%20room"))
        assert info.value.status == 400 and "invalid room name" in info.value.reason
        with pytest.raises(Unauthorized) as info:
            await AsyncClient().connect(token_server.url(f"/chat/{new_room()}"))
        assert info.value.status == 401
        with pytest.raises(InvalidURL):
            await AsyncClient().connect("gopher://x/")
        with pytest.raises(ConnectFailed, match="connection refused"):
            await AsyncClient().connect(f"ws://127.0.0.1:{port}/echo")
        started = time.monotonic()
        with pytest.raises(GaveUp) as info:
            await AsyncClient(backoff=FAST, max_tries=3).connect(
                f"ws://127.0.0.1:{port}/echo", retry=True)
        assert info.value.tries == 3 and "connection refused" in str(info.value)
        with pytest.raises(GaveUp):
            await AsyncClient(backoff=FAST, max_time=0.6).connect(
                f"ws://127.0.0.1:{port}/echo", retry=True)
        assert time.monotonic() - started < 4

    run(scenario())


def test_plain_echo(client_server) -> None:
    async def scenario() -> None:
        async with AsyncClient() as c:
            assert await c.connect(client_server.http_url("/echo")) is None
            assert await c.send("one") is None
            await c.send(b"two")
            events = [await c.receive(timeout=5) for _ in range(3)]
        assert events[0]["type"] == "connect"
        assert events[1:] == [{"type": "message", "text": "one"},
                              {"type": "message", "data": b"two"}]

    run(scenario())


def test_outbox_while_down_and_close_failures() -> None:
    room = new_room("aout")

    async def scenario(server: Restartable) -> None:
        url = server.url(f"/chat/{room}")
        async with AsyncClient(backoff=FAST) as c:
            await c.connect(url)
            await asyncio.to_thread(server.kill)
            futures = [await c.send(f"q{i}", wait=False) for i in range(3)]
            with pytest.raises(AckTimeout):
                await c.send("late", timeout=0.2)
            await asyncio.to_thread(server.start)
            ids = await asyncio.wait_for(asyncio.gather(*futures), 15)
            assert len(set(ids)) == 3
            assert await c.flush(10) and c.unacked == 0
        async with AsyncClient(queue_events=True) as reader:
            await reader.connect(url)
            texts = []
            with pytest.raises(TimeoutError):
                while True:
                    event = await reader.receive(timeout=0.5)
                    if event["type"] == "message":
                        texts.append(event["text"])
        assert texts == ["q0", "q1", "q2", "late"]
        c2 = AsyncClient(backoff=FAST)
        await c2.connect(url)
        await asyncio.to_thread(server.kill)
        future = await c2.send("never", wait=False)
        await c2.close(timeout=0.2)
        assert isinstance(future.exception(), NotSent)
        with pytest.raises(ClientClosed):
            await c2.send("after close")

    with Restartable(CLIENT_ENV) as server:
        run(scenario(server), 60)


def test_a_handler_may_await_its_own_send(client_server) -> None:
    url = client_server.url(f"/chat/{new_room()}")

    async def scenario() -> None:
        answered: list[str] = []
        async with AsyncClient() as bot, AsyncClient() as user:

            async def reply(event: dict[str, Any]) -> None:
                if event.get("name") == "user":
                    answered.append(await bot.send(f"re: {event['text']}"))

            bot.on("message", reply)
            await bot.connect(url, name="bot")
            await user.connect(url, name="user")
            await user.send("ping")
            for _ in range(500):
                if answered:
                    break
                await asyncio.sleep(0.01)
        assert answered and isinstance(answered[0], str)

    run(scenario())
