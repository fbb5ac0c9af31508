"""wsapp's own app (chat included) with the rooms test routes (tests/rooms/routes.py)."""

from tests.rooms.routes import add_routes
from wsapp import Rooms, create_app

app = create_app()
add_routes(app, Rooms(app))
