"""How connections end is recorded when it happens (a `CloseCause`), and the close-code
metric label cannot grow without bound: a client may pick any of ~2,000 valid codes."""

from __future__ import annotations

import time

from tests.security.conftest import http_get, metric_value, wait_connections
from tests.support.rawws import RawWS
from tests.support.servers import running_server
from wsapp.metrics import close_code_label


def test_close_code_labels_are_the_registered_codes_or_a_class():
    assert close_code_label(1000) == "1000" and close_code_label(1011) == "1011"
    assert close_code_label(None) == "none"
    assert {close_code_label(c) for c in range(3000, 4000)} == {"3xxx"}
    assert {close_code_label(c) for c in range(4000, 5000)} == {"4xxx"}
    assert close_code_label(1016) == "other"


def test_two_hundred_client_codes_make_one_series_and_causes_are_counted():
    with running_server("serve", env={"WSAPP_RATE_LIMIT": "0"}) as srv:
        for code in range(4000, 4200):
            with RawWS.connect(srv.url("/echo")) as ws:
                ws.send_close(code, b"bye")
                ws.expect_close(code)
        with RawWS.connect(srv.url("/echo")) as ws:  # a protocol error: cause protocol_error
            ws.send_raw(b"\x81\x05hello")  # unmasked
            ws.expect_close(1002)
        wait_connections(srv, 0)
        time.sleep(0.1)
        text = http_get(srv, "/metrics")[1]
        series = [line for line in text.splitlines() if line.startswith("wsapp_closes_total{")]
        assert metric_value(text, "wsapp_closes_total", endpoint="echo", code="4xxx") == 200
        assert metric_value(text, "wsapp_closes_total", endpoint="echo", code="1002") == 1
        assert len(series) <= 20, series
        log = srv.log_text()
        assert log.count("cause=client") >= 200 and "cause=protocol_error" in log
