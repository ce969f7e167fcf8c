"""Medians, within-round ratios, targets, and the Markdown / JSON / PNG outputs."""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

Record = dict[str, Any]
X = "\u00d7"  # multiplication sign
REFS = {"x_nginx": "nginx", "x_caddy": "caddy", "x_bare": "bare-aiohttp"}
CLIENTS = ("bare-aiohttp", "bare-transport", "bare-httpx", "bare-httpx-aiohttp", "naive-httpx")


def _ref_scenario(scenario: str) -> str:
    return "GET" if scenario == "GET" else "POST"


def case_name(target: str, scenario: str) -> str:
    return target if scenario == "GET" else f"{target} · {scenario}"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _index(records: list[Record]) -> dict[tuple[int, str, str, int], Record]:
    return {(r["round"], r["target"], r["scenario"], r["conns"]): r for r in records if "rps" in r}


def round_ratios(
    records: list[Record], a: tuple[str, str], b: tuple[str, str], conns: int, key: str = "rps"
) -> list[float]:
    """Per round: value of case ``a`` over case ``b`` (both (target, scenario)) at ``conns``."""
    idx = _index(records)
    out = []
    for rnd in sorted({r["round"] for r in records}):
        ra, rb = idx.get((rnd, *a, conns)), idx.get((rnd, *b, conns))
        if ra and rb and rb[key]:
            out.append(ra[key] / rb[key])
    return out


def round_diffs(
    records: list[Record], a: tuple[str, str], b: tuple[str, str], conns: int, key: str
) -> list[float]:
    idx = _index(records)
    out = []
    for rnd in sorted({r["round"] for r in records}):
        ra, rb = idx.get((rnd, *a, conns)), idx.get((rnd, *b, conns))
        if ra and rb:
            out.append(ra[key] - rb[key])
    return out


def summarize(cases: list[dict[str, Any]], records: list[Record]) -> list[Record]:
    """One row per (case, connections): medians over rounds and within-round ratios."""
    by_case: dict[tuple[str, str, int], list[Record]] = defaultdict(list)
    for r in records:
        by_case[(r["target"], r["scenario"], r["conns"])].append(r)
    rows = []
    for case in cases:
        for conns in case["conns"]:
            runs = by_case.get((case["target"], case["scenario"], conns), [])
            ok = [r for r in runs if "rps" in r]
            row: Record = {
                "case": case_name(case["target"], case["scenario"]),
                "target": case["target"],
                "scenario": case["scenario"],
                "group": case["group"],
                "conns": conns,
                "rounds": len(ok),
            }
            if case.get("skipped"):
                row["skipped"] = case["skipped"]
            elif not ok:
                errs = [r.get("error", "") for r in runs]
                row["skipped"] = errs[-1] if errs else "not run"
            else:
                for key in ("rps", "p50_ms", "p90_ms", "p99_ms", "cpu_us", "background"):
                    row[key] = _median([r[key] for r in ok if r.get(key) is not None])
                row["rps_min"] = min(r["rps"] for r in ok)
                row["rps_max"] = max(r["rps"] for r in ok)
                row["requests"] = sum(r["requests"] for r in ok)
                row["errors"] = sum(r["errors"] for r in ok)
                row["non_2xx"] = sum(r["non_2xx"] for r in ok)
                me = (case["target"], case["scenario"])
                ref_s = _ref_scenario(case["scenario"])
                for col, ref in REFS.items():
                    row[col] = _median(round_ratios(records, me, (ref, ref_s), conns))
                row["p99_x_caddy"] = _median(
                    round_ratios(records, me, ("caddy", ref_s), conns, "p99_ms")
                )
                row["added_p50_ms"] = _median(
                    round_diffs(records, me, ("direct", ref_s), conns, "p50_ms")
                )
                notes = case.get("notes", [])[:]
                if (row.get("background") or 0) > 0.05:
                    notes.append(f"background CPU {row['background']:.0%} of the machine (median)")
                if row["non_2xx"] or row["errors"]:
                    share = (row["non_2xx"] + row["errors"]) / max(1, row["requests"])
                    notes.append(
                        f"{row['non_2xx']} non-2xx, {row['errors']} socket errors ({share:.1%})"
                    )
                    if share > 0.01:
                        notes.append("INVALID: over 1% failed")
                row["notes"] = "; ".join(notes)
            rows.append(row)
    return rows


