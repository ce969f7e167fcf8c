"""Rate-limit backends: GCRA arithmetic, daily quotas, and one contract suite over the
memory backend (injected clock) and the Redis backend (a real redis-server, its clock)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from proxy.backends.ratelimit.base import (
    LimitResult,
    RateLimiter,
    decide,
    seconds_to_utc_midnight,
)
from proxy.backends.ratelimit.memory import MemoryRateLimiter
from proxy.errors import BackendUnavailable
from proxy.policy import Tier

STANDARD = Tier("standard", rate=60, period=60, burst=120, daily=20000)
SMALL = Tier("small", rate=2, period=1, burst=5, daily=0)  # T = 500 ms


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the pure decision ------------------------------------------------------------------


def test_burst_then_exact_retry_after() -> None:
    now, tat, used = 1000.0, 0.0, 0
    remaining = []
    for _ in range(120):
        result, tat, used = decide(tat, used, now, STANDARD)
        assert result.allowed
        remaining.append(result.remaining)
    assert remaining == list(range(119, -1, -1))
    denied, tat2, used2 = decide(tat, used, now, STANDARD)
    assert not denied.allowed and denied.remaining == 0
    assert denied.retry_after == pytest.approx(1.0)  # one emission interval: 60 s / 60
    assert denied.reset == pytest.approx(120.0)  # the whole bucket refills in 120 s
    assert (tat2, used2) == (tat, used)  # a refused request spends nothing
    later, _, _ = decide(tat, used, now + 1.0, STANDARD)
    assert later.allowed and later.remaining == 0


def test_refill_is_linear() -> None:
    now, tat, used = 0.0, 0.0, 0
    for _ in range(120):
        _, tat, used = decide(tat, used, now, STANDARD)
    result, _, _ = decide(tat, used, now + 30.0, STANDARD)
    assert result.allowed and result.remaining == 29  # 30 refilled, this one spent


def test_daily_quota_refuses_until_utc_midnight_and_spends_nothing() -> None:
    tier = Tier("d", rate=1000, period=1, burst=1000, daily=3)
    now = 86400 * 20000 + 3600.0  # 01:00 UTC
    tat, used = 0.0, 0
    for left in (2, 1, 0):
        result, tat, used = decide(tat, used, now, tier)
        assert result.allowed and result.daily_remaining == left
    refused, tat2, used2 = decide(tat, used, now, tier)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(seconds_to_utc_midnight(now)) == 82800.0
    assert (tat2, used2) == (tat, used)


def _reference_decide(
    tat: float, used_today: int, now: float, tier: Tier
) -> tuple[LimitResult, float, int]:
    """decide() as first written, with max/min and helper functions: the formulas that
    the inlined hot-path version must reproduce bit for bit."""
    interval = tier.period / tier.rate
    capacity = tier.burst * interval
    start = max(tat, now)
    new_tat = start + interval
    allow_at = new_tat - capacity
    daily_reset = seconds_to_utc_midnight(now)
    daily_left = tier.daily - used_today if tier.daily else 0
    if allow_at > now:
        retry = allow_at - now
        if tier.daily and daily_left <= 0:
            retry = max(retry, daily_reset)
        result = LimitResult(
            False, tier.burst, 0, start - now, retry, tier.daily, max(daily_left, 0),
            daily_reset, now, capacity,
        )  # fmt: skip
        return result, tat, used_today
    if tier.daily and daily_left <= 0:
        result = LimitResult(
            False, tier.burst, _reference_remaining(start, now, interval, tier.burst),
            max(start - now, 0.0), daily_reset, tier.daily, 0, daily_reset, now, capacity,
        )  # fmt: skip
        return result, tat, used_today
    remaining = _reference_remaining(new_tat, now, interval, tier.burst)
    result = LimitResult(
        True, tier.burst, remaining, new_tat - now, 0.0, tier.daily,
        daily_left - 1 if tier.daily else 0, daily_reset, now, capacity,
    )  # fmt: skip
    return result, new_tat, used_today + 1


def _reference_remaining(tat: float, now: float, interval: float, burst: int) -> int:
    return max(0, min(burst, math.floor((now + burst * interval - tat) / interval + 1e-9)))


_TIERS = st.builds(
    Tier,
    name=st.just("p"),
    rate=st.integers(1, 10**9),
    period=st.one_of(st.integers(1, 86400 * 7), st.floats(0.001, 86400 * 7)),
    burst=st.one_of(st.integers(1, 20), st.integers(1, 10**9)),
    daily=st.one_of(st.just(0), st.integers(1, 10**6)),
)


@given(
    tier=_TIERS,
    now=st.one_of(st.floats(0, 4e9), st.integers(0, 4 * 10**9).map(float)),
    # tat as a whole or fractional number of emission intervals from now: the boundaries
    offset=st.one_of(st.just(None), st.integers(-5, 25), st.floats(-1e3, 1e9)),
    used=st.integers(0, 10**6 + 5),
)
@example(tier=SMALL, now=1000.0, offset=5, used=0)  # the bucket exactly empty
@example(tier=SMALL, now=1000.0, offset=4, used=0)  # one request left
@example(tier=Tier("d", 1000, 1, 1000, 3), now=86400.0 * 3, offset=None, used=3)
def test_decide_matches_the_reference_formulas(
    tier: Tier, now: float, offset: float | None, used: int
) -> None:
    tat = 0.0 if offset is None else now + offset * (tier.period / tier.rate)
    got = decide(tat, used, now, tier)
    want = _reference_decide(tat, used, now, tier)
    # repr: the same numbers down to the type and the sign of a zero
    assert type(got[0]) is LimitResult
    assert repr(got) == repr(want)


class _ReferenceMemoryLimiter(MemoryRateLimiter):
    """MemoryRateLimiter.hit as first written: both table sizes checked on every
    decision. The hot-path version checks a table's size when it grows, and must keep
    the same tables and answer the same."""

    async def hit(self, key: str, tier: Tier) -> LimitResult:
        now = self._clock()
        self._countdown -= 1
        if (
            self._countdown <= 0
            or len(self._tats) >= self._maxsize
            or len(self._days) >= self._maxsize
        ):
            self._sweep(now)
        used = 0
        if tier.daily:
            entry = self._days.get(key)
            if entry is not None and entry[1] > now:
                used = entry[0]
        result, new_tat, new_used = _reference_decide(self._tats.get(key, 0.0), used, now, tier)
        if result.allowed:
            self._tats[key] = new_tat
            if tier.daily:
                self._days[key] = (new_used, now + result.daily_reset)
        return result


@given(
    maxsize=st.integers(1, 6),
    sweep_every=st.integers(1, 12),
    steps=st.lists(
        st.tuples(
            st.integers(0, 9),  # key
            st.sampled_from([SMALL, Tier("d", 1, 2, 2, 3), Tier("e", 3, 1, 1, 1)]),
            st.sampled_from([0.0, 0.1, 0.5, 1.0, 3.0, 86400.0]),  # time passing first
        ),
        max_size=60,
    ),
)
def test_memory_limiter_matches_the_reference(
    maxsize: int, sweep_every: int, steps: list[tuple[int, Tier, float]]
) -> None:
    clock, ref_clock = FakeClock(86400.0 * 20000 - 5), FakeClock(86400.0 * 20000 - 5)
    fast = MemoryRateLimiter(clock=clock, maxsize=maxsize, sweep_every=sweep_every)
    ref = _ReferenceMemoryLimiter(clock=ref_clock, maxsize=maxsize, sweep_every=sweep_every)

    async def run() -> None:
        for key, tier, dt in steps:
            clock.now += dt
            ref_clock.now += dt
            got = await fast.hit(f"k{key}", tier)
            want = await ref.hit(f"k{key}", tier)
            assert repr(got) == repr(want)
            assert (fast._tats, fast._days) == (ref._tats, ref._days)

    asyncio.run(run())


# -- the contract, over every backend -------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def limiter(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[RateLimiter]:
    if request.param == "memory":
        backend: RateLimiter = MemoryRateLimiter(clock=clock)
    else:
        from proxy.backends.ratelimit.redis import RedisRateLimiter

        url = request.getfixturevalue("redis_url")
        backend = RedisRateLimiter(url, prefix=f"test:{id(request)}:")
    yield backend
    await backend.close()


@pytest.fixture
def advance(limiter: RateLimiter, clock: FakeClock) -> Callable[[float], Awaitable[None]]:
    """Let ``seconds`` pass for ``limiter``."""

    async def by(seconds: float) -> None:
        if isinstance(limiter, MemoryRateLimiter):
            clock.now += seconds
        else:
            # Redis decides on the Redis server's clock (TIME inside its script), which a
            # test cannot move: the real time passes, bounded by the caller (<= 0.5 s).
            await asyncio.sleep(seconds)

    return by


async def test_contract_burst_is_exact_under_concurrency(limiter: RateLimiter) -> None:
    tier = Tier("t", rate=1, period=3600, burst=50, daily=0)
    results = await asyncio.gather(*(limiter.hit("k-conc", tier) for _ in range(200)))
    assert sum(r.allowed for r in results) == 50
    assert sorted(r.remaining for r in results if r.allowed) == list(range(50))
    assert all(r.retry_after >= 3599 for r in results if not r.allowed)


async def test_contract_keys_are_independent(limiter: RateLimiter) -> None:
    tier = Tier("t", rate=1, period=3600, burst=2, daily=0)
    assert [(await limiter.hit("a", tier)).allowed for _ in range(3)] == [True, True, False]
    assert (await limiter.hit("b", tier)).allowed


async def test_contract_passes_again_after_retry_after(
    limiter: RateLimiter, advance: Callable[[float], Awaitable[None]]
) -> None:
    for _ in range(5):
        assert (await limiter.hit("k-retry", SMALL)).allowed
    refused = await limiter.hit("k-retry", SMALL)
    assert not refused.allowed and 0 < refused.retry_after <= 0.5 + 1e-6
    await advance(refused.retry_after + 0.01)  # the limiter's own promise, <= 0.5 s
    assert (await limiter.hit("k-retry", SMALL)).allowed


async def test_contract_daily_quota(limiter: RateLimiter) -> None:
    tier = Tier("d", rate=1000, period=1, burst=1000, daily=3)
    outcomes = [await limiter.hit("k-daily", tier) for _ in range(4)]
    assert [o.allowed for o in outcomes] == [True, True, True, False]
    assert [o.daily_remaining for o in outcomes[:3]] == [2, 1, 0]
    assert outcomes[3].retry_after == pytest.approx(outcomes[3].daily_reset, abs=1)


def test_memory_backend_refills_with_the_injected_clock() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)

    async def run() -> list[LimitResult]:
        out = [await limiter.hit("k", SMALL) for _ in range(6)]
        clock.now += 0.5
        out.append(await limiter.hit("k", SMALL))
        clock.now += 10
        out.append(await limiter.hit("k", SMALL))
        return out

    results = asyncio.run(run())
    assert [r.allowed for r in results] == [True] * 5 + [False, True, True]
    assert results[-1].remaining == 4  # fully refilled, then one spent
    assert len(limiter) == 1


def test_memory_backend_sweeps_full_buckets_and_ended_days() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock, sweep_every=3)
    tier = Tier("d", rate=10, period=1, burst=5, daily=100)

    async def run() -> None:
        await limiter.hit("a", tier)
        await limiter.hit("b", tier)
        clock.now += 60  # both buckets full again: nothing worth keeping
        await limiter.hit("c", tier)  # the third decision sweeps
        assert len(limiter) == 1
        assert set(limiter._days) == {"a", "b", "c"}  # today's counts are still owed
        clock.now += 86400  # a new UTC day: yesterday's counts are worthless
        for key in ("d", "e", "f"):
            await limiter.hit(key, tier)

    asyncio.run(run())
    assert set(limiter._days) == {"d", "e", "f"}


@pytest.mark.redis
async def test_redis_script_is_reloaded_after_script_flush(redis_url: str) -> None:
    import redis.asyncio as redis

    from proxy.backends.ratelimit.redis import RedisRateLimiter

    limiter = RedisRateLimiter(redis_url, prefix="test:flush:")
    assert (await limiter.hit("k", SMALL)).allowed
    admin = redis.Redis.from_url(redis_url)
    await admin.script_flush()
    await admin.aclose()
    assert (await limiter.hit("k", SMALL)).allowed  # NOSCRIPT → loaded again
    await limiter.close()


async def test_redis_unreachable_raises_backend_unavailable_and_counts() -> None:
    from proxy.backends.ratelimit.redis import RedisRateLimiter
    from tests.servers import free_port

    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0")
    for _ in range(3):
        with pytest.raises(BackendUnavailable):
            await limiter.hit("k", SMALL)
    assert limiter.errors == 3
    await limiter.close()
