"""``?client=<id>``: the server deduplicates a retried ref across reconnects (server side,
with an independent `websockets` client), and wsapp.client relies on it when an ack is
lost (through a relay that drops the server's answers, then cuts the connection)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.client.relay import Relay
from tests.client.support import FAST, new_room
from wsapp.client import AsyncClient, Client


def _open(url: str):
    ws = connect(url, open_timeout=5, legacy=True)
    hello = json.loads(ws.recv(timeout=5))
    assert hello["type"] == "hello"
    return ws, hello


def _until(ws, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        event = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if event["type"] == kind:
            return event


def test_a_retried_ref_with_the_same_client_id_is_published_once(client_server) -> None:
    room = new_room("cid")
    url = client_server.url(f"/chat/{room}?name=w&client=worker-7")
    reader, _ = _open(client_server.url(f"/chat/{room}?name=r"))
    first, _ = _open(url)
    first.send(json.dumps({"type": "message", "text": "once", "ref": "task-1"}))
    ack = _until(first, "ack")
    first.close()
    again, hello = _open(url)  # a new connection: a new connection id, the same client id
    again.send(json.dumps({"type": "message", "text": "once", "ref": "task-1"}))
    assert _until(again, "ack") == ack
    again.send(json.dumps({"type": "message", "text": "next", "ref": "task-2"}))
    assert _until(again, "ack")["id"] != ack["id"]
    texts = [_until(reader, "message")["text"] for _ in range(2)]
    assert texts == ["once", "next"]
    for ws in (reader, again):
        ws.close()


def test_without_a_client_id_a_new_connection_is_a_new_sender(client_server) -> None:
    room = new_room("nocid")
    url = client_server.url(f"/chat/{room}?name=w")
    acks = []
    for _ in range(2):
        ws, _ = _open(url)
        ws.send(json.dumps({"type": "message", "text": "dup", "ref": "r1"}))
        acks.append(_until(ws, "ack")["id"])
        ws.close()
    assert acks[0] != acks[1]


@pytest.mark.parametrize("bad", ["a b", "x" * 65, "é", "a/b", "a.b"])
def test_an_invalid_client_id_is_refused_with_the_reason(client_server, bad: str) -> None:
    from urllib.parse import quote

    with pytest.raises(InvalidStatus) as info:
        connect(client_server.url(f"/chat/{new_room()}?client={quote(bad)}"), open_timeout=5,
                legacy=True)
    assert info.value.response.status_code == 400
    assert b"invalid client" in info.value.response.body


def _lose_the_ack_then_reconnect(relay: Relay, send) -> Any:
    """Mute the relay, send (the server publishes; its ack is dropped), cut, and wait."""
    relay.mute()
    future = send()
    deadline = time.monotonic() + 5
    while relay.dropped == 0:  # the ack (and our own copy of the message) were dropped
        assert time.monotonic() < deadline, "the server answered nothing"
        time.sleep(0.01)
    time.sleep(0.1)
    relay.cut()
    return future


def test_sync_client_resends_after_a_lost_ack_and_the_room_gets_it_once(client_server) -> None:
    room = new_room("lost")
    relay = Relay((client_server.host, client_server.port))
    try:
        with Client(queue_events=True) as reader, Client(backoff=FAST) as sender:
            reader.connect(client_server.url(f"/chat/{room}"), name="r")
            sender.connect(relay.url(f"/chat/{room}"), name="s")
            future = _lose_the_ack_then_reconnect(
                relay, lambda: sender.send("only once", wait=False))
            message_id = future.result(10)
            assert sender.send("after") != message_id
            got = [e for e in _drain(reader, 2) if e["type"] == "message"]
            assert [(e["text"], e["id"]) for e in got][:1] == [("only once", message_id)]
            assert [e["text"] for e in got] == ["only once", "after"]
    finally:
        relay.close()


def _drain(client: Client, messages: int, quiet: float = 0.3) -> list[dict[str, Any]]:
    """Events until `messages` messages arrived and then nothing for `quiet` seconds."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            out.append(client.receive(timeout=quiet))
        except TimeoutError:
            if sum(e["type"] == "message" for e in out) >= messages:
                return out
    raise AssertionError(f"only {out}")


def test_async_client_resends_after_a_lost_ack_and_the_room_gets_it_once(client_server) -> None:
    room = new_room("alost")
    relay = Relay((client_server.host, client_server.port))

    async def scenario() -> None:
        async with AsyncClient(queue_events=True) as reader, AsyncClient(backoff=FAST) as sender:
            await reader.connect(client_server.url(f"/chat/{room}"), name="r")
            await sender.connect(relay.url(f"/chat/{room}"), name="s")
            future = await asyncio.to_thread(
                _lose_the_ack_then_reconnect, relay,
                lambda: asyncio.run_coroutine_threadsafe(sender.send("only once", wait=False),
                                                         loop).result())
            message_id = await asyncio.wait_for(future, 10)
            await sender.send("after")
            texts = []
            while len(texts) < 2:
                event = await reader.receive(timeout=5)
                if event["type"] == "message":
                    texts.append((event["text"], event["id"]))
            assert texts[0] == ("only once", message_id)
            assert texts[1][0] == "after"
            with pytest.raises(TimeoutError):
                while True:
                    event = await reader.receive(timeout=0.3)
                    assert event["type"] != "message", event

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
        relay.close()
