"""Backends an operator might write, named in config as ``tests.backends.operator_backends:X``.

Each reads its own settings (here an environment variable), since the edge constructs an
operator's class with no arguments. The broken ones are what ``check`` must refuse.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from proxy.backends.idempotency.memory import MemoryIdempotencyStore
from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.backends.ratelimit.base import LimitResult
from proxy.backends.ratelimit.memory import MemoryRateLimiter
from proxy.policy import Tier


class OperatorKeyStore(SQLiteKeyStore):
    """A key store at a path of the operator's choosing, given by environment variable."""

    def __init__(self) -> None:
        super().__init__(os.environ["OPERATOR_KEYSTORE_PATH"])


class CountingLimiter(MemoryRateLimiter):
    """The memory limiter, counting the decisions it was asked for (class-wide, so a test
    can see the instance the edge built)."""

    hits = 0

    async def hit(self, key: str, tier: Tier) -> LimitResult:
        type(self).hits += 1
        return await super().hit(key, tier)


class OperatorIdempotencyStore(MemoryIdempotencyStore):
    """The memory store with a smaller byte bound."""

    def __init__(self) -> None:
        super().__init__(max_bytes=1 << 20)


class LookupOnly:
    """Only the request path's side of a key store: not enough to be one."""

    async def lookup(self, token_hash: str) -> None:
        return None

    async def get_account(self, account_id: str) -> None:
        return None

    async def record_use(self, uses: Mapping[str, float]) -> None:
        return None

    async def revoke(self, token_id: str, reason: str | None = None) -> bool:
        return False

    async def jti_revoked(self, jti: str) -> bool:
        return False

    async def close(self) -> None:
        return None


class SyncLimiter:
    """``hit`` is not a coroutine function: the edge would never get a decision."""

    def hit(self, key: str, tier: Tier) -> None:
        return None

    async def close(self) -> None:
        return None


class NeedsArguments(MemoryRateLimiter):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url


NOT_A_CLASS = "a string"
