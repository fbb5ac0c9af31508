"""Settings: every WSAPP_* variable validated at start, errors name the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.servers import ROOT, free_port
from wsapp.settings import Settings, SettingsError, settings_table


def test_defaults_without_environment():
    s = Settings.from_env({})
    assert (s.host, s.port, s.max_message_bytes, s.send_queue_bytes, s.history) == (
        "127.0.0.1", 8000, 1 << 20, 1 << 20, 100,
    )


@pytest.mark.parametrize(
    "name, value",
    [
        ("WSAPP_PORT", "http"),
        ("WSAPP_PORT", "70000"),
        ("WSAPP_MAX_MESSAGE_BYTES", "0"),
        ("WSAPP_PING_INTERVAL", "-1"),
        ("WSAPP_REQUIRE_ORIGIN", "maybe"),
        ("WSAPP_REDIS_URL", "http://localhost"),
        ("WSAPP_ALLOWED_ORIGINS", "example.com"),
        ("WSAPP_LOG_LEVEL", "LOUD"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: value})
    assert name in str(info.value)


def test_unknown_wsapp_variable_is_an_error():
    with pytest.raises(SettingsError, match="WSAPP_MAX_MESAGE_BYTES"):
        Settings.from_env({"WSAPP_MAX_MESAGE_BYTES": "10"})


def test_several_workers_need_redis():
    with pytest.raises(SettingsError, match="WSAPP_REDIS_URL"):
        Settings.from_env({"WSAPP_WORKERS": "2"})
    env = {"WSAPP_WORKERS": "2", "WSAPP_REDIS_URL": "redis://127.0.0.1:6379/0"}
    assert Settings.from_env(env).workers == 2


def test_token_requirement_needs_secret():
    with pytest.raises(SettingsError, match="WSAPP_SECRET"):
        Settings.from_env({"WSAPP_REQUIRE_TOKEN": "1"})


def test_origins_are_parsed():
    s = Settings.from_env({"WSAPP_ALLOWED_ORIGINS": "https://a.example, http://b.example:8080/"})
    assert s.allowed_origins == ("https://a.example", "http://b.example:8080")


def test_readme_table_lists_every_setting():
    table = settings_table()
    readme = (ROOT / "README.md").read_text()
    for line in table.splitlines()[2:]:
        name = line.split("`")[1]
        assert name in readme, f"{name} missing from README configuration table"


@pytest.mark.parametrize("mode", ["serve", "gunicorn"])
def test_bad_setting_stops_the_server_with_a_clear_message(mode):
    port = free_port()
    if mode == "serve":
        cmd = [sys.executable, "-m", "wsapp", "serve", "--port", str(port)]
    else:
        gunicorn = str(ROOT / ".venv/bin/gunicorn")
        cmd = [gunicorn, "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}", "wsgi:app"]
        cmd[0] = str(__import__("pathlib").Path(sys.executable).with_name("gunicorn"))
    env = {"PATH": "/usr/bin:/bin", "WSAPP_MAX_MESSAGE_BYTES": "lots"}
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "WSAPP_MAX_MESSAGE_BYTES" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
