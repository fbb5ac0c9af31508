"""The deployment under uWSGI for real: nginx (deploy/nginx.conf) -> uWSGI, two workers
(deploy/uwsgi.ini) -> Redis. A worker is killed and respawned, the master reloads and stops.

One cluster per module; the tests run in order and the last one stops uWSGI.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.deploy.cluster import PRESENCE_TTL, http
from tests.deploy.uwsgi_cluster import WORKERS, UwsgiCluster, worker_of

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def cluster() -> Iterator[UwsgiCluster]:
    c = UwsgiCluster()
    try:
        c.start()
        yield c
    finally:
        c.stop()


def new_room() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


def test_two_workers_one_room_one_history(cluster: UwsgiCluster) -> None:
    pids = sorted(cluster.worker_pids())
    assert len(pids) == WORKERS
    room = new_room()
    ann = cluster.client_on(room, "ann", pids[0])
    bob = cluster.client_on(room, "bob", pids[1])
    assert sorted(bob.hello["members"]) == ["ann", "bob"]
    assert ann.next_of("join")["name"] == "bob"
    for i in range(10):
        (ann if i % 2 == 0 else bob).say(f"m{i}", ref=f"ref{i}")
    seen_ann = [ann.next_of("message") for _ in range(10)]
    seen_bob = [bob.next_of("message") for _ in range(10)]
    assert [e["id"] for e in seen_ann] == [e["id"] for e in seen_bob]
    assert sorted(e["text"] for e in seen_ann) == [f"m{i}" for i in range(10)]
    cy = cluster.client(room, "cy", source="127.0.5.1")  # whichever worker: the same history
    ids = [e["id"] for e in seen_ann]
    assert [cy.next_of("message")["id"] for _ in range(10)] == ids
    status, body = http(cluster.url(f"/api/rooms/{room}/messages"))
    assert status == 200 and [m["id"] for m in json.loads(body)["messages"]] == ids
    # nginx passed X-Forwarded-For and the app trusted it (WSAPP_TRUSTED_PROXIES=1)
    assert "peer=127.0.5.1 (via 127.0.0.1:" in cluster.uwsgi.log_text()
    # /metrics, answered by either worker, counts the sockets of both (multiprocess dir)
    status, body = http(cluster.url("/metrics"))
    assert status == 200
    assert 'wsapp_connections_open{endpoint="chat"} 3.0' in body.decode(), body.decode()[:3000]
    for c in (ann, bob, cy):
        c.close()


def test_killed_worker_is_respawned_and_its_client_resumes_with_nothing_lost(cluster):
    pids = sorted(cluster.worker_pids())
    room = new_room()
    ann = cluster.client_on(room, "ann", pids[0])
    bob = cluster.client_on(room, "bob", pids[1])
    ann_old_id = ann.id
    total = 120

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

    cluster.kill_worker(pids[0])
    assert ann.close_code(timeout=5) in (None, 1006, 1011)
    ann = cluster.client(room, "ann", since=received[-1]["id"])  # any worker takes it
    assert worker_of(ann.id) != pids[0]
    while len(received) < total:
        event = ann.next(timeout=10)
        if event["type"] == "message":
            received.append(event)
    sender.join(10)

    bob_msgs: list[dict] = []
    acked: list[str] = []
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

    # the master put a new worker in the dead one's place, connected to Redis
    serving = cluster.wait_workers_serving(replacing={pids[0]})
    assert pids[1] in serving
    # the dead worker's member expires (WSAPP_PRESENCE_TTL) and the others hear it left
    deadline = time.monotonic() + PRESENCE_TTL * 3
    while not any(e["id"] == ann_old_id for e in leaves):
        assert time.monotonic() < deadline, leaves
        event = bob.next(timeout=PRESENCE_TTL * 2)
        if event["type"] == "leave":
            leaves.append(event)
    assert "Traceback" not in cluster.uwsgi.log_text()
    ann.close()
    bob.close()


def _clients_on_every_worker(cluster: UwsgiCluster, room: str, per_worker: int = 2) -> list:
    return [
        cluster.client_on(room, f"w{n}-{k}", pid)
        for n, pid in enumerate(sorted(cluster.worker_pids()))
        for k in range(per_worker)
    ]


def test_reload_gives_every_client_1001_then_they_resume(cluster):
    """SIGHUP to the master (uwsgi --reload): every client of every worker gets 1001, the
    new workers take the reconnects, and a client resuming from its last id misses nothing."""
    room = new_room()
    clients = _clients_on_every_worker(cluster, room)
    clients[0].say("before reload")
    last = {c.name: c.message_with("before reload")["id"] for c in clients}
    old = cluster.worker_pids()
    started = time.monotonic()
    cluster.uwsgi.signal(signal.SIGHUP)
    assert [c.close_code(timeout=5) for c in clients] == [1001] * len(clients)
    assert time.monotonic() - started < 3.0
    cluster.wait_log_count("with 1001 for graceful reload", WORKERS)
    cluster.wait_workers_serving(replacing=old)
    # a message sent while the others are still away is replayed to them on resume
    first = cluster.client(room, clients[0].name, since=last[clients[0].name])
    first.say_until_acked("after reload")
    back = [cluster.client(room, c.name, since=last[c.name]) for c in clients[1:]]
    for c in back:
        assert c.message_with("after reload")["name"] == clients[0].name
    assert cluster.uwsgi.alive()
    for c in (first, *back):
        c.close()


def test_stop_gives_every_client_1001_and_exits_0(cluster):
    clients = _clients_on_every_worker(cluster, new_room())
    started = time.monotonic()
    cluster.uwsgi.signal(signal.SIGTERM)
    assert [c.close_code(timeout=5) for c in clients] == [1001] * len(clients)
    assert cluster.uwsgi.proc.wait(15) == 0
    assert time.monotonic() - started < 5.0
    log = cluster.wait_log_count("with 1001 for shutdown", WORKERS)
    assert "Traceback" not in log
