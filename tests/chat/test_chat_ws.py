"""Chat over real sockets against real server processes (docs/protocol.md, issue 3).

Clients are the independent `websockets` library and raw sockets; servers are
`python -m wsapp serve` and gunicorn started by tests/support/servers.py with CHAT_ENV
(send queue 64, history 400, max chat text 16 KiB, keepalive 1 s).
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
import urllib.request

import pytest

from tests.chat.clients import ChatClient, Collector, StalledReader
from tests.chat.conftest import CHAT_ENV, new_room
from tests.support.rawws import Op, RawWS, encode_frame, handshake_request, http_exchange
from tests.support.servers import running_server

HISTORY = int(CHAT_ENV["WSAPP_HISTORY"])
MAX_CHAT = int(CHAT_ENV["WSAPP_MAX_CHAT_BYTES"])


def rooms_api(srv) -> dict[str, dict]:
    with urllib.request.urlopen(srv.http_url("/api/rooms"), timeout=5) as resp:
        return {r["room"]: r for r in json.load(resp)["rooms"]}


def id_key(message_id: str) -> tuple[int, ...]:
    """Only for asserting order in tests; clients treat ids as opaque."""
    return tuple(int(p) for p in message_id.split("-"))


# ---- basics, in both serving modes ------------------------------------------------------


def _room_gets_every_message(srv, members: int = 40, messages: int = 30) -> None:
    room = new_room("fan")
    clients = [ChatClient(srv, room, name=f"m{i}") for i in range(members)]
    try:
        sender = clients[0]
        for i in range(messages):
            sender.say(f"fan {i}")
        for c in clients:
            got = [e["text"] for e in c.messages(messages)]
            assert got == [f"fan {i}" for i in range(messages)], f"{c.id}: {got}"
    finally:
        for c in clients:
            c.close()


@pytest.mark.parametrize("mode", ["serve", "gunicorn"])
def test_broadcasts_go_through_io_uring_in_both_serving_modes(chat_servers, mode: str) -> None:
    """The default sends a broadcast's frames to the kernel through io_uring (a gunicorn
    worker sets up its own ring after the fork); 40 members get all 30 messages in order."""
    srv = chat_servers(mode)
    log = srv.wait_for_log("framing: C speedups, broadcasts by ")
    if "broadcasts by send (io_uring:" in log:
        pytest.skip(
            "this kernel refuses io_uring: "
            + log.split("broadcasts by send (io_uring:", 1)[1].split("\n")[0]
        )
    srv.wait_for_log("framing: C speedups, broadcasts by io_uring")
    _room_gets_every_message(srv)


def test_broadcasts_with_one_send_per_member_when_io_uring_is_off() -> None:
    """WSAPP_IO_URING=0: the same deliveries with one send() per member (logged at start)."""
    with running_server("serve", env=CHAT_ENV | {"WSAPP_IO_URING": "0"}) as srv:
        srv.wait_for_log("framing: C speedups, broadcasts by send")
        _room_gets_every_message(srv)



def test_hello_broadcast_and_ack(chat_server) -> None:
    room = new_room()
    with ChatClient(chat_server, room, "ann") as a, ChatClient(chat_server, room, "bob") as b:
        assert a.hello == {
            "type": "hello",
            "room": room,
            "id": a.id,
            "name": "ann",
            "members": ["ann"],
            "presence": [{"id": a.id, "name": "ann"}],
            "history": 0,
            "max_text_bytes": MAX_CHAT,  # WSAPP_MAX_CHAT_BYTES: pages check it before sending
        }
        assert b.hello["members"] == ["ann", "bob"] and b.id != a.id
        assert a.next() == {"type": "join", "room": room, "name": "bob", "id": b.id}

        before = int(time.time() * 1000)
        a.say("hello room", ref="r-1")
        got = {e["type"]: e for e in (a.next(), a.next())}
        msg = got["message"]
        assert got["ack"] == {"type": "ack", "ref": "r-1", "id": msg["id"]}
        assert msg == {
            "type": "message",
            "id": msg["id"],
            "room": room,
            "name": "ann",
            "text": "hello room",
            "ts": msg["ts"],
        }
        assert isinstance(msg["id"], str) and abs(msg["ts"] - before) < 5000
        assert b.next() == msg

        b.ws.send("plain text, wscat style")  # any non-protocol text is the message text
        m2 = b.next_of("message")
        assert (m2["text"], m2["name"]) == ("plain text, wscat style", "bob")
        assert a.next_of("message") == m2
        assert id_key(m2["id"]) > id_key(msg["id"])
        b.nothing_within(0.1)  # no ack without a ref


def test_bad_names_refused_at_handshake(chat_server) -> None:
    bad = [
        "/chat/a%20b",
        "/chat/" + "x" * 65,
        "/chat/caf%C3%A9",
        "/chat/semi;colon",
        "/chat/ok?name=" + "n" * 33,
        "/chat/ok?name=bad%01name",
        "/chat/ok?name=tab%09inside",
        "/chat/ok?since=yesterday",
        "/chat/ok?since=1-2-3",
    ]
    for path in bad:
        resp = http_exchange(
            chat_server.host,
            chat_server.port,
            handshake_request(chat_server.host, chat_server.port, path),
        )
        assert 400 <= resp.status < 500, (path, resp.status)
        assert resp.status != 101
        assert resp.header("upgrade") is None
    resp = http_exchange(
        chat_server.host,
        chat_server.port,
        handshake_request(chat_server.host, chat_server.port, "/chat/a%20b"),
    )
    assert b"invalid room name" in resp.body
    # and the server is fine afterwards
    with ChatClient(chat_server, "x" * 64, name="  padded  ") as ok:
        assert ok.hello["room"] == "x" * 64 and ok.hello["name"] == "padded"


def test_binary_frame_closes_1003_and_others_carry_on(chat_server) -> None:
    room = new_room()
    with ChatClient(chat_server, room, "ann") as a, ChatClient(chat_server, room, "bin") as b:
        a.next_of("join")
        b.ws.send(b"\x00\x01binary")
        assert b.close_code() == 1003
        leave = a.next_of("leave")
        assert leave["id"] == b.id
        with ChatClient(chat_server, room, "cy") as c:
            c.say("still here")
            assert a.next_of("message")["text"] == "still here"


def test_two_rooms_are_isolated(chat_server) -> None:
    r1, r2 = new_room("iso"), new_room("iso")
    with (
        ChatClient(chat_server, r1, "a1") as a1,
        ChatClient(chat_server, r2, "b1") as b1,
        ChatClient(chat_server, r2, "b2") as b2,
    ):
        b1.next_of("join")
        a1.say("only for room 1")
        assert a1.next_of("message")["text"] == "only for room 1"
        b2.say("marker for room 2")
        got = b1.next_of("message")
        assert (got["text"], got["room"]) == ("marker for room 2", r2)
        assert b2.next_of("message")["text"] == "marker for room 2"
        a1.nothing_within(0.2)
        b1.nothing_within(0.05)
        assert [m["name"] for m in [b1.hello]] == ["b1"] and b1.hello["members"] == ["b1"]


def test_history_in_order_then_live(chat_server) -> None:
    room = new_room("hist")
    with ChatClient(chat_server, room, "writer") as w:
        acks = []
        for i in range(HISTORY + 10):
            w.say(f"h{i}", ref=str(i))
            if i % 10 == 9:  # at most 10 in flight
                acks += [w.next_of("ack") for _ in range(10)]
        assert [a["ref"] for a in acks] == [str(i) for i in range(HISTORY + 10)]
        ids = [a["id"] for a in acks]
        assert ids == sorted(ids, key=id_key) and len(set(ids)) == len(ids)
        with ChatClient(chat_server, room, "late") as late:
            assert late.hello["history"] == HISTORY
            replay = [late.next() for _ in range(HISTORY)]
            assert [e["text"] for e in replay] == [f"h{i}" for i in range(10, HISTORY + 10)]
            assert [e["id"] for e in replay] == ids[10:]
            assert all(
                e["type"] == "message" and e["replay"] is True and e["name"] == "writer"
                for e in replay
            )
            w.say("live one")
            live = late.next()
            assert live["text"] == "live one" and "replay" not in live


def test_join_leave_and_presence(chat_server) -> None:
    room = new_room("pres")
    with ChatClient(chat_server, room, "ann") as a:
        b = ChatClient(chat_server, room, "sam")
        c = ChatClient(chat_server, room, "sam")  # names may repeat
        assert a.next() == {"type": "join", "room": room, "name": "sam", "id": b.id}
        assert a.next() == {"type": "join", "room": room, "name": "sam", "id": c.id}
        assert c.hello["members"] == ["ann", "sam", "sam"]
        assert rooms_api(chat_server)[room]["members"] == 3
        b.close()
        assert a.next() == {"type": "leave", "room": room, "name": "sam", "id": b.id}
        c.drop()  # vanishes: TCP reset, no close frame
        assert a.next() == {"type": "leave", "room": room, "name": "sam", "id": c.id}
        assert rooms_api(chat_server)[room]["members"] == 1
        with ChatClient(chat_server, room, None) as guest:
            assert guest.hello["name"].startswith("guest-") and len(guest.hello["name"]) == 10
            assert a.next()["name"] == guest.hello["name"]


def test_too_large_message_is_refused_to_the_sender_only(chat_server) -> None:
    room = new_room("big")
    with ChatClient(chat_server, room, "ann") as a, ChatClient(chat_server, room, "bob") as b:
        a.next_of("join")
        a.say("é" * (MAX_CHAT // 2) + "x", ref="big-1")  # MAX_CHAT + 1 bytes of UTF-8
        err = a.next()
        assert (
            err["type"] == "error" and err["code"] == "message_too_large" and err["ref"] == "big-1"
        )
        a.ws.send("y" * (MAX_CHAT + 1))
        assert a.next()["code"] == "message_too_large"
        b.nothing_within(0.2)
        a.say("z" * MAX_CHAT, ref="fits")  # exactly the limit is fine
        assert b.next()["text"] == "z" * MAX_CHAT


def test_malformed_protocol_messages_get_error_events(chat_server) -> None:
    room = new_room("err")
    with ChatClient(chat_server, room, "ann") as a:
        a.send_json({"type": "subscribe", "ref": "q1"})
        err = a.next()
        assert (err["type"], err["code"], err["ref"]) == ("error", "unknown_type", "q1")
        assert "subscribe" in err["reason"]
        a.send_json({"type": "message", "text": 42})
        assert a.next()["code"] == "invalid_message"
        a.send_json({"type": "message", "text": ""})
        assert a.next()["code"] == "empty_message"
        a.say("ok after errors", ref="ok")
        assert {a.next()["type"], a.next()["type"]} == {"message", "ack"}


# ---- resume and backpressure (the heavier tests; `serve` mode) ---------------------------


def test_since_resume_has_no_gap_and_no_duplicate_while_messages_flow(chat_serve_server) -> None:
    srv = chat_serve_server
    room = new_room("resume")
    total = 1200
    watcher = ChatClient(srv, room, "watcher")
    sender = ChatClient(srv, room, "sender")
    watch = Collector(watcher, total)
    watch.start()

    def pump() -> None:
        for i in range(total):
            sender.ws.send(f"p{i}")
            if i % 2 == 0:
                time.sleep(0.001)

    # The roamer joins before the flow starts, then repeatedly reads a little, vanishes
    # without a close frame and comes back with since=<last id seen>, while messages flow.
    rng = random.Random(3)
    seen: list[dict] = []
    since = None
    client = ChatClient(srv, room, "roamer")
    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    for round_ in range(8):
        if round_:
            client = ChatClient(srv, room, "roamer", since=since)
            assert client.hello["recovered"] is True, client.hello
        # the replay of what was missed, then a few live messages
        want = client.hello["history"] + rng.randint(3, 30)
        got = 0
        while got < want:
            event = client.next()
            if event["type"] == "message":
                seen.append(event)
                got += 1
        since = seen[-1]["id"]
        client.drop()
        time.sleep(rng.choice([0, 0.005, 0.02]))
    last = ChatClient(srv, room, "roamer", since=since)
    pumper.join(30)
    assert not pumper.is_alive()
    while not seen or seen[-1]["text"] != f"p{total - 1}":
        event = last.next()
        if event["type"] == "message":
            seen.append(event)
    watch.join(30)
    assert watch.error is None and len(watch.messages) == total

    ids = [e["id"] for e in seen]
    assert len(ids) == len(set(ids)), "duplicate message"
    all_ids = [e["id"] for e in watch.messages]
    assert ids == all_ids, "gap or reordering in the resumed stream"
    for c in (watcher, sender, last):
        c.close()


def test_reader_that_stops_reading_is_cut_off_while_others_get_everything(
    chat_serve_server,
) -> None:
    srv = chat_serve_server
    room = new_room("slow")
    total = 1000
    # 10 MB in all: far beyond what the kernel buffers for a stalled socket (its receive
    # buffer shrunk, the server's send buffer WSAPP_SEND_BUFFER_BYTES), so the queue overflows
    text = "x" * 10_000
    a, b = ChatClient(srv, room, "reader-a"), ChatClient(srv, room, "reader-b")
    stalled = StalledReader(srv, room)
    sender = ChatClient(srv, room, "sender")
    ca, cb, cs = Collector(a, total), Collector(b, total), Collector(sender, total)
    for c in (ca, cb, cs):
        c.start()
    t0 = time.monotonic()
    for i in range(total):
        sender.ws.send(json.dumps({"type": "message", "text": f"{i:04d}{text}", "ref": str(i)}))
        if i % 16 == 15:  # a well-behaved sender: at most 16 messages in flight
            while len(cs.messages) < i - 15 and cs.is_alive():
                time.sleep(0.0005)
    for c in (ca, cb, cs):
        c.join(30)
        assert c.error is None, c.error
    elapsed = time.monotonic() - t0
    for c in (ca, cb, cs):
        assert [m["text"][:4] for m in c.messages] == [f"{i:04d}" for i in range(total)]
    assert elapsed < 20, elapsed

    log = srv.wait_for_log(f"ws close conn={stalled.id} ", timeout=5)
    close_lines = [line for line in log.splitlines() if f"ws close conn={stalled.id} " in line]
    assert "code=1008" in close_lines[-1], close_lines
    assert any("slow consumer" in line and stalled.id in line for line in log.splitlines())
    assert stalled.closed_by_server(timeout=5)
    leaves = [e for e in ca.others if e["type"] == "leave"] or [a.next_of("leave", 3)]
    assert [e["id"] for e in leaves] == [stalled.id]
    # the fast members are still connected and served
    sender.say("after the storm")
    assert a.next_of("message")["text"] == "after the storm"
    for c in (a, b, sender):
        c.close()
    stalled.close()


def test_burst_from_one_client_larger_than_the_send_queue(chat_serve_server) -> None:
    """A client that writes a burst of 1000 messages at once (and reads all the while) is not
    "too slow": its own copies and acks must not overflow its queue (a burst larger than the
    send queue)."""
    srv = chat_serve_server
    room = new_room("burst")
    total = 1000
    with ChatClient(srv, room, "reader") as reader:
        raw = RawWS.connect(srv.url(f"/chat/{room}?name=burst"))
        raw.recv_message()  # hello
        reader.next_of("join")
        got = Collector(reader, total)
        got.start()
        own: list[bytes] = []

        def read_own() -> None:
            try:
                while len(own) < total:
                    own.append(raw.recv_message(timeout=10)[1])
            except Exception as exc:  # noqa: BLE001
                own.append(repr(exc).encode())

        t = threading.Thread(target=read_own, daemon=True)
        t.start()
        raw.send_raw(b"".join(encode_frame(Op.TEXT, f"b{i}".encode()) for i in range(total)))
        got.join(10)
        t.join(10)
        assert got.error is None and [m["text"] for m in got.messages] == [
            f"b{i}" for i in range(total)
        ]
        assert len(own) == total and all(b'"type":"message"' in m for m in own), own[-1:]
        raw.close()


def test_dead_peer_found_by_keepalive_gets_a_leave(chat_serve_server) -> None:
    """A peer that vanished without FIN or RST answers no ping: it is dropped, others told."""
    srv = chat_serve_server
    room = new_room("dead")
    with ChatClient(srv, room, "ann") as a:
        ghost = RawWS.connect(srv.url(f"/chat/{room}?name=ghost"))
        hello = json.loads(ghost.recv_message()[1])
        assert a.next()["type"] == "join"
        t0 = time.monotonic()
        # the ghost never reads again, so it never answers the server's pings
        leave = a.next_of("leave", timeout=8)
        assert leave["id"] == hello["id"]
        assert time.monotonic() - t0 < 6
        assert rooms_api(srv)[room]["members"] == 1
        ghost.close()


def test_abrupt_disconnect_mid_message_is_a_leave(chat_serve_server) -> None:
    srv = chat_serve_server
    room = new_room("cut")
    with ChatClient(srv, room, "ann") as a:
        raw = RawWS.connect(srv.url(f"/chat/{room}?name=cut"))
        raw.recv_message()
        a.next_of("join")
        frame = b"\x81\xfe\x01\x00" + b"\x00\x00\x00\x00" + b"partial"  # 256-byte frame, 7 sent
        raw.send_raw(frame)
        raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
        assert a.next_of("leave", timeout=5)["name"] == "cut"
        a.nothing_within(0.1)


def test_closed_client_cannot_be_written_to_and_server_survives(chat_serve_server) -> None:
    """Many quick connect/say/vanish cycles: the room keeps working, presence stays right."""
    srv = chat_serve_server
    room = new_room("churn")
    with ChatClient(srv, room, "ann") as a:
        for i in range(20):
            c = ChatClient(srv, room, f"c{i}")
            c.say(f"hi {i}")
            (c.drop if i % 2 else c.close)()
        texts = []
        while len(texts) < 20:
            e = a.next()
            if e["type"] == "message":
                texts.append(e["text"])
        assert texts == [f"hi {i}" for i in range(20)]
        deadline = time.monotonic() + 5
        while rooms_api(srv)[room]["members"] != 1:
            assert time.monotonic() < deadline, rooms_api(srv)[room]
            time.sleep(0.05)


@pytest.mark.parametrize("path", ["/chat/", "/chat/a/b"])
def test_paths_without_a_room_are_not_chat(chat_serve_server, path: str) -> None:
    srv = chat_serve_server
    resp = http_exchange(srv.host, srv.port, handshake_request(srv.host, srv.port, path))
    assert 400 <= resp.status < 500
