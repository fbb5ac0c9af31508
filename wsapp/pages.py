"""Browser pages: the index, the echo console and the chat room (issue 5).

Each page URL is shared with a WebSocket endpoint: ``GET /echo`` and ``GET /chat/<room>``
without an upgrade land here, while the socket routes (declared elsewhere with
``websocket=True``) take the upgraded requests; Werkzeug tells them apart by the upgrade.

Pages are plain Jinja templates (``templates/``) plus plain JavaScript and CSS
(``static/``, served by this blueprint under ``/assets/``). No inline script, no CDN:
every response of this blueprint carries a Content-Security-Policy with
``script-src 'self'`` and the usual hardening headers.

The app factory wires it with ``app.register_blueprint(pages.bp)``.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, redirect, render_template, request, url_for

from wsapp.assets import STATIC_DIR, TEMPLATES_DIR
from wsapp.chat.events import ROOM_RE  # the chat socket route's rule, so page and socket agree

bp = Blueprint(
    "pages",
    __name__,
    template_folder=str(TEMPLATES_DIR),
    static_folder=str(STATIC_DIR),
    static_url_path="/assets",
)

# A Host header we are willing to echo into the CSP (anything else falls back to 'self').
_HOST_RE = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
DEFAULT_ROOMS = ("lobby", "random", "help")


def content_security_policy(host: str | None) -> str:
    """The page CSP: only our own scripts, styles and sockets; no inline code, no framing.

    ``connect-src 'self'`` covers ws:/wss: to the same host in CSP Level 3 browsers;
    the explicit ``ws://host wss://host`` entries keep older ones working too.
    """
    connect = ["'self'"]
    if host and _HOST_RE.fullmatch(host):
        connect += [f"ws://{host}", f"wss://{host}"]
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src " + " ".join(connect),
            "manifest-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}


@bp.after_request
def _security_headers(response: Response) -> Response:
    """Applies to the pages and to their assets (both belong to this blueprint)."""
    response.headers["Content-Security-Policy"] = content_security_policy(request.host)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.mimetype == "text/html":
        # Pages are cheap and must pick up new asset URLs after a deploy.
        response.headers["Cache-Control"] = "no-cache"
    return response


def _ws_base() -> str:
    """ws://host or wss://host as this request reached us (for the one-liners on the index)."""
    scheme = "wss" if request.scheme == "https" else "ws"
    return f"{scheme}://{request.host}"


@bp.get("/")
def index() -> str:
    return render_template("index.html", ws_base=_ws_base(), default_rooms=DEFAULT_ROOMS)


@bp.get("/echo")
def echo_page() -> str:
    return render_template("echo.html", ws_base=_ws_base())


@bp.get("/chat/<room>")
def chat_page(room: str) -> str | tuple[str, int]:
    if not ROOM_RE.fullmatch(room):
        return render_template("bad_room.html", room=room), 404
    return render_template("chat.html", room=room, ws_base=_ws_base(), default_rooms=DEFAULT_ROOMS)


@bp.get("/chat")
@bp.get("/chat/")
def chat_default() -> Response:
    """``/chat?room=x`` (the room form, works without JavaScript) goes to ``/chat/x``;
    a bare ``/chat`` goes to the lobby."""
    room = request.args.get("room", "").strip()
    if not ROOM_RE.fullmatch(room):
        room = "lobby"
    return redirect(url_for("pages.chat_page", room=room), code=303)
