"""Where the page templates and static files are, in a checkout and once installed.

The repository keeps `templates/` and `static/` at its top level; an installed wsapp has
them inside the package (`wsapp/templates`, `wsapp/static`: setup.py maps them there).
Flask needs real directories, which both layouts have.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """`wsapp/<name>` when installed, else `<checkout>/<name>`."""
    installed = PACKAGE_DIR / name
    return installed if installed.is_dir() else PACKAGE_DIR.parent / name


TEMPLATES_DIR = data_dir("templates")
STATIC_DIR = data_dir("static")
