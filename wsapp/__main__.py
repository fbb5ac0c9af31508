"""Command line: `python -m wsapp serve | client URL | publish URL | token`."""

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import sys  # noqa: E402

from wsapp import __version__  # noqa: E402
from wsapp.cli.commands import add_client_commands, run_client_command  # noqa: E402
from wsapp.settings import Settings, SettingsError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wsapp", description="wsapp WebSocket echo and chat service"
    )
    parser.add_argument("--version", action="version", version=f"wsapp {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the embedded gevent server",
        description="Serve a WSGI application with wsapp's handler (limits, keepalive, 1001 on "
        "SIGTERM). Without APP: wsapp's own echo and chat service.",
    )
    serve.add_argument(
        "app",
        nargs="?",
        metavar="APP",
        help="module:app, module:create_app() (a factory call), or module (= module:app), "
        "imported from the current directory",
    )
    serve.add_argument("--host", help="listen address (default: WSAPP_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: WSAPP_PORT or 8000)")

    add_client_commands(sub)

    token = sub.add_parser("token", help="print a signed connection token (needs WSAPP_SECRET)")
    token.add_argument(
        "--room", action="append", required=True, help="room the token admits (repeatable)"
    )
    token.add_argument("--name", required=True)
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")

    args = parser.parse_args(argv)
    if args.command in ("client", "publish"):  # clients need no server settings
        return run_client_command(args)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"wsapp: configuration error: {exc}", file=sys.stderr)
        return 2

    if args.command == "serve":
        from wsapp.server import run as run_server

        return run_server(args.app, settings, args.host, args.port)
    if args.command == "token":
        from wsapp.tokens import issue_token

        try:
            print(issue_token(settings, rooms=args.room, name=args.name, ttl=args.ttl))
        except SettingsError as exc:
            print(f"wsapp: configuration error: {exc}", file=sys.stderr)
            return 2
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
