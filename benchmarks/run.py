"""Measure magento-edge against its peers on this machine, in one run.

    .venv/bin/python benchmarks/run.py [--quick] [--rounds N] [--duration S] [--only NAME,...]

Starts the upstream (nginx, fixed ~1.2 KB JSON), every peer and every edge mode once, then
runs interleaved rounds: in each round every configuration is measured at every connection
count (the order rotates from round to round). Writes ``benchmarks/results/latest.md``,
``latest.json`` and ``latest.png`` (``quick.*`` with ``--quick``). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import edge
import peers
import report
import streaming
from load import Request, run_wrk
from measure import Background, cpu_seconds
from peers import POST_JSON, POST_PATH, PRODUCT_JSON, Proc

RESULTS = peers.HERE / "results"
GET_TARGETS = (
    "direct", "nginx", "caddy", "bare-aiohttp", "bare-transport", "bare-httpx",
    "bare-httpx-aiohttp", "naive-httpx", "edge-pass", "edge-full", "edge-full-log",
    "edge-nolimit", "edge-redis",
)  # fmt: skip
POST_CASES = (
    ("direct", "POST"), ("nginx", "POST"), ("caddy", "POST"), ("bare-aiohttp", "POST"),
    ("bare-transport", "POST"), ("edge-full", "POST"), ("edge-full", "POST keyed"),
    ("edge-redis", "POST keyed"),
)  # fmt: skip
QUICK_TARGETS = (
    "direct",
    "nginx",
    "caddy",
    "bare-aiohttp",
    "bare-transport",
    "bare-httpx",
    "naive-httpx",
    "edge-full",
)
STREAM_TARGETS = (
    "bare-aiohttp", "bare-transport", "bare-httpx", "bare-httpx-aiohttp", "naive-httpx",
    "edge-full",
)  # fmt: skip
GROUPS = {"direct": "reference", "nginx": "peer", "caddy": "peer", "edge-pass": "edge",
          "edge-full": "edge", "edge-full-log": "edge", "edge-nolimit": "edge",
          "edge-redis": "edge"}  # fmt: skip
ONLY_AT_32 = ("edge-full-log", "edge-nolimit")  # priced at 32 connections only


@dataclass
class Target:
    name: str
    proc: Proc | None = None
    prefix: str = "/rest/default/V1/products"  # GET prefix; POST goes to the prefix itself
    token: str | None = None
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)

    def request(self, scenario: str) -> Request:
        if scenario == "GET":
            return Request(path=self.prefix + "/24-MB01", token=self.token)
        return Request(
            path=self.prefix, method="POST", body=POST_JSON.encode(), token=self.token,
            idempotency=scenario == "POST keyed",
        )  # fmt: skip


def log(msg: str) -> None:
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {msg}", flush=True)


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="magento-edge vs its peers, same machine, same run")
    p.add_argument("--quick", action="store_true", help="smoke run: fewer configs, short points")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 2)")
    p.add_argument("--duration", type=float, help="seconds per point (default 5; quick 2)")
    p.add_argument("--connections", help="comma list (default 1,32,128; quick 1,32)")
    p.add_argument("--only", help="comma list of configurations, e.g. direct,nginx,edge-full")
    p.add_argument("--stream-bytes", type=int, help="streaming size (default 1e9; quick 2e8)")
    p.add_argument("--skip-streaming", action="store_true")
    p.add_argument("--skip-load", action="store_true")
    p.add_argument(
        "--edge-policy", type=Path, help="policy for the edge (default: the shipped v1 policy)"
    )
    p.add_argument(
        "--noise-limit",
        type=float,
        default=0.05,
        help="foreign CPU share of the machine above which a point is repeated (default 0.05)",
    )
    p.add_argument("--retries", type=int, default=1, help="repeats of a noisy point (default 1)")
    p.add_argument(
        "--wait-budget",
        type=float,
        help="seconds the whole run may spend waiting for quiet or repeating (default 480; "
        "quick 60)",
    )
    p.add_argument(
        "--out", help="output name in benchmarks/results/ (default latest; quick: quick)"
    )
    args = p.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    default_conns = "1,32" if args.quick else "1,32,128"
    args.connections = [int(c) for c in (args.connections or default_conns).split(",")]
    args.stream_bytes = args.stream_bytes or (200_000_000 if args.quick else 1_000_000_000)
    args.out = args.out or ("quick" if args.quick else "latest")
    if args.wait_budget is None:
        args.wait_budget = 60.0 if args.quick else 480.0
    wanted = QUICK_TARGETS if args.quick else GET_TARGETS
    if args.only:
        only = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(only) - set(GET_TARGETS))
        if unknown:
            p.error(
                f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(GET_TARGETS)}"
            )
        wanted = tuple(only)
    args.targets = wanted
    if args.rounds < 1 or args.duration < 1:
        p.error("--rounds and --duration must be at least 1")
    return args


def build_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for t in args.targets:
        conns = [c for c in args.connections if c == 32] if t in ONLY_AT_32 else args.connections
        cases.append({"target": t, "scenario": "GET", "conns": conns or args.connections,
                      "group": GROUPS.get(t, "python")})  # fmt: skip
    post_conns = [c for c in args.connections if c <= 32] or args.connections
    for t, scenario in POST_CASES:
        if t in args.targets:
            cases.append({"target": t, "scenario": scenario, "conns": post_conns,
                          "group": GROUPS.get(t, "python")})  # fmt: skip
    return cases


def start_targets(
    args: argparse.Namespace, upstream: Proc, redis: Proc | None
) -> dict[str, Target]:
    url = f"http://{peers.HOST}:{upstream.port}"
    out: dict[str, Target] = {}
    starters: dict[str, Callable[[], Target]] = {
        "direct": lambda: Target("direct", proc=upstream),
        "nginx": lambda: Target("nginx", proc=peers.start_nginx_proxy(upstream.port)),
        "caddy": lambda: Target("caddy", proc=peers.start_caddy(upstream.port)),
    }
    for kind in peers.PYTHON_PROXIES:
        starters[kind] = lambda kind=kind: Target(kind, proc=peers.start_python_proxy(kind, url))
    policy = args.edge_policy.resolve() if args.edge_policy else None
    for mode in edge.MODES:

        def start_mode(mode: str = mode) -> Target:
            if mode == "edge-redis" and redis is None:
                raise RuntimeError("redis-server did not start")
            redis_url = f"redis://{peers.HOST}:{redis.port}/0" if redis else None
            proc, token = edge.start_edge(mode, url, redis_url=redis_url, policy=policy)
            t = Target(mode, proc=proc, prefix=edge.PUBLIC_PREFIX, token=token)
            if mode == "edge-pass":
                t.notes.append(f"pass-through via {proc.meta['pass_through']}")
            return t

        starters[mode] = start_mode
    for name in args.targets:
        try:
            t = starters[name]()
            status, body = peers.http_request(t.proc.port, "GET", t.request("GET").path,
                                              headers=_auth(t))  # fmt: skip
            if body != PRODUCT_JSON.encode():
                t.notes.append(f"GET body differs from upstream's ({len(body)} bytes)")
            log(f"started {name} on 127.0.0.1:{t.proc.port} (pid {t.proc.pid}), GET -> {status}")
        except Exception as exc:
            t = Target(name, skipped=f"{exc}"[:300])
            log(f"skipped {name}: {t.skipped}")
        out[name] = t
    return out


def _auth(t: Target) -> dict[str, str]:
    return {"Authorization": f"Bearer {t.token}"} if t.token else {}


def probe_post(t: Target, scenario: str) -> str | None:
    """One POST like the benchmark's; a reason to skip the case if it is not a 2xx."""
    headers = {"Content-Type": "application/json", **_auth(t)}
    if scenario == "POST keyed":
        headers["Idempotency-Key"] = f"probe-{time.time_ns()}"
    try:
        status, body = peers.http_request(
            t.proc.port, "POST", t.prefix, body=POST_JSON.encode(), headers=headers
        )
    except OSError as exc:
        return f"POST probe failed: {exc}"
    if not 200 <= status < 300:
        return f"POST answered HTTP {status}: {body[:120]!r}"
    return None


