"""Compile wsapp's C modules in place: `python -m wsapp.speedups.build [--require]`.

Builds `_framing.c` and `_fanout.c` next to this file (`_framing.cpython-311-....so` and so
on). Optional by design: wsapp runs the same code in pure Python without them
(`wsapp.speedups.select` picks whichever is there). `make run` builds them when a C
compiler and the Python headers are there and carries on without them otherwise;
`make test` passes `--require`, because the tests compare the C functions with the
Python ones. A module is rebuilt only when its source is newer than the built file, and
replaced by an atomic rename, so a running server never imports a half-written file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: The C files of this package, one job each.
SOURCES: tuple[Path, ...] = (HERE / "_framing.c", HERE / "_fanout.c")


class BuildError(Exception):
    """A module could not be built here; the message says why."""


def compiler() -> str:
    """The C compiler to use: `$CC`, else `cc`."""
    return os.environ.get("CC", "cc")


def target(source: Path) -> Path:
    """Where the module built from `source` goes: next to it, with Python's suffix."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    return source.with_name(source.stem + suffix)


def missing_prerequisite() -> str | None:
    """Why no module can be built here (no compiler, no Python.h), or None."""
    if shutil.which(compiler()) is None:
        return f"no C compiler {compiler()!r} (apt-get install gcc)"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        return f"no Python headers in {include} (apt-get install python3-dev)"
    return None


def up_to_date(source: Path) -> bool:
    out = target(source)
    return out.exists() and out.stat().st_mtime >= source.stat().st_mtime


def build_one(source: Path) -> Path:
    """Build `source` into `target(source)` unless it is up to date; the built file."""
    out = target(source)
    if up_to_date(source):
        return out
    why = missing_prerequisite()
    if why is not None:
        raise BuildError(why)
    tmp = out.with_name(out.name + ".tmp")
    cmd = [
        compiler(), "-O2", "-shared", "-fPIC", "-Wall", "-Werror",
        f"-I{sysconfig.get_paths()['include']}", str(source), "-o", str(tmp),
    ]
    try:
        subprocess.run(cmd, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"{source.name}: {exc}") from exc
    tmp.replace(out)  # atomic on one file system
    return out


def build(sources: Iterable[Path] = SOURCES) -> list[Path]:
    """Build every source (see `build_one`); raises BuildError at the first that fails."""
    return [build_one(source) for source in sources]


def main(argv: Sequence[str] | None = None, sources: Iterable[Path] = SOURCES,
         what: str = "wsapp C speedups") -> int:
    """The command line: 0 when built (or optional and not buildable), 1 otherwise."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--require", action="store_true", help="fail if they cannot be built")
    args = parser.parse_args(argv)
    try:
        built = build(sources)
    except BuildError as exc:
        print(f"{what} not built ({exc}); the pure Python versions will be used",
              file=sys.stderr)
        return 1 if args.require else 0
    root = HERE.parent.parent
    for out in built:
        shown = out.relative_to(root) if out.is_relative_to(root) else out
        print(f"{what}: {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
