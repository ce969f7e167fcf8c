"""Step 3b of the request path: where tokens live, behind one small Protocol.

Implementations: :class:`proxy.keystore_sqlite.SQLiteKeyStore` (embedded default, no
server). The request path only ever calls :meth:`KeyStore.lookup`, through
:class:`CachedKeyStore`, so it rarely touches the store at all; the CLI uses the rest.
A key store holds hashes, never tokens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from cachetools import TTLCache

from .policy import Access

__all__ = ["CachedKeyStore", "KeyStore", "TokenRecord", "grants_allow", "parse_permission"]

# How long a lookup (hit or miss) is trusted before asking the store again: the bound on how
# long a revoked token keeps working on a replica that has it cached.
CACHE_TTL_SECONDS = 1.0


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
        }

    def revoked_copy(self) -> TokenRecord:
        return replace(self, revoked=True)


class KeyStore(Protocol):
    """Token storage. ``token_hash`` is the SHA-256 hex of the whole token."""

    async def lookup(self, token_hash: str) -> TokenRecord | None: ...

    async def create(self, record: TokenRecord, token_hash: str) -> None: ...

    async def get(self, token_id: str) -> TokenRecord | None: ...

    async def list(self) -> list[TokenRecord]: ...

    async def revoke(self, token_id: str) -> bool: ...

    async def close(self) -> None: ...


class CachedKeyStore:
    """Wraps a key store's :meth:`lookup` in a TTL cache (hits and misses alike)."""

    def __init__(
        self,
        store: KeyStore,
        *,
        ttl: float = CACHE_TTL_SECONDS,
        maxsize: int = 65536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._cache: TTLCache[str, TokenRecord | None] = TTLCache(maxsize, ttl, timer=clock)

    async def lookup(self, token_hash: str) -> TokenRecord | None:
        try:
            return self._cache[token_hash]
        except KeyError:
            pass
        record = await self.store.lookup(token_hash)
        self._cache[token_hash] = record
        return record

    async def close(self) -> None:
        await self.store.close()
