"""Build every C module: `python -m wsapp.protocol.build_speedups [--require]` (an alias).

Kept while the old `wsapp/protocol/_speedups.c` exists (the engine still imports it):
builds that file and the `wsapp.speedups` modules (`_framing.c`, `_fanout.c`) with the
same rules as `python -m wsapp.speedups.build` (skip when up to date, atomic rename,
-Wall -Werror, a clear message when gcc or Python.h is missing). Goes away with
`_speedups.c`; nothing in `wsapp.speedups` depends on this file.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from wsapp.speedups import build

#: The old module: framing loops and the broadcast that reads Connection slots.
LEGACY_SOURCE = Path(__file__).resolve().parent / "_speedups.c"


def main(argv: Sequence[str] | None = None) -> int:
    return build.main(argv, sources=(LEGACY_SOURCE, *build.SOURCES))


if __name__ == "__main__":
    sys.exit(main())
