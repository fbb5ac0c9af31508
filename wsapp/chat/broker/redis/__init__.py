"""The Redis broker package: ``from wsapp.chat.broker.redis import RedisBroker``.

Modules by concept: :mod:`.keys` (key names and value formats), :mod:`.scripts` (the Lua
scripts, one ``.lua`` file each), :mod:`.link` (connections, up/down state, guarded calls),
:mod:`.listener` (the pub/sub listener greenlet and resync), :mod:`.presence` (presence
and its heartbeat) and :mod:`.broker` (:class:`RedisBroker`, which puts them together).
"""

from .broker import RedisBroker

__all__ = ["RedisBroker"]
