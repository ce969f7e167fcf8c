"""What a token may do: permissions parsed from the CLI, the ``write``-implies-``read``
rule, and a token's grants narrowed by its account's current ceiling. Used by the request
path (:mod:`proxy.auth`, :mod:`proxy.decide`) and the CLI (:mod:`proxy.admin`).
"""

from __future__ import annotations

from collections.abc import Mapping

from .backends.keystore.base import AccountRecord, TokenRecord
from .types import Access

__all__ = ["effective_grants", "grants_allow", "intersect", "parse_permission"]


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
