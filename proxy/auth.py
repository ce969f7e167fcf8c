"""Step 3 of the request path: who is calling. A bearer token in, a :class:`Principal` out.

Failures are 401 with ``WWW-Authenticate: Bearer`` (RFC 6750 §3): no error attribute when
no credential was sent, ``error="invalid_token"`` when one was (malformed, unknown, revoked,
expired, rotated out). A valid token used from outside its IP allowlist is 403: the
credential is fine, the place is not (RFC 6750 §3.1: do not refresh). Each case has its own
detail, which never echoes the token nor reveals the allowlist; a malformed token is refused
by its checksum before any key-store lookup.

What the caller may do is computed here once: per store, the token's grants ∩ its
account's current grants (:func:`proxy.grants.effective_grants`).
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from hashlib import sha256

from .backends.keystore.base import AccountRecord, TokenRecord
from .backends.keystore.cached import CachedKeyStore
from .errors import Forbidden, Unauthorized
from .grants import effective_grants
from .tokens import token_kind
from .types import Access

__all__ = ["Principal", "authenticate", "bearer_token", "challenge"]

_REALM = 'Bearer realm="magento-edge"'


@dataclass(slots=True)  # not frozen (frozen init is slow), but never changed once built
class Principal:
    """An authenticated caller: its token's public id and what it may do now. A personal
    access token has its key-store ``record``; a JWT access token (``kind == "jwt"``,
    :mod:`proxy.auth_jwt`) has none, and acts on one store for one ``client_id``."""

    token_id: str
    kind: str  # "live" | "test" (personal access tokens) | "jwt"
    stores: frozenset[str]  # the stores it can reach now
    permissions: Mapping[str, Access]  # the most it may do on any one store
    tier: str | None
    record: TokenRecord | None  # None: a JWT (nothing of it is stored)
    # Per store, what it may do there; None: ``permissions`` on every store in ``stores``.
    store_grants: Mapping[str, Mapping[str, Access]] | None = None
    account: AccountRecord | None = None
    client_id: str | None = None  # a JWT's partner application ("client_id" claim)
    store_id: str | None = None  # the one store a JWT acts on ("store_id" claim)

    def reaches(self, environment: str) -> bool:
        """Live tokens reach live stores, test tokens sandbox ones; a JWT's issuer chose
        its store, whatever the environment."""
        if self.kind == "jwt":
            return True
        return self.kind == ("test" if environment == "sandbox" else "live")

    def permissions_for(self, store_id: str | None) -> Mapping[str, Access]:
        """The effective grants on ``store_id`` (``None``: a route without a store)."""
        if store_id is None or self.store_grants is None:
            return self.permissions
        return self.store_grants.get(store_id, {})


def challenge(detail: str, *, sent: bool) -> Unauthorized:
    """401 with the RFC 6750 challenge: ``error="invalid_token"`` when a token was sent."""
    value = f'{_REALM}, error="invalid_token"' if sent else _REALM
    return Unauthorized(detail, headers={"WWW-Authenticate": value})


def bearer_token(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The credential of the single ``Authorization: Bearer`` header, ``""`` when the
    header is there but not a bearer credential, ``None`` when absent."""
    found: bytes | None = None
    for name, value in headers:
        if name == b"authorization":
            if found is not None:
                return ""  # two Authorization headers: ambiguous, refuse
            found = value
    if found is None:
        return None
    scheme, _, credential = found.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return ""
    try:
        return credential.strip().decode("ascii")
    except UnicodeDecodeError:
        return ""


