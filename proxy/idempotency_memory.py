"""The in-process idempotency backend (``[idempotency] backend = "memory"``, the default).

Atomic under asyncio because no method awaits between reading and writing a key, so of
any number of concurrent requests with one key exactly one gets the claim. Per process:
with several workers or replicas a retry may land on another one, so use Redis there.

Leases live in a plain dict (bounded by the requests in flight, removed when each ends);
answers in a ``cachetools.TLRUCache`` that expires each at its own time and is bounded in
bytes: beyond ``max_bytes`` the least recently used answers are dropped early (a retry of
one of those runs again). Keeping them apart means a flood of answers never evicts a
lease, which would let a duplicate through.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cachetools import TLRUCache

from .idempotency_store import Answer, Lease

__all__ = ["MemoryIdempotencyStore"]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_OVERHEAD = 256  # per answer: the objects around the bytes, roughly


class _Kept:
    __slots__ = ("answer", "expires")

    def __init__(self, answer: Answer, expires: float) -> None:
        self.answer = answer
        self.expires = expires


def _until(_key: str, value: _Kept, _now: float) -> float:
    return value.expires


def _size(value: _Kept) -> int:
    a = value.answer
    return _OVERHEAD + len(a.body or b"") + sum(len(n) + len(v) + 16 for n, v in a.headers)


class MemoryIdempotencyStore:
    """Trust model: process memory; keys are hashes, answers are what callers received."""

    def __init__(
        self, *, max_bytes: int = DEFAULT_MAX_BYTES, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._leases: dict[str, tuple[Lease, float]] = {}
        self._answers: TLRUCache[str, _Kept] = TLRUCache(
            max_bytes, _until, timer=clock, getsizeof=_size
        )

    async def claim(self, key: str, lease: Lease, seconds: float) -> Lease | Answer | None:
        kept = self._answers.get(key)
        if kept is not None:
            return kept.answer
        now = self._clock()
        held = self._leases.get(key)
        if held is not None and held[1] > now:
            return held[0]
        self._leases[key] = (lease, now + seconds)
        return None

    async def renew(self, key: str, lease: Lease, seconds: float) -> bool:
        held = self._leases.get(key)
        if held is None or held[0].owner != lease.owner:
            return False
        self._leases[key] = (lease, self._clock() + seconds)
        return True

    async def record(self, key: str, lease: Lease, answer: Answer, ttl: float) -> bool:
        held = self._leases.get(key)
        if held is not None and held[0].owner != lease.owner:
            return False  # lapsed and taken by another request: its answer wins
        if key in self._answers:
            return False
        self._leases.pop(key, None)
        try:
            self._answers[key] = _Kept(answer, self._clock() + ttl)
        except ValueError:  # larger than the whole cache: cannot be kept
            return False
        return True

    async def release(self, key: str, lease: Lease) -> None:
        held = self._leases.get(key)
        if held is not None and held[0].owner == lease.owner:
            del self._leases[key]

    async def close(self) -> None:
        self._leases.clear()
        self._answers.clear()
