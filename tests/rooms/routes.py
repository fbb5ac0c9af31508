"""Routes for the rooms tests: `Rooms` used from plain `@app.route(..., websocket=True)` views.

`own_app:app` is wsapp's own app (create_app: the hub and broker are chat's);
`plain_app:app` a bare Flask app, where Rooms makes its hub and broker on first use. Both
get these routes:

    /ws/room/<room>?name=N     joins <room> (the view loops in receive(): the classic way);
                               client commands: {"cmd": "join"|"leave", "room": R},
                               {"cmd": "rooms"}, {"cmd": "progress", "steps": N, "every": S}
    /ws/served/<room>          joins <room>, then hands the socket to its reader (serve())
    POST /push/<room>          emits {"event": E, "data": D} from a plain HTTP view
    GET  /members/<room>       members() as JSON
    flask --app ... emit ROOM EVENT JSON     an emit from a CLI command
"""

from __future__ import annotations

import json
import time

import click
import gevent
from flask import Flask, jsonify, request

from wsapp.rooms import Rooms, RoomsMixin


def add_routes(app: Flask, rooms: Rooms | RoomsMixin) -> None:
    @app.route("/ws/room/<room>", websocket=True)
    def in_room(room: str):
        ws = request.environ["wsgi.websocket"]
        rooms.join(ws, room, name=request.args.get("name", ""))
        ws.send(json.dumps({"type": "joined", "id": ws.id, "rooms": rooms.rooms_of(ws)}))
        for raw in ws:
            command = json.loads(raw)
            kind = command["cmd"]
            if kind == "join":
                rooms.join(ws, command["room"])
            elif kind == "leave":
                rooms.leave(ws, command["room"])
            elif kind == "progress":
                gevent.spawn(progress, ws.id, command["steps"], command["every"])
            ws.send(json.dumps({"type": "ok", "cmd": kind, "rooms": rooms.rooms_of(ws)}))
        return ""

    def progress(target: str, steps: int, every: float) -> None:
        """A long task in a background greenlet: one event per step to one client."""
        for step in range(steps):
            rooms.emit(target, "progress", {"step": step, "of": steps, "t": time.time()})
            gevent.sleep(every)
        rooms.emit(target, "done", {"steps": steps})

    @app.route("/ws/served/<room>", websocket=True)
    def served(room: str):
        ws = request.environ["wsgi.websocket"]
        rooms.join(ws, room)
        ws.send(json.dumps({"type": "joined", "id": ws.id, "rooms": rooms.rooms_of(ws)}))
        ws.serve(lambda batch: None)  # the request ends here; the socket stays in the room
        return ""

    @app.post("/push/<room>")
    def push(room: str):
        body = request.get_json(force=True)
        t = time.time()
        rooms.emit(room, body.get("event", "push"), body.get("data"))
        return jsonify(ok=True, t=t)

    @app.get("/members/<room>")
    def members(room: str):
        return jsonify(members=[{"id": m.id, "name": m.name} for m in rooms.members(room)])

    @app.cli.command("emit")
    @click.argument("room")
    @click.argument("event")
    @click.argument("data")
    def emit_command(room: str, event: str, data: str) -> None:
        """flask --app ... emit ROOM EVENT JSON: an emit from a CLI command of the app."""
        rooms.emit(room, event, json.loads(data))
        click.echo(f"emitted {event} to {room}")
