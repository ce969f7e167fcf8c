"""Step 3b of the request path: where tokens and accounts live, behind one small Protocol.

Implementations: :class:`proxy.keystore_sqlite.SQLiteKeyStore` (embedded default, no
server) and :class:`proxy.keystore_redis.RedisKeyStore` (many replicas). The request path
only ever calls :meth:`KeyStore.lookup` and :meth:`KeyStore.get_account`, through
:class:`CachedKeyStore`, so it rarely touches the store at all; the CLI uses the rest.
A key store holds hashes, never tokens.

Tokens and accounts share one Protocol (not an ``AccountStore`` beside it) on purpose:
a token names its account by id, both must be seen by every replica within the same
bound, and one backend setting must not be able to put them in different places.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from cachetools import TTLCache

from .errors import KeyStoreUnavailable
from .policy import Access

__all__ = [
    "AccountRecord",
    "CachedKeyStore",
    "DuplicateError",
    "Grants",
    "KeyStore",
    "TokenRecord",
    "effective_grants",
    "grants_allow",
    "intersect",
    "parse_permission",
]

log = logging.getLogger("magento_edge.keystore")

# How long a lookup (hit or miss) is trusted before asking the store again: the bound on how
# long a revoked token (or a shrunk account) keeps working on a replica that has it cached.
CACHE_TTL_SECONDS = 1.0
# Last-used times are kept in memory and written at most this often (never per request).
LAST_USED_FLUSH_SECONDS = 60.0

# Per-store grants: store id → resource → access.
Grants = Mapping[str, Mapping[str, Access]]


class DuplicateError(ValueError):
    """A token (by id or hash) or an account (by id) that already exists."""


def parse_permission(text: str) -> tuple[str, Access]:
    """``"orders:write"`` → ``("orders", "write")``; raises ValueError otherwise."""
    resource, sep, access = text.partition(":")
    if not sep or not resource or access not in ("read", "write"):
        raise ValueError(f'permission "{text}" must be RESOURCE:read or RESOURCE:write')
    return resource, access  # type: ignore[return-value]


def grants_allow(permissions: Mapping[str, Access], resource: str, access: Access) -> bool:
    """``write`` implies ``read``; a ``*`` grant (JWT ``admin``) covers every resource."""
    held = permissions.get(resource) or permissions.get("*")
    return held == "write" or (held == "read" and access == "read")


def intersect(
    permissions: Mapping[str, Access], ceiling: Mapping[str, Access]
) -> dict[str, Access]:
    """What ``permissions`` keep under ``ceiling``: ``write ∩ read = read``, absent = none."""
    out: dict[str, Access] = {}
    for resource, access in permissions.items():
        cap = ceiling.get(resource)
        if cap is not None:
            out[resource] = "write" if access == cap == "write" else "read"
    return out


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """Everything known about one token except the token itself."""

    id: str
    name: str
    kind: Literal["live", "test"]
    stores: tuple[str, ...]
    permissions: Mapping[str, Access]
    account_id: str | None = None
    tier: str | None = None
    expires_at: float | None = None
    allow_ips: tuple[str, ...] = ()
    created_at: float = field(default_factory=time.time)
    last_used_at: float | None = None
    revoked: bool = False
    revoked_reason: str | None = None  # e.g. "leaked: reported by GitHub secret scanning"
    replaced_by: str | None = None  # set by rotation: the id of the new token

    def public(self) -> dict[str, object]:
        """The JSON-safe view the CLI prints (never a secret: there is none here)."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "stores": list(self.stores),
            "permissions": [f"{r}:{a}" for r, a in sorted(self.permissions.items())],
            "account": self.account_id,
            "tier": self.tier,
            "expires_at": self.expires_at,
            "allow_ips": list(self.allow_ips),
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "revoked": self.revoked,
            "revoked_reason": self.revoked_reason,
            "replaced_by": self.replaced_by,
        }

    def revoked_copy(self, reason: str | None = None) -> TokenRecord:
        return replace(self, revoked=True, revoked_reason=self.revoked_reason or reason)


