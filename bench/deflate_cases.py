"""permessage-deflate cases (`python -m bench.run --only deflate`): each beside its
uncompressed twin, in the same run, every case on a fresh server.

- chat stream: one sender, 100 and 1,000 members, a typical chat line as the message:
  bytes on the wire per delivery and server CPU per delivery at a fixed 10,000
  deliveries/s, with and without deflate (rooms compress each broadcast once);
- 1 MiB text echo of word-like text, wsapp and `websockets` (its default compression),
  with and without deflate;
- idle memory per connection at 10,000: no offer; deflate negotiated but unused; and after
  one 1 KiB compressed echo each, with the compressors freed as idle (the default) or kept
  (WSAPP_DEFLATE_IDLE=3600), at the default windows and at 15 bits / memLevel 8.

The client (bench/loadgen.c --deflate) offers what a browser does plus
client_no_context_takeover, so that it can send one message compressed once up front.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bench import loadgen
from bench.procs import Server, available, running

OFFER = "permessage-deflate; client_no_context_takeover; client_max_window_bits"
#: A typical chat line; the loadgen puts its "bench:N:" marker in front.
CHAT_LINE = ("%s hey, did anyone look at the deploy logs from this morning? "
             "the worker restarted twice")
FIXED_DELIVERIES_PER_S = 10_000
MiB = 1024 * 1024
NO_RELEASE = {"WSAPP_DEFLATE_IDLE": "3600"}
WIDE = {"WSAPP_DEFLATE_SERVER_WINDOW_BITS": "15", "WSAPP_DEFLATE_CLIENT_WINDOW_BITS": "15",
        "WSAPP_DEFLATE_MEM_LEVEL": "8"}

Job = Callable[[Server], dict]


def _deflate(on: bool) -> list[str]:
    return ["--deflate", OFFER] if on else []


def _fanout(cfg, members: int, deflate: bool) -> Job:
    def run(server: Server) -> dict:
        room = f"deflate-{members}-{int(time.time() * 1000) % 10**9}"
        result = loadgen.run("fanout", [
            "--port", str(server.port), "--path", f"/chat/{room}?name=", "--members", str(members),
            "--rate", str(FIXED_DELIVERIES_PER_S / members), "--duration", str(cfg.t(3, 1.5)),
            "--sat-duration", str(cfg.t(2, 1)), "--window", "16", "--template", CHAT_LINE,
            "--settle-max", "30", "--timeout", "60", *_deflate(deflate)], server.pids())
        if result.get("failed"):
            raise RuntimeError(f"room not usable: {result.get('first_error')}")
        return result
    return run


def _echo(cfg, deflate: bool) -> Job:
    def run(server: Server) -> dict:
        return loadgen.run("echo", [
            "--port", str(server.port), "--size", str(MiB), "--words",
            "--duration", str(cfg.t(3, 1)), "--warmup", "0", "--min-msgs", "2", "--timeout", "90",
            *_deflate(deflate)], server.pids())
    return run


def _idle(cfg, n: int, deflate: bool, prime: bool, hold: float) -> Job:
    def run(server: Server) -> dict:
        args = ["--port", str(server.port), "--conns", str(n), "--hold", str(cfg.t(hold, hold)),
                "--concurrency", "200", "--timeout", "90", "--size", "1024", "--words"]
        args += ["--prime"] if prime else []
        return loadgen.run("idle", args + _deflate(deflate), server.pids())
    return run


def cases(cfg) -> list[tuple[str, str, dict[str, str], Job]]:
    """(case, server kind, extra environment, job) for every case of the scenario."""
    n = min(2000 if cfg.quick else 10_000, cfg.nofile[1] - 1100)
    sizes = [100] if cfg.quick else [100, 1000]
    out: list[tuple[str, str, dict[str, str], Job]] = []
    for members in sizes:
        for on in (False, True):
            name = f"chat stream {members} members, {'deflate' if on else 'no deflate'}"
            out.append((name, "wsapp", {}, _fanout(cfg, members, on)))
    for kind in ("wsapp", "websockets"):
        for on in (False, True):
            name = f"1 MiB text echo, {'deflate' if on else 'no deflate'}"
            out.append((name, kind, {}, _echo(cfg, on)))
    # The compressors of primed connections are freed after WSAPP_DEFLATE_IDLE (5 s) and the
    # next housekeeping pass, and the heap is trimmed once that wave is over: a 12 s hold.
    out += [
        (f"{n} idle conns, no offer, one echo each", "wsapp", {}, _idle(cfg, n, False, True, 12)),
        (f"{n} idle conns, deflate, no message", "wsapp", {}, _idle(cfg, n, True, False, 2)),
        (f"{n} idle conns, deflate, one echo each, freed when idle", "wsapp", {},
         _idle(cfg, n, True, True, 12)),
        (f"{n} idle conns, deflate, one echo each, kept", "wsapp", NO_RELEASE,
         _idle(cfg, n, True, True, 2)),
        (f"{n} idle conns, deflate 15/8, one echo each, kept", "wsapp", {**NO_RELEASE, **WIDE},
         _idle(cfg, n, True, True, 2)),
        (f"{n} idle conns, deflate 15/8, one echo each, freed when idle", "wsapp", WIDE,
         _idle(cfg, n, True, True, 12)),
        (f"{n} idle conns, deflate, one echo each", "websockets", {}, _idle(cfg, n, True, True, 2)),
    ]
    return out


def deflate(cfg) -> list[dict]:
    """Run every case `cfg.repeat` times on a fresh server; keep the least disturbed."""
    rows: list[dict] = []
    for case, kind, env, job in cases(cfg):
        row = {"scenario": "deflate", "case": case, "server": kind, "env": env}
        if reason := available(kind):
            rows.append({**row, "skipped": reason})
            continue
        attempts: list[dict] = []
        for _ in range(cfg.repeat):
            try:
                with running(kind, cfg.log_dir, cfg.nofile, env) as server:
                    attempts.append(job(server))
            except Exception as exc:  # noqa: BLE001 - recorded in the results instead
                attempts.append({"error": f"{type(exc).__name__}: {exc}"[:400]})
        good = [a for a in attempts if "error" not in a]
        best = min(good, default=None,
                   key=lambda r: r.get("foreign_cpu_s", 0.0) / max(r.get("wall_s", 1.0), 1e-9))
        result = {**row, "attempts": attempts}
        if best is None:
            result["error"] = attempts[-1]["error"]
        else:
            result["result"] = best
        print(f"  deflate     {case:58} {kind:10} {summary(result)}", flush=True)
        rows.append(result)
    return rows


def summary(row: dict) -> str:
    if "error" in row:
        return "ERROR " + row["error"][:120]
    r = row["result"]
    if r["mode"] == "fanout":
        f = r["fixed"]
        return (f"{f['rx_bytes_per_delivery']:.1f} B/delivery on the wire, "
                f"{f['cpu_us_per_delivery']:.2f} us CPU/delivery, lost {f['lost']}")
    if r["mode"] == "echo":
        ms = r["s_per_msg"] * 1000
        return f"{r['msgs_per_s']:.1f} echoes/s, {ms:.1f} ms each, ratio {_ratio(r):.2f}"
    return (f"{r['rss_kb_per_conn']:.2f} KiB/conn, {r['deflate_conns']} negotiated, "
            f"{r['primed']} primed, idle echo {r['idle_echo_ms']:.2f} ms")


def _ratio(r: dict) -> float:
    """Inflated bytes over wire bytes of what the server sent (1 when nothing was compressed)."""
    return r["rx_inflated_bytes"] / r["rx_payload_bytes"] if r["rx_inflated_bytes"] else 1.0


def table(rows: list[dict]) -> str:
    """The Markdown tables of docs/performance.md's permessage-deflate section."""
    def get(case_prefix: str, kind: str = "wsapp") -> dict | None:
        for row in rows:
            if row["case"].startswith(case_prefix) and row["server"] == kind and "result" in row:
                return row["result"]
        return None

    lines = ["| Chat stream (typical line, rooms) | wire bytes per delivery "
             "| server CPU us per delivery at 10k/s | lost |", "| --- | --- | --- | --- |"]
    for members in (100, 1000):
        for on in ("no deflate", "deflate"):
            r = get(f"chat stream {members} members, {on}")
            if r:
                f = r["fixed"]
                lines.append(f"| {members} members, {on} | {f['rx_bytes_per_delivery']:.1f} | "
                             f"{f['cpu_us_per_delivery']:.2f} | {f['lost']} |")
    lines += ["", "| 1 MiB text echo (word-like text) | echoes/s | ms per echo "
              "| compression ratio |", "| --- | --- | --- | --- |"]
    for kind in ("wsapp", "websockets"):
        for on in ("no deflate", "deflate"):
            r = get(f"1 MiB text echo, {on}", kind)
            if r:
                ms, rate = r["s_per_msg"] * 1000, r["msgs_per_s"]
                lines.append(f"| {kind}, {on} | {rate:.1f} | {ms:.1f} | {_ratio(r):.2f} |")
    lines += ["", "| Idle connections | server RSS KiB per connection | negotiated "
              "| idle echo (ms) |", "| --- | --- | --- | --- |"]
    for row in rows:
        if " idle conns" in row["case"] and "result" in row:
            r = row["result"]
            lines.append(f"| {row['server']}: {row['case']} | {r['rss_kb_per_conn']:.2f} | "
                         f"{r['deflate_conns']} | {r['idle_echo_ms']:.2f} |")
    return "\n".join(lines)
