"""Step 2b/4 of the request path: which surface, mount and route a path is, and whether
the caller's grants cover what that route needs.

:func:`resolve` needs no credential (like Magento, an unknown route is 404 before auth);
:func:`authorize` runs after :mod:`proxy.auth`. A store the token cannot reach answers
exactly like a store that does not exist: 404 with the same detail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from . import versions
from .auth import Principal
from .auth_jwt import insufficient_scope
from .config import Store
from .errors import BadRequest, Forbidden, MethodNotAllowed, NotFound, RouteNotImplemented
from .grants import grants_allow
from .policy import _READ_METHODS, Endpoint, Mount, Route, Surface
from .routing import RouteTable, search
from .types import Access

__all__ = ["Decision", "authorize", "required_access", "resolve"]


class Decision(NamedTuple):
    """The outcome of routing one request (before credentials are looked at). A
    NamedTuple: built on every request, and a frozen dataclass costs several times more."""

    surface: Surface
    endpoint: Endpoint | None
    mount: Mount | None
    route: Route | None
    mount_vars: Mapping[str, str]
    route_vars: Mapping[str, str]
    rest: tuple[str, ...]  # raw segments after the mount prefix, trailing "" kept
    store_id: str | None


_tuple_new = tuple.__new__  # (see resolve)


def surface_for(
    surfaces: Sequence[Surface], segments: Sequence[str], host: str = ""
) -> Surface | None:
    """The surface serving the path on ``host`` (its own base path or a version's), as
    :func:`proxy.versions.match` picks it; the edge keeps the index built once."""
    base = versions.match(versions.index(surfaces), segments, host)
    return base.surface if base is not None else None


def auth_needed(decision: Decision) -> str | None:
    """The kind of credential the decided route takes (``"pat"``, ``"jwt"``), or ``None``
    when it takes none (an endpoint without auth, a mount or surface with kind ``none``)."""
    if decision.endpoint is not None:
        return decision.surface.auth if decision.endpoint.auth else None
    assert decision.mount is not None  # resolve() returned an endpoint or a mount route
    kind = decision.mount.auth or decision.surface.auth
    return None if kind == "none" else kind


def required_access(mount: Mount | None, route: Route, method: str) -> Access:
    """The access ``route`` needs for ``method`` under ``mount``: the route's own, except
    that under Magento's asynchronous mounts (``/async/V1``, ``/async/bulk/V1``) every
    request queues an operation, so a route marked ``access = "read"`` (a read-only POST
    such as a search) still needs ``write`` there (issue #14, SPEC §8)."""
    access = route.required_access(method)
    if access == "read" and mount is not None and _queues(mount):
        return "write"
    return access


def _queues(mount: Mount) -> bool:
    # Magento's asynchronous REST: /rest/<store>/async/V1/... and /rest/<store>/async/bulk/V1
    # (decided once per mount: Mount.queues)
    return mount.queues


def resolve(surface: Surface, method: str, segments: Sequence[str]) -> Decision:
    """Route ``segments`` (the whole raw path) within ``surface``; 404/405/403 otherwise."""
    inner = tuple(segments[len(surface.base_parts) :])
    trimmed = inner[:-1] if inner and inner[-1] == "" else inner
    n = len(trimmed)
    # those of this path's length, with their tables (Surface.plan: built once per length)
    endpoints, steps = surface._plans.get(n) or surface.plan(n)
    if endpoints:  # (most lengths have none: no iterator for nothing)
        for endpoint in endpoints:
            if endpoint.pattern.match(trimmed) is not None:
                if method not in (endpoint.method, "HEAD" if endpoint.method == "GET" else ""):
                    raise MethodNotAllowed(
                        f"{method} is not allowed here; use {endpoint.method}.",
                        headers={"Allow": endpoint.method},
                    )
                return _tuple_new(Decision, (surface, endpoint, None, None, {}, {}, (), None))
    mount_vars: dict[str, str]
    for mount, prefix, table, literals in steps:  # noqa: B007 (the one that breaks is used)
        # Pattern.match_prefix inlined (every request tries mounts until one matches); the
        # literals deepest first, where mounts sharing a prefix differ
        pattern = mount.pattern
        for i, literal in literals:
            if trimmed[i] != literal:
                break
        else:
            if pattern.tail:  # never from a policy file (a mount path cannot end in a tail)
                found = pattern.match_prefix(trimmed)
                if found is not None:
                    mount_vars = found
                    break
                continue
            mount_vars = {}
            for i, name in pattern.variables:
                seg = trimmed[i]
                if not seg:  # a variable never matches an empty segment
                    break
                mount_vars[name] = seg
            else:
                break  # the first mount that matches decides
    else:
        raise NotFound(f"No route matches {method} {'/' + '/'.join(inner)} on this API.")
    # inner minus a trailing "" is trimmed: one slice, or two when it had one
    route_segments = trimmed[prefix:]
    rest = route_segments if trimmed is inner else inner[prefix:]
    if table is None:
        table = surface.table_for(mount)  # raises: the mount names no table
    # A mount that takes only some methods (Magento's async paths refuse GET) answers the
    # others as if the route did not have them: Allow lists the route's own methods that
    # the mount takes (issue #17), never the mount's whole list.
    taken = mount.methods is None or method in mount.methods
    # RouteTable.lookup without its call (every request)
    hit = search(table.chains.get(method, table.star), route_segments) if taken else None
    if hit is None:
        raise _unmatched(table, mount, method, route_segments, inner)
    route, route_vars = hit
    if route.deny is not None:
        raise Forbidden(f"This route is not available through the edge: {route.deny}")
    if route.rewrite.not_implemented is not None:  # proxy.rewrite: documented, never sent
        raise RouteNotImplemented(route.rewrite.not_implemented)
    # tuple.__new__: the NamedTuple without its Python-level __new__ (every request)
    return _tuple_new(
        Decision,
        (surface, None, mount, route, mount_vars, route_vars, rest, mount_vars.get("store")),
    )


def _unmatched(
    table: RouteTable[Route],
    mount: Mount,
    method: str,
    route_segments: tuple[str, ...],
    inner: tuple[str, ...],
) -> MethodNotAllowed | NotFound:
    """The answer when no route of ``table`` takes ``method`` on ``route_segments``: 405
    when other methods (that the mount takes and that are not denied) would, 404 else."""
    allowed_methods = [
        m
        for m in table.allowed_methods(route_segments)
        if (mount.methods is None or m in mount.methods)
        and (other := table.lookup(m, route_segments)) is not None
        and other[0].deny is None  # a denied route's method is a 403, not offered
    ]
    if allowed_methods:
        allowed = ", ".join(allowed_methods)
        return MethodNotAllowed(
            f"{method} is not supported on this route (allowed: {allowed}).",
            headers={"Allow": allowed},
        )
    return NotFound(f"No route matches {method} {'/' + '/'.join(inner)} on this API.")


def store_for(
    decision: Decision, principal: Principal | None, stores: Mapping[str, Store]
) -> Store | None:
    """The store named in the path, if this caller may see it; 404 otherwise. A path
    without a store (the v3 surface) is on the store a JWT names in its claims; a personal
    token reaching exactly one store stands for that store there."""
    store_id = decision.store_id
    if store_id is None and principal is not None:
        store_id = principal.store_id  # None for personal tokens: no store
    if store_id is None:
        mount = decision.mount
        if principal is None or mount is None or "store" in mount.pattern.names:
            return None
        # Minimal hook (#11): a v3 JWT names its store in a claim; a PAT reaching one store
        # stands for it. A token reaching several cannot say which one it means.
        if not principal.stores:
            raise NotFound("No store is available to this token.")
        if len(principal.stores) != 1:
            raise BadRequest(
                "This API acts on one store per token, and this token reaches "
                f"{len(principal.stores)}; use a token for exactly one store."
            )
        store_id = next(iter(principal.stores))
    store = stores.get(store_id)
    if store is None or (principal is not None and store_id not in principal.stores):
        raise NotFound(f'No store "{_printable(store_id)}" is available to this token.')
    return store


def authorize(decision: Decision, principal: Principal, method: str, store: Store | None) -> None:
    route = decision.route
    if route is None or route.resource is None:
        return
    if store is not None and not principal.reaches(store.environment):
        wanted = "test" if store.environment == "sandbox" else "live"
        raise Forbidden(
            f"A {principal.kind} token cannot reach a {store.environment} store; "
            f"use a soc_pat_{wanted}_ token."
        )
    # required_access(), inlined (every request): async mounts need write (issue #14)
    access = route.access or ("read" if method in _READ_METHODS else "write")
    if access == "read" and decision.mount is not None and decision.mount.queues:
        access = "write"
    # Effective grants: the token's ∩ its account's current grants on this store.
    permissions = principal.permissions_for(store.id if store is not None else None)
    if not grants_allow(permissions, route.resource, access):
        required = f"{route.resource}:{access}"
        if principal.kind == "jwt":  # RFC 6750 §3.1: name the scopes that would do
            raise insufficient_scope(decision.surface, route.resource, access)
        if (
            principal.record is not None
            and principal.account is not None
            and grants_allow(principal.record.permissions, route.resource, access)
        ):
            raise Forbidden(
                f"This token's account does not currently grant {required} on this store.",
                extra={"required": required},
            )
        raise Forbidden(
            f"This token lacks the permission {required}.", extra={"required": required}
        )


def _printable(value: str) -> str:
    return value if value.isascii() and value.isprintable() and len(value) <= 64 else "(invalid)"
