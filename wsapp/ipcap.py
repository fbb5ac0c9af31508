"""Per-IP connection counts shared by the workers of one gunicorn master (issue 13 item 8).

`WSAPP_MAX_CONN_PER_IP` is a cap per client address. Each worker counts its own sockets
exactly (`Runtime.per_ip`), but with N workers that alone would let one address hold N
times the cap. So the gunicorn master, before it forks its first worker, maps one small
table of counters that every worker inherits, and admission checks the sum over workers.
The embedded server (`python -m wsapp serve`) is one process: no table, its own count is
exact. Nothing is shared between masters or hosts (docs/deploy.md: nginx `limit_conn`).

Layout: one row of `SLOTS` 32-bit counters per worker (``rows`` of them, a few more than
the configured workers, so replacements and a reload's overlap find a free one), and one
owner pid per row. A worker only ever writes its own row; admission adds up every row's
counter for the address's slot.

- **Slots.** An address is hashed (keyed BLAKE2b, a random key per master, so nobody can
  aim an address at someone else's slot) into one of `SLOTS` slots. Two addresses in one
  slot share its count: together they are capped at the limit. The policy only ever
  refuses early, never admits more than the cap for any one address; with 65,536 slots
  and n addresses connected, an address shares its slot with probability about
  ``1 - exp(-n / 65536)`` (1.5 % at 1,000 addresses, 14 % at 10,000), which matters only
  when the shared count nears the cap.
- **Lock.** Check-and-increment across processes is serialised by a POSIX record lock
  (`fcntl.lockf`) on the table's file. It is held for a few instructions, never across a
  gevent yield (so no other greenlet of the same process, which would share the lock's
  owner, can run inside), and the kernel drops it when its holder dies. A worker waits for
  it by polling, yielding to its other greenlets in between; if it cannot get it within
  LOCK_WAIT seconds (a sibling frozen mid-update) it admits on its own exact count.
- **Exactly once.** A worker releases a slot only for an address it holds one for
  (`_held`), so a release can never take away another worker's or another address's count.
- **Crash safety.** A dead worker's row is cleared by the master when it reaps the worker
  (gunicorn's ``child_exit`` hook, in gunicorn.conf.py), and in any case by the next
  worker that boots: it clears every row whose owner is no longer a live child of the
  same master before it takes a free row.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import mmap
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator

from wsapp.admission import check_limits
from wsapp.protocol.handshake import Rejection
from wsapp.settings import Settings

log = logging.getLogger("wsapp.ipcap")

SLOTS = 65536
#: Rows beyond the configured workers: replacements that boot before a dead worker is
#: reaped, and a SIGHUP reload, during which old and new workers run side by side.
MIN_ROWS = 8
LOCK_WAIT = 0.5
_LOCK_POLL = 0.001
_HEADER = 64  # the owner pids before the counters take a multiple of this many bytes


def _anonymous_file(size: int) -> int:
    """A file descriptor for `size` bytes of memory no path leads to (memfd, else an
    unlinked temporary file). Close-on-exec: a re-executed master makes its own."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("wsapp-ipcap", os.MFD_CLOEXEC)
    else:  # pragma: no cover - not Linux
        fd, path = tempfile.mkstemp(prefix="wsapp-ipcap-")
        os.unlink(path)
    os.ftruncate(fd, size)
    return fd