async def authenticate(
    headers: Sequence[tuple[bytes, bytes]],
    keystore: CachedKeyStore,
    *,
    client: str = "",
    clock: Callable[[], float] = time.time,
) -> Principal:
    """The caller behind ``headers``; ``client`` is its address (for IP allowlists)."""
    token = bearer_token(headers)
    if token is None:
        raise challenge(
            "This API needs a bearer token: Authorization: Bearer soc_pat_...", sent=False
        )
    # A token the key store answered for within its TTL: its hash names a stored record,
    # fetched for a token that passed the format and checksum checks, so it is that token
    # (a SHA-256 preimage) and the checks (half the cost of a request's authentication)
    # have nothing left to refuse. Any other token takes the full way.
    token_hash = sha256(token.encode()).hexdigest()  # hash_token(token): ``token`` is ASCII
    record = keystore.fresh(token_hash)
    if record is None:
        if token_kind(token) is None:
            raise challenge(
                "The bearer token is malformed (wrong prefix, length or checksum).", sent=True
            )
        record = await keystore.lookup(token_hash)
        if record is None:
            raise challenge("The bearer token is not known.", sent=True)
    if record.revoked:
        if (record.revoked_reason or "").startswith("leaked"):
            raise challenge(
                "The bearer token has been revoked because it was reported as leaked; "
                "create a new one and keep it out of public places.",
                sent=True,
            )
        raise challenge("The bearer token has been revoked.", sent=True)
    now = clock()
    if record.expires_at is not None and record.expires_at <= now:
        if record.replaced_by is not None:
            raise challenge(
                "The bearer token was rotated and its grace period has ended; "
                "use the token that replaced it.",
                sent=True,
            )
        raise challenge("The bearer token has expired.", sent=True)
    if record.allow_ips and not _address_allowed(client, record.allow_ips):
        raise Forbidden("This token may not be used from this network address.")
    account: AccountRecord | None = None
    if record.account_id is not None:
        account = keystore.fresh_account(record.account_id)
        if account is None:
            account = await keystore.get_account(record.account_id)
            if account is None:
                raise challenge("The bearer token's account no longer exists.", sent=True)
    # The Principal is a function of the record and account objects alone, and the key
    # store hands out the same objects until it fetches them again: reused while both are
    # the very objects it was built from (nothing changes a Principal once built).
    built = _principals.get(record.id)
    if built is not None and built[0] is record and built[1] is account:
        principal = built[2]
    else:
        principal = _principal(record, account)
    keystore.note_use(record.id, now)
    return principal


# Token id -> (record, account, the Principal built from them): a few thousand tokens in use
# at once; beyond that the oldest entry goes (and is built again when next used).
_principals: dict[str, tuple[TokenRecord, AccountRecord | None, Principal]] = {}
_PRINCIPALS_MAX = 4096


def _principal(record: TokenRecord, account: AccountRecord | None) -> Principal:
    """The Principal for ``record`` (of ``account``, when it has one), remembered."""
    if account is None:
        principal = Principal(
            token_id=record.id,
            kind=record.kind,
            stores=frozenset(record.stores),
            permissions=record.permissions,
            tier=record.tier,
            record=record,
        )
    else:
        grants = effective_grants(record, account)
        widest: dict[str, Access] = {}
        for perms in grants.values():
            for resource, access in perms.items():
                if widest.get(resource) != "write":
                    widest[resource] = access
        principal = Principal(
            token_id=record.id,
            kind=record.kind,
            stores=frozenset(grants),
            permissions=widest,
            tier=record.tier,
            record=record,
            store_grants=grants,
            account=account,
        )
    _principals.pop(record.id, None)
    if len(_principals) >= _PRINCIPALS_MAX:
        del _principals[next(iter(_principals))]
    _principals[record.id] = (record, account, principal)
    return principal


@functools.lru_cache(maxsize=4096)
def _networks(
    cidrs: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    out = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue  # the CLI never stores one; a hand-edited store must not widen access
    return tuple(out)


def _address_allowed(client: str, cidrs: tuple[str, ...]) -> bool:
    """Whether ``client`` (from the socket or trusted proxies only) is in ``cidrs``; an
    address that is not an IP (a Unix socket, "unknown") never is."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:192.0.2.1 is 192.0.2.1
    return any(address in network for network in _networks(cidrs))
