"""The in-process rate-limit backend (``[ratelimit] backend = "memory"``, the default)."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable

from ...policy import Tier
from .base import LimitResult, decide

__all__ = ["DEFAULT_MAXSIZE", "MemoryRateLimiter"]

# Keys per table (buckets, daily counts). Keys are client input (an address, a token id),
# so the tables must be bounded: at ~150 bytes a bucket and ~200 a daily count this is
# ~35 MB at most, and a bound is only reached by more distinct clients active at once
# than one process serves (more belong on the Redis backend).
DEFAULT_MAXSIZE = 100_000


class MemoryRateLimiter:
    """In-process limits. Exact within one process; with several workers or replicas,
    each keeps its own buckets (use the Redis backend there). Trust model: keys are
    client-chosen (addresses, token ids), so both tables are bounded.

    Plain dicts rather than a TTL cache on the hot path: an entry is worthless once its
    ``tat`` has passed (a full bucket) or its day has ended, so a sweep every
    ``sweep_every`` decisions, or when either table reaches ``maxsize``, drops those.
    A table still at ``maxsize`` after that is halved, forgetting what is worth least:
    the buckets closest to full (oldest ``tat``) and the smallest daily counts; a client
    forgotten that way starts afresh, which costs the limit at most what it had spent.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        maxsize: int = DEFAULT_MAXSIZE,
        sweep_every: int = 10_000,
    ) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}
        self._days: dict[str, tuple[int, float]] = {}  # key -> (used, end of that day)
        self._maxsize = maxsize
        self._sweep_every = sweep_every
        self._countdown = sweep_every

    async def hit(self, key: str, tier: Tier) -> LimitResult:
        return self.hit_now(key, tier)

    def hit_now(self, key: str, tier: Tier) -> LimitResult:
        """:meth:`hit` without its coroutine (the edge calls this one on its hot path)."""
        now = self._clock()
        self._countdown -= 1
        if self._countdown <= 0:
            self._sweep(now)
        # A table grows only here, by a key it did not hold: its size is checked then (the
        # next decision sweeps), not twice on every decision.
        tats = self._tats
        tat = tats.get(key)
        used = 0
        entry: tuple[int, float] | None = None
        daily = tier.daily
        if daily:
            entry = self._days.get(key)
            if entry is not None and entry[1] > now:
                used = entry[0]
        result, new_tat, new_used = decide(0.0 if tat is None else tat, used, now, tier)
        if result[0]:  # allowed
            tats[key] = new_tat
            if tat is None and len(tats) >= self._maxsize:
                self._countdown = 0
            if daily:
                days = self._days
                days[key] = (new_used, now + result.daily_reset)
                if entry is None and len(days) >= self._maxsize:
                    self._countdown = 0
        return result

    def _sweep(self, now: float) -> None:
        self._countdown = self._sweep_every
        self._tats = {k: t for k, t in self._tats.items() if t > now}
        self._days = {k: d for k, d in self._days.items() if d[1] > now}
        half = self._maxsize // 2
        if len(self._tats) >= self._maxsize:
            # Still full of live buckets: keep the half furthest from full (newest tat).
            self._tats = dict(heapq.nlargest(half, self._tats.items(), key=lambda kv: kv[1]))
        if len(self._days) >= self._maxsize:
            # Still full of today's counts: keep the half that spent the most.
            self._days = dict(heapq.nlargest(half, self._days.items(), key=lambda kv: kv[1][0]))

    def __len__(self) -> int:
        return len(self._tats)

    def sizes(self) -> tuple[int, int]:
        """(buckets, daily counts) held now: for tests and the curious operator."""
        return len(self._tats), len(self._days)

    async def close(self) -> None:
        self._tats.clear()
        self._days.clear()
