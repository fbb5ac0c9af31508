"""Serving any app: `python -m wsapp serve module:app`, gunicorn with wsapp's worker from the
user's own directory, `flask run`, and the embedded server's polish (port in use, access log,
1001 count). wsapp comes from this checkout through PYTHONPATH here; tests/packaging does
the same with wsapp installed in a fresh venv."""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.support.servers import GUNICORN, PYTHON, ROOT
from tests.support.userapp import (
    assert_echoes,
    assert_sigterm_closes_1001,
    clean_env,
    new_port,
    outside_dir,
    serving,
    write_user_app,
)

FLASK = str(Path(PYTHON).with_name("flask"))


@pytest.fixture(scope="module")
def user_dir() -> Path:
    directory = outside_dir()
    write_user_app(directory)
    shutil.copy(ROOT / "gunicorn.conf.py", directory / "gunicorn.conf.py")
    return directory


def checkout_env(**extra: str) -> dict[str, str]:
    return clean_env(PYTHONPATH=str(ROOT), **extra)


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def serve_command(target: str | None, port: int) -> list[str]:
    return [PYTHON, "-m", "wsapp", "serve", *([target] if target else []), "--port", str(port)]


def gunicorn_commands(port: int) -> dict[str, list[str]]:
    bind = ["-b", f"127.0.0.1:{port}"]
    return {
        "conf": [GUNICORN, "-c", "gunicorn.conf.py", *bind, "userapp:app"],
        "worker": [
            GUNICORN,
            "-k",
            "wsapp.protocol.worker.WsappWorker",
            *bind,
            "userapp:create_app()",
        ],
    }


@pytest.mark.parametrize("target", ["userapp:app", "userapp:create_app()", "userapp"])
def test_serve_any_app_echoes_and_closes_1001(user_dir: Path, target: str) -> None:
    port = new_port()
    with serving(user_dir, serve_command(target, port), port=port, env=checkout_env()) as srv:
        assert_echoes(srv.url("/x"))
        assert http_get(srv.http_url("/where")) == (200, str(ROOT / "wsapp" / "__init__.py"))
        log = assert_sigterm_closes_1001(srv)
    assert f"(app {target})" in log


@pytest.mark.parametrize("how", ["conf", "worker"])
def test_gunicorn_serves_any_app_from_the_users_directory(user_dir: Path, how: str) -> None:
    port = new_port()
    with serving(
        user_dir, gunicorn_commands(port)[how], port=port, env=checkout_env(), mode="gunicorn"
    ) as srv:
        assert_echoes(srv.url("/x"))
        assert_sigterm_closes_1001(srv)


@pytest.mark.parametrize("mode", ["serve", "gunicorn"])
def test_route_without_websocket_flag_logs_the_fix(user_dir: Path, mode: str) -> None:
    port = new_port()
    command = (
        serve_command("userapp:app", port) if mode == "serve" else gunicorn_commands(port)["conf"]
    )
    with serving(user_dir, command, port=port, env=checkout_env(), mode=mode) as srv:
        for _ in range(2):
            with pytest.raises(InvalidStatus) as info:
                connect(srv.url("/no-flag"), open_timeout=10)
            assert info.value.response.status_code == 400
        log = srv.wait_for_log("without websocket=True")
        assert log.count("without websocket=True") == 1, "one line per path, not per request"
        assert "'/no-flag'" in log and "websocket=True)" in log
        assert "Traceback" not in log


