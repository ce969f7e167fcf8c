"""The request path's view of the key store: lookups (tokens, accounts, revoked JWT ids)
cached for at most a second (the bound on how long a revoked token keeps working on a
replica that has it cached), and
last-used times written in batches, never per request. Wraps only :class:`KeyLookup`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from cachetools import TTLCache

from ...errors import KeyStoreUnavailable
from .._outage import OutageLog
from .base import AccountRecord, KeyLookup, TokenRecord

__all__ = ["CACHE_TTL_SECONDS", "LAST_USED_FLUSH_SECONDS", "CachedKeyStore"]

log = logging.getLogger("magento_edge.keystore")
_T = TypeVar("_T")

# How long a lookup (hit or miss) is trusted before asking the store again: the bound on how
# long a revoked token (or a shrunk account) keeps working on a replica that has it cached.
CACHE_TTL_SECONDS = 1.0
# Last-used times are kept in memory and written at most this often (never per request).
LAST_USED_FLUSH_SECONDS = 60.0


class CachedKeyStore:
    """Wraps the lookup side of a key store: :meth:`lookup` and :meth:`get_account` in TTL
    caches (hits and misses alike), and batches last-used times. Trust model: the wrapped
    store is the operator's; a cached answer is at most ``ttl`` seconds stale."""

    def __init__(
        self,
        store: KeyLookup,
        *,
        ttl: float = CACHE_TTL_SECONDS,
        maxsize: int = 65536,
        clock: Callable[[], float] = time.monotonic,
        flush_interval: float = LAST_USED_FLUSH_SECONDS,
    ) -> None:
        self.store = store
        self._ttl = ttl
        self._maxsize = maxsize
        self._clock = clock
        self._cache: TTLCache[str, TokenRecord | None] = TTLCache(maxsize, ttl, timer=clock)
        self._accounts: TTLCache[str, AccountRecord | None] = TTLCache(maxsize, ttl, timer=clock)
        self._jtis: TTLCache[str, bool] = TTLCache(maxsize, ttl, timer=clock)
        # The request path's hit, in front of the TTL caches above: per token hash (account
        # id), the record the store last returned and when that answer stops being trusted
        # (the same bound). Read by :meth:`fresh` (:meth:`fresh_account`) without a
        # coroutine, one dict lookup and a clock read, where a TTLCache hit is four Python
        # calls. Filled only when the store answers with a record (never with a miss), at
        # most ``maxsize`` entries each (the least recently fetched goes first).
        self._fresh: dict[str, tuple[float, TokenRecord]] = {}
        self._fresh_accounts: dict[str, tuple[float, AccountRecord]] = {}
        self._uses: dict[str, float] = {}
        self._flush_interval = flush_interval
        self._flusher: asyncio.Task[None] | None = None
        # For metrics (proxy.metrics): cache answers, store answers, store failures.
        self.hits = 0
        self.misses = 0
        # Store failures: counted, logged once per interval (never per request, never silent).
        self.outage = OutageLog(log, "key store")

    async def lookup(self, token_hash: str) -> TokenRecord | None:
        try:
            found = self._cache[token_hash]
        except KeyError:
            self.misses += 1
        else:
            self.hits += 1
            return found
        record = await self._counted(self.store.lookup(token_hash))
        if record is not None:  # its expiry read first: never later than the TTLCache's
            _remember(self._fresh, token_hash, record, self._clock() + self._ttl, self._maxsize)
        self._cache[token_hash] = record
        return record

    def fresh(self, token_hash: str) -> TokenRecord | None:
        """The token's record when the store returned it within the last ``ttl`` seconds,
        else ``None`` (then :meth:`lookup`, which asks the store when the caches do not
        know). A ``TokenRecord`` here was stored under ``token_hash``, so a token with that
        hash is the one it was issued as."""
        entry = self._fresh.get(token_hash)
        if entry is not None and self._clock() < entry[0]:
            self.hits += 1
            return entry[1]
        return None

    async def get_account(self, account_id: str) -> AccountRecord | None:
        try:
            found = self._accounts[account_id]
        except KeyError:
            self.misses += 1
        else:
            self.hits += 1
            return found
        account = await self._counted(self.store.get_account(account_id))
        if account is not None:
            expires = self._clock() + self._ttl
            _remember(self._fresh_accounts, account_id, account, expires, self._maxsize)
        self._accounts[account_id] = account
        return account

    def fresh_account(self, account_id: str) -> AccountRecord | None:
        """Like :meth:`fresh`, for :meth:`get_account`."""
        entry = self._fresh_accounts.get(account_id)
        if entry is not None and self._clock() < entry[0]:
            self.hits += 1
            return entry[1]
        return None

    async def jti_revoked(self, jti: str) -> bool:
        """Whether a JWT's ``jti`` is denied; cached like a lookup, so a ``revoke-jwt`` is
        seen by every replica within the same bound as a revoked personal token."""
        try:
            found = self._jtis[jti]
        except KeyError:
            self.misses += 1
        else:
            self.hits += 1
            return found
        revoked = await self._counted(self.store.jti_revoked(jti))
        self._jtis[jti] = revoked
        return revoked

    @property
    def errors(self) -> int:
        return self.outage.count

    async def _counted(self, call: Awaitable[_T]) -> _T:
        try:
            found = await call
        except KeyStoreUnavailable as exc:
            self.outage.failed(exc)
            raise
        if self.outage.down:
            self.outage.succeeded()
        return found

    def forget(self, token_hash: str) -> None:
        """Drop a cached lookup (this process changed the token: see it at once)."""
        self._cache.pop(token_hash, None)
        self._fresh.pop(token_hash, None)

    # -- last used: in memory per request, written in batches --------------------------

    def note_use(self, token_id: str, when: float) -> None:
        """Remember that ``token_id`` was used at ``when`` (wall-clock seconds); written to
        the store by :meth:`flush`, which a background task runs every ``flush_interval``
        seconds once the first use is noted (started here, so it runs on the server's
        loop), and :meth:`close` runs once more."""
        if when > self._uses.get(token_id, 0.0):
            self._uses[token_id] = when
        if self._flusher is None:
            self.start()

    def start(self) -> None:
        """Start the periodic flush on the running loop (idempotent)."""
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self._flush_interval)
            try:
                self.health()  # the SQLite file deleted or replaced: noticed and logged
                await self.flush()
            except Exception:  # a bug here must not end last-used tracking for good
                log.exception("flushing last-used times failed")

    def health(self) -> str | None:
        """Why the store cannot be trusted right now (its own check, e.g. the SQLite
        file's inode), or ``None``; stores without such a check are judged by their
        answers."""
        check = getattr(self.store, "health", None)
        return None if check is None else check()

    async def flush(self) -> None:
        """Write the pending last-used times; on a store error keep them for next time."""
        if not self._uses:
            return
        uses, self._uses = self._uses, {}
        try:
            await self.store.record_use(uses)
        except KeyStoreUnavailable as exc:
            log.warning("last-used times not written (%d tokens): %s", len(uses), exc)
            for token_id, when in uses.items():
                if when > self._uses.get(token_id, 0.0):
                    self._uses[token_id] = when

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self.flush()
        await self.store.close()


def _remember(
    table: dict[str, tuple[float, _T]], key: str, value: _T, expires: float, maxsize: int
) -> None:
    """``table[key] = (expires, value)`` as its newest entry, the oldest dropped when full."""
    table.pop(key, None)
    if len(table) >= maxsize:
        del table[next(iter(table))]
    table[key] = (expires, value)
