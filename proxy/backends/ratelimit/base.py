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


# _tuple_new(LimitResult, fields) builds a LimitResult without the Python-level __new__ a
# NamedTuple class defines: one interpreter frame less per request, C all the way.
_tuple_new = tuple.__new__


def decide(tat: float, used_today: int, now: float, tier: Tier) -> tuple[LimitResult, float, int]:
    """The pure GCRA + daily-quota decision shared by every backend that computes in
    Python: returns the result, the new ``tat`` and the new daily count.

    Shaped for speed (it runs once per request): ``seconds_to_utc_midnight`` and the
    whole requests still in the bucket (``(now + burst·T - tat) / T``, clamped to
    ``0..burst``, a tiny epsilon keeping exact boundaries of the float division from
    losing one) are written inline, and clamps are comparisons rather than ``max``/``min``
    calls, each written to pick what ``max``/``min`` would (the same object on ties).
    tests/backends/test_ratelimit.py checks this against the formulas written out.
    """
    burst = tier.burst
    daily = tier.daily
    interval = tier.period / tier.rate
    capacity = burst * interval
    start = now if now > tat else tat
    new_tat = start + interval
    allow_at = new_tat - capacity
    daily_reset = DAY - (now % DAY)
    daily_left = daily - used_today if daily else 0
    if allow_at > now:  # the bucket is empty
        retry = allow_at - now
        if daily and daily_left <= 0 and daily_reset > retry:
            retry = daily_reset
        result = _tuple_new(
            LimitResult,
            (
                False,
                burst,
                0,
                start - now,
                retry,
                daily,
                0 if daily_left < 0 else daily_left,
                daily_reset,
                now,
                capacity,
            ),
        )
        return result, tat, used_today
    if daily and daily_left <= 0:  # today's quota is spent
        remaining = math.floor((now + capacity - start) / interval + 1e-9)
        remaining = remaining if remaining < burst else burst
        remaining = remaining if remaining > 0 else 0
        reset = start - now
        result = _tuple_new(
            LimitResult,
            (
                False,
                burst,
                remaining,
                0.0 if reset < 0.0 else reset,
                daily_reset,
                daily,
                0,
                daily_reset,
                now,
                capacity,
            ),
        )
        return result, tat, used_today
    remaining = math.floor((now + capacity - new_tat) / interval + 1e-9)
    remaining = remaining if remaining < burst else burst
    remaining = remaining if remaining > 0 else 0
    result = _tuple_new(
        LimitResult,
        (
            True,
            burst,
            remaining,
            new_tat - now,
            0.0,
            daily,
            daily_left - 1 if daily else 0,
            daily_reset,
            now,
            capacity,
        ),
    )
    return result, new_tat, used_today + 1
