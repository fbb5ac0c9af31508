"""A bare Flask app with the rooms test routes (tests/rooms/routes.py): no create_app."""

from flask import Flask

from tests.rooms.routes import add_routes
from wsapp import Rooms

app = Flask(__name__)
add_routes(app, Rooms(app))
