"""The key store's contract: the token and account records, and two Protocols, one per
side that uses a store.

:class:`KeyLookup` is what the request path needs (find a token by hash, its account, note
uses, revoke a leaked token), always behind :class:`~proxy.backends.keystore.cached.CachedKeyStore`
so it rarely touches the store at all. :class:`KeyStore` adds what administration needs
(the CLI's create, list, rotate, accounts). Every backend implements both: ``sqlite``
(:mod:`.sqlite`, embedded default) and ``redis`` (:mod:`.redis`, many replicas), or an
operator's own class. A key store holds hashes, never tokens.

JWT access tokens are not stored (their issuer signs them); the store keeps only the deny
list of revoked ``jti`` values, each until the token would have expired anyway, so it
reaches every replica within the same bound as a revoked personal token.

Tokens and accounts share one store (not an ``AccountStore`` beside it) on purpose: a
token names its account by id, both must be seen by every replica within the same bound,
and one backend setting must not be able to put them in different places.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from ...types import Access, TokenKind

__all__ = ["AccountRecord", "Grants", "KeyLookup", "KeyStore", "TokenRecord"]

# Per-store grants: store id → resource → access.
Grants = Mapping[str, Mapping[str, Access]]


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """Everything known about one token except the token itself."""

    id: str
    name: str
    kind: TokenKind
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


class KeyLookup(Protocol):
    """What the request path asks of a key store. ``token_hash`` is the SHA-256 hex of the
    whole token. Backend failures raise :class:`~proxy.errors.KeyStoreUnavailable`.
    Methods returning ``bool`` answer whether the token was found."""

    async def lookup(self, token_hash: str) -> TokenRecord | None: ...

    async def get_account(self, account_id: str) -> AccountRecord | None: ...

    async def record_use(self, uses: Mapping[str, float]) -> None:
        """Token id → last-used time; a time older than the stored one is ignored."""
        ...

    async def revoke(self, token_id: str, reason: str | None = None) -> bool:
        """Revoke for good (a leak report does this on the request path); a second revoke
        keeps the first reason."""
        ...

    async def jti_revoked(self, jti: str) -> bool:
        """Whether a JWT access token's ``jti`` is on the deny list now (SPEC §4.2)."""
        ...

    async def close(self) -> None: ...


class KeyStore(KeyLookup, Protocol):
    """A whole key store: the lookup side and what administration adds. Creating an id or
    hash that exists raises :class:`~proxy.errors.DuplicateError`."""

    async def create(self, record: TokenRecord, token_hash: str) -> None: ...

    async def get(self, token_id: str) -> TokenRecord | None: ...

    async def list(self) -> list[TokenRecord]: ...

    async def retire(self, token_id: str, *, expires_at: float, replaced_by: str) -> bool:
        """After rotation: expire at ``expires_at`` (or earlier, if it already would)."""
        ...

    async def create_account(self, account: AccountRecord) -> None: ...

    async def list_accounts(self) -> builtins.list[AccountRecord]: ...

    async def set_account_grants(self, account_id: str, grants: Grants) -> bool: ...

    async def revoke_jti(self, jti: str, until: float) -> None:
        """Deny ``jti`` until ``until`` (epoch seconds), when the token would have expired
        anyway; the entry then goes away. A later ``until`` already stored is kept."""
        ...
