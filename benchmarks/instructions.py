"""Instructions per request, counted by valgrind's callgrind: a figure the machine's noise
does not move, for comparing one change of the hot path with the last.

    .venv/bin/python benchmarks/instructions.py [--proxy bare-transport edge-pass edge-full]
        [--connections 32] [-n 60] [--path GET]

Each proxy runs under ``valgrind --tool=callgrind`` (instrumentation off while it starts),
in front of the benchmark's nginx upstream; after a warm-up, callgrind's counters are
zeroed, a fixed number of requests is sent (``--connections`` keep-alive connections,
``-n`` requests each, all answered 200, from a small client in this process), the counters
are dumped, and the instructions (Ir) are divided by the requests. Everything the process
executes counts: the event loop, the interpreter, the proxy's own code and the system-call
wrappers (not the kernel). Wall time and CPU time do not appear: under valgrind the proxy
runs ~50x slower, so only the instruction counts mean anything.

Run ``bash benchmarks/run.sh`` once first (it installs nginx). Needs Debian's
``valgrind`` (``scripts/setup.sh bench`` installs it).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import edge
import peers

HERE = Path(__file__).resolve().parent
CHOICES = ("bare-aiohttp", "bare-transport", *edge.MODES)
_READY_FACTOR = 10.0  # Python's start-up under valgrind is that much slower


def _start(kind: str, upstream_url: str, out: Path) -> tuple[peers.Proc, str, dict[str, str]]:
    """Start ``kind`` under callgrind; (process, path to call, request headers)."""
    peers.WRAPPER = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
    ]  # fmt: skip
    peers.READY_FACTOR = _READY_FACTOR
    try:
        if kind.startswith("bare-"):
            return peers.start_python_proxy(kind, upstream_url), peers.PRODUCT_PATH, {}
        proc, token = edge.start_edge(kind, upstream_url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return proc, edge.GET_PATH, headers
    finally:
        peers.WRAPPER, peers.READY_FACTOR = [], 1.0


async def _one_connection(port: int, request: bytes, n: int) -> int:
    """``n`` requests on one keep-alive connection; how many were answered 200."""
    reader, writer = await asyncio.open_connection(peers.HOST, port)
    ok = 0
    try:
        for _ in range(n):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            if match is None:
                raise RuntimeError("an answer without Content-Length: " + head[:200].decode())
            await reader.readexactly(int(match.group(1)))
            ok += status == 200
    finally:
        writer.close()
    return ok


def _load(port: int, path: str, headers: dict[str, str], connections: int, n: int) -> int:
    lines = [f"GET {path} HTTP/1.1", f"Host: {peers.HOST}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def run() -> int:
        done = await asyncio.gather(
            *(_one_connection(port, request, n) for _ in range(connections))
        )
        return sum(done)

    return asyncio.run(run())


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def _total(out: Path) -> int:
    """The ``summary:``/``totals:`` line of the newest dump of ``out``."""
    dumps = sorted(out.parent.glob(out.name + "*"), key=lambda p: p.stat().st_mtime)
    for dump in reversed(dumps):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no callgrind totals in {out}*")


def measure(kind: str, upstream_url: str, connections: int, n: int) -> float:
    work = peers.WORK / f"callgrind-{kind}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out = work / "callgrind.out"
    proc, path, headers = _start(kind, upstream_url, out)
    try:
        pid = proc.pid
        _control(pid, "--instr=on")
        _load(proc.port, path, headers, connections, max(5, n // 4))  # warm-up
        time.sleep(0.5)
        _control(pid, "--zero")
        answered = _load(proc.port, path, headers, connections, n)
        if answered != connections * n:
            raise RuntimeError(f"{kind}: {connections * n - answered} answers were not 200")
        _control(pid, "--dump")
        return _total(out) / answered
    finally:
        proc.stop(timeout=60)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--proxy", nargs="+", choices=CHOICES, default=["bare-transport", "edge-full"])
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("-n", type=int, default=60, help="requests per connection")
    args = p.parse_args()
    peers.require_tools("valgrind", "callgrind_control", "nginx")
    connections = max(1, min(args.connections, 256))
    n = max(1, min(args.n, 10_000))
    upstream = peers.start_upstream()
    results: dict[str, float] = {}
    try:
        url = f"http://{peers.HOST}:{upstream.port}"
        for kind in args.proxy:
            results[kind] = measure(kind, url, connections, n)
            print(f"{kind}: {results[kind]:,.0f} instructions per request", file=sys.stderr)
    finally:
        upstream.stop()
    first = next(iter(results.values()))
    print(f"GET, {connections} connections x {n} requests, instructions per request (callgrind)")
    for kind, value in results.items():
        print(f"  {kind:16s} {value:12,.0f}  {value / first:6.2f}x {args.proxy[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