def _upgrade_via_http(host: str, port: int, path: str) -> tuple[int, str]:
    """An upgrade request whose answer is read as plain HTTP (urllib would replace the
    Connection header with its own `close`)."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(
            "GET",
            path,
            headers={
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
        )
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize("which", ["wsapp", "user"])
def test_flask_run_answers_501_naming_the_fix(user_dir: Path, which: str) -> None:
    """`flask run` cannot upgrade: 501 with the fix in the body and once in the log, not a
    500 with KeyError: 'wsgi.websocket'."""
    port = new_port()
    if which == "wsapp":
        cwd, app, path = ROOT, "wsgi", "/echo"
    else:  # a user's app that asked for the checks itself
        cwd, path = user_dir, "/x"
        (user_dir / "checked.py").write_text(
            "from userapp import app\nfrom wsapp import route_checks\n\nroute_checks.install(app)\n"
        )
        app = "checked"
    command = [FLASK, "--app", app, "run", "--port", str(port)]
    with serving(cwd, command, port=port, env=checkout_env(), mode="flask") as srv:
        for _ in range(2):
            status, body = _upgrade_via_http(srv.host, srv.port, path)
            assert status == 501
            assert "python -m wsapp serve" in body and "wsapp.protocol.worker.WsappWorker" in body
        log = srv.log_text()
        assert log.count("cannot accept WebSocket connections") == 1, log
        assert "KeyError" not in log and "Traceback" not in log


def test_port_in_use_is_one_line_and_exit_1(user_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for target in (None, "userapp:app"):
            result = subprocess.run(
                serve_command(target, port),
                cwd=user_dir,
                env=checkout_env(),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 1
            assert result.stdout == ""
            assert (
                result.stderr
                == f"wsapp: cannot listen on 127.0.0.1:{port}: address already in use\n"
            )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nosuchmodule:app", "no module named 'nosuchmodule'"),
        ("userapp:nothing", "Failed to find attribute 'nothing' in 'userapp'"),
        ("userapp.py", "did you mean 'userapp:app'?"),
    ],
)
def test_unknown_app_is_one_line_and_exit_2(user_dir: Path, target: str, message: str) -> None:
    result = subprocess.run(
        serve_command(target, new_port()),
        cwd=user_dir,
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert (
        len(lines) == 1
        and lines[0].startswith("wsapp: cannot load the application")
        and message in lines[0]
    )


#: A date and time as logging (2026-12-01 19:39:01) or an access log (01/Dec/2026:19:39:11)
#: writes it.
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d|\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d")


@pytest.mark.parametrize("mode", ["serve", "gunicorn"])
def test_access_log_lines_carry_one_timestamp(user_dir: Path, mode: str) -> None:
    port = new_port()
    command = (
        serve_command("userapp:app", port) if mode == "serve" else gunicorn_commands(port)["conf"]
    )
    with serving(user_dir, command, port=port, env=checkout_env(), mode=mode) as srv:
        assert http_get(srv.http_url("/where"))[0] == 200
        assert http_get(srv.http_url("/nowhere"))[0] == 404
        log = srv.wait_for_log("/nowhere")
    lines = [
        line
        for line in log.splitlines()
        if '"GET /where HTTP/1.1" 200' in line or "/nowhere" in line
    ]
    assert len(lines) == 2, log
    for line in lines:
        assert len(TIMESTAMP.findall(line)) == 1, line


@pytest.mark.parametrize("mode", ["serve", "gunicorn"])
def test_view_error_closes_1011_with_one_log_line(user_dir: Path, mode: str) -> None:
    port = new_port()
    command = (
        serve_command("userapp:app", port) if mode == "serve" else gunicorn_commands(port)["conf"]
    )
    with serving(user_dir, command, port=port, env=checkout_env(), mode=mode) as srv:
        with connect(srv.url("/boom"), open_timeout=10) as ws:
            ws.send("go")
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1011
        log = srv.wait_for_log("RuntimeError: boom")
    (line,) = [line for line in log.splitlines() if "Exception on /boom" in line]
    assert len(TIMESTAMP.findall(line)) == 1, line
    assert "(unknown file)" not in line


def test_hand_built_server_closes_1001_on_sigterm(user_dir: Path) -> None:
    """The documented helpers for a server built in the user's own program."""
    port = new_port()
    (user_dir / "run_own.py").write_text(
        "from gevent import monkey\n\nmonkey.patch_all()\n\n"
        "import sys\n\nfrom wsapp.server import install_shutdown_handlers, make_server\n"
        "from userapp import app\n\n"
        "server = make_server(app, '127.0.0.1', int(sys.argv[1]))\n"
        "install_shutdown_handlers(server)\nserver.serve_forever()\n"
    )
    with serving(user_dir, [PYTHON, "run_own.py", str(port)], port=port, env=checkout_env()) as srv:
        assert_echoes(srv.url("/x"))
        assert_sigterm_closes_1001(srv)


def test_wsapp_serve_helper(user_dir: Path) -> None:
    port = new_port()
    (user_dir / "run_serve.py").write_text(
        "from gevent import monkey\n\nmonkey.patch_all()\n\n"
        "import sys\n\nimport wsapp\nfrom userapp import app\n\n"
        "wsapp.serve(app, port=int(sys.argv[1]))\n"
    )
    with serving(
        user_dir, [PYTHON, "run_serve.py", str(port)], port=port, env=checkout_env()
    ) as srv:
        assert_echoes(srv.url("/x"))
        log = assert_sigterm_closes_1001(srv)
    assert "monkey-patched" not in log


def test_gunicorn_conf_without_wsapp_installed_says_so(user_dir: Path) -> None:
    env = clean_env()
    probe = subprocess.run(
        [PYTHON, "-c", "import wsapp"], cwd=user_dir, env=env, capture_output=True, timeout=60
    )
    if probe.returncode == 0:
        pytest.skip("wsapp is installed in the test interpreter")
    result = subprocess.run(
        [GUNICORN, "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{new_port()}", "userapp:app"],
        cwd=user_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "wsapp is not installed" in result.stderr and "Traceback" not in result.stderr
