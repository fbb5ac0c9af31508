"""Signed connection tokens for `/chat/<room>?token=...` (issue 6).

A token is an itsdangerous `URLSafeTimedSerializer` signature, keyed by `WSAPP_SECRET`,
over ``{"r": [rooms], "n": name, "e": expiry (Unix s)}``. It admits its holder to the
listed rooms (``"*"`` means any room) under the given name until the expiry; a chat
socket admitted with a token is closed with 4001 "token expired" at that moment
(`wsapp.chat.views.TokenExpiry`). Tokens are bearer credentials: keep them short-lived.

    python -m wsapp token --room lobby --name alice --ttl 3600
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from wsapp.settings import Settings, SettingsError

SALT = "wsapp.chat-token.v1"
MAX_NAME_CHARS = 32
ANY_ROOM = "*"


class TokenError(ValueError):
    """A token we refuse; `reason` is a short sentence safe to show the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TokenClaims:
    rooms: tuple[str, ...]
    name: str
    expires: float

    def allows(self, room: str) -> bool:
        return ANY_ROOM in self.rooms or room in self.rooms


def _serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=SALT)


def _check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME_CHARS or not name.isprintable():
        raise ValueError(f"token name must be 1 to {MAX_NAME_CHARS} printable characters")
    return name


def issue_token(
    settings: Settings,
    rooms: list[str] | tuple[str, ...],
    name: str,
    ttl: float,
    now: float | None = None,
) -> str:
    """A token for `rooms` and `name`, valid for `ttl` seconds. Needs WSAPP_SECRET."""
    if not settings.secret:
        raise SettingsError("WSAPP_SECRET must be set to issue tokens")
    rooms = [r.strip() for r in rooms if r.strip()]
    if not rooms:
        raise ValueError("a token needs at least one room")
    now = time.time() if now is None else now
    claims = {"r": rooms, "n": _check_name(name), "e": round(now + ttl, 3)}
    return _serializer(settings.secret).dumps(claims)


def verify_token(settings: Settings, token: str, now: float | None = None) -> TokenClaims:
    """The claims of a valid, unexpired token; raises TokenError otherwise."""
    if not settings.secret:
        raise TokenError("tokens are not enabled on this server")
    if not token or len(token) > 4096:
        raise TokenError("invalid token")
    try:
        data = _serializer(settings.secret).loads(token)
    except BadSignature:
        raise TokenError("invalid token") from None
    try:
        rooms = tuple(str(r) for r in data["r"])
        name = _check_name(str(data["n"]))
        expires = float(data["e"])
    except (KeyError, TypeError, ValueError):
        raise TokenError("invalid token") from None
    now = time.time() if now is None else now
    if now >= expires:
        raise TokenError("token expired")
    return TokenClaims(rooms, name, expires)
