"""Deployment files: gunicorn.conf.py rules, deploy/nginx.conf content and syntax."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile

import pytest

from tests.deploy.cluster import NGINX, http, render_site, render_standalone
from tests.support.redis_server import running_redis
from tests.support.servers import GUNICORN, ROOT, free_port, running_server, wait_for_port
from wsapp.settings import Settings

pytestmark = pytest.mark.timeout(60)


def gunicorn(
    args: list[str], env: dict[str, str], timeout: float = 20
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [GUNICORN, "-c", str(ROOT / "gunicorn.conf.py"), *args, "wsgi:app"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("WSAPP_")} | env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["-w", "3"], {}),  # on the command line: Settings never sees it
        ([], {"WSAPP_WORKERS": "2"}),
    ],
)
def test_more_than_one_worker_without_redis_is_refused(args, env) -> None:
    result = gunicorn(["-b", f"127.0.0.1:{free_port()}", *args], env)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "WSAPP_REDIS_URL" in out
    assert "Booting worker" not in out


def test_bind_from_wsapp_bind_and_b_wins() -> None:
    port = free_port()
    with running_server(
        "gunicorn", env={"WSAPP_BIND": f"127.0.0.1:{free_port()}"}, port=port
    ) as srv:
        assert f"Listening at: http://127.0.0.1:{port}" in srv.wait_for_log("Listening at")
        assert http(srv.http_url("/healthz"), timeout=10)[0] == 200  # booted: a quick stop
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSAPP_")} | {
        "WSAPP_BIND": f"127.0.0.1:{port}"
    }
    proc = subprocess.Popen(
        [GUNICORN, "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port("127.0.0.1", port, proc=proc)
        status, _ = http(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert status == 200
    finally:
        proc.terminate()
        proc.wait(15)


def test_two_workers_with_redis_start() -> None:
    with (
        running_redis() as r,
        running_server("gunicorn", env={"WSAPP_REDIS_URL": r.url}, extra_args=["-w", "2"]) as srv,
    ):
        log = srv.wait_for_log("redis broker: connected", timeout=15)
        assert log.count("Booting worker") == 2


def test_nginx_conf_has_what_websockets_need() -> None:
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    assert re.search(r"map \$http_upgrade \$connection_upgrade", text)
    assert "proxy_http_version 1.1;" in text
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert "proxy_set_header Connection $connection_upgrade;" in text
    assert "ip_hash;" in text
    assert text.count("# wsapp-upstream") >= 2
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in text
    timeout = int(re.search(r"proxy_read_timeout (\d+)s;", text).group(1))
    defaults = Settings()
    assert timeout > defaults.ping_interval + defaults.ping_timeout
    assert re.search(r"location /assets/ \{\s*alias ", text)  # the pages' asset URLs


def test_rendered_config_passes_nginx_t() -> None:
    prefix = tempfile.mkdtemp(prefix="wsapp-nginx-t-")
    site = render_site(
        ["127.0.0.1:18001", "127.0.0.1:18002", "127.0.0.1:18003"],
        listen="127.0.0.1:18080",
        static_root=ROOT / "static",
    )
    assert site.count("server 127.0.0.1:1800") == 3
    conf = render_standalone(prefix, site)
    with open(os.path.join(prefix, "nginx.conf"), "w") as f:
        f.write(conf)
    result = subprocess.run(
        [
            NGINX, "-t",
            "-p", f"{prefix}/",
            "-e", f"{prefix}/logs/error.log",
            "-c", f"{prefix}/nginx.conf",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
