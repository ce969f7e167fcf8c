"""Soak: a real edge (``python -m proxy serve``) before a real Magento stand-in
(``python -m magento_standin``), both started and stopped here, under bounded mixed traffic:

    reads           GET products with a partner token (internal tier: never limited)
    keyed writes    POST products with a fresh Idempotency-Key; one in ten is retried
                    with the same key (a replay: Magento must not see it again)
    bad tokens      a well-formed token nobody issued (401)
    429s            a standard-tier token (60/min, burst 120): limited after its burst

Every 5 s it samples the edge's RSS and open file descriptors. At the end it prints them at
start (after a warm-up) and end, their slopes (least squares, per minute), requests per
second, the status counts per kind, and how many retried writes were replays. The memory
idempotency store keeps every answer up to its 64 MiB bound, so RSS grows with the keyed
writes until that bound: a slope is a leak only beyond it, or in the file descriptors.

    .venv/bin/python benchmarks/soak.py              # 3 minutes
    .venv/bin/python benchmarks/soak.py --seconds 60

Network only to 127.0.0.1; every process it starts it stops by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent
MAGENTO_TOKEN = "soak-magento-" + secrets.token_hex(12)
PRODUCTS = "/api/v1/stores/acme/commerce/products"
SAMPLE_SECONDS = 5.0
WARMUP_SECONDS = 10.0

CONFIG = """
[server]
host = "127.0.0.1"
port = {port}
policies = ["{policy}"]
drain_seconds = 0.5
grace_seconds = 5

[keystore]
backend = "sqlite"
path = "edge.db"

[ratelimit]
backend = "memory"

[idempotency]
backend = "memory"

[admin]
host = "127.0.0.1"
port = {admin_port}

[logging]
level = "warning"
access_log = false

