"""Rate limits through the edge over real HTTP: headers on every answer after
authentication, 429s that reach nothing upstream, exact bursts under concurrency in one
process (memory) and across two edge processes (Redis), and the backend-down choice."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.backends.ratelimit.memory import MemoryRateLimiter
from tests.conftest import (
    MAGENTO_TOKEN,
    FakeClock,
    Harness,
    env,
    running_edge,
    tiered_policy,
    write_config,
)
from tests.servers import free_port, serving
from tests.test_edge_streaming import EdgeProcess

TIERS = """
[ratelimit.tiers.tight]          # 50 requests, then one an hour
rate = 1
period = 3600
burst = 50

[ratelimit.tiers.quick]          # 5 requests, then one a second
rate = 1
period = 1
burst = 5
"""
PRODUCT = "/api/v1/stores/acme/commerce/products/MB-01"


# The memory limiter of the `limited` edge runs on this clock: buckets refill only when a
# test advances it, so nothing here sleeps or depends on how fast the machine is.
CLOCK = FakeClock()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    directory = tmp_path_factory.mktemp("limited")
    with running_edge(directory, policy=tiered_policy(directory, TIERS)) as h:
        assert isinstance(h.edge.limiter, MemoryRateLimiter)  # the config's default backend
        h.edge.limiter = MemoryRateLimiter(clock=CLOCK)  # before any request reaches it
        yield h


def test_headers_on_upstream_answers_and_edge_errors_after_auth(limited: Harness) -> None:
    token = limited.token("products:read")
    with limited.client(token) as c:
        ok = c.get(PRODUCT)
        missing = c.get("/api/v1/stores/acme/commerce/products/NOPE")  # Magento's 404
        forbidden = c.get("/api/v1/stores/acme/commerce/orders/1")  # the edge's 403
    assert ok.status_code == 200 and missing.status_code == 404 and forbidden.status_code == 403
    # default tier "standard": 60/min, burst 120
    assert [r.headers["ratelimit-limit"] for r in (ok, missing, forbidden)] == ["120"] * 3
    assert [r.headers["ratelimit-remaining"] for r in (ok, missing, forbidden)] == [
        "119",
        "118",
        "117",
    ]
    assert all(int(r.headers["ratelimit-reset"]) >= 1 for r in (ok, missing, forbidden))
    with limited.client() as anonymous:
        unauthenticated = anonymous.get(PRODUCT)
    assert unauthenticated.status_code == 401
    assert "ratelimit-limit" not in unauthenticated.headers  # before authentication


@pytest.mark.parametrize(
    ("tier", "burst", "daily"),
    [(None, 120, 20000), ("standard", 120, 20000), ("gold", 240, 50000), ("platinum", 480, 100000)],
)
def test_seed_partner_tiers_on_the_shipped_policy(
    limited: Harness, tier: str | None, burst: int, daily: int
) -> None:
    """Seed 001's tiers (60/120/20,000, 120/240/50,000, 240/480/100,000 per minute, burst,
    day) as the shipped policy defines them; no tier means the default, standard."""
    token = limited.token("products:read", tier=tier)
    with limited.client(token) as c:
        first, second = c.get(PRODUCT), c.get(PRODUCT)
    assert first.headers["ratelimit-limit"] == str(burst)
    assert [first.headers["ratelimit-remaining"], second.headers["ratelimit-remaining"]] == [
        str(burst - 1),
        str(burst - 2),
    ]
    (surface,) = limited.config.surfaces  # v1 only
    t = surface.tiers[tier or surface.default_tier]
    assert (t.rate * 60 / t.period, t.burst, t.daily) == (burst / 2, burst, daily)


def test_429_problem_with_retry_after_and_nothing_upstream(limited: Harness) -> None:
    token = limited.token("products:read", tier="quick")
    with limited.client(token) as c:
        passed = [c.get(PRODUCT).status_code for _ in range(5)]
        hits = sum(limited.standin.hits.values())
        refused = c.get(PRODUCT)
        assert sum(limited.standin.hits.values()) == hits  # nothing sent upstream
        CLOCK.now += float(refused.headers["retry-after"]) * 0.95
        early = c.get(PRODUCT)
        CLOCK.now += float(refused.headers["retry-after"]) * 0.05  # the edge's own promise
        again = c.get(PRODUCT)
    assert passed == [200] * 5
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.json()["status"] == 429
    assert early.status_code == 429
    assert again.status_code == 200


def test_tokens_have_separate_buckets(limited: Harness) -> None:
    a = limited.token("products:read", tier="quick")
    b = limited.token("products:read", tier="quick")
    with limited.client(a) as ca, limited.client(b) as cb:
        assert [ca.get(PRODUCT).status_code for _ in range(6)][-1] == 429
        assert cb.get(PRODUCT).status_code == 200


async def _burst(urls: list[str], token: str, n: int) -> list[int]:
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        headers = {"Authorization": f"Bearer {token}"}
        responses = await asyncio.gather(
            *(client.get(urls[i % len(urls)] + PRODUCT, headers=headers) for i in range(n))
        )
    return [r.status_code for r in responses]


def test_200_concurrent_against_burst_50_exactly_50_pass_memory(limited: Harness) -> None:
    token = limited.token("products:read", tier="tight")
    statuses = asyncio.run(_burst([limited.url], token, 200))
    assert statuses.count(200) == 50
    assert statuses.count(429) == 150


@pytest.mark.redis
def test_200_concurrent_against_burst_50_across_two_processes_redis(
    tmp_path: Path, redis_url: str
) -> None:
    from magento_standin import create_standin

    standin = create_standin(bearer_tokens=[MAGENTO_TOKEN])
    with serving(standin) as magento:
        policy = tiered_policy(tmp_path, TIERS)
        config = write_config(
            tmp_path,
            magento.url,
            None,
            policy=policy,
            ratelimit=f'[ratelimit]\nbackend = "redis"\nurl = "{redis_url}"\n',
        )
        out = subprocess.run(
            [
                sys.executable, "-m", "proxy", "tokens", "create", "--config", str(config),
                "--store", "acme", "--permission", "products:read", "--tier", "tight",
            ],
            env={**os.environ, **env()},
            capture_output=True,
            text=True,
            check=True,
        )  # fmt: skip
        token = out.stdout.strip().splitlines()[-1]
        edges = [EdgeProcess(config, free_port()), EdgeProcess(config, free_port())]
        try:
            statuses = asyncio.run(_burst([e.url for e in edges], token, 200))
        finally:
            for e in edges:
                e.stop()
    assert statuses.count(200) == 50
    assert statuses.count(429) == 150
    # Not counted: the admin listeners' readiness probes (a signed read of store configs)
    assert standin.hits[("GET", "/V1/products/:sku")] == 50


@pytest.mark.parametrize(("choice", "expected"), [("allow", 200), ("deny", 503)])
def test_redis_down_follows_on_backend_error(tmp_path: Path, choice: str, expected: int) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    rl = f'[ratelimit]\nbackend = "redis"\nurl = "{dead}"\non_backend_error = "{choice}"\n'
    with running_edge(tmp_path, ratelimit=rl) as h:
        token = h.token("products:read")
        with h.client(token) as c:
            statuses = [c.get(PRODUCT).status_code for _ in range(3)]
    assert statuses == [expected] * 3
