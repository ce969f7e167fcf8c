"""The rate-limit backends' contract and their shared arithmetic.

The bucket is computed with GCRA arithmetic (one stored number per key, the theoretical
arrival time), which makes ``Remaining`` and ``Retry-After`` exact rather than estimated:
with an emission interval ``T = period / rate`` and a capacity of ``burst`` requests, a
request at ``now`` is allowed when ``max(tat, now) + T - burst·T <= now``; it then moves
``tat`` by ``T``. The daily quota is a counter per UTC day, checked in the same decision
so a request refused by one limit spends nothing from the other.

Backends: :mod:`.memory` (in-process, exact under asyncio because a decision never awaits)
and :mod:`.redis` (one Lua script per decision, on the Redis server's clock, exact across
any number of replicas). A backend that cannot be asked raises
:class:`~proxy.errors.BackendUnavailable`.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol

from ...policy import Tier

__all__ = ["DAY", "LimitResult", "RateLimiter", "decide", "seconds_to_utc_midnight"]

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
