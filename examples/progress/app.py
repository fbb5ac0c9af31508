"""A progress stream from a long task: each update reaches the client the moment it is sent.

    python -m wsapp serve app:app --port 8000
    gunicorn -c ../../gunicorn.conf.py -b 127.0.0.1:8000 app:app

Open http://127.0.0.1:8000/ (a progress bar), or `python -m wsapp client
"ws://127.0.0.1:8000/progress?steps=30"`. The task is a loop of steps that look blocking:
`time.sleep` stands for I/O (a query, an HTTP call) and hashing a buffer for CPU work.
Under wsapp's servers gevent has patched `time.sleep`, so it waits in this greenlet only; the
CPU part runs in gevent's thread pool so that the event loop keeps running meanwhile. Either
way wsapp's reader answers pings and notices a client that leaves while the task works.
"""

from __future__ import annotations

import hashlib
import json
import time

import gevent
from flask import Flask, request

from wsapp import WebSockets

app = Flask(__name__)
sockets = WebSockets(app)

STEP_SECONDS = 0.1  # one step's I/O wait
MAX_STEPS = 600  # the only input from the client is bounded
CHUNK = bytes(range(256)) * 1024  # 256 KiB hashed per step (the CPU part)

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>progress</title>
<progress id="bar" max="1" value="0"></progress> <span id="text">connecting</span>
<script>
const ws = new WebSocket(`ws://${location.host}/progress?steps=50`);
ws.onmessage = (event) => {
  const update = JSON.parse(event.data);
  const bar = document.getElementById("bar"), text = document.getElementById("text");
  if (update.event === "started") bar.max = update.steps;
  if (update.event === "progress") { bar.value = update.step; text.textContent = update.step; }
  if (update.event === "done") text.textContent = `done: ${update.digest.slice(0, 16)}`;
};
ws.onclose = (event) => console.log("closed", event.code);
</script>
"""


@app.get("/")
def index() -> str:
    return PAGE


def work(step: int, digest: hashlib._Hash) -> None:
    """One step of the long task."""
    time.sleep(STEP_SECONDS)  # I/O-like wait: yields to other greenlets (monkey-patched)
    # CPU work in a thread of gevent's pool; sha256 releases the GIL on large buffers.
    gevent.get_hub().threadpool.apply(digest.update, (CHUNK + step.to_bytes(4, "big"),))


@sockets.route("/progress")
def progress(ws) -> str | tuple[str, int] | None:
    raw = request.args.get("steps", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_STEPS:
        # The socket is not used yet: this goes out as a plain HTTP answer, no upgrade.
        return f"steps must be a number from 1 to {MAX_STEPS}\n", 400
    steps = int(raw)
    ws.send(json.dumps({"event": "started", "steps": steps}))  # writes the 101, then this
    digest = hashlib.sha256()
    started = time.monotonic()
    for step in range(1, steps + 1):
        work(step, digest)
        # Sent now, not at the end: one frame per update, written to the socket at once.
        ws.send(json.dumps({"event": "progress", "step": step, "steps": steps,
                            "elapsed": round(time.monotonic() - started, 3)}))
    ws.send(json.dumps({"event": "done", "digest": digest.hexdigest()}))
    return None  # returning closes the connection with 1000
