"""Family 13 (after Autobahn's section 13): permessage-deflate negotiation sets, RFC 7692 7.1.

Each offer gets the exact answer the server should give (RFC 7692 7.1 and wsapp's
settings), checked with the client's rules of RFC 7692 7, then data flows under that
agreement: text and binary from 16 B to 128 KiB with repeats at long distances (a server
compressing with a larger window than it announced breaks the client's inflate) and whole
messages sent again (context takeover, where agreed), as one frame and fragmented.

Two servers per serving mode: wsapp's defaults (windows of 12 bits, clients answered
`client_no_context_takeover`), and one with 15-bit windows and client context allowed,
so that every window from 9 to 15 bits is really used in each direction.
"""

from __future__ import annotations

import functools
import random

import pytest

from tests.conformance.conftest import DEFAULT_LIMIT, MODES, _target
from tests.support.deflate_client import DeflateWS, echo_many
from tests.support.rawws import Op

WIDE_ENV = {
    "WSAPP_DEFLATE_SERVER_WINDOW_BITS": "15",
    "WSAPP_DEFLATE_CLIENT_WINDOW_BITS": "15",
    "WSAPP_DEFLATE_CLIENT_CONTEXT": "1",
}
NCT_S, NCT_C = "server_no_context_takeover", "client_no_context_takeover"


@pytest.fixture(scope="module", params=MODES)
def wide_target(request):
    """A server with 15-bit windows both ways and client context takeover allowed."""
    yield from _target(request.param, DEFAULT_LIMIT, WIDE_ENV)


def answer(*params: str) -> str:
    return "; ".join(("permessage-deflate", *params))


def _default(offer_params: dict, wide: bool) -> str:
    """The answer wsapp gives with its defaults (or WIDE_ENV) to one acceptable offer."""
    ours_s, ours_c = (15, 15) if wide else (12, 12)
    parts = []
    if NCT_S in offer_params:
        parts.append(NCT_S)
    if NCT_C in offer_params or not wide:
        parts.append(NCT_C)
    if "server_max_window_bits" in offer_params:
        bits = min(ours_s, offer_params["server_max_window_bits"])
        parts.append(f"server_max_window_bits={bits}")
    elif ours_s < 15:
        parts.append(f"server_max_window_bits={ours_s}")
    if "client_max_window_bits" in offer_params:
        value = offer_params["client_max_window_bits"] or 15
        parts.append(f"client_max_window_bits={min(ours_c, value)}")
    return answer(*parts)


# (id, offer, the accepted offer's parameters)
SETS = [
    ("default", "permessage-deflate", {}),
    ("browser", "permessage-deflate; client_max_window_bits", {"client_max_window_bits": None}),
    ("client_nct", f"permessage-deflate; {NCT_C}", {NCT_C: None}),
    ("server_nct", f"permessage-deflate; {NCT_S}", {NCT_S: None}),
    ("both_nct", f"permessage-deflate; {NCT_S}; {NCT_C}; client_max_window_bits",
     {NCT_S: None, NCT_C: None, "client_max_window_bits": None}),
    *((f"server_bits{n}", f"permessage-deflate; server_max_window_bits={n}",
       {"server_max_window_bits": n}) for n in range(9, 16)),
    *((f"client_bits{n}", f"permessage-deflate; client_max_window_bits={n}",
       {"client_max_window_bits": n}) for n in range(9, 16)),
    ("quoted", 'permessage-deflate; client_max_window_bits="10"; server_max_window_bits="11"',
     {"client_max_window_bits": 10, "server_max_window_bits": 11}),
    ("spaces", "  PerMessage-Deflate ;server_no_context_takeover ;  client_max_window_bits = 9 ",
     {NCT_S: None, "client_max_window_bits": 9}),
]

# Lists of offers whose first is unacceptable: the first acceptable one is taken.
FALLBACKS = [
    ("bits8_first",
     "permessage-deflate; server_max_window_bits=8, permessage-deflate; client_max_window_bits",
     {"client_max_window_bits": None}),
    ("unknown_param_first", "permessage-deflate; x_level=3, permessage-deflate", {}),
    ("value_on_flag_first", f"permessage-deflate; {NCT_S}=1, permessage-deflate; {NCT_S}",
     {NCT_S: None}),
    ("duplicate_first", f"permessage-deflate; {NCT_C}; {NCT_C}, permessage-deflate; {NCT_C}",
     {NCT_C: None}),
    ("missing_value_first", "permessage-deflate; server_max_window_bits, permessage-deflate", {}),
    ("bits16_first",
     "permessage-deflate; client_max_window_bits=16, permessage-deflate; server_max_window_bits=10",
     {"server_max_window_bits": 10}),
    ("leading_zero_first", "permessage-deflate; server_max_window_bits=010, permessage-deflate",
     {}),
    ("other_extension_first", "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits",
     {"client_max_window_bits": None}),
    ("three_offers", "permessage-deflate; server_max_window_bits=8, permessage-deflate; x=1, "
     "permessage-deflate; server_max_window_bits=9", {"server_max_window_bits": 9}),
]

