"""The full edge at another git revision against this checkout's, under the same load.

    .venv/bin/python benchmarks/ab.py --baseline REV [--mode edge-full] [--rounds 6]
        [--duration 4] [--connections 32] [--scenario GET|POST|"POST keyed"]

Both edges run ``magento-edge serve`` in the same benchmark mode (``benchmarks/edge.py``),
each pinned alone on the proxy core in turn, in front of the same nginx upstream; the
baseline's ``proxy`` package (and its policies) exported with ``git archive`` and put
first on its ``PYTHONPATH``. Rounds alternate which edge goes first; each point is a
``wrk`` run at ``--connections``. Prints the median CPU µs per request and req/s of each
and the median of the per-round ratios (this checkout over the baseline), so that a change
of the hot path is judged against its own parent on the same machine at the same time.
``--scenario`` is the request, as in ``run.sh``: the GET of a product, the POST of its
~0.5 KB body, or that POST with a fresh ``Idempotency-Key`` each time.

Run ``bash benchmarks/run.sh`` once first (it installs nginx and wrk).
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import tarfile
from pathlib import Path

import edge
import peers
from load import Request, cpu_point, run_wrk

HERE = Path(__file__).resolve().parent


def export(rev: str) -> Path:
    """``proxy/`` and ``policies/`` at ``rev``, in a directory of the benchmark's work."""
    sha = subprocess.run(
        ["git", "-C", str(HERE.parent), "rev-parse", "--verify", rev + "^{commit}"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    target = peers.WORK / f"ab-{sha[:12]}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    tar = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", sha, "proxy", "policies"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(target, filter="data")
    return target


def _request(scenario: str, token: str | None) -> Request:
    if scenario == "GET":
        return Request(path=edge.GET_PATH, token=token)
    return Request(
        path=edge.PUBLIC_PREFIX, method="POST", body=peers.POST_JSON.encode(), token=token,
        idempotency=scenario == "POST keyed",
    )  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", required=True, help="a git revision, e.g. HEAD~1")
    p.add_argument("--mode", choices=edge.MODES, default="edge-full")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--duration", type=int, default=4, help="seconds per point")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--scenario", choices=("GET", "POST", "POST keyed"), default="GET")
    args = p.parse_args()
    peers.require_tools("nginx", "wrk")
    rounds = max(1, min(args.rounds, 30))
    duration = max(1, min(args.duration, 30))
    base_dir = export(args.baseline)
    procs: list[peers.Proc] = []
    cpu: dict[str, list[float]] = {"baseline": [], "this": []}
    rps: dict[str, list[float]] = {"baseline": [], "this": []}
    try:
        upstream = peers.start_upstream()
        procs.append(upstream)
        url = f"http://{peers.HOST}:{upstream.port}"
        targets: dict[str, tuple[peers.Proc, Request]] = {}
        for label, env in (("baseline", {"PYTHONPATH": str(base_dir)}), ("this", None)):
            proc, token = edge.start_edge(args.mode, url, name=f"ab-{label}", env=env)
            procs.append(proc)
            targets[label] = (proc, _request(args.scenario, token))
            run_wrk(proc.port, targets[label][1], connections=args.connections, duration=1)
        for r in range(rounds):
            order = ("baseline", "this") if r % 2 == 0 else ("this", "baseline")
            for label in order:
                proc, req = targets[label]
                cpu_us, per_second = cpu_point(
                    label, proc, req, connections=args.connections, duration=duration
                )
                cpu[label].append(cpu_us)
                rps[label].append(per_second)
            print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    finally:
        for proc in reversed(procs):
            proc.stop()
    cpu_ratio = statistics.median(t / b for t, b in zip(cpu["this"], cpu["baseline"], strict=True))
    rps_ratio = statistics.median(t / b for t, b in zip(rps["this"], rps["baseline"], strict=True))
    print(
        f"{args.mode}, {args.scenario} at {args.connections} connections, {rounds} rounds of "
        f"{duration} s "
        f"(baseline {args.baseline})"
    )
    for label in ("baseline", "this"):
        print(
            f"  {label:9s} {statistics.median(rps[label]):9,.0f} req/s  "
            f"{statistics.median(cpu[label]):6.1f} CPU us/req"
        )
    print(f"  this/baseline: req/s {rps_ratio:.3f}x, CPU per request {cpu_ratio:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
