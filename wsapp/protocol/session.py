"""The server side of one WebSocket as a sans-I/O state machine (RFC 6455): bytes in, bytes out.

`Session` knows no sockets and no greenlets. The I/O layer feeds it what it reads
(`receive_data`, `receive_eof`), takes the messages it assembled (`events_received`)
and writes what it asks for (`data_to_send`); `close_expected()` says when the TCP
connection should be ended. Every protocol rule lives here, so each is tested with bytes
in and bytes out (tests/protocol/test_session.py):

- pings are answered with pongs carrying the same payload (5.5.2, 5.5.3); pongs are noted;
- a peer's close frame is answered with its status code (5.5.1), after the messages that
  came before it have been taken (they may still be answered);
- a violation fails the connection (7.1.7) with the right code: 1002 protocol error,
  1007 invalid UTF-8, 1009 message too big (or in too many fragments);
- after our close frame nothing but the peer's close is processed (7.1.2); the server
  ends the TCP connection first once the closing handshake is complete (7.1.1).

Model: `websockets`' `protocol.py` (same method names) and wsproto's `Connection`.
Data frames the I/O layer sends may be encoded outside (`frames.encode_messages`: one C
call for a batch) once `can_send()` is true; `send_text`/`send_binary` do the same here.
"""

from __future__ import annotations

from enum import Enum, IntEnum

from wsapp.protocol import frames
from wsapp.protocol.frames import Close, CloseCode, Opcode, Ping, Pong, ProtocolError


