"""The in-process rate-limit backend (``[ratelimit] backend = "memory"``, the default)."""

from __future__ import annotations

import time
from collections.abc import Callable

from ...policy import Tier
from .base import LimitResult, decide

__all__ = ["MemoryRateLimiter"]


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
