"""Pop tasks from a Redis list and send each into a wsapp chat room: nothing lost, nothing
twice, while the chat server restarts (or this worker crashes).

    python worker.py ws://127.0.0.1:8000/chat/ops --redis redis://127.0.0.1:6379/0 --queue tasks
    redis-cli LPUSH tasks '{"id": "t-1", "text": "deploy v1.2 done"}'

Tasks are JSON objects with a unique ``id`` and a ``text`` (anything else in the object
is kept: with ``--emit NAME`` the whole task is sent as a named event instead; events are
not kept by the server, so readers that are away miss them). Producers
``LPUSH``; the worker takes from the other end, so tasks go out in the order they came.

Why nothing is lost: ``BLMOVE`` moves a task atomically from the queue to a processing
list, and the task leaves that list only once the server acknowledged it. A worker that
dies mid-task finds it there when it starts again and sends it again.

Why nothing is sent twice: every task is sent with ``ref=<task id>`` from a connection
that says ``?client=<client id>`` (the same across reconnects and restarts of this
worker). wsapp remembers (client id, ref) for WSAPP_REF_TTL seconds (default 300) and
answers a repeat with the first copy's id instead of publishing it again. So a task whose
ack was lost (the server was killed after publishing it) is published once.

While the server is down, :class:`wsapp.client.AsyncClient` reconnects with backoff
(no limit here: ``max_time=None``) and resends what is unacknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import signal
import sys

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from wsapp.client import AsyncClient, Backoff, Rejected

log = logging.getLogger("redis_worker")


def parse_task(raw: bytes) -> dict:
    """The task object; a malformed one raises ValueError (it goes to the failed list)."""
    task = json.loads(raw)
    if not isinstance(task, dict) or not isinstance(task.get("id"), str | int):
        raise ValueError("a task is a JSON object with an id")
    if not 1 <= len(str(task["id"])) <= 120:
        raise ValueError("task ids are 1 to 120 characters")
    return task


class Worker:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.queue = args.queue
        self.processing = f"{args.queue}:processing"
        self.failed = f"{args.queue}:failed"
        self.redis = aioredis.Redis.from_url(args.redis)
        self.client = AsyncClient(backoff=Backoff(initial=0.2, maximum=2.0), max_time=None,
                                  ack_timeout=args.ack_timeout)
        self.stopping = asyncio.Event()
        self.sent = 0

    async def deliver(self, raw: bytes) -> None:
        """Send one task and wait for its ack, then drop it from the processing list."""
        try:
            task = parse_task(raw)
        except ValueError as exc:
            log.warning("malformed task %r: %s", raw[:80], exc)
            await self.set_aside(raw)
            return
        ref = f"task-{task['id']}"
        try:
            if self.args.emit:
                future = await self.client.emit(self.args.emit, task, ref=ref, wait=False)
            else:
                text = task.get("text") if isinstance(task.get("text"), str) else json.dumps(task)
                future = await self.client.send(text, ref=ref, wait=False)
            message_id = await future  # acked: published exactly once
        except Rejected as exc:  # the server refused it (e.g. too large): never published
            log.warning("task %s refused: %s", task["id"], exc)
            await self.set_aside(raw)
            return
        await self.redis.lrem(self.processing, 1, raw)
        self.sent += 1
        log.info("task %s sent as %s", task["id"], message_id)

    async def set_aside(self, raw: bytes) -> None:
        """Move a task that can never be sent to the failed list (one transaction)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.lpush(self.failed, raw).lrem(self.processing, 1, raw).execute()

    async def run(self) -> int:
        """Work until SIGINT/SIGTERM. A task in flight then stays in the processing list
        and is sent again (once) by the next run."""
        work = asyncio.create_task(self.work())
        stop = asyncio.create_task(self.stopping.wait())
        done, _ = await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        for task in (work, stop):
            task.cancel()
        if work in done:
            work.result()  # raise what ended it
        await self.client.close(timeout=0)
        await self.redis.aclose()
        return 0

    async def work(self) -> None:
        await self.client.connect(self.args.url, name=self.args.name,
                                  client_id=self.args.client_id, retry=True)
        # A previous run may have died between taking a task and its ack: send those
        # first, with the same refs (the server drops the ones it already has).
        for raw in reversed(await self.redis.lrange(self.processing, 0, -1)):
            await self.deliver(raw)
        while not self.stopping.is_set():
            try:
                raw = await self.redis.blmove(self.queue, self.processing, 1.0, "RIGHT", "LEFT")
            except RedisConnectionError as exc:  # Redis restarting: try again shortly
                log.warning("redis: %s", exc)
                await asyncio.sleep(0.5)
                continue
            if raw is not None:
                await self.deliver(raw)


def client_id_for(queue: str) -> str:
    """A stable client id for this queue: the same after a restart of the worker."""
    return ("redis-worker-" + re.sub(r"[^A-Za-z0-9_-]", "_", queue))[:64]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", help="chat room URL, e.g. ws://127.0.0.1:8000/chat/ops")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL of the queue")
    ap.add_argument("--queue", default="tasks", help="Redis list the tasks are LPUSHed to")
    ap.add_argument("--name", default="worker", help="nickname in the room")
    ap.add_argument("--client-id", help="stable client id (default: from the queue name)")
    ap.add_argument("--emit", metavar="EVENT", help="emit each task as this named event")
    ap.add_argument("--ack-timeout", type=float, default=30.0)
    args = ap.parse_args(argv)
    args.client_id = args.client_id or client_id_for(args.queue)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    async def start() -> int:
        worker = Worker(args)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, worker.stopping.set)
        return await worker.run()

    return asyncio.run(start())


if __name__ == "__main__":
    sys.exit(main())
