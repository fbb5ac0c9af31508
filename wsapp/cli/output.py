"""What the command line prints: server events and connection changes, for people.

Events go to stdout, one line each; connection news (connected, closed, retrying,
gave up) go to stderr prefixed with ``*``, so ``client ... > log`` keeps the room's
traffic apart from the client's own story. Replies from plain endpoints are marked
``< `` so they cannot be mistaken for typed input.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime
from typing import IO, Any

__all__ = ["format_event", "printer", "status_line"]

REPLY_MARK = "< "


def _clock(ts: object) -> str:
    if isinstance(ts, int | float) and not isinstance(ts, bool):
        try:
            return datetime.fromtimestamp(ts / 1000).strftime("%H:%M:%S")
        except (OverflowError, OSError, ValueError):
            pass
    return "--:--:--"


def format_event(event: dict[str, Any]) -> str | None:
    """One server event as a line for stdout (None: nothing to print)."""
    kind = event.get("type")
    if kind == "message":
        if "name" not in event:  # a plain endpoint's reply
            if "data" in event:
                return f"{REPLY_MARK}[binary, {len(event['data'])} bytes]"
            return f"{REPLY_MARK}{event.get('text')}"
        tail = "  (history)" if event.get("replay") else ""
        return f"[{_clock(event.get('ts'))}] <{event.get('name')}> {event.get('text')}{tail}"
    if kind == "event":
        if event.get("event") == "typing":  # the chat page's typing notices: noise here
            return None
        sender = event.get("sender")
        who = f"<{sender.get('name')}> " if isinstance(sender, dict) else ""
        return f"~ {who}{event.get('event')} {json.dumps(event.get('data'), ensure_ascii=False)}"
    if kind == "join":
        return f"* {event.get('name')} joined"
    if kind == "leave":
        return f"* {event.get('name')} left"
    if kind == "error" and event.get("source") != "client":
        return f"! {event.get('code')}: {event.get('reason')}"
    return None


def status_line(event: dict[str, Any]) -> str | None:
    """Connection news for stderr (without the ``* `` prefix), or None."""
    kind = event.get("type")
    if kind == "connect":
        hello = event.get("hello")
        again = "reconnected" if event.get("reconnect") else "connected"
        if not hello:
            return again
        members = ", ".join(str(m) for m in hello.get("members", []))
        return (f"{again}: #{hello.get('room')} as {hello.get('name')} "
                f"(id {hello.get('id')}); here: {members}")
    if kind == "disconnect":
        code, reason, by = event.get("code"), event.get("reason") or "", event.get("by")
        detail = f"{code} {reason}".strip()
        if by == "server":
            text = f"closed by the server ({detail})"
        elif by == "client":
            text = f"closed by the client ({detail})"
        else:
            text = "connection lost (no close frame)"
        return text + ("; reconnecting" if event.get("reconnecting") else "")
    if kind == "error" and event.get("source") == "client":
        if event.get("fatal"):
            return str(event.get("reason"))
        return (f"{event.get('reason')}; retrying in {event.get('delay', 0):.1f} s "
                f"(attempt {event.get('attempt')})")
    if kind == "gap":
        return "some messages while you were away are no longer in history"
    return None


def printer(out: IO[str]) -> Callable[[str], None]:
    """A thread-safe line writer that flushes every line."""
    lock = threading.Lock()

    def emit(line: str) -> None:
        with lock:
            out.write(line + "\n")
            out.flush()

    return emit