class State(IntEnum):
    """Connection states of RFC 6455 4 and 7."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class CloseCause(Enum):
    """Why a connection ended, recorded when it happens (metrics label, close log line)."""

    CLIENT = "client"  # the peer sent a close frame
    SERVER = "server"  # our own code closed it normally (view returned, close())
    PROTOCOL_ERROR = "protocol_error"  # 1002
    INVALID_DATA = "invalid_data"  # 1007
    TOO_BIG = "too_big"  # 1009
    POLICY = "policy"  # 1008 or another code from application code
    RATE_LIMIT = "rate_limit"  # 1008: over WSAPP_RATE_LIMIT
    SLOW_CONSUMER = "slow_consumer"  # 1008: over the outbound byte budget
    KEEPALIVE = "keepalive"  # no pong in time
    SHUTDOWN = "shutdown"  # 1001 on a planned shutdown
    INTERNAL_ERROR = "internal_error"  # 1011 from an exception
    CONNECTION_LOST = "connection_lost"  # TCP ended without a closing handshake (1006)
    ABORTED = "aborted"  # we cut TCP without a handshake


_FAILURE_CAUSES = {
    CloseCode.PROTOCOL_ERROR: CloseCause.PROTOCOL_ERROR,
    CloseCode.INVALID_DATA: CloseCause.INVALID_DATA,
    CloseCode.MESSAGE_TOO_BIG: CloseCause.TOO_BIG,
}


class Session:
    """One server-side connection's protocol state; see the module docstring."""

    __slots__ = (
        "state", "parser", "close_code", "close_reason", "close_initiator", "cause",
        "close_sent", "close_received", "failed", "pongs_received", "_events", "_out",
        "_deferred_close",
    )

    def __init__(
        self,
        max_message_bytes: int,
        max_fragments: int = 1 << 20,
        state: State = State.OPEN,
    ) -> None:
        self.state = state
        self.parser = frames.Parser(max_message_bytes, max_fragments=max_fragments)
        #: The code that ended the connection: sent or received in a close frame, or 1006.
        self.close_code: int | None = None
        self.close_reason = ""
        self.close_initiator = ""  # "server", "client" or "" before closing
        self.cause: CloseCause | None = None
        self.close_sent = False
        self.close_received = False
        #: True once the connection was failed (7.1.7): linger, then end TCP.
        self.failed = False
        self.pongs_received = 0
        self._events: list[str | bytes] = []
        self._out: list[bytes] = []
        self._deferred_close: Close | None = None

    # --- input ------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the peer."""
        if self.state is State.CLOSED or self.close_received or self.failed:
            return
        parser = self.parser
        controls = parser.controls
        try:
            events = parser.feed(data)
        except ProtocolError as exc:
            self.fail(exc.code, exc.reason)
            return
        if parser.controls == controls:
            # Only data messages (the common case): no per-event dispatch.
            if self.state is State.OPEN:
                self._events.extend(events)
        else:
            self._dispatch(events)
        # A violation after some messages is pending in `parser.error`: those messages are
        # handed out first (they may still be answered), then data_to_send() fails us.

    def _dispatch(self, events: list[frames.Event]) -> None:
        for event in events:
            kind = type(event)
            if kind is str or kind is bytes:
                if self.state is State.OPEN:
                    self._events.append(event)  # type: ignore[arg-type]
            elif kind is Ping:
                if self.state is State.OPEN:
                    self._out.append(frames.encode_frame(Opcode.PONG, event.payload))  # type: ignore[union-attr]
            elif kind is Pong:
                self.pongs_received += 1
            elif kind is Close:
                if self._events and self.state is State.OPEN:
                    # Messages before the close are handed out first; the close is answered
                    # at the first data_to_send() after they were taken.
                    self._deferred_close = event  # type: ignore[assignment]
                else:
                    self._on_close(event)  # type: ignore[arg-type]
                return  # nothing after a close frame is processed (5.5.1)

    def receive_eof(self) -> None:
        """The peer ended the TCP connection (or it broke)."""
        if self.state is State.CLOSED:
            return
        if not self.close_received and self.close_code is None:
            self._set_close(
                CloseCode.ABNORMAL, "connection lost", "client", CloseCause.CONNECTION_LOST
            )
        elif not self.close_received and self.cause is None:
            self.cause = CloseCause.CONNECTION_LOST
        self.state = State.CLOSED

    def events_received(self) -> list[str | bytes]:
        """The messages completed since the last call (`str` text, `bytes` binary), in order."""
        events = self._events
        if not events:
            return events
        self._events = []
        return events

    def has_events(self) -> bool:
        return bool(self._events)

    def close_pending(self) -> bool:
        """A close frame arrived behind messages not taken yet; it is answered after them."""
        return self._deferred_close is not None

    # --- output -----------------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """Frames to write, in order (pongs, close frames, messages sent through here)."""
        if self._deferred_close is not None and not self._events:
            event, self._deferred_close = self._deferred_close, None
            self._on_close(event)
        if self.parser.error is not None and not self.failed and not self._events:
            error = self.parser.error
            self.fail(error.code, error.reason)
        out = self._out
        if not out:
            return out
        self._out = []
        return out

    def close_expected(self) -> bool:
        """Whether the I/O layer should end the TCP connection once `data_to_send` is out:
        the closing handshake is complete, or the connection was failed."""
        return self.failed or (self.close_sent and self.close_received)

    def can_send(self) -> bool:
        return self.state is State.OPEN

    def send_text(self, text: str) -> None:
        self._send_data(frames.encode_message(text))

    def send_binary(self, data: bytes) -> None:
        self._send_data(frames.encode_message(bytes(data)))

    def _send_data(self, frame: bytes) -> None:
        if self.state is not State.OPEN:
            raise frames.ProtocolError(CloseCode.ABNORMAL, "connection is not open")
        self._out.append(frame)

    def ping(self, payload: bytes = b"") -> None:
        if self.state is State.OPEN:
            self._out.append(frames.encode_frame(Opcode.PING, payload))

    def pong(self, payload: bytes = b"") -> None:
        if self.state is State.OPEN:
            self._out.append(frames.encode_frame(Opcode.PONG, payload))

    def close(
        self, code: int = CloseCode.NORMAL, reason: str = "", cause: CloseCause = CloseCause.SERVER
    ) -> None:
        """Start the closing handshake (7.1.2); no effect unless OPEN."""
        if self.state is not State.OPEN:
            return
        self._set_close(code, reason, "server", cause)
        self._out.append(frames.encode_close(code, reason))
        self.close_sent = True
        self.state = State.CLOSING

    def fail(self, code: int, reason: str, cause: CloseCause | None = None) -> None:
        """Fail the connection (7.1.7): a close frame with `code` if still OPEN, then end TCP."""
        if cause is None:
            cause = _FAILURE_CAUSES.get(code, CloseCause.POLICY)
        if self.state is State.OPEN:
            self.close(code, reason, cause)
        self.failed = True
        self._events.clear()
        self._deferred_close = None

    def abort(self, code: int, reason: str, cause: CloseCause) -> None:
        """Record why TCP is being cut without a handshake (dead or hopelessly slow peer)."""
        if self.close_code is None:
            self._set_close(code, reason, "server", cause)
        self.state = State.CLOSED

    def _on_close(self, event: Close) -> None:
        self.close_received = True
        if self.state is State.OPEN:
            # Peer-initiated: echo its code (5.5.1); no code received means 1005 (7.1.5),
            # and we answer 1000.
            reply = event.code if event.code is not None else CloseCode.NORMAL
            self._set_close(reply, event.reason, "client", CloseCause.CLIENT)
            self._out.append(frames.encode_close(reply, ""))
            self.close_sent = True
            self.state = State.CLOSING
        # Otherwise this is the reply to our own close: the handshake is complete.

    def _set_close(self, code: int, reason: str, initiator: str, cause: CloseCause) -> None:
        self.close_code, self.close_reason = code, reason
        self.close_initiator, self.cause = initiator, cause
