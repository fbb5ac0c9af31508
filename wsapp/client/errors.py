"""Exceptions of :mod:`wsapp.client`, and the translation of `websockets`' exceptions.

Every failure a program can meet is a :class:`ClientError`. Connection failures say what
happened in words a user can act on: :class:`Refused` carries the HTTP status and the
server's one-line reason from the response body, :class:`Unauthorized` is a refusal with
401 or 403, :class:`TLSError` a failed TLS handshake (an unknown or mismatched
certificate), :class:`InvalidURL` a URL that cannot name a WebSocket endpoint, and
:class:`GaveUp` the end of the reconnection budget (tries and time).

Send failures never lie about delivery: :class:`NotSent` means the message was certainly
not delivered (never written, refused by the server with an ``error`` event, or answered
``unavailable``); :class:`Unconfirmed` means it was written but no ``ack`` came, so it may
or may not have been delivered; :class:`AckTimeout` means no ``ack`` came within the wait
and the message is still queued (it will be retried and may still be delivered).
"""

from __future__ import annotations

import ssl
from typing import Any

from websockets.exceptions import InvalidHandshake, InvalidMessage, InvalidStatus, InvalidURI

__all__ = [
    "AckTimeout",
    "ClientClosed",
    "ClientError",
    "ConnectFailed",
    "GaveUp",
    "InvalidURL",
    "NotSent",
    "OutboxFull",
    "Refused",
    "Rejected",
    "SendError",
    "TLSError",
    "Unauthorized",
    "Unconfirmed",
    "connect_error",
]

#: Statuses after which trying again later may work (RFC 9110 15.5.9, 15.6; RFC 6585 4).
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

MAX_REASON_CHARS = 300


class ClientError(Exception):
    """Base class of every error raised by :mod:`wsapp.client`."""

    #: True when trying again with the same parameters cannot help.
    permanent: bool = False


class InvalidURL(ClientError, ValueError):
    """The URL cannot name a WebSocket endpoint (scheme, host or port)."""

    permanent = True


class ConnectFailed(ClientError):
    """The connection could not be opened (refused, unreachable, timed out, not a
    WebSocket server); trying again later may work."""


class TLSError(ConnectFailed):
    """The TLS handshake failed, e.g. the server's certificate is not trusted (pass
    ``ca_file=``) or is not for this host name."""

    permanent = True


class Refused(ConnectFailed):
    """The server answered the WebSocket handshake with an HTTP error status.

    ``status`` is the status code, ``reason`` the first line of the response body (wsapp
    says there why, e.g. ``invalid room name: ...``), possibly empty."""

    def __init__(self, status: int, reason: str, url: str = "") -> None:
        self.status = status
        self.reason = reason
        self.url = url
        self.permanent = status not in TRANSIENT_STATUSES
        text = f"refused: HTTP {status}"
        super().__init__(f"{text}: {reason}" if reason else text)


class Unauthorized(Refused):
    """A refusal with 401 (no valid token) or 403 (not allowed here, e.g. the Origin)."""


class GaveUp(ClientError):
    """Reconnecting stopped at its limit (``max_tries`` attempts or ``max_time`` seconds).

    ``last_error`` is the error of the last attempt."""

    permanent = True

    def __init__(self, tries: int, elapsed: float, last_error: BaseException | None) -> None:
        self.tries = tries
        self.elapsed = elapsed
        self.last_error = last_error
        last = f": last error: {last_error}" if last_error is not None else ""
        super().__init__(f"gave up connecting after {tries} attempts in {elapsed:.1f} s{last}")


class ClientClosed(ClientError):
    """The client is closed (by the program, a permanent error, or the server's 1000)."""


class SendError(ClientError):
    """A send that did not end with an ``ack``. ``ref`` is the message's correlation id."""

    def __init__(self, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.ref = ref


class NotSent(SendError):
    """The message was certainly not delivered and never will be."""


class Rejected(NotSent):
    """The server refused the message with an ``error`` event (``code``, ``reason``),
    e.g. ``message_too_large``: sending it again would be refused again."""

    def __init__(self, code: str, reason: str, ref: str | None = None) -> None:
        super().__init__(f"{code}: {reason}", ref)
        self.code = code
        self.reason = reason


class OutboxFull(NotSent):
    """The outbox already holds ``outbox_bytes`` of unacknowledged messages."""


class Unconfirmed(SendError):
    """The message was written but never acknowledged (the client closed or gave up, or
    its ref is older than the server's WSAPP_REF_TTL): it may or may not be delivered."""


class AckTimeout(SendError, TimeoutError):
    """No ``ack`` within the wait. The message is still in the outbox and may still be
    delivered (at least once, and once only while the server remembers its ref);
    ``future`` settles when its fate is known."""

    def __init__(self, message: str, ref: str | None, future: Any) -> None:
        super().__init__(message, ref)
        self.future = future


def _reason_of(body: bytes | None) -> str:
    """The first line of a refusal's body, printable and bounded."""
    if not body:
        return ""
    line = body.decode("utf-8", "replace").strip().splitlines()
    text = line[0].strip() if line else ""
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text[:MAX_REASON_CHARS]


def connect_error(exc: BaseException, url: str) -> ClientError:
    """The :class:`ClientError` that describes a failed connection attempt to `url`."""
    if isinstance(exc, ClientError):
        return exc
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        reason = _reason_of(exc.response.body)
        cls = Unauthorized if status in (401, 403) else Refused
        return cls(status, reason, url)
    if isinstance(exc, InvalidURI):
        return InvalidURL(f"invalid WebSocket URL {url!r}: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = getattr(exc, "verify_message", None) or str(exc)
        return TLSError(f"TLS: the server's certificate is not trusted ({detail}) at {url}; "
                        "give its CA with ca_file=")
    if isinstance(exc, ssl.SSLError):
        return TLSError(f"TLS handshake failed with {url}: {exc.reason or exc}")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectFailed(f"cannot connect to {url}: connection refused")
    if isinstance(exc, TimeoutError):
        return ConnectFailed(f"cannot connect to {url}: timed out")
    if isinstance(exc, OSError):
        return ConnectFailed(f"cannot connect to {url}: {exc.strerror or exc}")
    if isinstance(exc, InvalidMessage):
        cause = exc.__cause__
        if isinstance(cause, EOFError):
            return ConnectFailed(f"cannot connect to {url}: the server closed the connection")
        return ConnectFailed(f"{url} did not answer as a WebSocket server: {exc}")
    if isinstance(exc, InvalidHandshake):
        return ConnectFailed(f"WebSocket handshake with {url} failed: {exc}")
    return ConnectFailed(f"cannot connect to {url}: {exc!r}")
