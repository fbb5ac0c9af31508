"""permessage-deflate negotiation (RFC 7692 5 and 7.1) as pure functions: header in, answer out."""

from __future__ import annotations

import pytest

from wsapp.protocol.deflate import DeflateSettings, accept_offer, negotiate, parse_extensions
from wsapp.protocol.handshake import negotiate_extensions

DEFAULT = DeflateSettings()
ROOMS = DEFAULT.for_rooms()
WIDE = DeflateSettings(
    server_max_window_bits=15, client_max_window_bits=15, client_context_takeover=True
)


def answer(header: str | None, settings: DeflateSettings | None = DEFAULT) -> str | None:
    agreement = negotiate(header, settings)
    return None if agreement is None else agreement.response


# --- the header grammar (RFC 6455 9.1) ----------------------------------------------------


def test_parse_several_offers_with_and_without_values():
    got = parse_extensions(
        'permessage-deflate; client_max_window_bits; server_max_window_bits="10", '
        "x-webkit-deflate-frame,permessage-deflate ; server_no_context_takeover"
    )
    assert got == [
        ("permessage-deflate",
         (("client_max_window_bits", None), ("server_max_window_bits", "10"))),
        ("x-webkit-deflate-frame", ()),
        ("permessage-deflate", (("server_no_context_takeover", None),)),
    ]


def test_parse_keeps_duplicates_and_unknown_parameters_for_the_negotiation_to_judge():
    assert parse_extensions("permessage-deflate; a; a=1; b") == [
        ("permessage-deflate", (("a", None), ("a", "1"), ("b", None))),
    ]


@pytest.mark.parametrize("element", [
    'permessage-deflate; x="a b"',  # unquoted it is not a token (RFC 6455 9.1)
    "permessage-deflate; =1",
    "per message-deflate",
    "permessage-deflate; x=a b",
    "permessage-deflate; x==1",
])
def test_malformed_elements_are_none_not_errors(element):
    assert parse_extensions(element + ", permessage-deflate") == [None, ("permessage-deflate", ())]


def test_an_unterminated_quote_swallows_the_rest():
    assert parse_extensions('permessage-deflate; x="open, permessage-deflate') == [None]


def test_empty_list_elements_are_skipped():
    assert parse_extensions(" , ,permessage-deflate,, ") == [("permessage-deflate", ())]


def test_comma_inside_a_quoted_value_does_not_split():
    assert parse_extensions('a; b="x,y"') == [None]  # "x,y" is no token: the element is bad
    assert parse_extensions('a; b="x\\y", c') == [("a", (("b", "xy"),)), ("c", ())]


# --- answers (RFC 7692 7.1) --------------------------------------------------------------


def pmd(*params: str) -> str:
    return "; ".join(("permessage-deflate", *params))


NCT_S, NCT_C = "server_no_context_takeover", "client_no_context_takeover"
S12, C12 = "server_max_window_bits=12", "client_max_window_bits=12"


@pytest.mark.parametrize("offer,expected", [
    ("permessage-deflate", pmd(NCT_C, S12)),
    ("permessage-deflate; client_max_window_bits", pmd(NCT_C, S12, C12)),
    ("permessage-deflate; client_max_window_bits=10", pmd(NCT_C, S12, "client_max_window_bits=10")),
    ("permessage-deflate; server_max_window_bits=9", pmd(NCT_C, "server_max_window_bits=9")),
    ("permessage-deflate; server_max_window_bits=15", pmd(NCT_C, S12)),
    ("permessage-deflate; server_no_context_takeover", pmd(NCT_S, NCT_C, S12)),
    ('PERMESSAGE-DEFLATE; Client_Max_Window_Bits="9"', pmd(NCT_C, S12, "client_max_window_bits=9")),
])
def test_answers_with_default_settings(offer, expected):
    assert answer(offer) == expected


def test_rooms_say_server_no_context_takeover_unasked():
    assert answer("permessage-deflate; client_max_window_bits", ROOMS) == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=12; client_max_window_bits=12"
    )
    agreement = negotiate("permessage-deflate", ROOMS)
    assert agreement.server_no_context_takeover and agreement.client_no_context_takeover


def test_wide_settings_leave_windows_and_context_to_the_client():
    assert answer("permessage-deflate", WIDE) == "permessage-deflate"
    assert answer("permessage-deflate; client_max_window_bits", WIDE) == (
        "permessage-deflate; client_max_window_bits=15"
    )
    agreement = negotiate("permessage-deflate; client_no_context_takeover", WIDE)
    assert agreement.response == "permessage-deflate; client_no_context_takeover"
    assert agreement.client_no_context_takeover and not agreement.server_no_context_takeover
    agreement = negotiate("permessage-deflate", WIDE)
    assert (agreement.server_max_window_bits, agreement.client_max_window_bits) == (15, 15)
    assert not agreement.client_no_context_takeover


