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

permessage-deflate (RFC 7692), once `enable_deflate` has the negotiated `Agreement`: the
parser takes RSV1 on a message's first frame and inflates within the size limit (1009
past it, 1007 for data that does not inflate, 1002 for RSV1 on a continuation or control
frame); `encode_message` compresses messages of at least the threshold, with this
connection's own compressor (context takeover) or, under server_no_context_takeover, the
process's shared one, whose output any member of a room can take as it is.
"""

from __future__ import annotations

from enum import Enum, IntEnum

from wsapp.protocol import compression, frames
from wsapp.protocol.deflate import Agreement
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
        "_deferred_close", "deflate", "compressor", "deflate_threshold",
    )

    def __init__(
        self,
        max_message_bytes: int,
        max_fragments: int = 1 << 20,
        state: State = State.OPEN,
        prealloc_bytes: int = frames.PREALLOC_BYTES,
    ) -> None:
        self.state = state
        self.parser = frames.Parser(
            max_message_bytes, max_fragments=max_fragments, prealloc_bytes=prealloc_bytes
        )
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
        #: The permessage-deflate agreement, None when not negotiated.
        self.deflate: Agreement | None = None
        #: What compresses our messages: a `compression.Deflater` of our own (context
        #: takeover) or the process's `SharedDeflater`; None without deflate.
        self.compressor: compression.Compressor | None = None
        self.deflate_threshold = 0

    def enable_deflate(self, agreement: Agreement) -> None:
        """Use permessage-deflate as negotiated in the opening handshake."""
        settings = agreement.settings
        self.deflate = agreement
        self.deflate_threshold = settings.threshold
        self.parser.inflater = compression.Inflater(
            agreement.client_max_window_bits, not agreement.client_no_context_takeover
        )
        bits = agreement.server_max_window_bits
        if agreement.server_no_context_takeover:
            self.compressor = compression.shared_deflater(settings.level, bits, settings.mem_level)
        else:
            self.compressor = compression.Deflater(settings.level, bits, settings.mem_level)

    def release_compression(self, inflater: bool = True) -> None:
        """Let zlib state go: the compressor once we send no more data messages (CLOSING),
        the inflater too once nothing more is read (CLOSED)."""
        compressor = self.compressor
        if type(compressor) is compression.Deflater:
            compressor.release()
        if inflater and self.parser.inflater is not None:
            self.parser.inflater.release()

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
        if self.deflate is not None:
            self.release_compression()

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
        self._send_data(self.encode_message(text))

    def send_binary(self, data: bytes) -> None:
        self._send_data(self.encode_message(bytes(data)))

    def encode_message(self, message: str | bytes, binary: bool | None = None) -> bytes:
        """One server frame for `message` (text for `str` unless `binary`, binary for
        bytes), compressed when permessage-deflate is on and it reaches the threshold."""
        compressor = self.compressor
        if compressor is None and binary is None:
            return frames.encode_message(message)
        if binary is None:
            binary = type(message) is not str
        payload = message.encode("utf-8") if isinstance(message, str) else bytes(message)
        opcode = Opcode.BINARY if binary else Opcode.TEXT
        if compressor is None or len(payload) < self.deflate_threshold:
            return frames.encode_frame(opcode, payload)
        return compression.compressed_frame(opcode, compressor.compress(payload))

    def encode_parts(self, message: str | bytes, binary: bool | None = None) -> tuple[bytes, ...]:
        """`encode_message` as the buffers to send: a large uncompressed binary message is
        its header and the payload object itself (`frames.encode_parts`, no copy)."""
        if self.compressor is None and (binary is None or binary is (type(message) is not str)):
            return frames.encode_parts(message)  # the message's own type decides
        return (self.encode_message(message, binary),)

    def encode_messages(self, messages: list[str | bytes]) -> list[bytes]:
        """`encode_message` for each (one C call for the batch without deflate)."""
        if self.compressor is None:
            return frames.encode_messages(messages)
        encode = self.encode_message
        return [encode(message) for message in messages]

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
        if self.deflate is not None:
            self.release_compression(inflater=False)

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
        if self.deflate is not None:
            self.release_compression()

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
            if self.deflate is not None:
                self.release_compression(inflater=False)
        # Otherwise this is the reply to our own close: the handshake is complete.

    def _set_close(self, code: int, reason: str, initiator: str, cause: CloseCause) -> None:
        self.close_code, self.close_reason = code, reason
        self.close_initiator, self.cause = initiator, cause
