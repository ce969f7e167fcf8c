"""Memory under a flood of distinct client addresses (issue #14 part 5): the edge, called
in process (an ASGI call per request), answers ``HEAD /api/v1/openapi.json`` for N distinct
addresses; each is limited per address with the v1 policy's default tier, which has a
daily quota, so each leaves a bucket and a daily count behind. Prints the process's RSS
and the rate limiter's table sizes every 50,000 requests: flat once the tables reach
their bound.

    .venv/bin/python benchmarks/bounded.py [-n 400000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _rss_mib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return 0


async def _flood(edge: Any, n: int) -> None:
    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    for i in range(n):
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "HEAD", "scheme": "http", "path": "/api/v1/openapi.json",
            "raw_path": b"/api/v1/openapi.json", "query_string": b"", "root_path": "",
            "headers": [(b"host", b"edge.test")],
            "client": (f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 40000),
            "server": ("127.0.0.1", 8080),
        }  # fmt: skip
        await edge(scope, receive, send)
        if (i + 1) % 50_000 == 0:
            buckets, days = edge.limiter.sizes()
            print(f"{i + 1:>8} addresses: RSS {_rss_mib()} MiB, limiter buckets {buckets}, "
                  f"daily counts {days}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=400_000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from frontdoor import _setup

    from proxy.config import load_config
    from proxy.server import build_app

    with tempfile.TemporaryDirectory() as tmp:
        config_path, _ = _setup(Path(tmp), 9)  # the upstream is never reached
        edge = build_app(load_config(config_path, env={"BENCH_MAGENTO_TOKEN": "x"}))
        before = _rss_mib()
        print(f"       0 addresses: RSS {before} MiB")
        asyncio.run(_flood(edge, args.n))


if __name__ == "__main__":
    main()