def _get(rows: list[Record], case: str, conns: int) -> Record | None:
    return next((r for r in rows if r["case"] == case and r["conns"] == conns), None)


def targets(rows: list[Record], records: list[Record], streaming: list[Record]) -> list[Record]:
    """The issue's targets: measured value, verdict, and the same figure for the bare proxy
    (what the hop itself costs in this layout) where that gives context."""
    out: list[Record] = []
    full = _get(rows, "edge-full", 32) or {}

    def ratio(a: tuple[str, str], b: tuple[str, str], key: str = "rps") -> float | None:
        return _median(round_ratios(records, a, b, 32, key))

    def added(target: str) -> float | None:
        return _median(round_diffs(records, (target, "GET"), ("direct", "GET"), 1, "p50_ms"))

    def add(name: str, goal: str, value: float | None, limit: float, at_least: bool,
            missing: str, context: float | None = None) -> None:  # fmt: skip
        ok = None if value is None else (value >= limit if at_least else value <= limit)
        sign = "\u2265" if at_least else "\u2264"
        out.append({
            "target": name, "goal": f"{sign} {goal}", "value": value,
            "verdict": "n/a" if ok is None else ("pass" if ok else "FAIL"),
            "bare": context, "why": "" if value is not None else missing,
        })  # fmt: skip

    edge_g, bare_g, caddy_g = ("edge-full", "GET"), ("bare-aiohttp", "GET"), ("caddy", "GET")
    hop_g = ("bare-transport", "GET")  # the bare proxy on the edge's own transport
    miss = full.get("skipped") or "edge-full or the reference not measured"
    # Issue #14's targets (the edge on its own transport), then the earlier ones.
    add("full edge vs Caddy (one core), 32 conns", f"0.8{X}", ratio(edge_g, caddy_g), 0.8,
        True, miss, ratio(hop_g, caddy_g))  # fmt: skip
    add("full edge CPU per request vs Caddy's, 32 conns", f"1.25{X}",
        ratio(edge_g, caddy_g, "cpu_us"), 1.25, False, miss,
        ratio(hop_g, caddy_g, "cpu_us"))  # fmt: skip
    add("full edge vs the bare aiohttp proxy, 32 conns", f"1.6{X}", ratio(edge_g, bare_g), 1.6,
        True, miss, ratio(hop_g, bare_g))  # fmt: skip
    add("full edge vs the bare proxy on its own transport, 32 conns", f"0.85{X}",
        ratio(edge_g, hop_g), 0.85, True, miss)  # fmt: skip
    add("full edge CPU per request, 32 conns", "200 \u00b5s", full.get("cpu_us"), 200, False,
        miss, (_get(rows, "bare-transport", 32) or {}).get("cpu_us"))  # fmt: skip
    add("full edge p99 vs Caddy's, 32 conns", f"2{X}", ratio(edge_g, caddy_g, "p99_ms"), 2,
        False, miss, ratio(hop_g, caddy_g, "p99_ms"))  # fmt: skip
    add("full edge added p50 over a direct upstream call, 1 conn", "0.35 ms",
        added("edge-full"), 0.35, False, miss, added("bare-transport"))  # fmt: skip
    redis = _get(rows, "edge-redis", 32) or {}
    add("Redis backends vs memory, 32 conns", f"0.7{X}", ratio(("edge-redis", "GET"), edge_g),
        0.7, True, redis.get("skipped") or miss)  # fmt: skip
    keyed = _get(rows, "edge-full \u00b7 POST keyed", 32) or {}
    add("idempotency-keyed POSTs vs unkeyed, 32 conns", f"0.7{X}",
        ratio(("edge-full", "POST keyed"), ("edge-full", "POST")), 0.7, True,
        keyed.get("skipped") or miss)  # fmt: skip
    edge_stream = next((s for s in streaming if s["config"] == "edge-full"), None)
    bare_stream = next((s for s in streaming if s["config"] == "bare-transport"), None)

    def growth(row: Record | None) -> float | None:
        ts = (row or {}).get("transfers", [])
        return max(t["rss_peak_growth_mb"] for t in ts) if ts and all(t["ok"] for t in ts) else None

    why_s, size = "streaming not run", "1 GB"
    if edge_stream:
        size = f"{edge_stream['bytes'] / 1e9:g} GB"
        ts = edge_stream.get("transfers", [])
        why_s = edge_stream.get("skipped") or "; ".join(
            f"{t['direction']}: HTTP {t['status']} {t['note']}" for t in ts if not t["ok"]
        )
    add(f"edge peak RSS growth streaming {size} either way", "5 MB", growth(edge_stream), 5,
        False, why_s, growth(bare_stream))  # fmt: skip
    return out


