"""`python -m tests.apps.run_embedded MODULE:APP PORT`: the embedded server on a given app."""

from __future__ import annotations

import importlib
import sys

from wsapp.server import serve
from wsapp.settings import Settings

if __name__ == "__main__":
    module, _, name = sys.argv[1].partition(":")
    app = getattr(importlib.import_module(module), name or "app")
    serve(Settings.from_env(), "127.0.0.1", int(sys.argv[2]), app=app)
