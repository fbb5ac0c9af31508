"""examples/push's page in real Chromium: pushes from GET /push, a long task's progress."""

from __future__ import annotations

import urllib.request

from tests.support.servers import PYTHON, ROOT
from tests.support.userapp import clean_env, new_port, serving

EXAMPLE = ROOT / "examples" / "push"


def test_push_example_page(new_page) -> None:
    port = new_port()
    env = clean_env(PYTHONPATH=str(ROOT), PUSH_STEPS="3", PUSH_EVERY="0.2")
    command = [PYTHON, "-m", "wsapp", "serve", "app:app", "--port", str(port)]
    with serving(EXAMPLE, command, port=port, env=env) as srv:
        page, watch = new_page()
        page.goto(srv.http_url("/"))
        page.wait_for_selector("#start:not([disabled])")
        assert page.text_content("#status") == "connected"
        for _ in range(2):
            with urllib.request.urlopen(srv.http_url("/push"), timeout=10) as answer:
                assert answer.status == 200
        page.locator("#pushes li").nth(1).wait_for()
        assert page.eval_on_selector_all("#pushes li", "els => els.map(e => e.textContent)") == [
            "test message!", "test message!"]
        page.click("#start")
        page.wait_for_selector("#step:text-is('done: 3 steps')")
        assert page.eval_on_selector("#progress", "p => [p.value, p.max]") == [3, 3]
        watch.assert_clean()
