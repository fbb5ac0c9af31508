"""What pyproject.toml cannot say: where the files go, and the optional C speedups.

Everything else (name, dependencies, extras) is in pyproject.toml. The C modules are built
when a compiler and the Python headers are there; if the build fails (no gcc, no
python3-dev, `CC=/bin/false`) setuptools warns and the package installs without them: wsapp
then runs the same code paths in pure Python (the start-up log says `framing: pure Python`).
"""

from __future__ import annotations

from setuptools import Extension, find_packages, setup

#: Every compiled module, as {module name: C sources}: the one place to change when a C
#: file moves or a new one is added.
SPEEDUPS: dict[str, list[str]] = {
    "wsapp.speedups._framing": ["wsapp/speedups/_framing.c"],
    "wsapp.speedups._fanout": ["wsapp/speedups/_fanout.c"],
}

#: The top-level templates/ and static/ directories are installed inside the package as
#: wsapp/templates and wsapp/static (the checkout keeps them at the top; wsapp.assets finds
#: them in either place).
DATA_PACKAGES: dict[str, str] = {
    "wsapp.templates": "templates",
    "wsapp.static": "static",
}

setup(
    packages=[*find_packages(include=["wsapp", "wsapp.*"]), *DATA_PACKAGES],
    package_dir=DATA_PACKAGES,
    package_data={
        "": ["*.c", "*.lua"],  # C sources (wsapp.speedups.build can rebuild them) and Redis scripts
        **{name: ["**/*"] for name in DATA_PACKAGES},
    },
    exclude_package_data={"": ["*.so", "*.tmp"]},
    ext_modules=[Extension(name, sources, optional=True) for name, sources in SPEEDUPS.items()],
)
