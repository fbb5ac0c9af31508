"""Compile `_speedups.c` next to itself: `python -m wsapp.protocol.build_speedups [--require]`.

Optional by design: wsapp runs the same protocol in pure Python without it (measured
difference in docs/performance.md). `make run` builds it when a C compiler and the
Python headers are there and carries on without it otherwise; `make test` passes
`--require`, because the tests check the C loops against the Python ones.
Rebuilds only when the source is newer than the built module.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "_speedups.c"


def target() -> Path:
    return HERE / f"_speedups{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}"


def missing_prerequisite() -> str | None:
    """Why the module cannot be built here, or None."""
    if shutil.which(os.environ.get("CC", "cc")) is None:
        return "no C compiler (apt-get install gcc)"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        return f"no Python headers in {include} (apt-get install python3-dev)"
    return None


def build() -> Path:
    out = target()
    if out.exists() and out.stat().st_mtime >= SOURCE.stat().st_mtime:
        return out
    why = missing_prerequisite()
    if why is not None:
        raise RuntimeError(why)
    tmp = out.with_suffix(".tmp")
    cmd = [
        os.environ.get("CC", "cc"), "-O2", "-shared", "-fPIC", "-Wall", "-Werror",
        f"-I{sysconfig.get_paths()['include']}", str(SOURCE), "-o", str(tmp),
    ]
    subprocess.run(cmd, check=True)
    tmp.replace(out)  # atomic: a running server never imports a half-written file
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--require", action="store_true", help="fail if it cannot be built")
    args = parser.parse_args(argv)
    try:
        out = build()
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        print(f"wsapp C speedups not built ({exc}); the pure Python framing will be used", file=sys.stderr)
        return 1 if args.require else 0
    print(f"wsapp C speedups: {out.relative_to(HERE.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
