"""The client's logic without sockets: outbox order and window, acks, retries, ref
expiry, failure classification, resume URL, backoff and limits, URLs, error mapping."""

from __future__ import annotations

import json
import ssl

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.http11 import Response

from wsapp.client import Backoff, GaveUp, InvalidURL, NotSent, OutboxFull, Rejected, Unconfirmed
from wsapp.client.backoff import RetryBudget
from wsapp.client.core import Core
from wsapp.client.errors import ConnectFailed, Refused, TLSError, Unauthorized, connect_error
from wsapp.client.handlers import Handlers
from wsapp.client.urls import normalize_url, with_query


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def chat_core(**kwargs) -> Core:
    return Core("ws://h/chat/r", client_id="me", **kwargs)


def send(core: Core, text: str, ref: str | None = None):
    ref = core.new_ref(ref)
    return core.add(Core.message_frame(text, ref), future=None, ref=ref)


def hello(core: Core, **extra) -> list[dict]:
    feed = core.receive(json.dumps({"type": "hello", "name": "me", "history": 0, **extra}))
    return feed.events


def texts(pendings) -> list[str]:
    return [json.loads(p.frame)["text"] for p in pendings]


def ack(core: Core, pending, message_id: str = "1-0"):
    return core.receive(json.dumps({"type": "ack", "ref": pending.ref, "id": message_id}))


def test_connect_url_carries_name_token_client_and_the_last_id() -> None:
    core = Core("http://h:1/chat/r?name=given&token=t", client_id="c-1")
    assert core.connect_url() == "ws://h:1/chat/r?name=given&token=t&client=c-1"
    core.receive(json.dumps({"type": "message", "id": "7-1", "name": "x", "text": "y"}))
    assert core.connect_url() == "ws://h:1/chat/r?name=given&token=t&since=7-1&client=c-1"
    hello(core, name="renamed")
    assert "name=renamed" in core.connect_url()
    assert Core("ws://h/echo").connect_url() == "ws://h/echo"  # plain: no parameters
    assert len(Core("ws://h/chat/r").client_id) >= 16  # random by default
    with pytest.raises(InvalidURL):
        Core("ws://h/chat/r", client_id="not valid!")


def test_nothing_is_written_before_hello_then_in_order_within_the_window() -> None:
    core = chat_core(max_in_flight=2)
    pendings = [send(core, f"m{i}") for i in range(4)]
    core.opened()
    assert core.next_writes()[0] == []  # chat is live after hello only
    events = hello(core)
    assert events[0]["type"] == "connect" and events[0]["reconnect"] is False
    assert texts(core.next_writes()[0]) == ["m0", "m1"]
    assert core.next_writes()[0] == []  # window full
    assert ack(core, pendings[0]).settled == [(pendings[0], "1-0", None)]
    assert texts(core.next_writes()[0]) == ["m2"]


def test_a_reconnect_writes_everything_unacked_again_in_order() -> None:
    core = chat_core()
    pendings = [send(core, f"m{i}") for i in range(3)]
    core.opened()
    hello(core)
    core.next_writes()
    ack(core, pendings[1])  # acks may come out of order (lost ones)
    core.closed()
    send(core, "m3")
    core.opened()
    assert core.next_writes()[0] == []
    events = hello(core)
    assert events[0]["reconnect"] is True
    assert texts(core.next_writes()[0]) == ["m0", "m2", "m3"]
    assert [p.ref for p in core.outbox.values()] == [pendings[0].ref, pendings[2].ref,
                                                     core.by_ref[list(core.by_ref)[-1]].ref]


def test_a_retryable_error_holds_the_message_and_keeps_the_order() -> None:
    clock = Clock()
    core = chat_core(clock=clock, retry_backoff=Backoff(initial=1.0, jitter=0))
    core.opened()
    hello(core)
    first = send(core, "first")
    assert texts(core.next_writes()[0]) == ["first"]
    feed = core.receive(json.dumps({"type": "error", "code": "unavailable", "reason": "r",
                                    "ref": first.ref}))
    assert feed.settled == [] and feed.events[0]["code"] == "unavailable"
    send(core, "second")
    writes, _, wake = core.next_writes()
    assert writes == [] and wake == 101.0  # nothing overtakes the held message
    clock.now = 101.0
    assert texts(core.next_writes()[0]) == ["first", "second"]


def test_a_refused_message_is_rejected_and_leaves_the_outbox() -> None:
    core = chat_core()
    core.opened()
    hello(core)
    p = send(core, "x")
    core.next_writes()
    feed = core.receive(json.dumps({"type": "error", "code": "message_too_large",
                                    "reason": "too big", "ref": p.ref}))
    [(pending, value, exc)] = feed.settled
    assert pending is p and value is None
    assert isinstance(exc, Rejected) and exc.code == "message_too_large" and exc.ref == p.ref
    assert core.unacked() == 0 and core.queued_bytes == 0


def test_a_message_older_than_ref_ttl_is_not_written_again() -> None:
    clock = Clock()
    core = chat_core(clock=clock, ref_ttl=300)
    core.opened()
    hello(core)
    old = send(core, "old")
    core.next_writes()
    core.closed()
    clock.now += 301
    fresh = send(core, "fresh")  # never written: fine to send however late
    core.opened()
    hello(core)
    writes, expired, _ = core.next_writes()
    assert writes == [fresh]
    [(pending, _, exc)] = expired
    assert pending is old and isinstance(exc, Unconfirmed)


