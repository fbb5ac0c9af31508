"""examples/classic_echo served as its README says, in both modes, over real sockets."""

from __future__ import annotations

import urllib.request

import pytest

from tests.support.servers import GUNICORN, PYTHON, ROOT
from tests.support.userapp import (
    assert_echoes,
    assert_sigterm_closes_1001,
    clean_env,
    new_port,
    serving,
)

EXAMPLE = ROOT / "examples" / "classic_echo"


def command(mode: str, port: int) -> list[str]:
    if mode == "serve":
        return [PYTHON, "-m", "wsapp", "serve", "app:app", "--port", str(port)]
    return [GUNICORN, "-c", "../../gunicorn.conf.py", "-b", f"127.0.0.1:{port}", "app:app"]


@pytest.mark.parametrize("mode", ["serve", "gunicorn"])
def test_classic_echo_example(mode: str) -> None:
    port = new_port()
    env = clean_env(PYTHONPATH=str(ROOT))  # wsapp from this checkout, the app from its directory
    with serving(EXAMPLE, command(mode, port), port=port, env=env, mode=mode) as srv:
        with urllib.request.urlopen(srv.http_url("/"), timeout=10) as page:
            assert page.status == 200 and b"/echo" in page.read()
        assert_echoes(srv.url("/echo"))
        assert_sigterm_closes_1001(srv, "/echo")
