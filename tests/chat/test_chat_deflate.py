"""Rooms with permessage-deflate: each broadcast is compressed once, and the same bytes go
to every member that negotiated it, beside one uncompressed frame for the others.

Unit tests with fake connections (the hub), then a real server in both serving modes with
members that offered deflate and members that did not, in one room."""

from __future__ import annotations

import json
import zlib

import pytest

from tests.chat.test_hub import FakeConn
from tests.support.deflate_client import DeflateWS
from tests.support.rawws import Op
from tests.support.servers import running_server
from wsapp.chat import events
from wsapp.chat.broker import MemoryBroker
from wsapp.chat.hub import Hub, text_frame
from wsapp.protocol.compression import TAIL, BroadcastDeflate, SharedDeflater

LONG = "a chat line long enough to be worth compressing, as most are. " * 3


class CountingDeflater(SharedDeflater):
    calls = 0

    def compress(self, payload: bytes) -> bytes:
        type(self).calls += 1
        return super().compress(payload)


class DeflateConn(FakeConn):
    def __init__(self, compressor) -> None:
        super().__init__()
        self.broadcast_compressor = compressor

    @property
    def events(self) -> list[dict]:  # frames as a client sees them, inflated
        out = []
        for frame in self.frames:
            if frame[0] == 0xC1:
                start = {126: 4, 127: 10}.get(frame[1], 2)
                frame = zlib.decompressobj(-12).decompress(frame[start:] + TAIL)
            elif frame[0] == 0x81:
                frame = frame[{126: 4, 127: 10}.get(frame[1], 2):]
            out.append(json.loads(frame))
        return out


def test_hub_compresses_each_broadcast_once_for_all_deflate_members():
    deflater = CountingDeflater(1, 12, 5)
    hub = Hub(MemoryBroker(history=20), framer=text_frame, deflate=BroadcastDeflate(deflater, 128))
    packed = [DeflateConn(deflater) for _ in range(5)]
    plain = [FakeConn(), FakeConn()]
    other = DeflateConn(SharedDeflater(1, 9, 5))  # negotiated a smaller window: plain frames
    members = [hub.join(conn, "r", f"m{i}") for i, conn in enumerate(packed + plain + [other])]
    CountingDeflater.calls = 0
    msg = hub.publish(members[0], events.ChatInput(LONG, None))
    assert CountingDeflater.calls == 1  # once, for five members
    frames = {conn.frames[-1] for conn in packed}
    assert len(frames) == 1 and next(iter(frames))[0] == 0xC1  # the same bytes, RSV1
    assert plain[0].frames[-1] == plain[1].frames[-1] == other.frames[-1]
    assert plain[0].frames[-1][0] == 0x81
    for conn in packed + [other]:
        assert conn.events[-1]["text"] == LONG and conn.events[-1]["id"] == msg.id
    # under the threshold nothing is compressed
    hub.publish(members[0], events.ChatInput("short", None))
    assert CountingDeflater.calls == 1 and packed[0].frames[-1][0] == 0x81


def test_hub_without_deflate_members_never_compresses():
    deflater = CountingDeflater(1, 12, 5)
    hub = Hub(MemoryBroker(history=20), framer=text_frame, deflate=BroadcastDeflate(deflater, 0))
    a = hub.join(FakeConn(), "r", "a")
    hub.join(FakeConn(), "r", "b")
    CountingDeflater.calls = 0
    hub.publish(a, events.ChatInput(LONG, None))
    assert CountingDeflater.calls == 0


@pytest.fixture(scope="module", params=["serve", "gunicorn"])
def chat_server(request):
    with running_server(request.param, env={"WSAPP_RATE_LIMIT": "0", "WSAPP_HISTORY": "50"}) as srv:
        yield srv


def read_events(ws: DeflateWS, until_text: str) -> list[dict]:
    seen = []
    while True:
        opcode, data = ws.recv_message(5)
        assert opcode == Op.TEXT
        seen.append(json.loads(data))
        if seen[-1].get("text") == until_text:
            return seen


def test_mixed_room_gets_the_same_messages(chat_server):
    url = chat_server.url("/chat/deflate-mixed?name=")
    offer = "permessage-deflate; client_max_window_bits"
    with DeflateWS.connect(url + "ann", offer, timeout=5) as ann, \
            DeflateWS.connect(url + "bob", None, timeout=5) as bob, \
            DeflateWS.connect(url + "cy", offer, timeout=5) as cy:
        assert ann.negotiated.server_no_context_takeover  # rooms: no server context
        assert bob.negotiated is None
        for ws in (ann, bob, cy):
            assert ws.recv_message(5)[0] == Op.TEXT  # hello
        texts = [f"{LONG} #{i}" for i in range(20)] + ["short"]
        for text in texts:
            ann.send_message(Op.TEXT, json.dumps({"type": "message", "text": text}).encode())
        got = {name: [e["text"] for e in read_events(ws, "short") if e["type"] == "message"]
               for name, ws in (("ann", ann), ("bob", bob), ("cy", cy))}
        assert got["ann"] == got["bob"] == got["cy"] == texts
        assert cy.compressed_received >= 20 and bob.compressed_received == 0
        assert cy.bytes_received < bob.bytes_received
    # a member joining later gets the history replayed compressed too
    with DeflateWS.connect(url + "dee", offer, timeout=5) as dee:
        seen = read_events(dee, "short")
        assert [e["text"] for e in seen if e["type"] == "message"][-21:] == texts
        assert dee.compressed_received >= 20