# Nothing acceptable: no extension in the 101, the handshake still succeeds.
DECLINED = [
    ("only_bits8", "permessage-deflate; server_max_window_bits=8"),
    ("only_unknown", "permessage-deflate; foo"),
    ("other_extension", "x-webkit-deflate-frame; no_context_takeover"),
    ("garbage", ";;; ,,, ="),
    # An unbalanced quote swallows the rest of the header: nothing parses.
    ("open_quote", 'permessage-deflate; client_max_window_bits="1, permessage-deflate'),
]


@functools.cache
def data() -> list[tuple[int, bytes]]:
    """About a hundred messages: long-distance repeats inside messages, and whole messages
    sent again (context takeover across messages, where it is agreed)."""
    rng = random.Random(13)
    out: list[tuple[int, bytes]] = []
    for size in (16, 64, 256, 1024, 4096, 16384, 65536, 131072):
        for _ in range(4 if size >= 65536 else 12):
            # A random block repeated: matches at distances up to the block size (600 B to
            # 24 KiB), beyond the smaller windows.
            length = rng.choice([600, 3000, 9000, 24000])
            block = bytes(rng.randrange(97, 123) for _ in range(length))
            text = (block * (size // len(block) + 1))[:size]
            out.append((Op.TEXT, text))
            out.append((Op.BINARY, rng.randbytes(8) + text[8:]))
    for opcode, payload in list(out[:40:3]):
        out.append((opcode, payload))  # the same message again: a back reference at best
    return out


def _check_set(target, offer: str, params: dict, wide: bool) -> None:
    with DeflateWS.connect(target.url, offer, timeout=5) as ws:
        got = ws.ws.response.header("sec-websocket-extensions")
        assert got == _default(params, wide), f"offer {offer!r}: answer {got!r}"
        assert ws.negotiated is not None
        batch = data()
        echo_many(ws, batch, timeout=60)
        echo_many(ws, batch[::3], fragment=1024, timeout=60)
        assert ws.compressed_received > len(batch) // 2
        ws.ws.send_close(1000)
        ws.ws.expect_close(1000, timeout=5)


@pytest.mark.parametrize("offer,params", [s[1:] for s in SETS], ids=[s[0] for s in SETS])
def test_negotiation_set(target, offer, params):
    _check_set(target, offer, params, wide=False)


WIDE_SETS = [s for s in SETS if s[0] in ("default", "browser", "client_nct", "server_nct")
             or "bits" in s[0]]


@pytest.mark.parametrize("offer,params", [s[1:] for s in WIDE_SETS], ids=[s[0] for s in WIDE_SETS])
def test_negotiation_set_wide_windows(wide_target, offer, params):
    _check_set(wide_target, offer, params, wide=True)


@pytest.mark.parametrize("offer,params", [s[1:] for s in FALLBACKS], ids=[s[0] for s in FALLBACKS])
def test_first_acceptable_offer_is_taken(target, offer, params):
    with DeflateWS.connect(target.url, offer, timeout=5) as ws:
        got = ws.ws.response.header("sec-websocket-extensions")
        assert got == _default(params, wide=False), f"offer {offer!r}: answer {got!r}"
        echo_many(ws, data()[::4], timeout=30)


@pytest.mark.parametrize("offer", [s[1] for s in DECLINED], ids=[s[0] for s in DECLINED])
def test_unacceptable_offers_are_declined_not_refused(target, offer):
    with DeflateWS.connect(target.url, offer, timeout=5) as ws:
        assert ws.ws.response.status == 101
        assert ws.ws.response.header("sec-websocket-extensions") is None
        assert ws.negotiated is None
        echo_many(ws, data()[:30], timeout=30)  # uncompressed both ways
        assert ws.compressed_received == 0
        ws.ws.send_frame(Op.TEXT, b"\xf2H\xcd\xc9\xc9\x07\x00", rsv=4)  # RSV1 not negotiated
        ws.ws.expect_close(1002)


def test_no_offer_means_no_compression(target):
    with DeflateWS.connect(target.url, None, timeout=5) as ws:
        assert ws.ws.response.header("sec-websocket-extensions") is None
        echo_many(ws, data()[:30], timeout=30)
        assert ws.compressed_received == 0


def test_context_takeover_with_client_context(wide_target):
    """With client context allowed, a message may refer to an earlier one: the server keeps
    its inflater between messages, and its own compressor too (the echoes get smaller)."""
    with DeflateWS.connect(wide_target.url, "permessage-deflate", timeout=5) as ws:
        assert ws.client_context and ws.server_context
        message = bytes(random.Random(5).randrange(256) for _ in range(20000))
        ws.send_message(Op.BINARY, message)
        assert ws.recv_message() == (Op.BINARY, message)
        first = ws.bytes_received
        again = ws.compress(message)
        assert len(again) < 200  # only a back reference into the previous message
        ws.ws.send_frame(Op.BINARY, again, rsv=4)
        assert ws.recv_message() == (Op.BINARY, message)
        assert ws.bytes_received - first < 500, "the echo did not use context takeover"