# --- machine facts ------------------------------------------------------------------------


def _cmd(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return (out.stdout + out.stderr).strip()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_facts(caddy: str) -> Record:
    cpu = "unknown"
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"model name\s*:\s*(.+)", text)
        cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    nginx = _cmd(["nginx", "-v"]).removeprefix("nginx version: ")
    wrk = _cmd(["wrk", "--version"]).splitlines()
    return {
        "cores": os.cpu_count(),
        "memory": f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
        "cpu": cpu,
        "kernel": platform.release(),
        "os": _cmd(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "nginx": nginx,
        "caddy": _cmd([caddy, "version"]).split()[0] if caddy else "unavailable",
        "wrk": wrk[0].split(" Copyright")[0] if wrk else "unavailable",
        "redis-server": _cmd(["redis-server", "--version"]).split(" sha=")[0],
        "redis-py": _version("redis"),
        "curl": _cmd(["curl", "--version"]).splitlines()[0].split(" (")[0],
        **{
            name: _version(name)
            for name in (
                "uvicorn",
                "uvloop",
                "httptools",
                "aiohttp",
                "httpx",
                "httpcore",
                "anyio",
                "sniffio",
                "starlette",
                "magento-edge",
            )
        },
    }


# --- outputs ------------------------------------------------------------------------------


def _f(v: Any, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def _load_table(rows: list[Record], conns: int, latency_view: bool) -> list[str]:
    if latency_view:
        head = ("| configuration | req/s | p50 ms | p90 ms | p99 ms | CPU µs/req | "
                "+p50 vs direct, ms | \u00d7 bare | notes |")  # fmt: skip
    else:
        head = ("| configuration | req/s | rounds min\u2013max | p50 ms | p90 ms | p99 ms | "
                "CPU µs/req | \u00d7 nginx | \u00d7 Caddy | \u00d7 bare | p99 \u00d7 Caddy | "
                "notes |")  # fmt: skip
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if r["conns"] != conns:
            continue
        if "rps" not in r:
            blanks = 7 if latency_view else 11
            lines.append(f"| {r['case']} |" + " |" * blanks + f" skipped: {r['skipped']} |")
            continue
        spread = "" if latency_view else f" {r['rps_min']:,.0f}\u2013{r['rps_max']:,.0f} |"
        base = (f"| {r['case']} | {r['rps']:,.0f} |{spread} {r['p50_ms']:.3f} | "
                f"{r['p90_ms']:.3f} | {r['p99_ms']:.3f} | {_f(r['cpu_us'], '.0f')} |")  # fmt: skip
        if latency_view:
            extra = f" {_f(r['added_p50_ms'], '+.3f')} | {_f(r['x_bare'], '.2f')} |"
        else:
            extra = (f" {_f(r['x_nginx'], '.3f')} | {_f(r['x_caddy'], '.2f')} | "
                     f"{_f(r['x_bare'], '.2f')} | {_f(r['p99_x_caddy'], '.2f')} |")  # fmt: skip
        lines.append(base + extra + f" {r['notes']} |")
    return lines


def _limit_cost_table(rows: list[Record], records: list[Record]) -> list[str]:
    """What rate limiting costs: the edge with limits off, memory and Redis, GET at 32."""
    off = _get(rows, "edge-nolimit", 32)
    if not off or off.get("skipped"):
        return []
    out = [
        "",
        "## Rate limits: what they cost (GET, 32 connections)",
        "",
        f"| rate limits | configuration | req/s | CPU µs/req | p99 ms | {X} limits off |",
        "|---|---|---|---|---|---|",
    ]
    for label, case in (("off", "edge-nolimit"), ("memory", "edge-full"),
                        ("Redis (every backend on Redis)", "edge-redis")):  # fmt: skip
        row = _get(rows, case, 32)
        if not row or row.get("skipped"):
            continue
        r = _median(round_ratios(records, (case, "GET"), ("edge-nolimit", "GET"), 32))
        out.append(
            f"| {label} | {case} | {_f(row.get('rps'), ',.0f')} | {_f(row.get('cpu_us'), '.0f')} | "
            f"{_f(row.get('p99_ms'), '.3f')} | {_f(r, '.3f')} |"
        )
    return out


def _client_table(rows: list[Record], records: list[Record], conns_list: list[int]) -> list[str]:
    head = "| client (bare raw-ASGI proxy) |"
    head += "".join(f" req/s @{c} |" for c in conns_list)
    head += " CPU µs/req @32 | p99 ms @32 | \u00d7 aiohttp @32 |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for target in CLIENTS:
        rs = {c: _get(rows, target, c) for c in conns_list}
        if not any(r and "rps" in r for r in rs.values()):
            continue
        label = {"naive-httpx": "Starlette + httpx (naive)"}.get(target, target)
        cells = "".join(f" {_f((rs[c] or {}).get('rps'), ',.0f')} |" for c in conns_list)
        r32 = rs.get(32) or {}
        x = _median(round_ratios(records, (target, "GET"), ("bare-aiohttp", "GET"), 32))
        lines.append(f"| {label} |{cells} {_f(r32.get('cpu_us'), '.0f')} | "
                     f"{_f(r32.get('p99_ms'), '.2f')} | {_f(x, '.3f')} |")  # fmt: skip
    return lines


def _stream_table(streaming: list[Record]) -> list[str]:
    lines = [
        "| configuration | download MB/s | download RSS growth MB | upload MB/s | "
        "upload RSS growth MB | idle RSS MB | POST echo | background CPU down/up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in streaming:
        if s.get("skipped") and not s.get("transfers"):
            lines.append(f"| {s['config']} | | | | | | skipped: {s['skipped']} | |")
            continue
        t = {x["direction"]: x for x in s.get("transfers", [])}
        cells = []
        for d in ("download", "upload"):
            x = t.get(d)
            if not x:
                cells += ["", ""]
            elif x["ok"]:
                cells += [f"{x['mb_s']:.0f}", f"{x['rss_peak_growth_mb']:.2f}"]
            else:
                cells += [
                    f"failed: HTTP {x['status']} {x['note']}",
                    f"{x['rss_peak_growth_mb']:.2f}",
                ]
        idle = t.get("download", {}).get("rss_idle_mb", "")
        bg = "/".join(f"{t[d].get('background', 0):.0%}" for d in ("download", "upload") if d in t)
        cells += [str(idle), str(s.get("echo", "")), bg]
        lines.append(f"| {s['config']} | " + " | ".join(cells) + " |")
    return lines


def write_markdown(path: Path, data: Record) -> None:
    rows, records, meta = data["summary"], data["records"], data["meta"]
    conns_list = sorted({r["conns"] for r in rows})
    lines = [
        "# magento-edge benchmark: latest run",
        "",
        f"Command: `{meta['command']}`  ",
        f"Started {meta['started']}, took {meta['elapsed_s'] / 60:.1f} min; {meta['rounds']} "
        f"interleaved rounds of {meta['duration_s']:g} s per point; every figure is the median "
        "over rounds, every ratio the median of ratios taken within the same round. "
        "See README.md for the method.",
        "",
        "## Targets",
        "",
        "| target | goal | measured | verdict | bare proxy, same figure | note |",
        "|---|---|---|---|---|---|",
    ]
    for t in data["targets"]:
        fine = "ms" in t["goal"] or X in t["goal"]

        def shown(v: float | None, fine: bool = fine) -> str:
            return "" if v is None else (f"{v:.3f}" if fine else f"{v:.1f}")

        lines.append(
            f"| {t['target']} | {t['goal']} | {shown(t['value'])} | {t['verdict']} | "
            f"{shown(t.get('bare'))} | {t['why']} |"
        )
    lines += _limit_cost_table(rows, records)
    for conns in conns_list:
        latency = conns == 1
        title = f"## {conns} connection{'s' if conns > 1 else ''}"
        if latency:
            title += " (added latency is p50 minus the direct upstream's p50 in the same round)"
        lines += ["", title, "", *_load_table(rows, conns, latency)]
    lines += [
        "",
        "## Upstream client comparison",
        "",
        "The same bare raw-ASGI proxy (`bare_proxy.py`), only the client differs; the naive "
        "Starlette + httpx proxy for scale. GET of the ~1.4 KB product.",
        "",
    ]
    lines += _client_table(rows, records, conns_list)
    if data.get("streaming"):
        size = data["streaming"][0]["bytes"]
        lines += ["", f"## Streaming {size / 1e9:g} GB through each Python proxy and the edge", "",
                  "curl → proxy (core 0) → aiohttp.web upstream; MB/s = 10^6 bytes/s; RSS growth = "
                  "peak over the idle RSS sampled every 50 ms.", ""]  # fmt: skip
        lines += _stream_table(data["streaming"])
    lines += ["", "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in meta["machine"].items()]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in meta.get("notes", [])]
    path.write_text("\n".join(lines) + "\n")


def write_json(path: Path, data: Record) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=False, default=str) + "\n")


GROUP_COLORS = {"reference": "#9e9e9e", "peer": "#4c72b0", "python": "#dd8452", "edge": "#55a868"}


def write_png(path: Path, rows: list[Record], conns: int = 32) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = [r for r in rows if r["conns"] == conns and "rps" in r]
    if not data:
        return
    labels = [r["case"] for r in data]
    colors = [GROUP_COLORS.get(r["group"], "#333333") for r in data]
    ys = list(range(len(data)))[::-1]
    fig, (ax1, ax2) = plt.subplots(
        1, 2, figsize=(13, 0.45 * len(data) + 1.8), sharey=True, constrained_layout=True
    )
    ax1.barh(ys, [r["rps"] for r in data], color=colors)
    ax1.set_xscale("log")
    ax1.set_xlabel("requests/s (log scale, median of rounds)")
    ax1.set_title(f"Throughput at {conns} connections")
    for y, r in zip(ys, data, strict=True):
        ax1.text(r["rps"], y, f" {r['rps']:,.0f}", va="center", fontsize=8)
    ax2.barh(ys, [r["p99_ms"] for r in data], color=colors)
    ax2.set_xscale("log")
    ax2.set_xlabel("p99 latency, ms (log scale)")
    ax2.set_title(f"p99 latency at {conns} connections")
    for y, r in zip(ys, data, strict=True):
        ax2.text(r["p99_ms"], y, f" {r['p99_ms']:.2f}", va="center", fontsize=8)
    ax1.set_yticks(ys, labels)
    for ax in (ax1, ax2):
        ax.grid(axis="x", which="both", alpha=0.3)
        lo, hi = ax.get_xlim()
        ax.set_xlim(lo, hi * 3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in GROUP_COLORS.values()]
    ax2.legend(handles, list(GROUP_COLORS), loc="lower right", fontsize=8)
    fig.suptitle("magento-edge vs peers (one process each, same machine, same run)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """Re-render the Markdown and PNG of a results JSON (e.g. after a report change)."""
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("json", type=Path, help="benchmarks/results/latest.json")
    p.add_argument("--refresh-machine", action="store_true",
                   help="re-collect the machine facts (same machine only)")  # fmt: skip
    args = p.parse_args()
    data = json.loads(args.json.read_text())
    records = data["records"]
    cases = data.get("cases") or [
        {"target": t, "scenario": s, "group": g, "conns": c, **extra}
        for (t, s, g, c, extra) in _cases_from(data)
    ]
    data["summary"] = summarize(cases, records)
    data["targets"] = targets(data["summary"], records, data.get("streaming", []))
    if args.refresh_machine:
        from peers import caddy_binary

        data["meta"]["machine"] = machine_facts(caddy_binary())
        note = "Machine facts re-collected after the run by `report.py --refresh-machine`."
        if note not in data["meta"]["notes"]:
            data["meta"]["notes"].append(note)
    write_json(args.json, data)
    write_markdown(args.json.with_suffix(".md"), data)
    write_png(args.json.with_suffix(".png"), data["summary"])


def _cases_from(data: Record) -> list[tuple[str, str, str, list[int], Record]]:
    """The cases of a run, rebuilt from its summary rows (order kept)."""
    out: dict[tuple[str, str], tuple[str, list[int], Record]] = {}
    for row in data["summary"]:
        key = (row["target"], row["scenario"])
        _, conns, extra = out.setdefault(key, (row["group"], [], {}))
        conns.append(row["conns"])
        if row.get("skipped"):
            extra["skipped"] = row["skipped"]
        kept = [n for n in (row.get("notes") or "").split("; ") if n.startswith("pass-through")]
        extra.setdefault("notes", kept)
    return [(t, s, g, c, e) for (t, s), (g, c, e) in out.items()]


if __name__ == "__main__":
    main()
