"""`pip install <checkout>` into a fresh venv, then a user's app served from a directory
outside the checkout, with the C speedups and without them (no compiler: `CC=/bin/false`):
a classic app (tests/support/userapp.py) and one with `WebSockets` routes and classic ones
(tests/extension/extapp.py), the latter through issue 14's checks (extension_checks.py).

One venv for the whole module (about 1 to 2 minutes; most of it pip fetching or reusing
from its cache the pinned dependencies and setuptools). The venv has no system site
packages; requirements.txt is used only as a constraints file, so pip installs exactly
what pyproject.toml declares, at the pinned versions.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import urllib.request
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.packaging.extension_checks import ENV as EXTENSION_ENV
from tests.packaging.extension_checks import check_extension_app
from tests.support.servers import ROOT
from tests.support.userapp import (
    assert_echoes,
    assert_sigterm_closes_1001,
    clean_env,
    new_port,
    outside_dir,
    serving,
    write_user_app,
)

pytestmark = [pytest.mark.install, pytest.mark.timeout(420)]

PIP_QUIET = ["--disable-pip-version-check", "--no-input", "-q"]


def copy_checkout(dest: Path) -> Path:
    """The checkout's files as git sees them (tracked and new, not ignored): no build/,
    no locally built .so, no egg-info, so each build starts clean."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listing.split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


class Venv:
    """A fresh virtual environment and which wsapp build is installed in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "venv" / "bin"
        self.python = str(self.bin / "python")
        self.installed: str | None = None
        self.src: Path | None = None
        venv.EnvBuilder(with_pip=True, system_site_packages=False).create(root / "venv")

    def pip(self, *args: str, env: dict[str, str] | None = None) -> None:
        result = subprocess.run(
            [self.python, "-m", "pip", *PIP_QUIET, *args],
            env=env or clean_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    def ensure(self, build: str) -> None:
        """Install the checkout with the C speedups ("c", `pip install <checkout>`), as an
        editable install ("editable", `pip install -e <checkout>`), or a wheel built where no
        compiler works ("pure")."""
        if self.installed == build:
            return
        src = copy_checkout(Path(tempfile.mkdtemp(prefix=f"wsapp-src-{build}-", dir=self.root)))
        self.src = src
        if build == "editable":
            self.pip("install", "--no-deps", "--force-reinstall", "-e", str(src))
        elif build == "c":
            first = self.installed is None
            self.pip(
                "install",
                *(
                    ["-c", str(ROOT / "requirements.txt")]
                    if first
                    else ["--no-deps", "--force-reinstall"]
                ),
                str(src),
            )
        else:
            wheels = self.root / "wheels-pure"
            self.pip(
                "wheel", "--no-deps", "-w", str(wheels), str(src), env=clean_env(CC="/bin/false")
            )
            (wheel,) = wheels.glob("wsapp-*.whl")
            if self.installed is None:
                self.pip("install", "-c", str(ROOT / "requirements.txt"), str(wheel))
            else:
                self.pip("install", "--no-deps", "--force-reinstall", str(wheel))
        self.installed = build

    def facts(self, cwd: Path) -> dict:
        """What the installed package looks like, asked from a directory outside the checkout."""
        code = (
            "import json, importlib.metadata as md, wsapp, wsapp.assets as a\n"
            "from wsapp.speedups import select\n"
            "print(json.dumps({'file': wsapp.__file__, 'version': wsapp.__version__,"
            " 'dist_version': md.version('wsapp'), 'templates': str(a.TEMPLATES_DIR),"
            " 'static': str(a.STATIC_DIR), 'speedups': select.speedups_enabled(),"
            " 'files': sorted(str(f) for f in md.files('wsapp'))}))\n"
        )
        out = subprocess.run(
            [self.python, "-c", code],
            cwd=cwd,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)


@pytest.fixture(scope="module")
def env_dir() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="wsapp-install-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def fresh_venv(env_dir: Path) -> Venv:
    return Venv(env_dir)


@pytest.fixture(scope="module")
def user_dir() -> Path:
    directory = outside_dir()
    write_user_app(directory)
    shutil.copy(ROOT / "tests" / "extension" / "extapp.py", directory / "extapp.py")
    shutil.copy(ROOT / "gunicorn.conf.py", directory / "gunicorn.conf.py")
    return directory


@pytest.fixture
def with_c(fresh_venv: Venv) -> Venv:
    fresh_venv.ensure("c")
    return fresh_venv


@pytest.fixture
def editable(fresh_venv: Venv) -> Venv:
    fresh_venv.ensure("c")  # the dependencies come with the first, regular install
    fresh_venv.ensure("editable")
    return fresh_venv


@pytest.fixture
def pure(fresh_venv: Venv) -> Venv:
    fresh_venv.ensure("pure")
    return fresh_venv


def commands(v: Venv, port: int, module: str = "userapp") -> dict[str, list[str]]:
    bind = ["-b", f"127.0.0.1:{port}"]
    gunicorn = str(v.bin / "gunicorn")
    return {
        "serve": [v.python, "-m", "wsapp", "serve", f"{module}:app", "--port", str(port)],
        "factory": [
            v.python, "-m", "wsapp", "serve", f"{module}:create_app()", "--port", str(port)
        ],
        "gunicorn-conf": [gunicorn, "-c", "gunicorn.conf.py", *bind, f"{module}:app"],
        "gunicorn-k": [
            gunicorn, "-k", "wsapp.protocol.worker.WsappWorker", *bind, f"{module}:app"
        ],
    }


def serve_extension_app(v: Venv, user_dir: Path, how: str) -> str:
    """extapp.py from the user's directory, through every check of issue 14; the log."""
    port = new_port()
    command = commands(v, port, "extapp")[how]
    with serving(user_dir, command, port=port, env=clean_env(**EXTENSION_ENV), mode=how) as srv:
        status, where = get(srv.http_url("/where"))
        assert status == 200
        assert Path(where.decode()) == site_packages(v) / "wsapp" / "__init__.py"
        return check_extension_app(srv)


