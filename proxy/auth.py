"""Step 3 of the request path: who is calling. A bearer token in, a :class:`Principal` out.

Failures are 401 with ``WWW-Authenticate: Bearer`` (RFC 6750 §3): no error attribute when
no credential was sent, ``error="invalid_token"`` when one was. The detail never echoes the
token; a malformed token is refused by its checksum before any key-store lookup.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .errors import Unauthorized
from .keystore import CachedKeyStore, TokenRecord
from .policy import Access
from .tokens import parse_token

__all__ = ["Principal", "authenticate", "bearer_token"]

_REALM = 'Bearer realm="magento-edge"'


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: its token's public id and what it may do."""

    token_id: str
    kind: str
    stores: frozenset[str]
    permissions: Mapping[str, Access]
    tier: str | None
    record: TokenRecord


def _challenge(detail: str, *, sent: bool) -> Unauthorized:
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
        raise _challenge(
            "This API needs a bearer token: Authorization: Bearer soc_pat_...", sent=False
        )
    parsed = parse_token(token)
    if parsed is None:
        raise _challenge(
            "The bearer token is malformed (wrong prefix, length or checksum).", sent=True
        )
    record = await keystore.lookup(parsed.hash)
    if record is None:
        raise _challenge("The bearer token is not known.", sent=True)
    if record.revoked:
        raise _challenge("The bearer token has been revoked.", sent=True)
    if record.expires_at is not None and record.expires_at <= clock():
        raise _challenge("The bearer token has expired.", sent=True)
    return Principal(
        token_id=record.id,
        kind=record.kind,
        stores=frozenset(record.stores),
        permissions=record.permissions,
        tier=record.tier,
        record=record,
    )
