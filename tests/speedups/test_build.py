"""`python -m wsapp.speedups.build`: builds in place, skips what is up to date, replaces
atomically, fails clearly without a compiler, and refuses code with warnings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from wsapp.speedups import build


@pytest.fixture
def source(tmp_path):
    """A copy of _framing.c in a temporary directory (the real ones stay as they are)."""
    copy = tmp_path / "_framing.c"
    shutil.copyfile(build.HERE / "_framing.c", copy)
    return copy


@pytest.mark.skipif(build.missing_prerequisite() is not None, reason="no compiler here")
def test_builds_next_to_the_source_and_skips_when_up_to_date(source):
    out = build.build_one(source)
    assert out == build.target(source) and out.parent == source.parent
    assert out.name.startswith("_framing.") and out.name.endswith(".so")
    assert sorted(p.name for p in source.parent.iterdir()) == sorted([source.name, out.name])
    built_at = out.stat().st_mtime_ns
    assert build.build_one(source) == out
    assert out.stat().st_mtime_ns == built_at, "rebuilt although up to date"
    os.utime(source, ns=(built_at + 10**9, built_at + 10**9))  # the source changed
    build.build_one(source)
    assert out.stat().st_mtime_ns != built_at


@pytest.mark.skipif(build.missing_prerequisite() is not None, reason="no compiler here")
def test_a_warning_fails_the_build_and_leaves_the_old_module(source):
    out = build.build_one(source)
    before = out.read_bytes()
    source.write_text(source.read_text() + "\nstatic int unused_function(void) { return 0; }\n")
    os.utime(source, ns=(out.stat().st_mtime_ns + 10**9,) * 2)
    with pytest.raises(build.BuildError, match="_framing.c"):
        build.build_one(source)
    assert out.read_bytes() == before
    assert not list(source.parent.glob("*.tmp"))


def test_no_compiler_is_a_clear_message(source, monkeypatch, capsys):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    why = "no C compiler '/nonexistent/cc' (apt-get install gcc)"
    assert build.missing_prerequisite() == why
    assert build.main([], sources=[source]) == 0  # optional: make run carries on
    assert build.main(["--require"], sources=[source]) == 1
    err = capsys.readouterr().err
    assert "not built (no C compiler '/nonexistent/cc' (apt-get install gcc))" in err
    assert "pure Python versions will be used" in err


def test_the_command_line_builds_the_package_modules():
    """What `make` runs; everything is up to date after the session's build, so quick."""
    result = subprocess.run([sys.executable, "-m", "wsapp.speedups.build", "--require"],
                            capture_output=True, text=True, timeout=120,
                            cwd=build.HERE.parent.parent)
    assert result.returncode == 0, result.stderr
    assert "wsapp/speedups/_framing." in result.stdout
    assert "wsapp/speedups/_fanout." in result.stdout