class Pacer:
    """Background-load guard: wait (bounded) for a quiet machine before each point, and
    repeat a point measured while other work used more than the limit; all of it within
    one budget of seconds for the whole run, so the run stays bounded."""

    def __init__(self, args: argparse.Namespace, own: Callable[[], list[int]]) -> None:
        self.bg = Background(own)
        self.limit = args.noise_limit
        self.retries = args.retries
        self.budget = args.wait_budget
        self.waited = 0.0
        self.repeated = 0

    def left(self) -> float:
        return self.budget - self.waited

    def point(self, t: Target, req: Request, conns: int, duration: float) -> dict[str, Any]:
        best: dict[str, Any] | None = None
        for attempt in range(1 + self.retries):
            if self.left() > 0:
                _, waited = self.bg.wait_quiet(self.limit, min(30.0, self.left()))
                self.waited += waited
            assert t.proc is not None
            pids = t.proc.pids()
            before = cpu_seconds(pids)
            self.bg.start()
            res = run_wrk(t.proc.port, req, connections=conns, duration=duration)
            noise = self.bg.share()
            used = cpu_seconds(pids) - before
            rec = dict(
                rps=res.rps, p50_ms=res.p50_ms, p90_ms=res.p90_ms, p99_ms=res.p99_ms,
                p999_ms=res.p999_ms, max_ms=res.max_ms, requests=res.requests,
                errors=res.errors, non_2xx=res.non_2xx,
                cpu_us=used / res.requests * 1e6 if res.requests else None,
                background=round(noise, 4), attempts=attempt + 1,
            )  # fmt: skip
            if best is None or noise < best["background"]:
                best = rec
            if noise <= self.limit or self.left() <= 0 or attempt == self.retries:
                break
            self.repeated += 1
            self.waited += duration
            log(f"    background CPU {noise:.0%} of the machine: repeating this point")
        assert best is not None
        best["attempts"] = attempt + 1
        return best


