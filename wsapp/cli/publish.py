"""``python -m wsapp publish URL``: every stdin line becomes one chat message.

``tail -f app.log | python -m wsapp publish ws://host/chat/ops --name app``. Lines are
paced under the server's per-connection rate limit, sent with refs, kept until
acknowledged and sent again after a reconnect (the server deduplicates by client id and
ref, so a line whose ack was lost is not published twice). Reconnection is bounded by
``--retries`` (failed attempts in a row) and ``--timeout`` (seconds an outage may last,
and the wait for the last acks at the end of input).

Exit status: 0 once every line was acknowledged; 1 when some could not be delivered
(the summary says how many were refused, not sent, or unconfirmed: maybe delivered);
2 for a bad URL or option.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import IO, Any

from wsapp.client import Backoff, Client, ClientError, Rejected, Unconfirmed
from wsapp.client.urls import is_chat_url, normalize_url

from .output import format_event, printer, status_line
from .stdin import stdin_lines

__all__ = ["pacer", "run_publish"]


def pacer(rate: float | None, burst: int,
          clock: Callable[[], float] = time.monotonic) -> Callable[[], None]:
    """A function that sleeps as needed to keep calls under `rate` per second (token
    bucket of `burst`); None or 0: no pacing."""
    if not rate:
        return lambda: None
    state = {"tokens": float(burst), "at": clock()}

    def pace() -> None:
        now = clock()
        state["tokens"] = min(float(burst), state["tokens"] + (now - state["at"]) * rate)
        state["at"] = now
        if state["tokens"] < 1.0:
            time.sleep((1.0 - state["tokens"]) / rate)
            state["tokens"] = 1.0
            state["at"] = clock()
        state["tokens"] -= 1.0

    return pace


def _tally(futures: list[Future[Any]]) -> dict[str, int]:
    counts = {"acked": 0, "refused": 0, "unconfirmed": 0, "not sent": 0}
    for future in futures:
        exc = future.exception() if future.done() else Unconfirmed("pending")
        if exc is None:
            counts["acked"] += 1
        elif isinstance(exc, Rejected):
            counts["refused"] += 1
        elif isinstance(exc, Unconfirmed):
            counts["unconfirmed"] += 1
        else:
            counts["not sent"] += 1
    return counts


def run_publish(
    url: str,
    *,
    name: str | None = None,
    token: str | None = None,
    ca_file: str | None = None,
    retries: int | None = 5,
    timeout: float = 30.0,
    rate: float | None = 15.0,
    burst: int = 30,
    window: int = 256,
    backoff: Backoff | None = None,
    stdin: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Publish stdin's lines; returns the exit status (see the module docstring)."""
    err = printer(stderr if stderr is not None else sys.stderr)
    try:
        if not is_chat_url(normalize_url(url)):
            err(f"* publish needs a /chat/<room> URL, got {url}")
            return 2
        client = Client(max_tries=retries, max_time=timeout, ca_file=ca_file,
                        backoff=backoff or Backoff(), queue_events=False)
    except (ValueError, ClientError) as exc:
        err(f"* {exc}")
        return 2

    session = {"open": False}  # the first connection's failure is printed once, below

    def show(event: dict[str, Any]) -> None:
        if event.get("fatal") and not session["open"]:
            return
        line = format_event(event) if event.get("type") == "error" else None
        news = status_line(event)
        if line is not None:
            err(line)
        if news is not None and event.get("type") != "connect":
            err(f"* {news}")

    client.on("*", show)
    try:
        client.connect(url, name=name, token=token, retry=True)
    except ClientError as exc:
        client.close(0)
        err(f"* nothing published: {exc}")
        return 1
    session["open"] = True
    futures: list[Future[Any]] = []
    in_flight: deque[Future[Any]] = deque()
    pace = pacer(rate, burst)
    stopped = False
    try:
        for line in stdin_lines(stdin if stdin is not None else sys.stdin):
            if not line.strip():
                continue
            while len(in_flight) >= window and not client.ended:
                in_flight[0].exception(timeout)  # waits (an exception is tallied later)
                in_flight.popleft()
            if client.ended:
                stopped = True
                break
            pace()
            try:
                future = client.send(line, wait=False)
            except ClientError:
                stopped = True
                break
            futures.append(future)
            in_flight.append(future)
            while in_flight and in_flight[0].done():
                in_flight.popleft()
        client.flush(timeout)
    except KeyboardInterrupt:
        client.close(0)
        return 130
    except TimeoutError:
        stopped = True
    client.close(0)
    counts = _tally(futures)
    if counts["acked"] == len(futures) and not stopped:
        return 0
    bad = len(futures) - counts["acked"]
    detail = ", ".join(f"{n} {k}" for k, n in counts.items() if n and k != "acked")
    err(f"* {bad} of {len(futures)} lines not delivered"
        + (f" ({detail}; unconfirmed ones may have been)" if detail else "")
        + ("; the rest of the input was not read" if stopped else ""))
    return 1
