"""`websockets` (asyncio) echo server with its defaults, for comparison (bench kind "websockets").

Its default compression is permessage-deflate with 12-bit windows and memLevel 5 (the
`ServerPerMessageDeflateFactory` of `enable_server_permessage_deflate`); `max_size` is
raised to the same 20 MB the wsapp servers get in the benchmark. `/echo` sends every
message back; `GET /healthz` answers 200 so bench/procs.py sees it is up; anything else
is 404.
"""

from __future__ import annotations

import argparse
import asyncio
from http import HTTPStatus

from websockets.asyncio.server import serve


async def echo(ws) -> None:
    async for message in ws:
        await ws.send(message)


def route(connection, request):
    if request.path == "/healthz":
        return connection.respond(HTTPStatus.OK, "ok\n")
    if request.path != "/echo":
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
    return None


async def main(port: int) -> None:
    async with serve(echo, "127.0.0.1", port, process_request=route, max_size=20_000_000) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