def _is_live_child(pid: int, master: int) -> bool:
    """True if `pid` runs (not a zombie) and is a child of `master` (pids are reused)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    except OSError:  # pragma: no cover - no /proc: existence is all we can check
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state, ppid = stat[stat.rindex(b")") + 2 :].split()[:2]
    return state != b"Z" and int(ppid) == master


class SharedIpCounts:
    """The table itself: created in the master, inherited by every worker it forks."""

    def __init__(self, rows: int, slots: int = SLOTS) -> None:
        self.rows = rows
        self.slots = slots
        self.key = os.urandom(16)
        header = -(-rows * 4 // _HEADER) * _HEADER  # owner pids, rounded up to 64 bytes
        self.fd = _anonymous_file(header + rows * slots * 4)
        self.map = mmap.mmap(self.fd, header + rows * slots * 4)  # MAP_SHARED: survives fork
        view = memoryview(self.map)
        self.owners = view[: rows * 4].cast("i")
        self.counts = view[header:].cast("I")
        #: This process's row (a worker's), None in the master or when none was free.
        self.row: int | None = None

    # --- locking -------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, wait: Callable[[float], object], timeout: float = LOCK_WAIT) -> Iterator[bool]:
        """Hold the table's lock inside the block; yields False if it could not be had in
        `timeout` seconds. The block must not yield to other greenlets."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    yield False
                    return
                wait(_LOCK_POLL)
        try:
            yield True
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    # --- rows ----------------------------------------------------------------------------

    def _clear_row(self, row: int) -> None:
        start = row * self.slots
        self.counts[start : start + self.slots] = memoryview(bytes(self.slots * 4)).cast("I")
        self.owners[row] = 0

    def claim_row(
        self, pid: int, master: int, wait: Callable[[float], object] = time.sleep
    ) -> int | None:
        """Take a free row for worker `pid` after clearing those of dead workers; None if
        every row is taken (the worker then counts only its own sockets)."""
        dead = {o for o in self.owners if o and o != pid and not _is_live_child(o, master)}
        with self.locked(wait, timeout=5.0) as ok:
            if not ok:
                return None
            for row in range(self.rows):
                if self.owners[row] in dead:
                    self._clear_row(row)
            for row in range(self.rows):
                if self.owners[row] == 0:
                    self.owners[row] = pid
                    self.row = row
                    return row
        return None

    def free_rows_of(self, pid: int, wait: Callable[[float], object] = time.sleep) -> int:
        """Clear the rows of worker `pid`, which has exited (run by the master)."""
        freed = 0
        with self.locked(wait) as ok:
            if ok:
                for row in range(self.rows):
                    if self.owners[row] == pid:
                        self._clear_row(row)
                        freed += 1
        return freed

    # --- counting ------------------------------------------------------------------------

    def slot(self, ip: str) -> int:
        digest = hashlib.blake2b(ip.encode("utf-8", "surrogateescape"), key=self.key, digest_size=8)
        return int.from_bytes(digest.digest(), "little") % self.slots

    def count(self, ip: str) -> int:
        """Connections counted for `ip`'s slot, over every worker."""
        return sum(self.counts[self.slot(ip) :: self.slots])

    def try_acquire(self, ip: str, cap: int, wait: Callable[[float], object]) -> bool | None:
        """Count one more connection for `ip` in this worker's row unless the slot is at
        `cap`: True if counted, False if at the cap, None if the lock was not to be had."""
        assert self.row is not None
        slot = self.slot(ip)
        index = self.row * self.slots + slot
        with self.locked(wait) as ok:
            if not ok:
                return None
            if sum(self.counts[slot :: self.slots]) >= cap:
                return False
            self.counts[index] += 1
            return True

    def release(self, ip: str) -> None:
        """One connection of `ip` in this worker's row has ended. Only this worker writes
        its row and a 32-bit store is atomic, so no lock: a concurrent admission reads the
        count from just before or just after, both correct."""
        assert self.row is not None
        index = self.row * self.slots + self.slot(ip)
        if self.counts[index] > 0:
            self.counts[index] -= 1


# --- the process's table ------------------------------------------------------------------

_table: SharedIpCounts | None = None
#: Slots this worker holds in the shared table, per address (released exactly once).
_held: Counter[str] = Counter()


def prepare_master(workers: int) -> SharedIpCounts:
    """In the gunicorn master, before the first fork: create the table (once)."""
    global _table
    if _table is None:
        _table = SharedIpCounts(rows=max(MIN_ROWS, 2 * workers + 2))
    return _table


def attach_worker() -> int | None:
    """In a freshly forked worker: take a row of the master's table. Returns the row, or
    None without a table (embedded server) or without a free row (logged: this worker's
    connections are then capped on its own count only)."""
    _held.clear()
    if _table is None:
        return None
    _table.row = None
    row = _table.claim_row(os.getpid(), os.getppid())
    if row is None:
        log.warning(
            "WSAPP_MAX_CONN_PER_IP: no free row in the shared table (%d rows), this worker "
            "(pid %d) counts only its own connections",
            _table.rows,
            os.getpid(),
        )
    return row


def worker_exited(pid: int) -> None:
    """In the master, when it has reaped worker `pid`: give back whatever it held."""
    if _table is not None:
        _table.free_rows_of(pid)


def _gevent_sleep(seconds: float) -> None:
    import gevent

    gevent.sleep(seconds)


def admit(ip: str, settings: Settings) -> Rejection | None:
    """The 429 `Rejection` if `ip` is at WSAPP_MAX_CONN_PER_IP over all workers of this
    master, else None with one slot counted for it (give it back with `release`)."""
    cap = settings.max_conn_per_ip
    if not cap or _table is None or _table.row is None:
        return None
    counted = _table.try_acquire(ip, cap, _gevent_sleep)
    if counted is False:
        return check_limits(cap, 0, settings)  # the same 429 as the per-process count's
    if counted is None:
        log.warning(
            "shared per-IP table busy for %.1fs: admitted on this worker's count",
            LOCK_WAIT,
        )
        return None
    _held[ip] += 1
    return None


def release(ip: str) -> None:
    """A connection admitted by `admit` has ended."""
    held = _held.get(ip)
    if not held:
        return
    if held == 1:
        del _held[ip]
    else:
        _held[ip] = held - 1
    if _table is not None and _table.row is not None:
        _table.release(ip)
