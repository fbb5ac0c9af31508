"""A bare Flask app with the rooms test routes (tests/rooms/routes.py): no create_app.

The routes reach Rooms through `RoomsMixin`, as the WebSockets extension will
(`sockets.join(ws, room)` and so on: one-line delegations)."""

from flask import Flask

from tests.rooms.routes import add_routes
from wsapp.rooms import Rooms, RoomsMixin


class Sockets(RoomsMixin):
    """The smallest extension: RoomsMixin over a Rooms bound to the app."""

    def __init__(self, app: Flask) -> None:
        self.rooms = Rooms()
        self.rooms.init_app(app)


app = Flask(__name__)
add_routes(app, Sockets(app))
