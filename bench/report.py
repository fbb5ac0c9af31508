"""Turn one run's rows into the Markdown table and the PNG chart of docs/performance.md.

Only figures present in the run's JSON are written: a missing or failed measurement shows
as "n/a" or "error", never as a number from somewhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SERVER_COLUMNS = [("stock", "stock"), ("baseline", "wsapp before"), ("wsapp", "wsapp serve"),
                  ("gunicorn", "wsapp gunicorn"), ("uwsgi", "wsapp uWSGI"),
                  ("uwsgi-native", "uWSGI native API"), ("ceiling", "TCP ceiling")]
COLORS = {"baseline": "tab:brown", "stock": "tab:blue", "wsapp": "tab:orange",
          "gunicorn": "tab:green", "uwsgi": "tab:purple", "uwsgi-native": "tab:gray",
          "ceiling": "tab:red"}
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


@dataclass(frozen=True)
class Metric:
    scenario: str
    case_prefix: str
    label: str
    get: Callable[[dict], float | str]
    higher_is_better: bool | None  # None: not a ratio-able number
    case_suffix: str = ""  # and the case name ends with this (idle: echo conns vs chat members)


def _echo_metrics() -> list[Metric]:
    one, many = "64 B x1 conn", "64 B 50 conns"
    ms = [
        Metric("small_echo", one, "round trip p50 (ms)", lambda r: r["p50_ms"], False),
        Metric("small_echo", one, "round trip p99 (ms)", lambda r: r["p99_ms"], False),
        Metric("small_echo", one, "messages/s", lambda r: r["msgs_per_s"], True),
        Metric("small_echo", many, "messages/s", lambda r: r["msgs_per_s"], True),
        Metric("small_echo", many, "round trip p50 (ms)", lambda r: r["p50_ms"], False),
        Metric("small_echo", many, "round trip p99 (ms)", lambda r: r["p99_ms"], False),
        Metric("small_echo", many, "echoes per conn min / max",
               lambda r: f"{r['min_per_conn']} / {r['max_per_conn']}", None),
    ]
    for case in ("64 KiB text", "64 KiB binary", "1 MiB text", "1 MiB binary", "16 MiB binary"):
        ms.append(
            Metric("large_echo", case, "MB/s (payload, one way)", lambda r: r["mb_per_s"], True)
        )
        ms.append(Metric("large_echo", case, "seconds per echo", lambda r: r["s_per_msg"], False))
    return ms


def _fanout_metrics() -> list[Metric]:
    ms = []
    for case in ("100 members", "1000 members"):
        ms += [
            Metric(
                "fanout",
                case,
                "deliveries/s (saturated)",
                lambda r: r["saturated"]["deliveries_per_s"],
                True,
            ),
            Metric(
                "fanout",
                case,
                "deliveries/s achieved at 10k/s offered",
                lambda r: r["fixed"]["deliveries_per_s"],
                True,
            ),
            Metric(
                "fanout",
                case,
                "publish-to-delivery p50 (ms) at 10k/s",
                lambda r: r["fixed"]["p50_ms"],
                False,
            ),
            Metric(
                "fanout",
                case,
                "publish-to-delivery p99 (ms) at 10k/s",
                lambda r: r["fixed"]["p99_ms"],
                False,
            ),
            Metric(
                "fanout",
                case,
                "server CPU us per delivery at 10k/s",
                lambda r: r["fixed"]["cpu_us_per_delivery"],
                False,
            ),
            Metric("fanout", case, "p99 (ms) saturated", lambda r: r["saturated"]["p99_ms"], False),
            Metric(
                "fanout",
                case,
                "lost / duplicates",
                lambda r: f"{r['fixed']['lost'] + r['saturated']['lost']} / {r['duplicates']}",
                None,
            ),
        ]
    return ms


def _get(key: str) -> Callable[[dict], float]:
    return lambda r: r[key]


_rss, _new = _get("rss_kb_per_conn"), _get("new_conn_total_ms")


def _still_open(r: dict) -> str:
    return f"{r['still_open_after_hold']}/{r['idle_connections']}"


def _settled(r: dict) -> float | str:
    return r["settle_s"] if r["settled"] else f"not within {r['settle_s']:.0f} s"


def _idle_metrics() -> list[Metric]:
    conns, chat = "idle conns", "idle chat members"
    msg, msg2 = _get("idle_msg_ms"), _get("idle_msg2_ms")
    new_member = "new member: connect+join+own message back, median of 5 (ms)"
    return [
        Metric("idle", "", "server RSS KiB per connection", _rss, False, conns),
        Metric("idle", "", "still open after hold", _still_open, None, conns),
        Metric("idle", "", "echo on the oldest idle conn (ms)", _get("idle_echo_ms"), False, conns),
        Metric("idle", "", "echo on a middle idle conn (ms)", _get("idle_echo2_ms"), False, conns),
        Metric("idle", "", "new conn: connect+upgrade+echo, median of 5 (ms)", _new, False, conns),
        Metric("idle", "", "connections opened per s", _get("connects_per_s"), True, conns),
        # chat members (rooms of bench.scenarios.IDLE_ROOM_SIZE), after the join storm settled
        Metric("idle", "", "server RSS KiB per member", _rss, False, chat),
        Metric("idle", "", "still open after hold", _still_open, None, chat),
        Metric("idle", "", "join storm settled after (s)", _settled, None, chat),
        Metric("idle", "", "own message back, oldest member (ms)", msg, False, chat),
        Metric("idle", "", "own message back, middle member (ms)", msg2, False, chat),
        Metric("idle", "", new_member, _new, False, chat),
        Metric("idle", "", "members joined per s", _get("connects_per_s"), True, chat),
    ]


METRICS = _echo_metrics() + _fanout_metrics() + _idle_metrics()


def _find(rows: list[dict], scenario: str, case_prefix: str, server: str) -> dict | None:
    for row in rows:
        if (
            row["scenario"] == scenario
            and row["case"].startswith(case_prefix)
            and row["server"] == server
        ):
            return row
    return None


def _cases(rows: list[dict], metric: Metric) -> list[str]:
    seen: list[str] = []
    for row in rows:
        if (
            row["scenario"] == metric.scenario
            and row["case"].startswith(metric.case_prefix)
            and row["case"].endswith(metric.case_suffix)
            and row["case"] not in seen
        ):
            seen.append(row["case"])
    return seen


def _value(row: dict | None, metric: Metric) -> float | str | None:
    if row is None:
        return None
    if "error" in row or "skipped" in row:
        return "error" if "error" in row else "skipped"
    try:
        return metric.get(row["result"])
    except (KeyError, TypeError):
        return None


def _fmt(v: float | str | None) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if v < 0:
        return "timeout"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}" if v >= 0.01 else f"{v:.2g}"


def _ratio(a: float | str | None, b: float | str | None) -> str:
    if isinstance(a, int | float) and isinstance(b, int | float) and a >= 0 and b > 0:
        return f"{a / b:.2f}x"
    return ""


def table(rows: list[dict]) -> str:
    present = [k for k, _ in SERVER_COLUMNS if any(r["server"] == k for r in rows)]
    heads = [title for k, title in SERVER_COLUMNS if k in present]
    against = ["stock", "ceiling"] + (["baseline"] if "baseline" in present else [])
    out = [
        "| scenario | case | metric | better | "
        + " | ".join(heads)
        + " | "
        + " | ".join(f"wsapp/{'before' if k == 'baseline' else k}" for k in against)
        + " |",
        "|---|---|---|---|" + "---:|" * (len(heads) + len(against)),
    ]
    for metric in METRICS:
        for case in _cases(rows, metric):
            vals = {k: _value(_find(rows, metric.scenario, case, k), metric) for k in present}
            if all(v is None for v in vals.values()):
                continue
            better = (
                ""
                if metric.higher_is_better is None
                else ("higher" if metric.higher_is_better else "lower")
            )
            cells = [_fmt(vals[k]) for k in present]
            ratios = [""] * len(against)
            if metric.higher_is_better is not None:  # e.g. a settle time: no better side, no ratio
                ratios = [_ratio(vals.get("wsapp"), vals.get(k)) for k in against]
            out.append(
                f"| {metric.scenario} | {case} | {metric.label} | {better} | "
                + " | ".join(cells)
                + " | "
                + " | ".join(ratios)
                + " |"
            )
    return "\n".join(out)


def client_table(rows: list[dict]) -> str:
    """Evidence the load generator is not the bottleneck: its CPU use next to the server's."""
    out = ["| scenario | case | server | rate | server process CPU (timed window) "
           "| load generator CPU (timed window) | CPU 0 busy (whole run) | CPU 1 busy (whole run) "
           "| other processes' CPU |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        r = row.get("result")
        if not r or r["mode"] == "idle":
            continue
        if r["mode"] == "echo":
            rate, util = f"{r['msgs_per_s']:,.0f} msg/s", r["client_cpu_util"]
            server = r["server_cpu_s"] / r["elapsed_s"] if r["elapsed_s"] else 0.0
        else:
            sat = r["saturated"]
            rate, util = f"{sat['deliveries_per_s']:,.0f} deliv/s", r["client_cpu_util_sat"]
            server = sat["server_cpu_s"] / sat["elapsed_s"] if sat["elapsed_s"] else 0.0
        out.append(
            f"| {row['scenario']} | {row['case']} | {row['server']} | {rate} | {server:.0%} "
            f"| {util:.0%} | {r['cpu0_busy']:.0%} | {r['cpu1_busy']:.0%} "
            f"| {foreign_share(r):.0%} |"
        )
    return "\n".join(out)


def foreign_share(result: dict) -> float:
    """Share of one core that processes other than ours used during the run."""
    return result.get("foreign_cpu_s", 0.0) / result["wall_s"] if result.get("wall_s") else 0.0


def contention_note(rows: list[dict], threshold: float = 0.05) -> str:
    """One sentence on how much other processes disturbed the reported runs ('' if not at all)."""
    shares = sorted(foreign_share(r["result"]) for r in rows if r.get("result"))
    busy = [s for s in shares if s > threshold]
    if not busy:
        return ""
    return (
        f"**Shared machine:** during {len(busy)} of the {len(shares)} reported runs "
        f"other processes used more than {threshold:.0%} of a core "
        f"(median {shares[len(shares) // 2]:.0%}, worst {shares[-1]:.0%}; "
        "per run in the last column below). Those figures are noisier."
    )


def chart(rows: list[dict], path: Path) -> bool:
    """Four panels of the headline numbers; False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [
        (
            "Small echo, 50 conns x 16 in flight",
            "messages/s",
            [
                m
                for m in METRICS
                if m.scenario == "small_echo"
                and m.label == "messages/s"
                and m.case_prefix.endswith("conns")
            ],
        ),
        (
            "Large echo",
            "MB/s",
            [m for m in METRICS if m.scenario == "large_echo" and m.label.startswith("MB/s")],
        ),
        (
            "Fan-out, saturated",
            "deliveries/s",
            [m for m in METRICS if m.label == "deliveries/s (saturated)"],
        ),
        (
            "Idle connections",
            "server RSS KiB per connection",
            [m for m in METRICS if m.label.startswith("server RSS")],
        ),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    for ax, (title, ylabel, metrics) in zip(axes.flat, panels, strict=True):
        groups = [(case, m) for m in metrics for case in _cases(rows, m)]
        kinds = [k for k, _ in SERVER_COLUMNS if any(r["server"] == k for r in rows)]
        width = 0.8 / max(1, len(kinds))
        for i, kind in enumerate(kinds):
            xs, ys = [], []
            for g, (case, m) in enumerate(groups):
                v = _value(_find(rows, m.scenario, case, kind), m)
                if isinstance(v, int | float) and v > 0:
                    xs.append(g + i * width)
                    ys.append(v)
            if ys:
                ax.bar(xs, ys, width, label=dict(SERVER_COLUMNS)[kind], color=COLORS[kind])
                for x, y in zip(xs, ys, strict=True):
                    ax.annotate(_fmt(y), (x, y), ha="center", va="bottom", fontsize=7)
        ax.set_xticks([g + width * (len(kinds) - 1) / 2 for g in range(len(groups))])
        ax.set_xticklabels([case for case, _ in groups], rotation=15, fontsize=8)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        # stock's bars are orders of magnitude below the others': log scale
        if title.startswith(("Small", "Large")):
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def write_doc(doc: Path, generated: str) -> None:
    """Replace only the generated block; hand-written text around it stays."""
    text = doc.read_text() if doc.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{generated.strip()}\n{END}{tail}")
