"""`wsapp.speedups.select`: what it picks at import, the run-time switches, and that the
package stands alone (it imports nothing else of wsapp, so no circle can form)."""

from __future__ import annotations

import ast
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from wsapp.speedups import pure, select

from .conftest import _fanout

PACKAGE = Path(select.__file__).parent


@pytest.fixture(autouse=True)
def restore():
    yield
    select.use_speedups(True)
    select.use_io_uring(True)


def test_the_c_modules_are_built():
    """`make test` builds them (python -m wsapp.speedups.build --require), so the C half
    of every comparison in this directory really is C."""
    assert select._framing is not None and select._fanout is not None, (
        "run: python -m wsapp.speedups.build"
    )


def test_compiled_functions_are_chosen_at_import():
    assert select.speedups_enabled()
    assert select.scan_data_frames is select._framing.scan_data_frames
    assert select.encode_messages is select._framing.encode_messages
    assert select.send_all is select._fanout.send_all
    assert select.Payload is select._framing.Payload and select.Utf8 is select._framing.Utf8


def test_switching_to_pure_python_and_back():
    assert select.use_speedups(False) is False
    assert not select.speedups_enabled()
    assert select.scan_data_frames is pure.scan_data_frames
    assert select.encode_messages is pure.encode_messages
    assert select.send_all is pure.send_all
    assert select.Payload is pure.Payload and select.Utf8 is pure.Utf8
    assert select.use_io_uring(True) == "send (io_uring: needs the C speedups)"
    assert select.use_io_uring(False) == "send"
    assert select.use_speedups(True) is True
    assert select.send_all is select._fanout.send_all


def test_io_uring_switch_reports_the_path_in_use():
    mode = select.use_io_uring(True)
    assert mode == "io_uring" or mode.startswith("send (io_uring: ")
    assert select.use_io_uring(False) == "send"


def test_an_io_uring_choice_made_while_pure_applies_when_c_comes_back():
    a, a_peer = socket.socketpair()
    b, b_peer = socket.socketpair()
    try:
        select.use_speedups(False)
        select.use_io_uring(False)
        select.use_speedups(True)
        assert select.send_all([a.fileno(), b.fileno()], b"x") == []
        assert _fanout.ring_owner() == 0, "send_all used io_uring after use_io_uring(False)"
    finally:
        for sock in (a, a_peer, b, b_peer):
            sock.close()


def test_configure_gives_the_start_up_log_line():
    mode = select.configure(True, True)
    assert mode == "C speedups, broadcasts by io_uring" or mode.startswith(
        "C speedups, broadcasts by send (io_uring: "
    )
    assert select.configure(True, False) == "C speedups, broadcasts by send"
    assert select.configure(False, True) == "pure Python (WSAPP_SPEEDUPS=0)"
    assert select.send_all is pure.send_all


def test_without_the_c_modules_everything_is_pure_python():
    """A machine without a compiler: the import succeeds and says why in the log line."""
    code = (
        "import sys; sys.modules['wsapp.speedups._fanout'] = None\n"
        "from wsapp.speedups import pure, select\n"
        "assert not select.speedups_enabled() and select.send_all is pure.send_all\n"
        "assert select.scan_data_frames is pure.scan_data_frames\n"
        "assert select.use_speedups(True) is False\n"
        "print(select.configure(True, True))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=PACKAGE.parent.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("pure Python (C speedups not built (")
    assert "python -m wsapp.speedups.build" in out.stdout


def test_the_package_imports_nothing_else_of_wsapp():
    """frames.py and the engine import select; select must never import them back."""
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith("wsapp") or name.startswith("wsapp.speedups"), (
                    f"{path.name} imports {name}"
                )
    for path in PACKAGE.glob("*.c"):
        text = path.read_text()
        assert "_PyType_Lookup" not in text and "PyObject_GetAttr" not in text, path.name
