"""Costs measured in process, without sockets: what the edge's own steps cost per request,
and what the key-store cache and the Redis rate limiter cost per call.

    .venv/bin/python benchmarks/inprocess.py

CPU time (``time.process_time``) over many iterations, after a warm-up; the printed figures
are per call. No wall-clock assertion anywhere: this prints, it does not judge.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from proxy.backends.keystore.base import TokenRecord  # noqa: E402
from proxy.backends.keystore.cached import CachedKeyStore  # noqa: E402
from proxy.backends.keystore.sqlite import SQLiteKeyStore  # noqa: E402
from proxy.config import load_config  # noqa: E402
from proxy.edge import Edge  # noqa: E402
from proxy.policy import Tier  # noqa: E402
from proxy.tokens import generate_token, hash_token  # noqa: E402

POLICY = HERE.parent / "policies" / "storeoncloud.toml"
CONFIG = f"""
[server]
policies = ["{POLICY}"]
[logging]
access_log = false
[stores.acme]
magento_url = "http://127.0.0.1:9"
credential = {{ kind = "bearer", token_env = "BENCH_TOKEN" }}
"""


def _per_call(seconds: float, n: int) -> str:
    return f"{seconds / n * 1e6:8.2f} us"


async def edge_logic(directory: Path, n: int = 20000) -> None:
    (directory / "config.toml").write_text(CONFIG)
    config = load_config(directory / "config.toml", env={"BENCH_TOKEN": "x"})
    keystore = SQLiteKeyStore(directory / "edge.db")
    token = generate_token()
    record = TokenRecord(
        id="tok_bench", name="bench", kind="live", stores=("acme",),
        permissions={"products": "read"}, tier="internal",
    )  # fmt: skip
    await keystore.create(record, hash_token(token))
    edge = Edge(config, keystore)

    async def stub_forward(**kwargs: Any) -> int:  # the upstream call is not measured here
        await kwargs["send"]({"type": "http.response.start", "status": 200, "headers": []})
        await kwargs["send"]({"type": "http.response.body", "body": b"{}"})
        return 200

    edge.upstream.forward = stub_forward  # type: ignore[method-assign]
    path = b"/api/v1/stores/acme/commerce/products/24-MB01"
    scope = {
        "type": "http", "method": "GET", "path": path.decode(), "raw_path": path,
        "query_string": b"", "scheme": "http", "client": ("127.0.0.1", 5555),
        "headers": [
            (b"host", b"edge"), (b"authorization", b"Bearer " + token.encode()),
            (b"accept", b"*/*"), (b"user-agent", b"bench"),
        ],
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    for _ in range(1000):
        await edge(scope, receive, send)
    t = time.process_time()
    for _ in range(n):
        await edge(scope, receive, send)
    print(f"edge steps per request (path, route, auth, limit, grants, headers): "
          f"{_per_call(time.process_time() - t, n)}")  # fmt: skip

    cached = CachedKeyStore(keystore)
    h = hash_token(token)
    await cached.lookup(h)
    t = time.process_time()
    for _ in range(200_000):
        await cached.lookup(h)
    print(f"cached key-store lookup (hit):                                    "
          f"{_per_call(time.process_time() - t, 200_000)}")  # fmt: skip
    t = time.process_time()
    for _ in range(20_000):
        await keystore.lookup(h)
    print(f"SQLite key-store lookup (uncached):                               "
          f"{_per_call(time.process_time() - t, 20_000)}")  # fmt: skip
    await cached.close()


async def redis_limiter(url: str, n: int = 6400) -> None:
    from proxy.backends.ratelimit.redis import RedisRateLimiter

    tier = Tier("internal", rate=1_000_000_000, period=1, burst=1_000_000_000, daily=0)
    limiter = RedisRateLimiter(url, prefix="bench:inproc:")
    await limiter.hit("warm", tier)
    t = time.process_time()
    for _ in range(n // 32):
        await asyncio.gather(*(limiter.hit(f"k{j}", tier) for j in range(32)))
    print(f"Redis rate-limit decision, 32 concurrent (one pipeline):          "
          f"{_per_call(time.process_time() - t, n)}")  # fmt: skip
    t = time.process_time()
    for _ in range(n // 8):
        await limiter.hit("k", tier)
    print(f"Redis rate-limit decision, one at a time:                         "
          f"{_per_call(time.process_time() - t, n // 8)}")  # fmt: skip
    await limiter.close()


def main() -> int:
    import peers

    with tempfile.TemporaryDirectory() as d:
        asyncio.run(edge_logic(Path(d)))
    redis = peers.start_redis()
    try:
        asyncio.run(redis_limiter(f"redis://127.0.0.1:{redis.port}/0"))
    finally:
        redis.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