def test_fail_all_says_not_sent_or_unconfirmed() -> None:
    core = chat_core()
    core.opened()
    hello(core)
    written = send(core, "written")
    core.next_writes()
    unwritten = send(core, "unwritten")
    outcome = {p.ref: exc for p, _, exc in core.fail_all("closed")}
    assert isinstance(outcome[written.ref], Unconfirmed)
    assert isinstance(outcome[unwritten.ref], NotSent)
    assert not isinstance(outcome[unwritten.ref], Unconfirmed)


def test_outbox_budget_and_refs() -> None:
    core = chat_core(outbox_bytes=260)
    send(core, "x" * 100)
    with pytest.raises(OutboxFull):
        send(core, "y" * 100)
    send(core, "mine", ref="task-1")
    with pytest.raises(ValueError):
        core.new_ref("task-1")  # in the outbox already
    with pytest.raises(ValueError):
        core.new_ref("r" * 129)
    assert core.new_ref() != core.new_ref("other")


def test_gap_once_per_unrecovered_hello_and_plain_endpoints() -> None:
    core = Core("ws://h/chat/r?since=5-0")
    core.opened()
    events = hello(core, recovered=False)
    assert [e["type"] for e in events] == ["connect", "gap"]
    assert events[1]["since"] == "5-0" and core.gaps == 1 and core.recovered is False
    core.closed()
    core.opened()
    assert [e["type"] for e in hello(core, recovered=True)] == ["connect"]
    plain = Core("ws://h/echo")
    assert plain.opened()[0]["type"] == "connect" and plain.live
    p = plain.add(b"\x00", future=None)
    writes, _, _ = plain.next_writes()
    assert writes == [p] and plain.written(writes) == [(p, None, None)]
    assert plain.receive(b"\x01").events == [{"type": "message", "data": b"\x01"}]
    assert plain.receive("t").events == [{"type": "message", "text": "t"}]


def test_backoff_grows_with_jitter_and_caps() -> None:
    assert list(zip(range(5), Backoff(0.5, 2, 4, jitter=0).delays(), strict=False)) == [
        (0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0)]
    jittered = Backoff(1, 2, 8, jitter=0.5).delays(rng=lambda: 1.0)
    assert [next(jittered) for _ in range(3)] == [0.5, 1.0, 2.0]
    with pytest.raises(ValueError):
        Backoff(initial=2, maximum=1)


def test_retry_budget_limits() -> None:
    err = ConnectFailed("refused")
    budget = RetryBudget(Backoff(jitter=0), max_tries=3)
    assert budget.failed(err) == 0.5 and budget.failed(err) == 1.0
    with pytest.raises(GaveUp) as info:
        budget.failed(err)
    assert info.value.tries == 3 and info.value.last_error is err
    clock = Clock()
    budget = RetryBudget(Backoff(initial=2, jitter=0), max_time=3, clock=clock)
    assert budget.failed(err) == 2
    clock.now += 2
    assert budget.failed(err) == 1  # only what is left of max_time
    clock.now += 1
    with pytest.raises(GaveUp):
        budget.failed(err)
    budget.reset()
    assert budget.tries == 0
    with pytest.raises(TLSError):  # permanent errors are raised as they are
        RetryBudget(Backoff()).failed(TLSError("bad cert"))


def _status(code: int, body: bytes) -> InvalidStatus:
    return InvalidStatus(Response(code, "x", Headers(), body))


def test_connect_errors_are_translated() -> None:
    err = connect_error(_status(400, b"invalid room name: use ...\nmore\n"), "ws://h/chat/x")
    assert isinstance(err, Refused) and err.status == 400 and err.permanent
    assert err.reason == "invalid room name: use ..." and str(err) == (
        "refused: HTTP 400: invalid room name: use ...")
    assert isinstance(connect_error(_status(401, b"token"), "u"), Unauthorized)
    assert isinstance(connect_error(_status(403, b""), "u"), Unauthorized)
    busy = connect_error(_status(503, b"busy"), "u")
    assert isinstance(busy, Refused) and not busy.permanent
    assert connect_error(_status(400, b"\x1b[31mred\x00"), "u").reason == "?[31mred?"
    refused = connect_error(ConnectionRefusedError(111, "Connection refused"), "ws://h/")
    assert str(refused) == "cannot connect to ws://h/: connection refused"
    assert not refused.permanent
    tls = connect_error(ssl.SSLCertVerificationError("certificate verify failed"), "wss://h/")
    assert isinstance(tls, TLSError) and tls.permanent and "ca_file" in str(tls)


def test_urls() -> None:
    assert normalize_url("http://h/chat/a b") == "ws://h/chat/a%20b"
    assert normalize_url("https://h/x") == "wss://h/x"
    assert normalize_url("h:8000/echo") == "ws://h:8000/echo"
    assert normalize_url("ws://h/chat/caf%C3%A9") == "ws://h/chat/caf%C3%A9"
    assert normalize_url("ws://h/chat/café") == "ws://h/chat/caf%C3%A9"
    assert normalize_url("ws://h") == "ws://h/"
    for bad in ("ftp://h/", "ws://:1/", "ws://h:x/", "ws://h:0/", "   "):
        with pytest.raises(InvalidURL):
            normalize_url(bad)
    assert with_query("ws://h/c?a=1", b="x y", a=None) == "ws://h/c?b=x+y"


def test_handlers_registry() -> None:
    h = Handlers()
    assert not h
    seen = []
    h.on("event:action", lambda e: seen.append("named"))
    h.on("event")(lambda e: seen.append("any"))
    h.on("*", lambda e: seen.append("all"))
    for fn in h.for_event({"type": "event", "event": "action"}):
        fn({})
    assert seen == ["any", "named", "all"]
    with pytest.raises(ValueError):
        h.on("mesage")
