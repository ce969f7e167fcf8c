"""Step 4 of the request path: token-bucket rate limits and daily quotas.

The bucket is computed with GCRA arithmetic (one stored number per key, the theoretical
arrival time), which makes ``Remaining`` and ``Retry-After`` exact rather than estimated:
with an emission interval ``T = period / rate`` and a capacity of ``burst`` requests, a
request at ``now`` is allowed when ``max(tat, now) + T - burst·T <= now``; it then moves
``tat`` by ``T``. The daily quota is a counter per UTC day, checked in the same decision
so a request refused by one limit spends nothing from the other.

Backends: :class:`MemoryRateLimiter` here (in-process, exact under asyncio because a
decision never awaits) and :class:`proxy.ratelimit_redis.RedisRateLimiter` (one Lua script
per decision, on the Redis server's clock, exact across any number of replicas).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple, Protocol

from .policy import HeaderStyle, Tier

__all__ = [
    "BackendUnavailable",
    "LimitResult",
    "MemoryRateLimiter",
    "RateLimiter",
    "decide",
    "open_limiter",
    "rate_limit_headers",
    "seconds_to_utc_midnight",
]

DAY = 86400.0


class LimitResult(NamedTuple):
    """One decision. ``reset`` is seconds until the bucket is full again; ``retry_after``
    seconds until the next request would pass (0 when this one passed). A NamedTuple:
    one is built per request."""

    allowed: bool
    limit: int
    remaining: int
    reset: float
    retry_after: float
    daily_limit: int  # 0: no daily quota
    daily_remaining: int
    daily_reset: float
    now: float  # the clock the decision used (Unix seconds), for epoch-style headers
    window: float  # seconds an empty bucket takes to fill: burst * period / rate


class BackendUnavailable(Exception):
    """The backend could not be asked; the edge applies ``on_backend_error``."""


class RateLimiter(Protocol):
    """A rate-limit store: one atomic decision per request."""

    async def hit(self, key: str, tier: Tier) -> LimitResult: ...

    async def close(self) -> None: ...


def seconds_to_utc_midnight(now: float) -> float:
    return DAY - (now % DAY)


def decide(tat: float, used_today: int, now: float, tier: Tier) -> tuple[LimitResult, float, int]:
    """The pure GCRA + daily-quota decision shared by every backend that computes in
    Python: returns the result, the new ``tat`` and the new daily count."""
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
            False,
            tier.burst,
            0,
            start - now,
            retry,
            tier.daily,
            max(daily_left, 0),
            daily_reset,
            now,
            capacity,
        )
        return result, tat, used_today
    if tier.daily and daily_left <= 0:
        result = LimitResult(
            False,
            tier.burst,
            _remaining(start, now, interval, tier.burst),
            max(start - now, 0.0),
            daily_reset,
            tier.daily,
            0,
            daily_reset,
            now,
            capacity,
        )
        return result, tat, used_today
    remaining = _remaining(new_tat, now, interval, tier.burst)
    result = LimitResult(
        True,
        tier.burst,
        remaining,
        new_tat - now,
        0.0,
        tier.daily,
        daily_left - 1 if tier.daily else 0,
        daily_reset,
        now,
        capacity,
    )
    return result, new_tat, used_today + 1


def _remaining(tat: float, now: float, interval: float, burst: int) -> int:
    # Whole requests that would still pass right now: (now + burst·T - tat) / T.
    # A tiny epsilon keeps exact boundaries (float division) from losing one.
    return max(0, min(burst, math.floor((now + burst * interval - tat) / interval + 1e-9)))


class MemoryRateLimiter:
    """In-process limits. Exact within one process; with several workers or replicas,
    each keeps its own buckets (use the Redis backend there).

    Plain dicts rather than a TTL cache on the hot path: an entry is worthless once its
    ``tat`` has passed (a full bucket) or its day has ended, so a sweep every
    ``sweep_every`` decisions (or when ``maxsize`` is reached) drops those; memory stays
    bounded by the keys active within one bucket window.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        maxsize: int = 1_000_000,
        sweep_every: int = 10_000,
    ) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._days: dict[str, tuple[int, float]] = {}  # key -> (used, end of that day)
        self._maxsize = maxsize
        self._sweep_every = sweep_every
        self._countdown = sweep_every

    async def hit(self, key: str, tier: Tier) -> LimitResult:
        now = self._clock()
        self._countdown -= 1
        if self._countdown <= 0 or len(self._tats) >= self._maxsize:
            self._sweep(now)
        used = 0
        if tier.daily:
            entry = self._days.get(key)
            if entry is not None and entry[1] > now:
                used = entry[0]
        result, new_tat, new_used = decide(self._tats.get(key, 0.0), used, now, tier)
        if result.allowed:
            self._tats[key] = new_tat
            if tier.daily:
                self._days[key] = (new_used, now + result.daily_reset)
        return result

    def _sweep(self, now: float) -> None:
        self._countdown = self._sweep_every
        self._tats = {k: t for k, t in self._tats.items() if t > now}
        self._days = {k: d for k, d in self._days.items() if d[1] > now}
        if len(self._tats) >= self._maxsize:
            # Still full of live buckets: forget the ones closest to full (oldest tat).
            keep = sorted(self._tats.items(), key=lambda kv: kv[1])[len(self._tats) // 2 :]
            self._tats = dict(keep)

    def __len__(self) -> int:
        return len(self._tats)

    async def close(self) -> None:
        self._tats.clear()
        self._days.clear()


def rate_limit_headers(
    result: LimitResult, style: HeaderStyle, *, ietf: bool = False
) -> list[tuple[bytes, bytes]]:
    """The surface's headers for ``result``.

    They describe whichever limit is closer to running out: the bucket normally, the daily
    quota once fewer requests are left today than in the bucket (as Kong does). The IETF
    ``RateLimit-Policy``/``RateLimit`` pair, when enabled, lists both.
    """
    daily_tighter = bool(result.daily_limit) and result.daily_remaining < result.remaining
    if daily_tighter or (result.daily_limit and not result.allowed and result.daily_remaining == 0):
        limit, remaining, reset = result.daily_limit, result.daily_remaining, result.daily_reset
    else:
        limit, remaining, reset = result.limit, result.remaining, result.reset
    if style == "ratelimit":
        out = [
            (b"ratelimit-limit", str(limit).encode()),
            (b"ratelimit-remaining", str(remaining).encode()),
            (b"ratelimit-reset", str(math.ceil(reset)).encode()),
        ]
    else:
        # Seed 001 shows X-Rate-Limit-Reset as a Unix time.
        out = [
            (b"x-rate-limit-limit", str(limit).encode()),
            (b"x-rate-limit-remaining", str(remaining).encode()),
            (b"x-rate-limit-reset", str(math.ceil(result.now + reset)).encode()),
        ]
    if ietf:
        policy = f'"burst";q={result.limit};w={max(1, math.ceil(result.window))}'
        state = f'"burst";r={result.remaining};t={math.ceil(result.reset)}'
        if result.daily_limit:
            policy += f', "daily";q={result.daily_limit};w=86400'
            state += f', "daily";r={result.daily_remaining};t={math.ceil(result.daily_reset)}'
        out.append((b"ratelimit-policy", policy.encode()))
        out.append((b"ratelimit", state.encode()))
    if not result.allowed:
        out.append((b"retry-after", str(max(1, math.ceil(result.retry_after))).encode()))
    return out


def open_limiter(backend: str, url: str | None) -> RateLimiter | None:
    """The configured backend (``none``: limits off, no headers)."""
    if backend == "none":
        return None
    if backend == "redis":
        from .ratelimit_redis import RedisRateLimiter

        if not url:  # load_config refuses this; never fall back to a guessed server
            raise ValueError('the "redis" rate-limit backend needs a url')
        return RedisRateLimiter(url)
    return MemoryRateLimiter()
