"""A real deployment under uWSGI for the tests: nginx -> one uWSGI (a master and two workers
sharing its listening socket, deploy/uwsgi.ini) -> redis-server.

Which worker accepts a connection is the kernel's choice; a connection id starts with its
process id in hex (`wsapp.protocol.handler.new_connection_id`), so a test knows where each
client landed and can put one on each worker.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from pathlib import Path

from tests.deploy.cluster import Client, Cluster
from tests.support.servers import ServerProcess, start_server

WORKERS = 2
_SERVING = re.compile(r"\[(\d+)\] redis broker: (?:re)?connected to")


def worker_of(conn_id: str) -> int:
    """The pid of the process that accepted `conn_id` (its tag is pid hex + 6 random hex)."""
    return int(conn_id.split("-", 1)[0][:-6], 16)


class UwsgiCluster(Cluster):
    def __init__(self) -> None:
        super().__init__(backends=1)

    @property
    def uwsgi(self) -> ServerProcess:
        return self.backend(0)

    def start_backend(self, i: int = 0) -> ServerProcess:
        srv = start_server("uwsgi", env=self.env, port=self.backend_ports[i], log_dir=self.dir)
        self.backends[i] = srv
        self.wait_workers_serving()
        return srv

    def worker_pids(self) -> set[int]:
        """The master's children: its workers (deploy/uwsgi.ini runs no other process)."""
        pid = self.uwsgi.proc.pid
        with contextlib.suppress(OSError):
            return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
        return set()

    def wait_workers_serving(
        self, replacing: set[int] = frozenset(), timeout: float = 20.0
    ) -> set[int]:
        """Until the master has WORKERS live workers, none of `replacing`, and each logged
        its Redis connection."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.worker_pids()
            logged = {int(p) for p in _SERVING.findall(self.uwsgi.log_text())}
            if len(pids) == WORKERS and pids <= logged and not pids & replacing:
                return pids
            assert time.monotonic() < deadline, self.uwsgi.log_text()[-3000:]
            time.sleep(0.05)

    def wait_log_count(self, needle: str, count: int, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while (text := self.uwsgi.log_text()).count(needle) < count:
            assert time.monotonic() < deadline, f"{needle!r} not {count} times:\n{text[-3000:]}"
            time.sleep(0.05)
        return text

    def kill_worker(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    def client_on(self, room: str, name: str, pid: int, attempts: int = 40, **kw) -> Client:
        """A client that landed on worker `pid` (others tried on the way are closed)."""
        for _ in range(attempts):
            c = self.client(room, name, **kw)
            if worker_of(c.id) == pid:
                return c
            c.close()
            time.sleep(0.02)
        raise AssertionError(f"{attempts} connections, none accepted by worker {pid}")