@dataclass(frozen=True, slots=True)
class AccountRecord:
    """An owner of tokens and the ceiling on them: per store, the most any of its tokens
    may do. Shrinking it shrinks every token of the account on the next request (≤ 1 s)."""

    id: str
    name: str
    grants: Grants
    created_at: float = field(default_factory=time.time)

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "grants": {
                store: [f"{r}:{a}" for r, a in sorted(perms.items())]
                for store, perms in sorted(self.grants.items())
            },
            "created_at": self.created_at,
        }


def effective_grants(
    record: TokenRecord, account: AccountRecord | None
) -> dict[str, dict[str, Access]]:
    """Per store, what the token may do now: its own grants ∩ its account's current grants
    on that store. A store the account no longer has is not reachable at all. A token
    without an account (an operator's own) has only its own grants."""
    if record.account_id is None:
        own = dict(record.permissions)
        return {store: own for store in record.stores}
    if account is None:
        return {}
    return {
        store: intersect(record.permissions, account.grants[store])
        for store in record.stores
        if store in account.grants
    }


class KeyStore(Protocol):
    """Token and account storage. ``token_hash`` is the SHA-256 hex of the whole token.
    Backend failures raise :class:`~proxy.errors.KeyStoreUnavailable`; creating an id or
    hash that exists raises :class:`DuplicateError`. Methods returning ``bool`` answer
    whether the token or account was found."""

    async def lookup(self, token_hash: str) -> TokenRecord | None: ...

    async def create(self, record: TokenRecord, token_hash: str) -> None: ...

    async def get(self, token_id: str) -> TokenRecord | None: ...

    async def list(self) -> list[TokenRecord]: ...

    async def revoke(self, token_id: str, reason: str | None = None) -> bool:
        """Revoke for good; a second revoke keeps the first reason."""
        ...

    async def retire(self, token_id: str, *, expires_at: float, replaced_by: str) -> bool:
        """After rotation: expire at ``expires_at`` (or earlier, if it already would)."""
        ...

    async def record_use(self, uses: Mapping[str, float]) -> None:
        """Token id → last-used time; a time older than the stored one is ignored."""
        ...

    async def create_account(self, account: AccountRecord) -> None: ...

    async def get_account(self, account_id: str) -> AccountRecord | None: ...

    async def list_accounts(self) -> builtins.list[AccountRecord]: ...

    async def set_account_grants(self, account_id: str, grants: Grants) -> bool: ...

    async def close(self) -> None: ...


class CachedKeyStore:
    """Wraps a key store's :meth:`lookup` and :meth:`get_account` in TTL caches (hits and
    misses alike), and batches last-used times. Trust model: the wrapped store is the
    operator's; a cached answer is at most ``ttl`` seconds stale."""

    def __init__(
        self,
        store: KeyStore,
        *,
        ttl: float = CACHE_TTL_SECONDS,
        maxsize: int = 65536,
        clock: Callable[[], float] = time.monotonic,
        flush_interval: float = LAST_USED_FLUSH_SECONDS,
    ) -> None:
        self.store = store
        self._cache: TTLCache[str, TokenRecord | None] = TTLCache(maxsize, ttl, timer=clock)
        self._accounts: TTLCache[str, AccountRecord | None] = TTLCache(maxsize, ttl, timer=clock)
        self._uses: dict[str, float] = {}
        self._flush_interval = flush_interval
        self._flusher: asyncio.Task[None] | None = None

    async def lookup(self, token_hash: str) -> TokenRecord | None:
        try:
            return self._cache[token_hash]
        except KeyError:
            pass
        record = await self.store.lookup(token_hash)
        self._cache[token_hash] = record
        return record

    async def get_account(self, account_id: str) -> AccountRecord | None:
        try:
            return self._accounts[account_id]
        except KeyError:
            pass
        account = await self.store.get_account(account_id)
        self._accounts[account_id] = account
        return account

    def forget(self, token_hash: str) -> None:
        """Drop a cached lookup (this process changed the token: see it at once)."""
        self._cache.pop(token_hash, None)

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
                await self.flush()
            except Exception:  # a bug here must not end last-used tracking for good
                log.exception("flushing last-used times failed")

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
