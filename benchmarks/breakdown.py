"""Where the edge's CPU per request goes, step by step, in one interleaved run.

    .venv/bin/python benchmarks/breakdown.py [--rounds 5] [--duration 4] [--connections 32]

Six proxies, each pinned alone on the proxy core, each called with the same GET at the
same concurrency, rounds interleaved; the median CPU µs per request of each, and what each
row adds over the row before it:

1. ``bare-aiohttp``: the bare raw-ASGI proxy (``bare_proxy.py``), the reference;
2. ``bare-transport``: the same bare proxy on the edge's own transport (``proxy.transport``);
3. ``client``: the edge's upstream step (``proxy.upstream``, on that transport) in place of
   the bare one's;
4. ``headers``: plus the edge's forwarding headers (``steps_proxy.py``);
5. ``edge-pass``: the edge itself, authentication off (path safety, routing on the
   385-route policy, per-address rate limit, grants);
6. ``edge-full``: plus the bearer token (parse, SHA-256, cached key-store lookup) and its
   own bucket.

Run ``bash benchmarks/run.sh`` once first (it installs nginx and wrk). Writes
``benchmarks/results/breakdown.md``. The machine is noisy: read the differences, not the
absolute figures, and expect a row to move by tens of µs between runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
from pathlib import Path

import edge
import peers
from load import Request, cpu_point, run_wrk

HERE = Path(__file__).resolve().parent
STEPS = ("bare-aiohttp", "bare-transport", "client", "headers", "edge-pass", "edge-full")


def _start(step: str, upstream_url: str) -> tuple[peers.Proc, Request]:
    if step in ("bare-aiohttp", "bare-transport"):
        return peers.start_python_proxy(step, upstream_url), Request(path=peers.PRODUCT_PATH)
    if step in ("client", "headers"):
        port = peers.free_port()
        cmd = [sys.executable, str(HERE / "steps_proxy.py"), "--port", str(port),
               "--upstream", upstream_url, "--steps", step]  # fmt: skip
        proc = peers.start(step, cmd, cpu=peers.PROXY_CPU)
        proc.port = port
        peers.wait_ready(proc, peers.PRODUCT_PATH)
        return proc, Request(path=peers.PRODUCT_PATH)
    proc, token = edge.start_edge(step, upstream_url)
    return proc, Request(path=edge.GET_PATH, token=token)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--duration", type=int, default=4, help="seconds per point")
    p.add_argument("--connections", type=int, default=32)
    args = p.parse_args()
    rounds = max(1, min(args.rounds, 20))
    duration = max(1, min(args.duration, 30))
    procs: list[peers.Proc] = []
    cpu: dict[str, list[float]] = {s: [] for s in STEPS}
    rps: dict[str, list[float]] = {s: [] for s in STEPS}
    try:
        upstream = peers.start_upstream()
        procs.append(upstream)
        url = f"http://{peers.HOST}:{upstream.port}"
        targets = {}
        for step in STEPS:
            proc, req = _start(step, url)
            procs.append(proc)
            targets[step] = (proc, req)
            run_wrk(proc.port, req, connections=args.connections, duration=1)  # warm-up
        for r in range(rounds):
            for step in STEPS:
                proc, req = targets[step]
                cpu_us, per_second = cpu_point(
                    step, proc, req, connections=args.connections, duration=duration
                )
                cpu[step].append(cpu_us)
                rps[step].append(per_second)
            print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    finally:
        for proc in reversed(procs):
            proc.stop()
    lines = [
        "# Where the edge's CPU per request goes",
        "",
        f"Command: `.venv/bin/python benchmarks/breakdown.py --rounds {rounds} "
        f"--duration {duration} --connections {args.connections}`  ",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; GET at {args.connections} "
        f"connections, {rounds} interleaved rounds of {duration} s; medians.",
        "",
        "| step | req/s | CPU µs/req | adds over the row above, µs |",
        "|---|---|---|---|",
    ]
    previous: float | None = None
    for step in STEPS:
        c = statistics.median(cpu[step])
        added = "" if previous is None else f"{c - previous:+.1f}"
        lines.append(f"| {step} | {statistics.median(rps[step]):,.0f} | {c:.1f} | {added} |")
        previous = c
    text = "\n".join(lines) + "\n"
    print(text)
    out = HERE / "results" / "breakdown.md"
    out.write_text(text)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