def declared_extensions() -> dict[str, list[str]]:
    """setup.py's SPEEDUPS {module: [C sources]}, read without running setup()."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "SPEEDUPS":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py declares no SPEEDUPS")


def get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def site_packages(v: Venv) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return v.root / "venv" / "lib" / version / "site-packages"


def test_the_venv_is_isolated(fresh_venv: Venv) -> None:
    cfg = (fresh_venv.root / "venv" / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg


def test_installed_package_with_speedups(with_c: Venv, user_dir: Path) -> None:
    facts = with_c.facts(user_dir)
    pkg = site_packages(with_c) / "wsapp"
    assert Path(facts["file"]) == pkg / "__init__.py"
    assert facts["version"] == facts["dist_version"]
    assert Path(facts["templates"]) == pkg / "templates" and Path(facts["static"]) == pkg / "static"
    assert facts["speedups"] is True
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    files = set(facts["files"])
    for module, sources in declared_extensions().items():
        assert module.replace(".", "/") + suffix in files, module
        assert set(sources) <= files  # C sources ship too (build_speedups can rebuild)
    for name in os.listdir(ROOT / "templates"):
        assert f"wsapp/templates/{name}" in files
    for name in os.listdir(ROOT / "static"):
        assert f"wsapp/static/{name}" in files


def test_installed_wsapp_serves_its_own_pages_and_echo(with_c: Venv, user_dir: Path) -> None:
    port = new_port()
    command = [with_c.python, "-m", "wsapp", "serve", "--port", str(port)]
    with serving(user_dir, command, port=port, env=clean_env()) as srv:
        status, page = get(srv.http_url("/"))
        assert status == 200 and b"<html" in page.lower()
        assert get(srv.http_url("/assets/style.css")) == (
            200,
            (ROOT / "static" / "style.css").read_bytes(),
        )
        assert_echoes(srv.url("/echo"))
        assert "framing: C speedups" in srv.log_text()


@pytest.mark.parametrize("how", ["serve", "factory", "gunicorn-conf", "gunicorn-k"])
def test_user_app_outside_the_checkout(with_c: Venv, user_dir: Path, how: str) -> None:
    port = new_port()
    with serving(
        user_dir, commands(with_c, port)[how], port=port, env=clean_env(), mode=how
    ) as srv:
        assert_echoes(srv.url("/x"))
        status, where = get(srv.http_url("/where"))
        assert (
            status == 200
            and Path(where.decode()) == site_packages(with_c) / "wsapp" / "__init__.py"
        )
        log = assert_sigterm_closes_1001(srv)
    assert "framing: C speedups" in log


@pytest.mark.parametrize("how", ["serve", "gunicorn-conf"])
def test_extension_app_outside_the_checkout(with_c: Venv, user_dir: Path, how: str) -> None:
    log = serve_extension_app(with_c, user_dir, how)
    assert "framing: C speedups" in log


def test_editable_install_uses_the_checkout(editable: Venv, user_dir: Path) -> None:
    """`pip install -e`: the package, its templates and static files and the C module built
    in place all come from the checkout."""
    facts = editable.facts(user_dir)
    assert editable.src is not None
    assert Path(facts["file"]) == editable.src / "wsapp" / "__init__.py"
    assert Path(facts["templates"]) == editable.src / "templates"
    assert Path(facts["static"]) == editable.src / "static"
    assert facts["speedups"] is True
    port = new_port()
    command = [editable.python, "-m", "wsapp", "serve", "--port", str(port)]
    with serving(user_dir, command, port=port, env=clean_env()) as srv:
        assert get(srv.http_url("/assets/style.css")) == (
            200,
            (ROOT / "static" / "style.css").read_bytes(),
        )
        assert_echoes(srv.url("/echo"))


def test_installed_without_a_compiler_runs_pure_python(pure: Venv, user_dir: Path) -> None:
    facts = pure.facts(user_dir)
    assert facts["speedups"] is False
    assert not [f for f in facts["files"] if f.endswith(".so")]
    assert "wsapp/templates/base.html" in facts["files"]


@pytest.mark.parametrize("how", ["serve", "gunicorn-conf"])
def test_user_app_pure_python(pure: Venv, user_dir: Path, how: str) -> None:
    port = new_port()
    with serving(user_dir, commands(pure, port)[how], port=port, env=clean_env(), mode=how) as srv:
        assert_echoes(srv.url("/x"))
        log = assert_sigterm_closes_1001(srv)
    assert "framing: pure Python (C speedups not built" in log


@pytest.mark.parametrize("how", ["serve", "gunicorn-conf"])
def test_extension_app_pure_python(pure: Venv, user_dir: Path, how: str) -> None:
    log = serve_extension_app(pure, user_dir, how)
    assert "framing: pure Python (C speedups not built" in log
