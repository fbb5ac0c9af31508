"""The broker's Lua scripts: loaded once at import from the ``.lua`` files of this package.

Every multi-key step of the broker is one script, so it is atomic in Redis. Each file says
what it does, its KEYS and ARGV; ``prelude.lua`` (the Redis clock, a room's expiry) is put
in front of each. They are read with :mod:`importlib.resources`, so they must ship with
the package (a wheel needs ``*.lua`` in its package data).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

NAMES = (
    "publish",
    "join",
    "leave",
    "members",
    "rooms",
    "covers",
    "mark",
    "refresh",
    "rewrite",
    "sweep",
    "emit",
)



def _read(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.lua").read_text("utf-8")


PRELUDE = _read("prelude")

#: script name -> Lua source (the prelude, then the script)
SOURCES: dict[str, str] = {name: PRELUDE + _read(name) for name in NAMES}


class Scripts:
    """The scripts registered on one client (``EVALSHA``, loading a script on ``NOSCRIPT``).

    Attribute per script: ``scripts.publish(keys=[...], args=[...])``."""

    publish: Any
    join: Any
    leave: Any
    members: Any
    rooms: Any
    covers: Any
    mark: Any
    refresh: Any
    rewrite: Any
    sweep: Any
    emit: Any

    def __init__(self, client: Any) -> None:
        for name, source in SOURCES.items():
            setattr(self, name, client.register_script(source))
