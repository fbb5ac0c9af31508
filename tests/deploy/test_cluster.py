"""The whole deployment for real: nginx (deploy/nginx.conf) -> 2 gunicorn x 2 workers -> Redis.

One cluster per module; tests that kill a backend or Redis bring it back before they end.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.deploy.cluster import PRESENCE_TTL, Cluster, http
from tests.support.servers import ROOT

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    c = Cluster(backends=2)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def new_room() -> str:
    return f"r-{uuid.uuid4().hex[:10]}"


def test_one_room_across_backends_one_history_one_member_list(cluster: Cluster) -> None:
    room = new_room()
    ann = cluster.client(room, "ann", backend=0)
    bob = cluster.client(room, "bob", backend=1)
    assert cluster.backend_of(ann.id) == 0 and cluster.backend_of(bob.id) == 1
    assert bob.hello["members"] == ["ann", "bob"]
    assert ann.next_of("join")["name"] == "bob"

    for i in range(10):
        (ann if i % 2 == 0 else bob).say(f"m{i}", ref=f"ref{i}")
    seen_ann = [e for e in (ann.next_of("message") for _ in range(10))]
    seen_bob = [e for e in (bob.next_of("message") for _ in range(10))]
    assert [(e["id"], e["text"]) for e in seen_ann] == [(e["id"], e["text"]) for e in seen_bob]
    assert sorted(e["text"] for e in seen_ann) == [f"m{i}" for i in range(10)]
    ids = [tuple(map(int, e["id"].split("-"))) for e in seen_ann]
    assert ids == sorted(ids) and len(set(ids)) == 10

    # a newcomer on either backend gets the same history and the same member list
    for backend in (0, 1):
        cy = cluster.client(room, f"cy{backend}", backend=backend)
        replay = [cy.next_of("message") for _ in range(10)]
        assert [e["id"] for e in replay] == [e["id"] for e in seen_ann]
        assert all(e.get("replay") for e in replay)
        assert cy.hello["members"] == ["ann", "bob", f"cy{backend}"]
        cy.close()
    status, body = http(cluster.url(f"/api/rooms/{room}/messages"))
    assert status == 200 and [m["id"] for m in json.loads(body)["messages"]] == [
        e["id"] for e in seen_ann
    ]

    # nginx passed X-Forwarded-For and the app trusted it (WSAPP_TRUSTED_PROXIES=1)
    src1 = cluster.sources[1]
    assert f"peer={src1}" in cluster.backend(1).log_text()
    ann.close()
    bob.close()


def test_nginx_serves_static_files_itself(cluster: Cluster) -> None:
    status, body = http(cluster.url("/assets/style.css"))  # the URL the pages link
    assert status == 200 and body == (ROOT / "static" / "style.css").read_bytes()
    for i in (0, 1):
        assert "/assets/style.css" not in cluster.backend(i).log_text()
    status, _ = http(cluster.url("/healthz"))
    assert status == 200


def test_killed_backend_client_resumes_through_nginx_and_presence_expires(cluster: Cluster) -> None:
    room = new_room()
    ann = cluster.client(room, "ann", backend=0)
    bob = cluster.client(room, "bob", backend=1)
    ann_old_id = ann.id
    total = 120
    acked: list[str] = []

    def talk() -> None:
        for i in range(total):
            bob.say(f"b{i}", ref=str(i))
            time.sleep(0.01)

    sender = threading.Thread(target=talk, daemon=True)
    sender.start()
    received: list[dict] = []
    while len(received) < 30:
        event = ann.next()
        if event["type"] == "message":
            received.append(event)

    killed_at = time.monotonic()
    cluster.kill_backend(0, signal.SIGKILL)
    assert ann.close_code(timeout=5) in (None, 1006, 1011, 1001)
    # reconnect from the same address: ip_hash picks the dead backend, nginx moves on
    ann = cluster.client(room, "ann", source=cluster.sources[0], since=received[-1]["id"])
    assert cluster.backend_of(ann.id) == 1
    while len(received) < total:
        event = ann.next(timeout=10)
        if event["type"] == "message":
            received.append(event)
    sender.join(10)

    # bob's own view: every message once; acks name the same ids
    bob_msgs: list[dict] = []
    leaves: list[dict] = []
    deadline = time.monotonic() + 10
    while (len(bob_msgs) < total or len(acked) < total) and time.monotonic() < deadline:
        event = bob.next(timeout=10)
        if event["type"] == "message":
            bob_msgs.append(event)
        elif event["type"] == "ack":
            acked.append(event["id"])
        elif event["type"] == "leave":
            leaves.append(event)
    assert [e["text"] for e in received] == [f"b{i}" for i in range(total)]
    assert [e["id"] for e in received] == [e["id"] for e in bob_msgs] == acked
    assert len({e["id"] for e in received}) == total

    # the dead process's member disappears within WSAPP_PRESENCE_TTL (list) ...
    while True:
        cy = cluster.client(room, "cy", backend=1)
        members = cy.hello["members"]
        cy.close()
        if members.count("ann") == 1:
            break
        assert time.monotonic() - killed_at < PRESENCE_TTL + 1.0, members
        time.sleep(0.1)
    assert sorted(members) == ["ann", "bob", "cy"]
    # ... and the survivors are told it left (swept by a live process's heartbeat)
    deadline = time.monotonic() + PRESENCE_TTL * 2
    while not any(e["id"] == ann_old_id for e in leaves):
        assert time.monotonic() < deadline, leaves
        event = bob.next(timeout=PRESENCE_TTL * 2)
        if event["type"] == "leave":
            leaves.append(event)
    ann.close()
    bob.close()
    cluster.start_backend(0)


def test_redis_restart_mid_conversation(cluster: Cluster) -> None:
    room = new_room()
    ann = cluster.client(room, "ann", backend=0)
    bob = cluster.client(room, "bob", backend=1)
    ann.say("before")
    assert bob.next_of("message")["text"] == "before"

    logs = cluster.log_sizes()
    cluster.redis.stop()
    for i in (0, 1):
        cluster.wait_ready(i, False, timeout=5)
        status, _ = http(cluster.backend(i).http_url("/healthz"))
        assert status == 200
    # a sender gets an error event, not silence; the sockets stay open
    ann.say("lost", ref="x1")
    err = ann.next_of("error")
    assert err["code"] == "unavailable" and err.get("ref") == "x1"
    bob.say("lost too")
    assert bob.next_of("error")["code"] == "unavailable"

    cluster.redis.start()
    for i in (0, 1):
        cluster.wait_ready(i, True, timeout=10)
    cluster.wait_workers_reconnected(logs)  # every worker, so the next test starts clean
    # /readyz reached one worker per backend, not necessarily the one holding each client:
    # a worker still reconnecting answers "unavailable" (the client should retry), never silence.
    ann.say_until_acked("after")
    assert bob.message_with("after")["name"] == "ann"
    bob.say_until_acked("back")
    assert ann.message_with("back")["name"] == "bob"
    # presence was restored into the new (empty) Redis by each process
    status, body = http(cluster.url("/api/rooms"))
    rooms = {r["room"]: r for r in json.loads(body)["rooms"]}
    assert rooms[room]["members"] == 2
    for i in (0, 1):
        srv = cluster.backend(i)
        assert srv.alive()
        assert "Traceback" not in srv.log_text()
    ann.close()
    bob.close()


def test_sigterm_closes_every_socket_with_1001(cluster: Cluster) -> None:
    room = new_room()
    on_1 = [cluster.client(room, f"u{i}", backend=1) for i in range(4)]
    on_0 = cluster.client(room, "stays", backend=0)
    graceful = max(5, int(float(cluster.env["WSAPP_CLOSE_TIMEOUT"]) * 2 + 3))  # gunicorn.conf.py
    started = time.monotonic()
    cluster.backend(1).signal(signal.SIGTERM)
    for c in on_1:
        assert c.close_code(timeout=graceful) == 1001
    assert time.monotonic() - started < graceful
    cluster.backend(1).proc.wait(graceful + 2)
    assert cluster.backend(1).proc.returncode == 0
    # the other backend's client is untouched and hears the leaves
    assert on_0.next_of("leave")["room"] == room
    on_0.close()
    cluster.start_backend(1)
