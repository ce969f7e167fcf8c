"""Profile one Python proxy under wrk load with py-spy, for a bounded time.

    .venv/bin/pip install py-spy          # not part of scripts/setup.sh: optional tool
    .venv/bin/python benchmarks/profile.py [--proxy bare-aiohttp] [--seconds 15] [--native]

Starts the upstream nginx and the proxy (``--proxy edge-full`` or another edge mode; Redis
too for ``edge-redis``), pinned like in run.py, runs wrk at 32 connections for
``--seconds`` + 2 s, samples the proxy with ``py-spy record --format raw`` (collapsed
stacks; py-spy itself on the load core), and prints the top functions by own samples (the
leaf frame) and by total samples (anywhere on the stack). The summary is written to
``benchmarks/results/profile-<proxy>.txt``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import edge
import peers
from load import Request, run_wrk

HERE = Path(__file__).resolve().parent


def _frame(text: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; keep function + file.
    name, _, where = text.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    short = "/".join(Path(path).parts[-2:]) if path else ""
    return f"{name} ({short})" if short else name


def summarize(raw: str, top: int = 25) -> str:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = [_frame(f) for f in stack.split(";") if f]
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
    out = [f"{samples} samples", "", "own (leaf) samples:"]
    out += [f"  {n / samples:6.1%}  {f}" for f, n in own.most_common(top)] if samples else []
    out += ["", "total (inclusive) samples:"]
    out += [f"  {n / samples:6.1%}  {f}" for f, n in total.most_common(top)] if samples else []
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description="py-spy profile of a Python proxy under load")
    p.add_argument(
        "--proxy", default="bare-aiohttp", choices=[*sorted(peers.PYTHON_PROXIES), *edge.MODES]
    )
    p.add_argument("--seconds", type=int, default=15)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--native", action="store_true", help="include native (C/Cython) frames")
    args = p.parse_args()
    pyspy = shutil.which("py-spy") or str(peers.VENV_BIN / "py-spy")
    if not Path(pyspy).exists():
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    seconds = max(2, min(args.seconds, 120))
    procs: list[peers.Proc] = []
    try:
        upstream = peers.start_upstream()
        procs.append(upstream)
        url = f"http://{peers.HOST}:{upstream.port}"
        if args.proxy in edge.MODES:
            if args.proxy == "edge-redis":
                redis = peers.start_redis()
                procs.append(redis)
                proxy, token = edge.start_edge(
                    args.proxy, url, redis_url=f"redis://{peers.HOST}:{redis.port}/0"
                )
            else:
                proxy, token = edge.start_edge(args.proxy, url)
            req = Request(path=edge.GET_PATH, token=token)
        else:
            proxy = peers.start_python_proxy(args.proxy, url)
            req = Request(path=peers.PRODUCT_PATH)
        procs.append(proxy)
        run_wrk(proxy.port, req, connections=32, duration=2)
        result: dict[str, object] = {}

        def load() -> None:
            result["wrk"] = run_wrk(
                proxy.port, req, connections=args.connections, duration=seconds + 2
            )

        t = threading.Thread(target=load)
        t.start()
        raw = peers.WORK / f"profile-{args.proxy}.raw"
        cmd = ["taskset", "-c", peers.LOAD_CPU, pyspy, "record", "-p", str(proxy.pid),
               "-d", str(seconds), "-r", str(args.rate), "-f", "raw", "-o", str(raw),
               "--nonblocking"]  # fmt: skip
        if args.native:
            cmd.append("--native")
        subprocess.run(cmd, capture_output=True, timeout=seconds + 60, check=False)
        t.join(seconds + 40)
        text = summarize(raw.read_text() if raw.exists() else "")
        wrk = result.get("wrk")
        head = f"{args.proxy}, {args.connections} connections, {seconds} s"
        if wrk is not None:
            head += f": {wrk.rps:,.0f} req/s while sampled"  # type: ignore[attr-defined]
        text = head + (" (native frames)" if args.native else "") + "\n" + text + "\n"
        print(text)
        out = HERE / "results" / f"profile-{args.proxy}{'-native' if args.native else ''}.txt"
        out.write_text(text)
        print(f"wrote {out}")
    finally:
        for proc in reversed(procs):
            proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
