"""Step 4b of the request path: the store of a storefront request (a ``credential = "none"``
mount, SPEC §4.2 "Storefront").

No token names the store, so the request does: its ``Host`` (config
``[stores.ID] hosts = [...]``), or, when the host is no store's, an ``X-Store-Id`` header
naming a store id. A request whose host is one store's and whose ``X-Store-Id`` names
another is refused (400): which store it meant is ambiguous. Unknown stores are 404, in
the same words whatever the reason, as for tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .config import Store
from .errors import BadRequest, NotFound

__all__ = ["HostIndex", "host_index", "normalize_host", "store_from_request"]

HostIndex = Mapping[str, Store]


def host_index(stores: Mapping[str, Store]) -> dict[str, Store]:
    """Host name (lower case, no port) → store; config refuses a host claimed twice."""
    return {host: store for store in stores.values() for host in store.hosts}


def normalize_host(value: str) -> str:
    """``Shop.Example.com:443`` → ``shop.example.com``; IPv6 literals keep their brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[: end + 1] if end > 0 else value
    return value.partition(":")[0].rstrip(".")


def store_from_request(
    headers: Sequence[tuple[bytes, bytes]], hosts: HostIndex, stores: Mapping[str, Store]
) -> Store:
    host = named = None
    for name, value in headers:
        if name == b"host" and host is None:
            host = value.decode("latin-1")
        elif name == b"x-store-id":
            if named is not None:
                raise BadRequest("X-Store-Id is given twice.")
            named = value.decode("latin-1").strip()
    by_host = hosts.get(normalize_host(host)) if host else None
    if named is not None:
        store = stores.get(named)
        if store is None:
            raise NotFound(f'No store "{_printable(named)}" is served here.')
        if by_host is not None and by_host.id != store.id:
            raise BadRequest("X-Store-Id names another store than this host serves.")
        return store
    if by_host is None:
        raise NotFound("No store is served at this host; name one with the X-Store-Id header.")
    return by_host


def _printable(value: str) -> str:
    return value if value.isascii() and value.isprintable() and len(value) <= 64 else "(invalid)"
