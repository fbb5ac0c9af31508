"""``python -m wsapp client URL``: stdin lines out, events in.

Chat rooms (``/chat/<room>``): each line is a message (acknowledged by the server, kept
and sent again after a reconnect); events print on stdout, connection news on stderr;
reconnects resume with ``since=`` so nothing said meanwhile is missed. Plain endpoints
(``/echo``): each line is one text message and replies print marked ``< ``.

Exit status: 0 when every line was delivered (chat: acknowledged), 1 otherwise or when
the connection failed, 2 for a bad URL or option, 130 on Ctrl-C.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from typing import IO, Any

from wsapp.client import Backoff, Client, ClientError, InvalidURL

from .output import format_event, printer, status_line
from .stdin import stdin_lines

__all__ = ["run_client"]

_EOF = object()
REPLY_WAIT = 2.0  # seconds an echo-style endpoint has to answer what was sent, after EOF


def _line_reader(stream: IO[str]) -> queue.Queue[Any]:
    """Lines from `stream` on a queue (so the main loop also notices the client ending)."""
    lines: queue.Queue[Any] = queue.Queue(maxsize=64)

    def pump() -> None:
        try:
            for line in stdin_lines(stream):
                lines.put(line)
        finally:
            lines.put(_EOF)

    threading.Thread(target=pump, name="wsapp-cli-stdin", daemon=True).start()
    return lines


def run_client(
    url: str,
    *,
    name: str | None = None,
    token: str | None = None,
    since: str | None = None,
    ca_file: str | None = None,
    retries: int | None = None,
    timeout: float | None = None,
    drain_timeout: float = 5.0,
    backoff: Backoff | None = None,
    stdin: IO[str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Run an interactive session; returns the exit status.

    `retries`/`timeout` bound reconnection (attempts in a row, seconds per outage) and
    make the first connection retried too; without them the first failure ends it."""
    out = printer(stdout if stdout is not None else sys.stdout)
    err = printer(stderr if stderr is not None else sys.stderr)
    replies = [0]
    session = {"open": False}  # the first connection's failure is printed once, below

    def show(event: dict[str, Any]) -> None:
        if event.get("type") == "message" and "name" not in event:
            replies[0] += 1
        if event.get("fatal") and not session["open"]:
            return
        line = format_event(event)
        if line is not None:
            out(line)
        news = status_line(event)
        if news is not None:
            err(f"* {news}")

    try:
        client = Client(max_tries=retries, max_time=timeout, ca_file=ca_file,
                        backoff=backoff or Backoff(), queue_events=False)
    except (ValueError, ClientError) as exc:
        err(f"* {exc}")
        return 2
    client.on("*", show)
    try:
        client.connect(url, name=name, token=token, since=since,
                       retry=retries is not None or timeout is not None)
    except InvalidURL as exc:
        err(f"* {exc}")
        return 2
    except ClientError as exc:
        client.close(0)
        err(f"* {exc}")
        return 1
    session["open"] = True
    lines = _line_reader(stdin if stdin is not None else sys.stdin)
    futures: list[Any] = []
    try:
        while not client.ended:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is _EOF:
                break
            if client.is_chat and not line.strip():
                continue
            try:
                futures.append(client.send(line, wait=False))
            except ClientError as exc:
                err(f"* not sent: {exc}")
                break
        if client.is_chat:
            client.flush(drain_timeout)
        else:
            deadline = time.monotonic() + REPLY_WAIT
            while replies[0] < len(futures) and not client.ended and time.monotonic() < deadline:
                time.sleep(0.01)
    except KeyboardInterrupt:
        client.close(0)
        return 130
    client.close(0)
    missing = sum(1 for f in futures if not f.done() or f.exception() is not None)
    if missing:
        err(f"* {missing} of {len(futures)} lines not confirmed as delivered")
    return 1 if missing or (client.error is not None and not futures) else 0
