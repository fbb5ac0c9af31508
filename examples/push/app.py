"""Server push with wsapp's rooms: pushes from `GET /push`, and a long task's progress.

    python -m wsapp serve app:app --port 8000
    gunicorn -c ../../gunicorn.conf.py -b 127.0.0.1:8000 app:app     # or a copy of it here

Open http://127.0.0.1:8000/ in a browser, then `curl http://127.0.0.1:8000/push`: every
open page shows the push. "Start the long task" runs a task in a background greenlet that
reports its progress to that page only, once a second (PUSH_STEPS steps, PUSH_EVERY s).
See examples/README.md and docs/rooms.md.
"""

from __future__ import annotations

import json
import os

import gevent
from flask import Flask, jsonify, request

from wsapp import Rooms

STEPS = int(os.environ.get("PUSH_STEPS", "10"))
EVERY = float(os.environ.get("PUSH_EVERY", "1.0"))

app = Flask(__name__)
rooms = Rooms(app)


@app.route("/ws", websocket=True)
def updates() -> str:
    ws = request.environ["wsgi.websocket"]
    rooms.join(ws, "news")  # every page is in "news"; each is also in its own room, ws.id
    ws.send(json.dumps({"type": "hello", "id": ws.id}))
    for message in ws:  # until the page goes away; rooms are left by themselves then
        if message == "start":
            gevent.spawn(long_task, ws.id)
    return ""


def long_task(client: str) -> None:
    """Some slow work, one step every EVERY seconds, reported to one client (its room)."""
    for step in range(1, STEPS + 1):
        gevent.sleep(EVERY)  # the work; a blocking call would need a thread or a worker
        rooms.emit(client, "progress", {"step": step, "of": STEPS})
    rooms.emit(client, "done", {"steps": STEPS})


@app.get("/push")
def push():
    """What Flask-SocketIO's `socketio.emit("my_response", {"data": ...})` did: everyone."""
    rooms.emit("news", "push", {"data": "test message!"})
    return jsonify(pushed=True)


@app.get("/")
def index() -> str:
    return PAGE


PAGE = """<!doctype html>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>wsapp push</title>
<h1>Server push</h1>
<p id="status">connecting…</p>
<p><button id="start" type="button" disabled>Start the long task</button>
   <progress id="progress" max="1" value="0"></progress> <span id="step"></span></p>
<p>Pushes (<code>curl http://HOST/push</code>):</p>
<ol id="pushes"></ol>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const scheme = location.protocol === "https:" ? "wss://" : "ws://";
const ws = new WebSocket(scheme + location.host + "/ws");
ws.onopen = () => { $("status").textContent = "connected"; $("start").disabled = false; };
ws.onclose = (e) => {
  $("status").textContent = "closed (" + e.code + ")";
  $("start").disabled = true;
};
ws.onmessage = (e) => {
  const msg = JSON.parse(e.data);
  if (msg.type !== "event") return;
  if (msg.event === "push") {
    const li = document.createElement("li");
    li.textContent = msg.data.data;  // textContent: never HTML
    $("pushes").append(li);
  } else if (msg.event === "progress") {
    $("progress").max = msg.data.of;
    $("progress").value = msg.data.step;
    $("step").textContent = "step " + msg.data.step + " of " + msg.data.of;
  } else if (msg.event === "done") {
    $("step").textContent = "done: " + msg.data.steps + " steps";
    $("start").disabled = false;
  }
};
$("start").onclick = () => { ws.send("start"); $("start").disabled = true; };
</script>
"""
