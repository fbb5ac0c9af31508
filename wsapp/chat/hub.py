"""The local hub: which connections of this process are in which room, and fan-out to them.

One broker subscription per room that has members in this process. Each event the
broker delivers is serialised and framed once (:func:`frame_event`), and the same bytes
go to every local member with one ``send_to_all`` (never blocks; a member whose send
queue goes over its byte budget is closed 1008 by its connection, nobody else waits).

Joining, with history and ``since=`` resume without gap or duplicate::

    1. register the member as *pending*: live events for it are buffered, not sent
    2. subscribe the room (first local member only), then broker.join (presence)
    3. read members and history (these may yield: Redis)
    4. send hello, then the replayed messages (``replay: true``)
    5. flush the buffer, skipping messages whose id is <= the last replayed id,
       and switch the member to *live*: from here on frames go straight to its queue.

The switch to live happens right after a check that the buffer is empty, with no yield in
between, so no event can slip between buffer and queue. Replay and flush are paced by the
connection's queued bytes (``conn.queued()``), so a history longer than
WSAPP_SEND_QUEUE_BYTES reaches a reading client instead of overflowing its queue.

Besides chat members, a room may hold *event members*: any socket that server code put
in the room (``wsapp.rooms.Rooms``). They are live from the start (no hello, no history)
and get only the room's named events (:class:`RoomEvent`), which chat members get too;
chat messages and presence go to chat members only.

The hub needs only this from a connection (duck-typed, see ``wsapp.engine.websocket``):
``id``, ``send_frame(bytes) -> bool``, ``close_nowait(code, reason)`` and ``queued()``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import gevent
import gevent.event

from wsapp import metrics
from wsapp.protocol.compression import NO_DEFLATE, BroadcastDeflate

from . import events
from .broker.base import (
    Broker,
    BrokerUnavailable,
    Event,
    Member,
    Message,
    OutcomeUnknown,
    PresenceEvent,
    RoomEvent,
)
from .members import ChatConnection, LocalMember, _Room, _send_each, text_frame

log = logging.getLogger("wsapp.chat")

CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013


def frame_event(event: Event, framer: Callable[[bytes], bytes] = text_frame) -> bytes:
    return framer(events.encode_event(event))


class Hub:
    """Local rooms of this process on top of a broker."""

    def __init__(
        self,
        broker: Broker,
        *,
        history: int = 100,
        queue_limit: int = 1 << 20,
        replay_timeout: float = 10.0,
        framer: Callable[[bytes], bytes] = text_frame,
        send_to_all: Callable[..., None] | None = None,
        max_text_bytes: int | None = None,
        deflate: BroadcastDeflate = NO_DEFLATE,
    ) -> None:
        self.broker = broker
        #: WSAPP_MAX_CHAT_BYTES, told to chat clients in ``hello`` (pages check it before sending)
        self.max_text_bytes = max_text_bytes
        #: Frames to many connections: wsapp passes `wsapp.engine.fanout.send_to_all`.
        self.send_to_all = send_to_all or _send_each
        self.deflate = deflate  # compresses broadcasts once, for members sharing its compressor
        self.history = history
        self.queue_limit = queue_limit
        self.buffer_limit = queue_limit
        self.replay_timeout = replay_timeout
        self.framer = framer
        self._rooms: dict[str, _Room] = {}
        self.fanout_events = 0  # events encoded (once each)
        self.fanout_frames = 0  # frames handed to connections

    # ---- introspection

    def local_rooms(self) -> dict[str, int]:
        return {name: len(r.members) for name, r in self._rooms.items()}

    def local_members(self, room: str) -> list[LocalMember]:
        r = self._rooms.get(room)
        return list(r.snapshot) if r else []

    # ---- broker delivery (encode once, send many)

    def _on_event(self, room: _Room, event: Event) -> None:
        if isinstance(event, RoomEvent):  # every member, but the one it names (its sender)
            members, skip = room.snapshot, event.skip
        elif isinstance(event, PresenceEvent):  # not its own join: hello said it
            members, skip = room.chat, event.member.id
        else:
            members, skip = room.chat, None
        if not members:
            return
        started = time.perf_counter()  # issue 6: wsapp_fanout_seconds
        payload = events.encode_event(event)
        frame = self.framer(payload)
        self.fanout_events += 1
        targets = members if skip is None else [lm for lm in members if lm.member.id != skip]
        deflated = self.deflate.text_frame(payload) if room.deflating else None
        if deflated is None:
            live = [lm.conn for lm in targets if lm.live]
            self.send_to_all(live, frame)
        else:  # compressed once, for every member that negotiated it
            live = [lm.conn for lm in targets if lm.live and not lm.deflate]
            packed = [lm.conn for lm in targets if lm.live and lm.deflate]
            self.send_to_all(live, frame, (packed, deflated))
            live += packed
        if len(live) < len(targets):
            for lm in targets:
                if not lm.live:  # still joining: buffered until its history is out
                    lm.deliver(event, deflated if deflated is not None and lm.deflate else frame)
        self.fanout_frames += len(members)
        metrics.observe_fanout(time.perf_counter() - started)

    def _frame_for(self, lm: LocalMember, payload: bytes) -> bytes:
        return (lm.deflate and self.deflate.text_frame(payload)) or self.framer(payload)

    # ---- room subscriptions

    def _attach(self, lm: LocalMember) -> _Room:
        """Add `lm` (pending) to its local room; subscribe the room if it is new here."""
        room = self._rooms.get(lm.room)
        if room is None:
            room = self._rooms[lm.room] = _Room(lm.room)
            room.add(lm)
            try:
                room.subscription = self.broker.subscribe(
                    lm.room, lambda ev, _r=room: self._on_event(_r, ev)
                )
            except BaseException as exc:
                room.error = exc
                if self._rooms.get(lm.room) is room:
                    del self._rooms[lm.room]
                raise
            finally:
                room.ready.set()
            return room
        room.add(lm)
        room.ready.wait()  # another greenlet is subscribing this room (Redis: I/O)
        if room.error is not None:
            self._detach(lm)
            raise BrokerUnavailable(f"cannot subscribe room {lm.room}: {room.error}")
        return room

    def _detach(self, lm: LocalMember) -> None:
        room = self._rooms.get(lm.room)
        if room is None or room.remove(lm.id) is None:
            return
        if not room.members:
            del self._rooms[lm.room]
            if room.subscription is not None:
                try:
                    self.broker.unsubscribe(room.subscription)
                except Exception:
                    log.exception("unsubscribing room %s failed", lm.room)

    # ---- members

    def join(
        self, conn: ChatConnection, room: str, name: str, since: str | None = None,
        *, client_id: str | None = None,
    ) -> LocalMember:
        """Enter `room`: hello, history (or the messages after `since`), then live events.

        `client_id` (validated ``?client=``) is the sender key of the member's messages
        for deduplication by ref, so a retry after a reconnect is recognised.

        Raises BrokerUnavailable (the caller closes the connection 1013). If the client
        does not read its replay, it is closed 1008 and the member never goes live."""
        lm = LocalMember(conn, room, Member(conn.id, name), self.buffer_limit, client_id)
        lm.deflate = self.deflate.suits(conn)
        self._attach(lm)
        joined = False
        try:
            self.broker.join(room, lm.member)
            joined = True
            members = self.broker.members(room)
            recovered: bool | None = None
            if since is None:
                replay = self.broker.history(room, limit=self.history) if self.history else []
            else:
                replay = self.broker.history(room, since=since)
                recovered = self.broker.covers(room, since)
                if len(replay) > self.history:
                    replay = replay[-self.history :] if self.history else []
                    recovered = False
            if not any(m.id == lm.id for m in members):  # a broker may not list us yet
                members.append(lm.member)
            pace = self._pacer(conn)
            hello = events.encode_hello(
                room, lm.id, name, members, len(replay), recovered, self.max_text_bytes
            )
            conn.send_frame(self._frame_for(lm, hello))
            for msg in replay:
                if not pace():
                    lm.abandon()
                    return lm
                conn.send_frame(self._frame_for(lm, events.encode_message(msg, replay=True)))
            if replay:
                last_key = self.broker.id_key(replay[-1].id)
            elif since is not None:
                last_key = self.broker.id_key(since)
            else:
                last_key = None
            lm.go_live(last_key, self.broker.id_key, pace)
        except BaseException:
            self._detach(lm)
            if joined:
                self._safe_leave(lm)
            raise
        return lm

    def _pacer(self, conn: ChatConnection) -> Callable[[], bool]:
        """A function that waits (yielding) while `conn`'s queue is half full.

        Replays and join buffers can be longer than WSAPP_SEND_QUEUE_BYTES; pacing them keeps
        a reading client from being closed as slow. Returns False once the connection
        is closed, or after closing it 1008 when it has not read for `replay_timeout`."""
        queued = getattr(conn, "queued", None)
        if queued is None:
            return lambda: True
        high = max(1, self.queue_limit // 2)
        timeout = self.replay_timeout

        def pace() -> bool:
            if queued() < high:
                return not getattr(conn, "closed", False)
            deadline = time.monotonic() + timeout
            while queued() >= high:
                if getattr(conn, "closed", False):
                    return False
                if time.monotonic() > deadline:
                    conn.close_nowait(CLOSE_POLICY, "too slow: history replay not read")
                    return False
                gevent.sleep(0.002)
            return not getattr(conn, "closed", False)

        return pace

    def leave(self, lm: LocalMember) -> None:
        """Leave the room (idempotent); the others get a ``leave`` event."""
        self._detach(lm)
        self._safe_leave(lm)

    def _safe_leave(self, lm: LocalMember) -> None:
        try:
            self.broker.leave(lm.room, lm.id)
        except Exception as exc:  # Redis down: presence expires with WSAPP_PRESENCE_TTL
            metrics.broker_error("leave")
            log.warning("chat leave of %s from %s not recorded: %s", lm.id, lm.room, exc)

    # ---- messages

    def publish(self, lm: LocalMember, item: events.ChatInput) -> Message | None:
        """Publish a member's message; ack it if it has a ref; error event on failure."""
        try:
            msg = self.broker.publish(lm.room, lm.name, item.text, sender=lm.sender, ref=item.ref)
        except OutcomeUnknown as exc:  # maybe published: never say "not sent"
            log.warning("chat publish to %s: outcome unknown: %s", lm.room, exc)
            metrics.broker_error("publish")
            reason = "the chat broker did not answer: the message may or may not have been sent"
            self.send_error(lm.conn, events.E_OUTCOME_UNKNOWN, reason, item.ref)
            return None
        except BrokerUnavailable as exc:
            log.warning("chat publish to %s failed: %s", lm.room, exc)
            metrics.broker_error("publish")
            self.send_error(
                lm.conn, events.E_UNAVAILABLE, "message not sent: chat broker unavailable", item.ref
            )
            return None
        if item.ref is not None:
            lm.conn.send_frame(self.framer(events.encode_ack(item.ref, msg.id)))
        return msg

    # ---- event members (wsapp.rooms)

    def attach_member(self, lm: LocalMember, presence: bool = True) -> None:
        """Put an event member in its room: subscribe the room here if it is new, and
        record it in the broker's presence (`presence`; not for a personal room).

        Raises BrokerUnavailable (nothing is left behind), ValueError if the connection is
        in that room already as a chat member."""
        room = self._rooms.get(lm.room)
        if room is not None and lm.id in room.members:
            raise ValueError(f"connection {lm.id} is a member of {lm.room} already")
        self._attach(lm)
        if presence:
            try:
                self.broker.join(lm.room, lm.member)
            except BaseException:
                self._detach(lm)
                raise

    def detach_member(self, lm: LocalMember, presence: bool = True) -> None:
        """Take an event member out of its room (idempotent); tell presence if `presence`."""
        self._detach(lm)
        if presence:
            self._safe_leave(lm)

    def send_error(
        self, conn: ChatConnection, code: str, reason: str, ref: str | None = None
    ) -> bool:
        return conn.send_frame(self.framer(events.encode_error(code, reason, ref)))

    def close(self) -> None:
        """Drop every local subscription (shutdown)."""
        for room in list(self._rooms.values()):
            if room.subscription is not None:
                try:
                    self.broker.unsubscribe(room.subscription)
                except Exception:
                    log.exception("unsubscribing room %s failed", room.name)
        self._rooms.clear()