def run_rounds(
    args: argparse.Namespace, cases: list[dict[str, Any]], targets: dict[str, Target],
    pacer: Pacer,
) -> list[dict[str, Any]]:  # fmt: skip
    records: list[dict[str, Any]] = []
    for case in cases:
        t = targets[case["target"]]
        case["notes"] = list(t.notes)
        if t.skipped:
            case["skipped"] = t.skipped
        elif case["scenario"] != "GET":
            case["skipped"] = probe_post(t, case["scenario"])
    live = [c for c in cases if not c.get("skipped")]
    points = sum(len(c["conns"]) for c in live) * args.rounds
    log(f"{len(live)} cases, {points} points of {args.duration:g} s: "
        f"~{points * (args.duration + 0.8) / 60:.1f} min of load")  # fmt: skip
    for rnd in range(args.rounds):
        shift = rnd % max(1, len(live))
        order = live[shift:] + live[:shift]
        warmed: set[str] = set()
        log(f"round {rnd + 1}/{args.rounds}")
        for case in order:
            t = targets[case["target"]]
            name = report.case_name(case["target"], case["scenario"])
            if t.proc is None or not t.proc.alive():
                case["skipped"] = t.skipped = (
                    t.skipped or f"process died: {t.proc and t.proc.tail()}"
                )
                continue
            req = t.request(case["scenario"])
            if t.name not in warmed:
                try:
                    run_wrk(t.proc.port, req, connections=32, duration=1)
                except RuntimeError as exc:
                    log(f"  warm-up {name} failed: {exc}")
                warmed.add(t.name)
            for conns in case["conns"]:
                rec: dict[str, Any] = {"round": rnd, "target": case["target"],
                                       "scenario": case["scenario"], "conns": conns}  # fmt: skip
                try:
                    rec.update(pacer.point(t, req, conns, args.duration))
                except RuntimeError as exc:
                    rec["error"] = str(exc)
                    records.append(rec)
                    log(f"  {name} @{conns}: {exc}")
                    continue
                records.append(rec)
                cpu = f"{rec['cpu_us']:.0f}" if rec["cpu_us"] is not None else "-"
                failed = rec["non_2xx"] or rec["errors"]
                bad = f" non-2xx {rec['non_2xx']} err {rec['errors']}" if failed else ""
                log(f"  {name:<28} @{conns:<3} {rec['rps']:>9,.0f} req/s  p50 {rec['p50_ms']:.3f}  "
                    f"p99 {rec['p99_ms']:.3f} ms  {cpu} \u00b5s CPU/req  bg {rec['background']:.0%}"
                    f"{bad}")  # fmt: skip
                time.sleep(0.2)
    return records


