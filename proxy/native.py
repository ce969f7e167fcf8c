"""Steps 2-4 of the request path on the Magento-native mount (sidecar mode, SPEC §4.3):
which store, which route and ACL class, who is calling, and what the forward carries.

    Host → store           [stores.ID] hosts of a native store (Host, or a trusted
                           X-Forwarded-Host), or the one native store; else 404
    /rest/... → shape      /rest/V1, /rest/{code}/V1, /rest/{code}/async/V1,
                           /rest/{code}/async/bulk/V1; {code} in the store's store_codes
    route → ACL class      proxy.native_policy's table, Magento's matching rule:
      deny                 403, nothing sent
      anonymous            no credential at all; limited per client address
      self                 the caller's own Authorization untouched; an edge token is
                           refused (it is no Magento customer)
      edge                 an edge token (PAT, or a JWT of the policy's issuer) granting the
                           route's resource (write on async mounts); the store's credential

Errors are Magento's body shape (``{"message", "parameters"}``, :func:`proxy.errors.render`
style ``magento``) with Magento's texts where Magento has one: 404 ``Request does not match
any route.``, 401 ``The consumer isn't authorized to access %resources.``, 405 ``The %1 HTTP
method is not supported.``, 400 ``Specified request cannot be processed.`` (GET on async).

Telling a customer token from an edge token: edge personal access tokens carry the fixed
``soc_pat_`` prefix, and edge JWTs name the configured issuer in ``iss``; anything else is
the caller's business with Magento, which judges it (an unknown token is a guest there).

``/graphql`` on a native host goes to :func:`native_graphql`: decided per top-level field by
the policy's ``[graphql]`` (``proxy.graphql``), 404 without one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal, NamedTuple

from .auth import Principal, authenticate, bearer_token
from .config import Config, Store
from .decide import Decision
from .errors import BadRequest, Forbidden, MethodNotAllowed, NotFound, Unauthorized
from .grants import grants_allow
from .graphql import Caller as GraphQLCaller
from .graphql_edge import check_request
from .idempotency import (
    KEYED_METHODS,
    caller_of,
    forward_idempotently,
    parse_idempotency_key,
    request_target,
)
from .native_policy import NativeRoute, native_mounts
from .policy import Mount, Surface
from .storefront import normalize_host
from .types import Access

if TYPE_CHECKING:
    from .context import RequestContext
    from .edge import Edge

__all__ = ["Caller", "NativeStores", "identify_caller", "native_graphql", "serve_native"]

PAT_PREFIX = "soc_pat_"
NO_ROUTE = "Request does not match any route."
NOT_AUTHORIZED = "The consumer isn't authorized to access %resources."
_METHODS = frozenset({"GET", "POST", "PUT", "DELETE"})
_REALM = {"WWW-Authenticate": 'Bearer realm="magento-edge"'}
_CREDENTIAL = {"anonymous": "none", "self": "caller", "edge": "store"}


class NativeStores:
    """The native stores of one config, by host; built once per edge."""

    __slots__ = ("by_host", "mounts", "single")

    def __init__(self, stores: Mapping[str, Store]) -> None:
        natives = [s for s in stores.values() if s.native]
        self.by_host = {host: s for s in natives for host in s.hosts}
        self.single = natives[0] if len(natives) == 1 else None
        self.mounts: dict[tuple[str, str], Mount] = native_mounts()

    def store_for(self, host: str) -> Store:
        store = self.by_host.get(normalize_host(host)) if host else None
        if store is None:
            store = self.single
        if store is None:
            raise NotFound("No Magento store is served at this host.")
        return store


class Caller(NamedTuple):
    """Who is calling, as the native mount tells (for the GraphQL check, issue #16 part 4):
    ``kind`` "none" (no Authorization), "customer" (a bearer token that is no edge token:
    Magento's to judge), or "edge" (``principal`` authenticated; its grants on the store
    are ``principal.permissions_for(store.id)``)."""

    kind: Literal["none", "customer", "edge"]
    principal: Principal | None
    store: Store


async def serve_native(edge: Edge, ctx: RequestContext, segments: Sequence[str]) -> int:
    """Decide and forward one request on the native surface; return the status sent."""
    surface = ctx.surface
    fwd = ctx.fwd
    assert surface is not None and surface.native is not None and fwd is not None
    natives = edge.native
    assert natives is not None  # the edge builds it when a native policy is loaded
    store = natives.store_for(fwd.host)
    ctx.store = store
    graphql = surface.graphql
    if graphql is not None and tuple(segments) in (graphql.parts, (*graphql.parts, "")):
        return await native_graphql(edge, ctx, store)
    method = ctx.method
    shape, code, rest = _shape(segments)
    if method not in _METHODS:
        raise MethodNotAllowed(f"The {method} HTTP method is not supported.")
    if code is not None and code not in store.store_codes:
        raise NotFound(NO_ROUTE)
    if shape in ("async", "bulk") and method == "GET":
        raise BadRequest("Specified request cannot be processed.")
    route_segments = rest[:-1] if rest and rest[-1] == "" else rest
    hit = surface.native.lookup("bulk" if shape == "bulk" else "plain", method, route_segments)
    if hit is None:
        raise NotFound(NO_ROUTE)
    entry, route_vars = hit
    if entry.acl == "deny":
        raise Forbidden(f"This route is not available through the edge: {entry.reason}")
    mount = natives.mounts[(shape, _CREDENTIAL[entry.acl])]
    ctx.decision = Decision(
        surface, None, mount, entry.route, {"code": code} if code else {}, route_vars, rest,
        store.id,
    )  # fmt: skip
    if entry.acl == "edge":
        access = _access(entry, shape, method)
        ctx.principal = await _edge_principal(edge, ctx, surface, entry, access)
        if edge.limiter is not None:
            await edge._limit(ctx)
        _authorize(ctx.principal, store, entry, access)
        return await _forward(edge, ctx, store)
    if entry.acl == "self" and _carries_edge_token(edge, surface, ctx.headers):
        # An edge token is no Magento customer: forwarding it would hand it to Magento.
        raise Unauthorized(NOT_AUTHORIZED, extra={"resources": "self"}, headers=_REALM)
    if edge.limiter is not None:
        tier = surface.tiers[entry.tier or surface.default_tier]
        await edge._limit(ctx, by=(f"{surface.name}:{tier.name}:ip:{fwd.client}", tier))
    return await _forward(edge, ctx, store)


async def native_graphql(edge: Edge, ctx: RequestContext, store: Store) -> int:
    """``/graphql`` (GET and POST) on a native host, decided per top-level field by the
    policy's ``[graphql]`` (:mod:`proxy.graphql`, SPEC §4.4): a guest's anonymous fields go
    out with no credential, a customer's ``self`` fields with the customer's own token
    untouched, fields an edge token's grants cover with the store's credential. Guests
    and customers are limited per client address (a field's ``[graphql.tiers]`` tier where
    it names one, e.g. logins), edge tokens per token. (Without ``[graphql]``, /graphql is no
    route: Magento's 404.)"""
    surface = ctx.surface
    fwd = ctx.fwd
    assert surface is not None and fwd is not None
    settings = surface.graphql
    assert settings is not None  # serve_native sends /graphql here only with [graphql]
    assert settings.mount is not None and settings.route is not None  # built by the policy
    if ctx.method not in ("GET", "HEAD", "POST"):
        raise MethodNotAllowed(f"The {ctx.method} HTTP method is not supported.")
    ctx.decision = Decision(surface, None, settings.mount, settings.route, {}, {}, (), store.id)
    who = await identify_caller(edge, ctx, store)
    ctx.principal = who.principal
    by_address = None
    before = after = len(ctx.answer_headers)
    if edge.limiter is not None:
        # Before the document is parsed: a flood of documents costs a bucket, not a parse.
        if who.kind != "edge":
            tier = surface.tiers[surface.default_tier]
            by_address = (f"{surface.name}:{tier.name}:ip:{fwd.client}", tier)
        await edge._limit(ctx, by=by_address)
        after = len(ctx.answer_headers)
    caller = (
        GraphQLCaller("customer")
        if who.kind == "customer"
        else GraphQLCaller("none")
        if who.principal is None
        else GraphQLCaller(
            "edge", who.principal.permissions_for(store.id), partner=who.principal.kind == "jwt"
        )
    )
    verdict = await check_request(
        ctx, settings, guests=True, caller=caller, views=store.store_codes
    )
    if by_address is not None and edge.limiter is not None:
        named = next((settings.tiers[f] for f in verdict.fields if f in settings.tiers), None)
        if named is not None and named != surface.default_tier:
            tier = surface.tiers[named]
            del ctx.answer_headers[before:after]  # the field's own tier's headers instead
            await edge._limit(ctx, by=(f"{surface.name}:{tier.name}:ip:{fwd.client}", tier))
    return await _forward(edge, ctx, store)


async def identify_caller(edge: Edge, ctx: RequestContext, store: Store) -> Caller:
    """Who is calling (see :class:`Caller`); 401 for an edge token that does not
    authenticate, or one that cannot reach ``store``."""
    surface = ctx.surface
    assert surface is not None
    token = bearer_token(ctx.headers)
    if token is None:
        return Caller("none", None, store)
    if not _is_edge_token(edge, surface, token):
        return Caller("customer", None, store)
    principal = await _authenticate(edge, ctx, surface, "graphql")
    if store.id not in principal.stores or not principal.reaches(store.environment):
        raise Unauthorized(NOT_AUTHORIZED, extra={"resources": "graphql"}, headers=_REALM)
    return Caller("edge", principal, store)


def _shape(segments: Sequence[str]) -> tuple[str, str | None, tuple[str, ...]]:
    """(shape, store code or None, raw segments after ``.../V1``)."""
    s = tuple(segments)
    if len(s) >= 2 and s[0] == "rest":
        if s[1] == "V1":
            return "v1", None, s[2:]
        if len(s) >= 3 and s[2] == "V1":
            return "code", s[1], s[3:]
        if len(s) >= 4 and s[2:4] == ("async", "V1"):
            return "async", s[1], s[4:]
        if len(s) >= 5 and s[2:5] == ("async", "bulk", "V1"):
            return "bulk", s[1], s[5:]
    raise NotFound(NO_ROUTE)


def _access(entry: NativeRoute, shape: str, method: str) -> Access:
    # Async requests create queued operations: a read-only POST still needs write there.
    return "write" if shape in ("async", "bulk") else entry.route.required_access(method)


def _denied(required: str) -> Unauthorized:
    return Unauthorized(NOT_AUTHORIZED, extra={"resources": required}, headers=_REALM)


def _carries_edge_token(
    edge: Edge, surface: Surface, headers: Sequence[tuple[bytes, bytes]]
) -> bool:
    """Whether what would be forwarded untouched holds an edge token, in any scheme
    (``Basic soc_pat_...`` too: it must not reach Magento's logs either)."""
    prefix = PAT_PREFIX.encode()
    if any(name == b"authorization" and prefix in value for name, value in headers):
        return True
    return _is_edge_token(edge, surface, bearer_token(headers))


def _is_edge_token(edge: Edge, surface: Surface, token: str | None) -> bool:
    if not token:
        return False
    if token.startswith(PAT_PREFIX):
        return True
    if surface.jwt is None or token.count(".") != 2:
        return False
    import jwt  # pyjwt; only on a native policy that accepts JWTs

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False  # not a JWT at all: Magento's to judge
    issuer = edge.config.issuers.get(surface.jwt.issuer)
    return issuer is not None and isinstance(claims, dict) and claims.get("iss") == issuer.issuer


async def _authenticate(
    edge: Edge, ctx: RequestContext, surface: Surface, required: str
) -> Principal:
    token = bearer_token(ctx.headers)
    if token and token.startswith(PAT_PREFIX):
        fwd = ctx.fwd
        return await authenticate(
            ctx.headers, edge.keystore, client=fwd.client if fwd else "", clock=edge.clock
        )
    if token and _is_edge_token(edge, surface, token):
        return await edge.jwt.authenticate(ctx.headers, surface, edge.keystore)
    raise _denied(required)  # none, or a customer's: Magento gives these routes no customer


async def _edge_principal(
    edge: Edge, ctx: RequestContext, surface: Surface, entry: NativeRoute, access: Access
) -> Principal:
    return await _authenticate(edge, ctx, surface, f"{entry.route.resource}:{access}")


def _authorize(principal: Principal, store: Store, entry: NativeRoute, access: Access) -> None:
    """The token's effective grants on this store cover the route (Magento has no 403:
    a consumer without the resource is 401 there, so it is here)."""
    resource = entry.route.resource
    assert resource is not None  # an "edge" entry comes from a mapped (not denied) route
    required = f"{resource}:{access}"
    if store.id not in principal.stores or not principal.reaches(store.environment):
        raise _denied(required)  # a store this token cannot reach looks like no grant
    if not grants_allow(principal.permissions_for(store.id), resource, access):
        raise _denied(required)


async def _forward(edge: Edge, ctx: RequestContext, store: Store) -> int:
    """The forward, inside the idempotency step when an edge token sent a key (guest and
    customer traffic is Magento's own, as without the edge)."""
    principal = ctx.principal
    if (
        principal is not None
        and ctx.method in KEYED_METHODS
        and (key := parse_idempotency_key(ctx.headers)) is not None
    ):
        return await forward_idempotently(
            edge.idempotency,
            ctx,
            caller=caller_of(principal),
            key=key,
            target=request_target(ctx.scope, store),
            forward=lambda rcv, snd: edge._forward_keyed(ctx, rcv, snd),
        )
    return await edge._forward(ctx)


def native_stores(config: Config) -> NativeStores | None:
    """The edge's view of its native stores, or None without a native policy."""
    if not any(s.native is not None for s in config.surfaces):
        return None
    return NativeStores(config.stores)
