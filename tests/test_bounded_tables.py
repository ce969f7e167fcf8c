"""Every in-process table keyed by client input stays bounded under a flood of distinct
keys (issue #14 part 5, SPEC §8): the memory rate limiter's buckets and daily counts, the
key store's lookup cache (negative answers included), the JWT claims cache, and the
memory idempotency store.

The floods go through the real edge, called in-process (an ASGI call per request: 200,000
requests over sockets would take minutes), with the shipped v1 policy: an anonymous
request (the OpenAPI document) is limited per client address with the ``standard`` tier,
which has a daily quota, so each address leaves a bucket and a daily count behind.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.auth_jwt import JWTAuthenticator
from proxy.backends.idempotency.base import Answer, Lease
from proxy.backends.idempotency.memory import MemoryIdempotencyStore
from proxy.backends.keystore.cached import CachedKeyStore
from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.backends.ratelimit.memory import DEFAULT_MAXSIZE, MemoryRateLimiter
from proxy.config import Config, load_config
from proxy.edge import Edge
from proxy.errors import Unauthorized
from proxy.policy import Tier
from proxy.tokens import ALPHABET, _checksum, hash_token
from tests.conftest import FakeClock, env, write_config
from tests.test_auth_jwt import POLICY, Clock, headers, token
from tests.test_config_issuers import HEAD, ISSUER
from tests.test_jwt_auth import RSA_KEY, jwk

FLOOD = 200_000


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    """The edge for the test config, not served: requests are ASGI calls. Its upstreams
    are never reached (every request here is answered at the edge)."""
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9", None), env=env())
    store = SQLiteKeyStore(config.keystore_path or "")
    edge = Edge.from_config(config, store)
    yield edge
    asyncio.run(store.close())


def _address(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def _scope(method: str, path: str, client: str, headers: list[tuple[bytes, bytes]]) -> Any:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"edge.test"), *headers],
        "client": (client, 40000),
        "server": ("127.0.0.1", 8080),
    }


async def _call(edge: Edge, scope: Any) -> int:
    status: list[int] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await edge(scope, receive, send)
    return status[0]


def _unknown_token(i: int) -> str:
    """A well-formed, checksum-valid personal token no key store holds (distinct per i)."""
    random_part = (f"{i:08d}" + "".join(secrets.choice(ALPHABET) for _ in range(22)))[:30]
    return "soc_pat_live_" + random_part + _checksum(random_part)


def test_an_address_flood_leaves_the_limiter_at_its_bound(edge: Edge) -> None:
    limiter = edge.limiter
    assert isinstance(limiter, MemoryRateLimiter)  # the config's default backend
    assert edge.config.surfaces[0].tiers["standard"].daily  # a daily count per address too
    peak = [0, 0]

    async def flood() -> dict[int, int]:
        statuses: dict[int, int] = {}
        for i in range(FLOOD):
            scope = _scope("HEAD", "/api/v1/openapi.json", _address(i), [])
            status = await _call(edge, scope)
            statuses[status] = statuses.get(status, 0) + 1
            if i % 1000 == 0:
                peak[:] = [max(p, s) for p, s in zip(peak, limiter.sizes(), strict=True)]
        return statuses

    statuses = asyncio.run(flood())
    assert statuses == {200: FLOOD}  # each address was new: every one allowed
    buckets, days = limiter.sizes()
    assert 0 < buckets <= DEFAULT_MAXSIZE and 0 < days <= DEFAULT_MAXSIZE
    assert max(peak) <= DEFAULT_MAXSIZE
    # and the bound was what held it: without one, every address would still be here
    assert days < FLOOD


def test_daily_counts_are_bounded_even_when_all_are_live() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock, maxsize=1000, sweep_every=10**9)
    tier = Tier("d", rate=1, period=3600, burst=1, daily=5)  # every entry stays live all day

    async def run() -> None:
        for _ in range(3):  # "heavy" spent three of its five
            await limiter.hit("heavy", tier)
            clock.now += 3600
        for i in range(5000):
            await limiter.hit(f"k{i}", tier)
            assert max(limiter.sizes()) <= 1000

    asyncio.run(run())
    # What was forgotten is what costs least to forget: the smallest counts.
    assert "heavy" in limiter._days
    assert limiter._days["heavy"][0] == 3


def test_buckets_are_bounded_when_all_are_live_forgetting_the_fullest() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock, maxsize=1000, sweep_every=10**9)
    tier = Tier("slow", rate=1, period=3600, burst=10, daily=0)

    async def run() -> None:
        for i in range(5000):
            await limiter.hit(f"k{i}", tier)
            clock.now += 0.001
            assert max(limiter.sizes()) <= 1000

    asyncio.run(run())
    assert "k4999" in limiter._tats and "k0" not in limiter._tats  # newest kept


def test_a_bad_token_flood_leaves_the_lookup_cache_at_its_bound(tmp_path: Path) -> None:
    """200,000 distinct well-formed unknown tokens: each is a key-store miss, cached as
    a negative answer; the cache stays at its size (its clock frozen, so nothing expires
    and only the bound holds it)."""
    store = SQLiteKeyStore(tmp_path / "edge.db")
    cache = CachedKeyStore(store, maxsize=65536, clock=lambda: 0.0)

    async def flood() -> int:
        misses = 0
        for i in range(FLOOD):
            record = await cache.lookup(hash_token(_unknown_token(i)))
            misses += record is None
        return misses

    assert asyncio.run(flood()) == FLOOD
    assert len(cache._cache) == 65536
    asyncio.run(store.close())


def test_bad_tokens_through_the_edge_add_nothing_to_the_limiter(edge: Edge) -> None:
    """A token that is not accepted is refused before the rate limit (401), so it leaves
    no bucket; its negative cache entry is bounded (here: 500)."""
    edge.keystore = CachedKeyStore(edge.keystore.store, maxsize=500, clock=lambda: 0.0)
    limiter = edge.limiter
    assert isinstance(limiter, MemoryRateLimiter)

    async def flood() -> set[int]:
        seen = set()
        for i in range(3000):
            auth = (b"authorization", b"Bearer " + _unknown_token(i).encode())
            scope = _scope("GET", "/api/v1/stores/acme/commerce/products", _address(i), [auth])
            seen.add(await _call(edge, scope))
        return seen

    assert asyncio.run(flood()) == {401}
    assert limiter.sizes() == (0, 0)
    assert len(edge.keystore._cache) == 500


@pytest.fixture
def jwt_config(tmp_path: Path) -> Config:
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk("rsa-1", RSA_KEY)]}))
    (tmp_path / "partner.toml").write_text(POLICY)
    issuer = ISSUER.replace(
        'jwks_url = "https://auth.store.icu/.well-known/jwks.json"', 'jwks_file = "jwks.json"'
    )
    (tmp_path / "config.toml").write_text(HEAD + issuer)
    return load_config(tmp_path / "config.toml", env={"T": "x"})


async def test_the_jwt_claims_cache_holds_verified_tokens_only_and_is_bounded(
    jwt_config: Config, tmp_path: Path
) -> None:
    keystore = CachedKeyStore(SQLiteKeyStore(tmp_path / "edge.db"))
    auth = JWTAuthenticator(jwt_config, clock=Clock(), cache_size=100)
    surface = jwt_config.surfaces[0]
    cache = auth._caches[surface.name]
    for i in range(1000):  # distinct tokens the issuer never signed: none is cached
        forged = token(jti=f"f-{i}", aud="https://elsewhere.example")
        with pytest.raises(Unauthorized):
            await auth.authenticate(headers(forged), surface, keystore)
    assert len(cache) == 0
    for i in range(300):  # distinct valid ones: at most the cache's size
        await auth.authenticate(headers(token(jti=f"v-{i}")), surface, keystore)
        assert len(cache) <= 100
    assert len(cache) == 100
    await keystore.close()


def test_the_memory_idempotency_store_keeps_to_its_bytes_bound() -> None:
    """200,000 distinct keys, each answered: the answers held stay within ``max_bytes``
    by the store's own accounting, and the leases of finished requests are gone."""
    store = MemoryIdempotencyStore(max_bytes=1 << 20, clock=FakeClock())
    answer = Answer("fp", 201, ((b"content-type", b"application/json"),), b"{}")

    async def flood() -> None:
        for i in range(FLOOD):
            key = hash_token(f"key-{i}")
            lease = Lease(f"{i:x}", "fp")
            assert await store.claim(key, lease, 30) is None
            assert await store.record(key, lease, answer, 86400)

    asyncio.run(flood())
    assert store._bytes <= 1 << 20
    assert len(store._answers) < FLOOD // 10
    assert store._leases == {}


def test_the_idempotency_stores_bytes_bound_is_its_real_memory() -> None:
    """Its accounting (body bytes plus a per-answer overhead) matches what the answers
    really take (tracemalloc), so ``max_bytes`` bounds memory, not a fraction of it."""
    import tracemalloc

    store = MemoryIdempotencyStore(max_bytes=2 << 20, clock=FakeClock())
    answer = Answer("fp", 201, ((b"content-type", b"application/json"),), b"{}")

    async def flood() -> None:
        for i in range(30_000):  # far more than fit
            key = hash_token(f"key-{i}")
            lease = Lease(f"{i:x}", "fp")
            await store.claim(key, lease, 30)
            await store.record(key, lease, answer, 86400)

    tracemalloc.start()
    try:
        asyncio.run(flood())
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert store._bytes <= 2 << 20
    assert held <= 1.25 * (2 << 20), held
