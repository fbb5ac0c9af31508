"""Start and stop the servers under test, pinned to CPU 0, and read their /proc figures.

Every server is a fresh subprocess on an ephemeral loopback port, started exactly as a user
would start it, so one scenario's heap growth never shows up in the next one's numbers.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
GUNICORN = str(Path(PYTHON).with_name("gunicorn"))
UWSGI = str(Path(PYTHON).with_name("uwsgi"))
HOST = "127.0.0.1"
SERVER_CPU = "0"
CLIENT_CPU = "1"
# The machine is shared (other engineers run test suites on the same two cores): servers
# and load generator run at nice -10 so that background jobs disturb them less. Without
# the privilege, nice warns and runs the command at normal priority.
PRIORITY = ["nice", "-n", "-10"]

# Limits that exist to protect production from abuse are lifted so that the benchmark
# measures throughput, not the rate limiter: one client IP opens up to 10,000 sockets and
# one sender publishes as fast as the room drains. 16 MiB messages must fit.
WSAPP_BENCH_ENV = {
    "WSAPP_MAX_MESSAGE_BYTES": "20000000",
    "WSAPP_RATE_LIMIT": "0",
    "WSAPP_MAX_CONN_PER_IP": "0",
    "WSAPP_MAX_CONNECTIONS": "100000",
}

KINDS = ("stock", "wsapp", "gunicorn", "uwsgi", "ceiling")
#: Measured only when named in --servers: uWSGI's own WebSocket API (bench/uwsgi_native.py),
#: the baseline of the uWSGI glue (docs/architecture.md; it echoes everything as text), and
#: `websockets` with its defaults (bench.scenarios.deflate).
OPTIONAL_KINDS = ("uwsgi-native", "baseline", "websockets")
#: A checkout of an earlier commit (BENCH_BASELINE=/path, C modules built there), served
#: as kind "baseline" the way "wsapp" is: before/after figures in one run. Not a WSAPP_*
#: name: the servers refuse unknown WSAPP_* variables.
BASELINE = os.environ.get("BENCH_BASELINE", "")
#: Kinds that run wsapp (with WSAPP_BENCH_ENV) and kinds that are a master plus a worker.
WSAPP_KINDS = ("wsapp", "gunicorn", "uwsgi", "baseline")
FORKING_KINDS = ("gunicorn", "uwsgi", "uwsgi-native")


def raise_nofile(wanted: int) -> tuple[int, int]:
    """Raise our soft RLIMIT_NOFILE (inherited by the load generator); return (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def command(kind: str, port: int) -> list[str]:
    if kind == "stock":
        return [PYTHON, "-m", "bench.stock_server", "--port", str(port)]
    if kind == "ceiling":
        return [PYTHON, "-m", "bench.tcp_echo", "--port", str(port)]
    if kind == "websockets":
        return [PYTHON, "-m", "bench.websockets_server", "--port", str(port)]
    if kind in ("wsapp", "baseline"):
        return [PYTHON, "-m", "wsapp", "serve", "--host", HOST, "--port", str(port)]
    if kind == "gunicorn":
        return [GUNICORN, "-c", str(ROOT / "gunicorn.conf.py"), "-b", f"{HOST}:{port}", "wsgi:app"]
    if kind == "uwsgi":  # as docs/deploy.md runs it: the bind from WSAPP_BIND
        ini = str(ROOT / "deploy" / "uwsgi.ini")
        return ["env", f"WSAPP_BIND={HOST}:{port}", UWSGI, "--ini", ini]
    if kind == "uwsgi-native":  # 16 MiB messages must fit (uWSGI's default is 1 MiB)
        return [UWSGI, "--master", "--http-socket", f"{HOST}:{port}", "--gevent", "1000",
                "--module", "bench.uwsgi_native", "--pythonpath", str(ROOT), "--disable-logging",
                "--websockets-max-size", "20000", "--listen", "1024"]
    raise ValueError(kind)


def available(kind: str) -> str | None:
    """None if this server can run here, else why not (wsapp is written concurrently)."""
    if kind == "baseline":
        if not BASELINE or not (Path(BASELINE) / "wsapp" / "__main__.py").exists():
            return "set BENCH_BASELINE to a checkout of an earlier commit"
        return None
    if kind in ("wsapp", "gunicorn") and not (ROOT / "wsapp" / "__main__.py").exists():
        return "wsapp/__main__.py not found"
    if kind == "gunicorn" and not (ROOT / "gunicorn.conf.py").exists():
        return "gunicorn.conf.py not found"
    if kind.startswith("uwsgi") and not os.access(UWSGI, os.X_OK):
        return f"{UWSGI} not installed (requirements.txt installs it)"
    return None


def children(pid: int) -> list[int]:
    """All descendants of pid (gunicorn: the workers), from /proc/PID/task/*/children."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                for child in f.read().split():
                    found.append(int(child))
                    found.extend(children(int(child)))
    return found


@dataclass
class Server:
    kind: str
    port: int
    proc: subprocess.Popen
    log_path: Path

    def pids(self) -> list[int]:
        return [self.proc.pid, *children(self.proc.pid)]

    def log_tail(self, n: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-n:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def _ready(kind: str, port: int) -> bool:
    try:
        if kind == "ceiling":
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        conn = http.client.HTTPConnection(HOST, port, timeout=1)
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        conn.close()
        return True
    except OSError:
        return False


def start(
    kind: str, log_dir: Path, nofile: tuple[int, int], extra_env: dict[str, str] | None = None
) -> Server:
    """Spawn one server pinned to CPU 0 with the file limit raised; wait until it answers."""
    port = free_port()
    root = Path(BASELINE) if kind == "baseline" else ROOT
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(root)}
    if kind in WSAPP_KINDS:
        env.update(WSAPP_BENCH_ENV)
    env.update(extra_env or {})
    log_path = log_dir / f"{kind}-{port}.log"
    argv = [*PRIORITY, "taskset", "-c", SERVER_CPU, "prlimit", f"--nofile={nofile[0]}:{nofile[1]}",
            *command(kind, port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = Server(kind, port, proc, log_path)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited with {proc.returncode}:\n{server.log_tail()}")
        if _ready(kind, port) and (kind not in FORKING_KINDS or len(server.pids()) > 1):
            time.sleep(0.3)  # let the process settle (imports, first allocations) before baselines
            return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{kind} server not answering after 20 s:\n{server.log_tail()}")


@contextlib.contextmanager
def running(
    kind: str, log_dir: Path, nofile: tuple[int, int], extra_env: dict[str, str] | None = None
) -> Iterator[Server]:
    server = start(kind, log_dir, nofile, extra_env)
    try:
        yield server
    finally:
        server.stop()


def cpu_times() -> dict[str, tuple[int, int]]:
    """Per-CPU (busy, total) jiffies from /proc/stat, to show which side of the bench saturates."""
    out: dict[str, tuple[int, int]] = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                nums = [int(v) for v in vals[:8]]
                idle = nums[3] + nums[4]
                out[name] = (sum(nums) - idle, sum(nums))
    return out


def busy_fraction(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], cpu: str
) -> float:
    b0, t0 = before[f"cpu{cpu}"]
    b1, t1 = after[f"cpu{cpu}"]
    return (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


PF_KTHREAD = 0x00200000


def process_cpu() -> dict[int, float]:
    """CPU seconds (utime+stime) of every user process now, to spot other load on the machine.

    Kernel threads are left out: ksoftirqd does the loopback TCP work of our own traffic."""
    hz = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[6]) & PF_KTHREAD:
            continue
        out[int(name)] = (int(fields[11]) + int(fields[12])) / hz
    return out


def foreign_cpu(before: dict[int, float], after: dict[int, float], ours: set[int]) -> float:
    """CPU seconds other processes used in between (a lower bound: exited ones are missed)."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items() if pid not in ours)

