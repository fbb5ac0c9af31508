"""The ``client`` and ``publish`` commands of ``python -m wsapp``: arguments and dispatch."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_client_commands", "run_client_command"]

URL_HELP = ("ws:// or wss:// URL (http://, https:// and HOST:PORT/PATH are taken as ws:// and "
            "wss://); /chat/<room> joins a chat room, any other path is a plain endpoint")

CLIENT_EXAMPLES = """\
examples:
  python -m wsapp client ws://127.0.0.1:8000/chat/lobby --name ann
  python -m wsapp client 127.0.0.1:8000/echo
  python -m wsapp client wss://chat.example.com/chat/ops --token "$TOKEN" --ca-file ca.pem
  python -m wsapp client ws://127.0.0.1:8000/chat/lobby --retries 10 --timeout 60

Chat: each line you type is a message; the room's events print on stdout and connection
news on stderr (lines starting with *). After a drop it reconnects with backoff and
resumes where it left off (since=), and lines typed meanwhile are sent once it is back.
Plain endpoints: each line is one text message; replies print marked '< '.
Exit status: 0 when every line was delivered, 1 otherwise, 2 for a bad URL or option."""

PUBLISH_EXAMPLES = """\
examples:
  tail -f app.log | python -m wsapp publish ws://127.0.0.1:8000/chat/ops --name app
  echo "deploy done" | python -m wsapp publish ws://127.0.0.1:8000/chat/ops --retries 3 --timeout 10

Each non-empty line becomes one message, acknowledged by the server and sent again after a
reconnect without being published twice. Exit status: 0 once every line was acknowledged;
1 when some could not be delivered within --retries / --timeout (a summary says which);
2 for a bad URL or option."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be a number of seconds >= 0")
    return value


def _common(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("url", metavar="URL", help=URL_HELP)
    cmd.add_argument("--name", help="nickname in the room (default: the server's guest-XXXX)")
    cmd.add_argument("--token", help="signed connection token (python -m wsapp token)")
    cmd.add_argument("--ca-file", metavar="PEM",
                     help="CA certificate(s) to trust for wss:// (default: the system's)")


def add_client_commands(sub: Any) -> None:
    """Add ``client`` and ``publish`` to an argparse subparsers object."""
    raw = argparse.RawDescriptionHelpFormatter
    client = sub.add_parser(
        "client", help="interactive client: stdin lines out, events in",
        description="Talk to a wsapp chat room or a plain WebSocket endpoint.",
        epilog=CLIENT_EXAMPLES, formatter_class=raw)
    _common(client)
    client.add_argument("--since", metavar="ID", help="resume after this message id")
    client.add_argument("--retries", type=_positive_int, metavar="N",
                        help="give up after N failed connection attempts in a row "
                        "(default: first attempt only, then no limit)")
    client.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                        help="give up when an outage lasts longer (default: no limit)")

    publish = sub.add_parser(
        "publish", help="send each stdin line as a chat message",
        description="Publish stdin's lines to a wsapp chat room, each acknowledged.",
        epilog=PUBLISH_EXAMPLES, formatter_class=raw)
    _common(publish)
    publish.add_argument("--retries", type=_positive_int, default=5, metavar="N",
                         help="give up after N failed connection attempts in a row (default 5)")
    publish.add_argument("--timeout", type=_seconds, default=30.0, metavar="SECONDS",
                         help="give up when an outage lasts longer, or when lines are still "
                         "unacknowledged this long after the input ended (default 30)")
    publish.add_argument("--rate", type=_seconds, default=15.0, metavar="PER_SECOND",
                         help="at most this many lines per second (default 15, under the "
                         "server's default WSAPP_RATE_LIMIT of 20); 0: no pacing")


def run_client_command(args: argparse.Namespace) -> int:
    """Run ``client`` or ``publish`` with parsed `args`; returns the exit status."""
    if args.command == "client":
        from .interactive import run_client

        return run_client(args.url, name=args.name, token=args.token, since=args.since,
                          ca_file=args.ca_file, retries=args.retries, timeout=args.timeout)
    from .publish import run_publish

    return run_publish(args.url, name=args.name, token=args.token, ca_file=args.ca_file,
                       retries=args.retries, timeout=args.timeout, rate=args.rate or None)