[stores.acme]
name = "Acme"
environment = "live"
magento_url = "http://127.0.0.1:{magento_port}"
store_code = "default"
credential = {{ kind = "bearer", token_env = "SOAK_MAGENTO_TOKEN" }}
timeouts = {{ connect = 1.0, read = 10.0 }}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited at start (code {proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)  # a process binding its port: poll, bounded above
    raise SystemExit(f"{what} did not start within 30 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # by PID: a process this script started
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def create_token(config: Path, env: dict[str, str], tier: str) -> str:
    out = subprocess.run(
        [
            sys.executable, "-m", "proxy", "tokens", "create", "--config", str(config),
            "--store", "acme", "--permission", "products:write", "--name", f"soak-{tier}",
            "--tier", tier,
        ],
        env=env, cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    n = len(samples)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in samples) / n
    my = sum(v for _, v in samples) / n
    den = sum((t - mx) ** 2 for t, _ in samples)
    return 0.0 if den == 0 else 60 * sum((t - mx) * (v - my) for t, v in samples) / den


class Traffic:
    def __init__(self, base: str, good: str, limited: str, seconds: float) -> None:
        self.base = base
        self.good = {"Authorization": f"Bearer {good}"}
        self.limited = {"Authorization": f"Bearer {limited}"}
        self.bad = {"Authorization": "Bearer soc_pat_live_" + "Q" * 36}
        self.deadline = time.monotonic() + seconds
        self.counts: Counter[tuple[str, int]] = Counter()
        self.errors: Counter[str] = Counter()
        self.ok_writes = 0  # keyed writes answered 200 and not replayed
        self.replays = 0
        self.requests = 0

    async def worker(self, n: int) -> None:
        rng = random.Random(n)
        limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
        async with httpx.AsyncClient(base_url=self.base, timeout=15, limits=limits) as c:
            i = 0
            while time.monotonic() < self.deadline:
                i += 1
                roll = rng.random()
                try:
                    if roll < 0.5:
                        kind = "read"
                        r = await c.get(PRODUCTS, params={"searchCriteria[pageSize]": 1},
                                        headers=self.good)  # fmt: skip
                    elif roll < 0.7:
                        kind = "write"
                        r = await self._write(c, n, i, rng)
                    elif roll < 0.8:
                        kind = "bad_token"
                        r = await c.get(PRODUCTS, headers=self.bad)
                    else:
                        kind = "limited_token"
                        r = await c.get(PRODUCTS, params={"searchCriteria[pageSize]": 1},
                                        headers=self.limited)  # fmt: skip
                except httpx.HTTPError as exc:
                    self.errors[type(exc).__name__] += 1
                    continue
                self.requests += 1
                self.counts[(kind, r.status_code)] += 1

    async def _write(
        self, c: httpx.AsyncClient, n: int, i: int, rng: random.Random
    ) -> httpx.Response:
        key = f"soak-{n}-{i}-{secrets.token_hex(6)}"
        body = {"product": {"sku": f"SOAK-{n}-{i}", "name": "Tent", "price": 99,
                            "attribute_set_id": 4}}  # fmt: skip
        headers = {**self.good, "Idempotency-Key": key}
        r = await c.post(PRODUCTS, json=body, headers=headers)
        if r.status_code == 200:
            self.ok_writes += 1
            if rng.random() < 0.1:  # a client retrying after a lost answer
                again = await c.post(PRODUCTS, json=body, headers=headers)
                self.requests += 1
                self.counts[("write_retry", again.status_code)] += 1
                if again.headers.get("idempotent-replayed") == "true":
                    self.replays += 1
        return r


async def sampler(pid: int, until: float, out: list[tuple[float, float, float]]) -> None:
    proc = psutil.Process(pid)
    t0 = time.monotonic()
    while time.monotonic() < until:
        out.append((time.monotonic() - t0, proc.memory_info().rss / 1e6, proc.num_fds()))
        await asyncio.sleep(SAMPLE_SECONDS)
    out.append((time.monotonic() - t0, proc.memory_info().rss / 1e6, proc.num_fds()))


async def drive(
    base: str, pid: int, good: str, limited: str, seconds: float, workers: int
) -> dict[str, object]:
    warm = Traffic(base, good, limited, min(WARMUP_SECONDS, seconds / 6))
    await asyncio.gather(*(warm.worker(n + 1000) for n in range(workers)))
    traffic = Traffic(base, good, limited, seconds)
    samples: list[tuple[float, float, float]] = []
    started = time.monotonic()
    await asyncio.gather(
        sampler(pid, started + seconds, samples),
        *(traffic.worker(n) for n in range(workers)),
    )
    elapsed = time.monotonic() - started
    return {"traffic": traffic, "samples": samples, "elapsed": elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="traffic time (default 180)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent clients (default 8)")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 3600:
        parser.error("--seconds must be between 1 and 3600")

    work = Path(tempfile.mkdtemp(prefix="edge-soak-"))
    env = {**os.environ, "SOAK_MAGENTO_TOKEN": MAGENTO_TOKEN, "PYTHONPATH": str(REPO)}
    magento_port, port, admin_port = free_port(), free_port(), free_port()
    config = work / "config.toml"
    config.write_text(CONFIG.format(
        port=port, admin_port=admin_port, magento_port=magento_port,
        policy=REPO / "policies" / "storeoncloud.toml",
    ))  # fmt: skip
    magento = subprocess.Popen(
        [sys.executable, "-m", "magento_standin", "--port", str(magento_port),
         "--bearer-token-env", "SOAK_MAGENTO_TOKEN"],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    edge: subprocess.Popen[bytes] | None = None
    try:
        wait_port(magento_port, magento, "the Magento stand-in")
        good = create_token(config, env, "internal")
        limited = create_token(config, env, "standard")
        log = (work / "edge.log").open("wb")
        edge = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(config)],
            env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_port(port, edge, "the edge")
        result = asyncio.run(
            drive(f"http://127.0.0.1:{port}", edge.pid, good, limited, args.seconds, args.workers)
        )
        metrics = httpx.get(f"http://127.0.0.1:{admin_port}/metrics", timeout=10).text
    finally:
        if edge is not None:
            stop(edge)
        stop(magento)
    report(result, metrics, args, work)
    return 0


def report(result: dict[str, object], metrics: str, args: argparse.Namespace, work: Path) -> None:
    traffic = result["traffic"]
    samples = result["samples"]
    elapsed = result["elapsed"]
    assert isinstance(traffic, Traffic) and isinstance(samples, list)
    assert isinstance(elapsed, float)
    rss = [(t, r) for t, r, _ in samples]
    fds = [(t, f) for t, _, f in samples]
    five = sum(n for (_, s), n in traffic.counts.items() if s >= 500)
    print(f"soak: {elapsed:.0f} s, {args.workers} clients, edge + stand-in on 127.0.0.1")
    print(f"requests: {traffic.requests} ({traffic.requests / elapsed:.0f} req/s), "
          f"client errors (no answer): {dict(traffic.errors) or 0}, 5xx: {five}")  # fmt: skip
    for kind in ("read", "write", "write_retry", "bad_token", "limited_token"):
        by = {s: n for (k, s), n in sorted(traffic.counts.items()) if k == kind}
        print(f"  {kind:14} {by}")
    print(f"keyed writes answered 200: {traffic.ok_writes}; retries replayed: {traffic.replays}")
    print(f"edge RSS  start {rss[0][1]:.1f} MB  end {rss[-1][1]:.1f} MB  "
          f"slope {slope_per_minute(rss):+.2f} MB/min")  # fmt: skip
    print(f"edge fds  start {fds[0][1]:.0f}  end {fds[-1][1]:.0f}  "
          f"slope {slope_per_minute(fds):+.2f} /min")  # fmt: skip
    wanted = ("magento_edge_idempotency", "magento_edge_backend_errors")
    lines = [ln for ln in metrics.splitlines() if ln.startswith(wanted)]
    if lines:
        print("metrics: " + "; ".join(lines))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