def stream_targets(args: argparse.Namespace) -> list[tuple[str, Callable[[str], Any]]]:
    out: list[tuple[str, Callable[[str], Any]]] = []
    policy = args.edge_policy.resolve() if args.edge_policy else None
    for name in STREAM_TARGETS:
        if name not in args.targets:
            continue
        if name in peers.PYTHON_PROXIES:

            def py(url: str, name: str = name) -> Any:
                proc = peers.start_python_proxy(name, url, name=f"stream-{name}")
                return proc, {}, POST_PATH

            out.append((name, py))
        else:

            def ed(url: str, name: str = name) -> Any:
                proc, token = edge.start_edge(name, url, policy=policy, name=f"stream-{name}")
                return (
                    proc,
                    ({"Authorization": f"Bearer {token}"} if token else {}),
                    edge.PUBLIC_PREFIX,
                )

            out.append((name, ed))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    command = " ".join(
        shlex.quote(a) for a in [".venv/bin/python", "benchmarks/run.py", *sys.argv[1:]]
    )
    log(f"command: {command}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    for old in peers.WORK.glob("edge-*"):  # configs and key stores of earlier runs
        shutil.rmtree(old, ignore_errors=True)
    procs: list[Proc] = []
    records: list[dict[str, Any]] = []
    stream_rows: list[dict[str, Any]] = []
    cases = build_cases(args)
    notes = [
        "Pinning: each measured proxy runs alone on core 0 (taskset); wrk (1 thread), the "
        "upstream nginx, Redis and the streaming client/upstream share core 1.",
        "CPU µs/req: user+system time of the proxy's process tree during the wrk run / requests.",
        "direct = wrk straight to the upstream nginx (same core as wrk): the latency baseline; "
        "its CPU column is the upstream's own cost per request.",
        f"POST rows send a {len(POST_JSON)}-byte JSON body; the upstream nginx answers the fixed "
        "product JSON (nginx cannot echo); the body echo is checked through each Python proxy "
        "and the edge in the streaming phase (POST echo column).",
        "Ratios: per round, the configuration's value over the reference's in the same round "
        "(GET over GET, POST over POST); the table shows the median over rounds.",
    ]
    try:
        if not args.skip_load:
            upstream = peers.start_upstream()
            procs.append(upstream)
            log(f"upstream nginx on 127.0.0.1:{upstream.port} (pid {upstream.pid})")
            redis = None
            if "edge-redis" in args.targets:
                try:
                    redis = peers.start_redis()
                    procs.append(redis)
                except RuntimeError as exc:
                    log(f"redis: {exc}")
            targets = start_targets(args, upstream, redis)
            procs += [t.proc for t in targets.values() if t.proc and t.proc is not upstream]
            pacer = Pacer(args, lambda: [pid for p in procs for pid in p.pids()])
            records = run_rounds(args, cases, targets, pacer)
            notes.append(
                f"Background load: {pacer.waited:.0f} s spent waiting for a quiet machine, "
                f"{pacer.repeated} point(s) repeated (limit {args.noise_limit:.0%} of the machine)."
            )
            if "edge-pass" in targets and not targets["edge-pass"].skipped:
                notes.append("edge-pass: " + "; ".join(targets["edge-pass"].notes))
            for p in reversed(procs):
                p.stop()
            procs.clear()
        if not args.skip_streaming:
            log(f"streaming {args.stream_bytes / 1e9:g} GB each way")
            stream_rows = streaming.run_streaming(stream_targets(args), args.stream_bytes, log)
    except KeyboardInterrupt:
        log("interrupted: stopping what we started")
        notes.append("run interrupted: partial results")
    finally:
        for p in reversed(procs):
            p.stop()
    summary = report.summarize(cases, records)
    data = {
        "meta": {
            "command": command,
            "started": started.isoformat(timespec="seconds"),
            "elapsed_s": round(time.monotonic() - t0, 1),
            "rounds": args.rounds,
            "duration_s": args.duration,
            "connections": args.connections,
            "machine": report.machine_facts(peers.caddy_binary()),
            "notes": notes,
        },
        "targets": report.targets(summary, records, stream_rows),
        "summary": summary,
        "cases": cases,
        "streaming": stream_rows,
        "records": records,
    }
    out = RESULTS / args.out
    report.write_json(out.with_suffix(".json"), data)
    report.write_markdown(out.with_suffix(".md"), data)
    report.write_png(out.with_suffix(".png"), summary)
    log(f"wrote {out}.md, .json, .png in {data['meta']['elapsed_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
