"""`python -m bench.run` (what `make bench` runs): every scenario, every server, one run.

Writes the raw JSON to bench/results/ and, for a full run, the generated block of
docs/performance.md plus docs/performance.png. Ratios only ever compare figures from the
same run on the same machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from bench import loadgen, report
from bench.procs import EXTRA_KINDS, KINDS, RESULTS, ROOT, WSAPP_BENCH_ENV, cpu_model, raise_nofile
from bench.scenarios import FIXED_DELIVERIES_PER_S, SCENARIOS, Config

DOC = ROOT / "docs" / "performance.md"
CHART = ROOT / "docs" / "performance.png"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "kernel": platform.release()}
    for pkg in ("flask", "gevent", "gevent-websocket", "gunicorn", "wsaccel"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def git_state() -> str:
    """Commit measured, and whether wsapp/ had uncommitted changes (code moves under us)."""
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "wsapp", "wsgi.py", "gunicorn.conf.py")
    return commit + (" + uncommitted changes in wsapp" if dirty else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="short windows, fewer connections (about 1 minute)")
    p.add_argument("--only", action="append", choices=sorted(SCENARIOS), metavar="SCENARIO",
                   help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}")
    p.add_argument("--repeat", type=int, help="attempts per case, least disturbed kept (default 2, quick 1)")
    p.add_argument("--servers", default=",".join(KINDS),
                   help=f"comma list from {','.join(KINDS + EXTRA_KINDS)}")
    p.add_argument("--write-docs", action="store_true", help="update docs/performance.md even for a partial run")
    p.add_argument("--report-only", metavar="JSON", type=Path,
                   help="measure nothing: rewrite docs/performance.md and the chart from a saved run")
    p.add_argument("--no-docs", action="store_true", help="never touch docs/performance.md")
    return p.parse_args(argv)


def generated_block(meta: dict, rows: list[dict], chart_ok: bool, json_name: str) -> str:
    env = " ".join(f"{k}={v}" for k, v in WSAPP_BENCH_ENV.items())
    vers = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    parts = [
        "## Latest measured run",
        f"- Command: `{meta['command']}` (took {meta['elapsed_s']:.0f} s)",
        f"- Date: {meta['date']}; code: {meta.get('code', 'not recorded')}",
        f"- CPU: {meta['cpu_model']}, {meta['cpus']} cores; servers pinned to CPU 0, load generator to CPU 1",
        f"- Software: {vers}",
        f"- wsapp servers ran with `{env}` (abuse limits off, 16 MiB messages allowed), all else default",
        f"- Each case ran {meta['repeat']} time(s) on a fresh server; the attempt least disturbed by "
        "other processes is shown",
        f"- Raw results: `bench/results/{json_name}` (gitignored)",
        "",
        report.table(rows),
        "",
        f"Fan-out \"at 10k/s\" is a fixed offered load of {FIXED_DELIVERIES_PER_S:,} deliveries/s "
        "(100 msg/s to 100 members, 10 msg/s to 1000); \"saturated\" keeps 16 messages in flight.",
        "",
    ]
    if chart_ok:
        parts += ["![benchmark chart](performance.png)", ""]
    if note := report.contention_note(rows):
        parts += [note, ""]
    parts += ["### Is the load generator the bottleneck?", "", report.client_table(rows), ""]
    return "\n".join(parts)


def write_docs(meta: dict, rows: list[dict], json_name: str) -> None:
    chart_ok = report.chart(rows, CHART)
    report.write_doc(DOC, generated_block(meta, rows, chart_ok, json_name))
    print(f"updated {DOC.relative_to(ROOT)}" + (f" and {CHART.relative_to(ROOT)}" if chart_ok else ""))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        saved = json.loads(args.report_only.read_text())
        write_docs(saved["meta"], saved["rows"], args.report_only.name)
        return 0
    servers = tuple(s.strip() for s in args.servers.split(",") if s.strip())
    if bad := [s for s in servers if s not in KINDS + EXTRA_KINDS]:
        known = ", ".join(KINDS + EXTRA_KINDS)
        print(f"unknown server {bad[0]!r}; choose from {known}", file=sys.stderr)
        return 2
    loadgen.build()
    nofile = raise_nofile(65536)
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix="logs-", dir=RESULTS))
    repeat = args.repeat or (1 if args.quick else 2)
    cfg = Config(quick=args.quick, repeat=repeat, servers=servers, log_dir=log_dir, nofile=nofile)
    names = args.only or list(SCENARIOS)
    started, t0, code_before = dt.datetime.now(dt.UTC), time.monotonic(), git_state()
    rows: list[dict] = []
    for name in names:
        print(f"== {name}", flush=True)
        rows += SCENARIOS[name](cfg)
    meta = {
        "command": shlex.join(["python", "-m", "bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "elapsed_s": time.monotonic() - t0,
        "cpu_model": cpu_model(),
        "code": code_before if code_before == git_state() else f"{code_before}, changed during the run",
        "cpus": os.cpu_count(),
        "versions": versions(),
        "quick": args.quick,
        "repeat": repeat,
        "scenarios": names,
        "servers": servers,
        "nofile": nofile,
        "server_logs": str(log_dir),
    }
    json_name = f"run-{started.strftime('%Y%m%d-%H%M%S')}.json"
    payload = json.dumps({"meta": meta, "rows": rows}, indent=1)
    (RESULTS / json_name).write_text(payload)
    (RESULTS / "latest.json").write_text(payload)
    print(report.table(rows))
    print(f"\nraw results: {RESULTS / json_name}; server logs: {log_dir}")
    full = not args.quick and not args.only and set(servers) == set(KINDS)
    if not args.no_docs and (full or args.write_docs):
        write_docs(meta, rows, json_name)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