def test_client_max_window_bits_is_never_answered_unless_offered():
    # RFC 7692 7.1.2.2: "client_max_window_bits" in an answer only to an offer that has it.
    for settings in (DEFAULT, ROOMS, WIDE):
        for offer in ("permessage-deflate", "permessage-deflate; server_max_window_bits=10"):
            assert "client_max_window_bits" not in answer(offer, settings)


def test_inflater_window_follows_the_client_answer():
    assert negotiate("permessage-deflate", DEFAULT).client_max_window_bits == 15
    browser = negotiate("permessage-deflate; client_max_window_bits", DEFAULT)
    assert browser.client_max_window_bits == 12
    # 8 bits offered by the client: answered as such, inflated with 9 (zlib's smallest).
    agreement = negotiate("permessage-deflate; client_max_window_bits=8", DEFAULT)
    assert agreement.response.endswith("client_max_window_bits=8")
    assert agreement.client_max_window_bits == 9


@pytest.mark.parametrize("params", [
    (("server_max_window_bits", "8"),),  # zlib cannot compress with 256 bytes
    (("server_max_window_bits", None),),
    (("server_max_window_bits", "16"),),
    (("server_max_window_bits", "7"),),
    (("server_max_window_bits", "010"),),
    (("client_max_window_bits", "16"),),
    (("client_max_window_bits", "abc"),),
    (("server_no_context_takeover", "1"),),
    (("client_no_context_takeover", ""),),
    (("server_no_context_takeover", None), ("server_no_context_takeover", None)),
    (("client_max_window_bits", None), ("client_max_window_bits", "10")),
    (("mystery", None),),
])
def test_unacceptable_offers_are_declined(params):
    assert accept_offer(params, DEFAULT) is None


def test_first_acceptable_offer_wins():
    offer = ("permessage-deflate; server_max_window_bits=8, permessage-deflate; x=1, "
             "permessage-deflate; server_max_window_bits=10, permessage-deflate")
    assert answer(offer) == pmd(NCT_C, "server_max_window_bits=10")
    offer = "foo, permessage-deflate; server_no_context_takeover, permessage-deflate"
    assert answer(offer) == pmd(NCT_S, NCT_C, S12)


@pytest.mark.parametrize("header", [
    None, "", "x-webkit-deflate-frame", "permessage-deflate; server_max_window_bits=8",
    "permessage-deflate; foo", ";;;", 'permessage-deflate; client_max_window_bits="1',
])
def test_nothing_acceptable_declines(header):
    assert negotiate(header, DEFAULT) is None


def test_off_declines_everything():
    assert negotiate("permessage-deflate", None) is None
    assert negotiate("permessage-deflate", DeflateSettings(enabled=False)) is None


def test_browsers_share_one_agreement():
    offer = "permessage-deflate; client_max_window_bits"
    assert negotiate(offer, DEFAULT) is negotiate(offer, DEFAULT)


def test_long_headers_are_negotiated_without_the_cache():
    offer = "x-" + "a" * 2000 + ", permessage-deflate"
    assert negotiate(offer, DEFAULT) is not None


def test_handshake_helper_gives_the_response_header():
    environ = {"HTTP_SEC_WEBSOCKET_EXTENSIONS": "permessage-deflate; client_max_window_bits"}
    agreement, headers = negotiate_extensions(environ, DEFAULT)
    assert headers == (("Sec-WebSocket-Extensions", agreement.response),)
    assert negotiate_extensions({}, DEFAULT) == (None, ())
    assert negotiate_extensions(environ, None) == (None, ())


def test_settings_are_validated_and_interned():
    with pytest.raises(ValueError, match="server_max_window_bits"):
        DeflateSettings(server_max_window_bits=8)
    with pytest.raises(ValueError, match="level"):
        DEFAULT.with_changes(level=10)
    assert DEFAULT.with_changes(level=6) is DEFAULT.with_changes(level=6)
    assert ROOMS is DEFAULT.for_rooms()


@pytest.mark.parametrize("name,value", [
    ("WSAPP_DEFLATE_SERVER_WINDOW_BITS", "8"), ("WSAPP_DEFLATE_CLIENT_WINDOW_BITS", "16"),
    ("WSAPP_DEFLATE_LEVEL", "10"), ("WSAPP_DEFLATE_MEM_LEVEL", "0"),
    ("WSAPP_DEFLATE_THRESHOLD", "-1"), ("WSAPP_DEFLATE", "maybe"), ("WSAPP_DEFLATE_IDLE", "x"),
])
def test_bad_deflate_settings_stop_the_process_naming_the_variable(name, value):
    from wsapp.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_process_settings_give_the_default_deflate_settings():
    from wsapp.settings import Settings

    settings = Settings.from_env({"WSAPP_DEFLATE_LEVEL": "6", "WSAPP_DEFLATE_CLIENT_CONTEXT": "1"})
    assert settings.deflate_settings == DeflateSettings(level=6, client_context_takeover=True)
    assert settings.deflate_settings is settings.deflate_settings
    assert Settings.from_env({"WSAPP_DEFLATE": "0"}).deflate_settings is None
