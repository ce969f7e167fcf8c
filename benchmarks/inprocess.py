"""Costs measured in process, without sockets: what the edge's own steps cost per request,
and what the key-store cache and the Redis rate limiter cost per call.

    .venv/bin/python benchmarks/inprocess.py
    .venv/bin/python benchmarks/inprocess.py --baseline 7faaaf0 [--rounds 15] [-n 20000]

``--baseline REV`` instead compares this checkout's edge with the edge at git revision
``REV`` (its ``proxy/`` exported with ``git archive`` and imported under another name) in
one process, rounds interleaved in alternating order: the same GET forwarded (upstream
stubbed) and the same ``GET /stores`` answered, CPU µs per request for each, the median
ratio and its spread over rounds.

``--jwt`` compares, in one edge and one interleaved run, a PAT-authenticated forward on the
v1 surface with a JWT-authenticated one (RS256, issuer keys from a file) on a v3-shaped
surface, and prints what one signature check costs on its own (the cost the edge's
verified-claims cache saves on every request after a token's first).

    .venv/bin/python benchmarks/inprocess.py --jwt [--rounds 7] [-n 5000]

``--metrics`` measures what the Prometheus metrics cost on the hot path: one edge, the same
forwarded GET (upstream stubbed), rounds interleaved in alternating order with its metrics
on and off (``edge.metrics = None``), CPU µs per request for each and the median ratio.

    .venv/bin/python benchmarks/inprocess.py --metrics [--rounds 9] [-n 5000]

CPU time (``time.process_time``) over many iterations, after a warm-up; the printed figures
are per call. No wall-clock assertion anywhere: this prints, it does not judge.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import io
import json
import logging
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from types import ModuleType
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
    edge = Edge.from_config(config, keystore)

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


def _import_baseline(rev: str, directory: Path) -> ModuleType:
    """The ``proxy`` package at ``rev``, importable as ``edge_baseline`` (its imports are
    all relative, so it runs beside this checkout's ``proxy`` without clashing)."""
    # Its policies too: a policy of this checkout may use keys the baseline does not know.
    tar = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", rev, "proxy", "policies"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(directory, filter="data")
    init = directory / "proxy" / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        "edge_baseline", init, submodule_search_locations=[str(init.parent)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["edge_baseline"] = module
    spec.loader.exec_module(module)
    return module


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


async def _one_edge(package: str, directory: Path) -> tuple[Any, str]:
    """An edge of ``package`` (``proxy`` or ``edge_baseline``) with one token and its
    upstream stubbed; ``directory`` holds its config."""
    config_mod = sys.modules[f"{package}.config"]
    edge_mod = sys.modules[f"{package}.edge"]
    # The key store moved to backends/ after the Starlette change; either layout works.
    if f"{package}.backends.keystore.base" in sys.modules or _importable(
        f"{package}.backends.keystore.base"
    ):
        keystore_mod = sys.modules[f"{package}.backends.keystore.base"]
        sqlite_mod = sys.modules[f"{package}.backends.keystore.sqlite"]
    else:
        keystore_mod = sys.modules[f"{package}.keystore"]
        sqlite_mod = sys.modules[f"{package}.keystore_sqlite"]
    tokens_mod = sys.modules[f"{package}.tokens"]
    config = config_mod.load_config(directory / "config.toml", env={"BENCH_TOKEN": "x"})
    keystore = sqlite_mod.SQLiteKeyStore(directory / "edge.db")
    token = tokens_mod.generate_token()
    record = keystore_mod.TokenRecord(
        id="tok_bench", name="bench", kind="live", stores=("acme",),
        permissions={"products": "read"}, tier="internal",
    )  # fmt: skip
    await keystore.create(record, tokens_mod.hash_token(token))
    if hasattr(edge_mod.Edge, "from_config"):
        edge = edge_mod.Edge.from_config(config, keystore)
    else:  # the raw-ASGI edge before the Starlette application
        edge = edge_mod.Edge(config, keystore)

    async def stub_forward(**kwargs: Any) -> int:  # the upstream call is not measured
        await kwargs["send"]({"type": "http.response.start", "status": 200, "headers": []})
        await kwargs["send"]({"type": "http.response.body", "body": b"{}"})
        return 200

    edge.upstream.forward = stub_forward
    return edge, token


def _scope(path: bytes, token: str) -> dict[str, Any]:
    return {
        "type": "http", "method": "GET", "path": path.decode(), "raw_path": path,
        "query_string": b"", "scheme": "http", "client": ("127.0.0.1", 5555),
        "headers": [
            (b"host", b"edge"), (b"authorization", b"Bearer " + token.encode()),
            (b"accept", b"*/*"), (b"user-agent", b"bench"),
        ],
    }  # fmt: skip


async def compare(rev: str, rounds: int, n: int) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    with tempfile.TemporaryDirectory() as d:
        _import_baseline(rev, Path(d) / "src")
        import proxy.edge  # noqa: F401  (this checkout's, registered in sys.modules)

        edges = {}
        for name, package in (("before", "edge_baseline"), ("after", "proxy")):
            (Path(d) / name).mkdir()
            text = CONFIG
            if package == "edge_baseline":
                text = text.replace(str(POLICY), str(Path(d) / "src" / "policies" / POLICY.name))
            (Path(d) / name / "config.toml").write_text(text)
            edges[name] = await _one_edge(package, Path(d) / name)
        cases = {
            "forward GET (hot path)": b"/api/v1/stores/acme/commerce/products/24-MB01",
            "GET /stores (own answer)": b"/api/v1/stores",
        }
        print(f"baseline {rev} vs this checkout: {rounds} interleaved rounds of {n} requests")
        for label, path in cases.items():
            per: dict[str, list[float]] = {"before": [], "after": []}
            ratios: list[float] = []
            scopes = {k: _scope(path, tok) for k, (_, tok) in edges.items()}
            for name, (edge, _) in edges.items():  # warm-up: caches, buckets, JIT-free paths
                for _ in range(1000):
                    await edge(dict(scopes[name]), receive, send)
            for r in range(rounds):
                order = ("before", "after") if r % 2 == 0 else ("after", "before")
                took = {}
                for name in order:
                    edge, _ = edges[name]
                    scope = scopes[name]
                    statuses.clear()
                    t = time.process_time()
                    for _ in range(n):
                        await edge(dict(scope), receive, send)
                    took[name] = (time.process_time() - t) / n * 1e6
                    if set(statuses) != {200}:
                        raise SystemExit(f"{name} {label}: statuses {sorted(set(statuses))}")
                    per[name].append(took[name])
                ratios.append(took["after"] / took["before"])
            before = statistics.median(per["before"])
            after = statistics.median(per["after"])
            print(
                f"{label:26} before {before:7.2f} us  after {after:7.2f} us  "
                f"ratio after/before {statistics.median(ratios):.3f} "
                f"(rounds {min(ratios):.3f}-{max(ratios):.3f})"
            )


JWT_POLICY = """
resources = ["products"]
[surface]
name = "partner"
base_path = "/api/v3"
[auth]
kind = "jwt"
issuer = "bench"
[auth.scopes]
read_products = ["products:read"]
[ratelimit]
default_tier = "internal"
[ratelimit.tiers.internal]
rate = 1000000000
period = 1
burst = 1000000000
[[mounts]]
name = "v3"
path = "/"
target = "/rest/{store_code}/V1"
routes = "v3"
[routes]
v3 = [{ method = "GET", path = "/products/{id}", resource = "products", target = "/products/{id}" }]
"""


async def jwt_vs_pat(directory: Path, rounds: int, n: int) -> None:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": "k1", "use": "sig"}
    (directory / "jwks.json").write_text(json.dumps({"keys": [public]}))
    (directory / "partner.toml").write_text(JWT_POLICY)
    (directory / "config.toml").write_text(
        CONFIG.replace(f'policies = ["{POLICY}"]', f'policies = ["{POLICY}", "partner.toml"]')
        + '[issuers.bench]\nissuer = "https://auth.bench/"\naudience = "https://api.bench"\n'
        'jwks_file = "jwks.json"\n'
    )
    config = load_config(directory / "config.toml", env={"BENCH_TOKEN": "x"})
    keystore = SQLiteKeyStore(directory / "edge.db")
    pat = generate_token()
    record = TokenRecord(
        id="tok_bench", name="bench", kind="live", stores=("acme",),
        permissions={"products": "read"}, tier="internal",
    )  # fmt: skip
    await keystore.create(record, hash_token(pat))
    edge = Edge.from_config(config, keystore)

    async def stub_forward(**kwargs: Any) -> int:  # the upstream call is not measured
        await kwargs["send"]({"type": "http.response.start", "status": 200, "headers": []})
        await kwargs["send"]({"type": "http.response.body", "body": b"{}"})
        return 200

    edge.upstream.forward = stub_forward  # type: ignore[method-assign]
    now = int(time.time())
    token = jwt.encode(
        {"iss": "https://auth.bench/", "aud": "https://api.bench", "exp": now + 3600,
         "iat": now, "client_id": "bench", "store_id": "acme", "scope": "read_products",
         "jti": "bench-1", "partner_tier": "internal"},
        key, algorithm="RS256", headers={"kid": "k1"},
    )  # fmt: skip
    scopes = {
        "PAT (v1 forward)": _scope(b"/api/v1/stores/acme/commerce/products/24-MB01", pat),
        "JWT (v3 forward)": _scope(b"/api/v3/products/24-MB01", token),
    }
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for scope in scopes.values():
        for _ in range(1000):
            await edge(dict(scope), receive, send)
    per: dict[str, list[float]] = {k: [] for k in scopes}
    for r in range(rounds):
        for label in list(scopes) if r % 2 == 0 else list(reversed(scopes)):
            statuses.clear()
            t = time.process_time()
            for _ in range(n):
                await edge(dict(scopes[label]), receive, send)
            per[label].append((time.process_time() - t) / n * 1e6)
            if set(statuses) != {200}:
                raise SystemExit(f"{label}: statuses {sorted(set(statuses))}")
    print(f"{rounds} interleaved rounds of {n} requests, CPU us per request (median, range):")
    for label, values in per.items():
        print(f"  {label:18} {statistics.median(values):7.2f} us  "
              f"({min(values):.2f}-{max(values):.2f})")  # fmt: skip
    verifier = edge.jwt._verifiers["partner"]  # the signature check alone
    await verifier.verify(token)
    m = max(200, n // 5)
    t = time.process_time()
    for _ in range(m):
        await verifier.verify(token)
    print(f"  {'RS256 verify alone':18} {_per_call(time.process_time() - t, m)}  "
          "(paid once per token, then cached until its exp)")  # fmt: skip
    await edge.jwt.close()
    await edge.keystore.close()


async def toggle_cost(directory: Path, rounds: int, n: int, what: str) -> None:
    """``what`` = "metrics" (the Prometheus counts) or "access log" (one JSON access line
    per request, formatted and written to /dev/null through the edge's own handler)."""
    (directory / "config.toml").write_text(CONFIG)
    edge, token = await _one_edge("proxy", directory)  # one token, the upstream stubbed
    metrics = edge.metrics
    if what == "access log":
        from proxy.logs import configure_logging

        handler = configure_logging("json", "info")
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(open(os.devnull, "w"))  # noqa: SIM115, ASYNC230 - once, at set-up
    scope = _scope(b"/api/v1/stores/acme/commerce/products/24-MB01", token)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    async def run(on: bool) -> float:
        if what == "metrics":
            edge.metrics = metrics if on else None
        else:
            edge._access_log = on
        t = time.process_time()
        for _ in range(n):
            await edge(scope, receive, send)
        return (time.process_time() - t) / n * 1e6

    await run(True)
    await run(False)  # warm-up, both ways
    on_us: list[float] = []
    off_us: list[float] = []
    for i in range(rounds):
        order = (True, False) if i % 2 == 0 else (False, True)
        for flag in order:
            (on_us if flag else off_us).append(await run(flag))
    ratios = [a / b for a, b in zip(on_us, off_us, strict=True)]
    print(f"{what} on:  {statistics.median(on_us):7.2f} us/request (median of {rounds})")
    print(f"{what} off: {statistics.median(off_us):7.2f} us/request")
    print(f"ratio on/off: {statistics.median(ratios):.3f} "
          f"(rounds {min(ratios):.3f}..{max(ratios):.3f})")  # fmt: skip
    await edge.keystore.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", metavar="REV", help="compare with the edge at this revision")
    p.add_argument("--jwt", action="store_true", help="JWT- vs PAT-authenticated requests")
    p.add_argument("--metrics", action="store_true", help="Prometheus metrics on vs off")
    p.add_argument("--access-log", action="store_true", help="the JSON access line on vs off")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("-n", type=int, default=20000, help="requests per round and edge")
    args = p.parse_args()
    if args.jwt:
        with tempfile.TemporaryDirectory() as d:
            asyncio.run(jwt_vs_pat(Path(d), max(2, args.rounds), max(100, args.n)))
        return 0
    if args.access_log:
        with tempfile.TemporaryDirectory() as d:
            asyncio.run(toggle_cost(Path(d), max(2, args.rounds), max(100, args.n), "access log"))
        return 0
    if args.metrics:
        with tempfile.TemporaryDirectory() as d:
            asyncio.run(toggle_cost(Path(d), max(2, args.rounds), max(100, args.n), "metrics"))
        return 0
    if args.baseline:
        asyncio.run(compare(args.baseline, max(2, args.rounds), max(100, args.n)))
        return 0

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
