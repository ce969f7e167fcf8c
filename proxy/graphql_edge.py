"""Step 2c of the request path on a policy surface's ``[graphql]`` path (the v3 surface's
``/api/v3/graphql``): the HTTP side of :mod:`proxy.graphql`.

    resolve_graphql()   the path → a decision on the surface's GraphQL mount (before the
                        mounts, which would 404 it), 405 for other methods
    (auth, rate limit, store: as every route of the surface)
    check_request()     the body read (at most [graphql] max_bytes), the caller's grants on
                        the store, proxy.graphql.check(); a refusal is the surface's error,
                        an allowed request is replayed to the forward unchanged

The store is the one the caller's token acts on (a JWT's ``store_id`` claim), as on every
v3 route; the forward goes to that store's Magento ``/graphql`` with the credential the
verdict names and ``Store: <store_code>`` (Magento's store-view header; the client's own is
dropped, as the path's ``{store_code}`` pins the view on REST).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace

from .auth import Principal
from .auth_jwt import insufficient_scope
from .body import read_body
from .config import Store
from .context import Message, RequestContext
from .decide import Decision
from .errors import (
    BadRequest,
    EdgeError,
    Forbidden,
    MethodNotAllowed,
    PayloadTooLarge,
    Unauthorized,
)
from .graphql import Allowed, Caller, GraphQLSettings, Refusal, check
from .policy import Surface

__all__ = ["UnsupportedMediaType", "check_request", "resolve_graphql"]

_ALLOW = "GET, POST"


class UnsupportedMediaType(EdgeError):
    """A GraphQL POST that is not ``application/json`` (Magento takes nothing else)."""

    status, code, title = 415, "unsupported_media_type", "Unsupported Media Type"
    envelope = "UNSUPPORTED_MEDIA_TYPE"


def resolve_graphql(surface: Surface, method: str, segments: Sequence[str]) -> Decision | None:
    """The decision for ``segments`` when they are the surface's GraphQL path, else None."""
    settings = surface.graphql
    if settings is None:
        return None
    inner = tuple(segments[len(surface.base_parts) :])
    if inner and inner[-1] == "":
        inner = inner[:-1]
    if inner != settings.parts:
        return None
    if method not in ("GET", "HEAD", "POST"):
        raise MethodNotAllowed(
            f"{method} is not accepted for GraphQL; use GET (queries) or POST.",
            headers={"Allow": _ALLOW},
        )
    assert settings.mount is not None and settings.route is not None  # built by the policy
    return Decision(surface, None, settings.mount, settings.route, {}, {}, (), None)


async def check_request(
    ctx: RequestContext,
    settings: GraphQLSettings,
    *,
    guests: bool,
    caller: Caller | None = None,
    views: Collection[str] | None = None,
) -> Allowed:
    """Refuse the request (raise the surface's error) or let it through: ``ctx.receive``
    then replays the body that was checked, and ``ctx.decision`` carries the verdict's
    credential (``none``: Magento as a guest; ``caller``: the client's own customer token,
    native mount only). ``caller``: who is calling, where the mount established it (the
    native mount's customer tokens); by default, from ``ctx.principal``. ``views``: the
    store views a client may pick with Magento's ``Store`` header (the native mount's
    ``store_codes``); None: the store's own view, whatever the client sent."""
    principal = ctx.principal
    store = ctx.store
    if principal is not None and store is not None and not principal.reaches(store.environment):
        raise Forbidden(f"A {principal.kind} token cannot reach a {store.environment} store.")
    content_types = [v for k, v in ctx.headers if k == b"content-type"]
    if len(content_types) > 1:
        raise BadRequest("Send one Content-Type header.")
    body = await read_body(
        ctx.receive,
        ctx.headers,
        cap=settings.max_bytes,
        too_large=PayloadTooLarge(f"A GraphQL request may be at most {settings.max_bytes} bytes."),
    )
    verdict = check(
        ctx.method,
        ctx.scope.get("query_string", b""),
        content_types[0].decode("latin-1") if content_types else None,
        body,
        settings,
        caller if caller is not None else _caller(principal, store),
        guests=guests,
    )
    if isinstance(verdict, Refusal):
        raise _error(verdict, ctx, principal)
    _use(ctx, verdict, body)
    if store is not None:
        # Magento's GraphQL picks the store view from a "Store" header (StoreGraphQl's
        # StoreValidator): the token's store decides it, never the client, as the path's
        # {store_code} does on REST.
        view = store.store_code.encode()
        sent = [v for k, v in ctx.headers if k == b"store"]
        if views is not None and sent:
            if len(sent) > 1 or sent[0].decode("latin-1") not in views:
                raise BadRequest("Requested store is not found")  # Magento's own words
            view = sent[0]
        headers = [(k, v) for k, v in ctx.headers if k != b"store"]
        headers.append((b"store", view))
        ctx.scope["headers"] = headers
    return verdict


def _caller(principal: Principal | None, store: Store | None) -> Caller:
    if principal is None:
        return Caller("none")
    grants = principal.permissions_for(store.id if store is not None else None)
    return Caller("edge", grants, partner=principal.kind == "jwt")


def _use(ctx: RequestContext, verdict: Allowed, body: bytes) -> None:
    decision = ctx.decision
    assert decision is not None and decision.mount is not None
    if verdict.credential == "none" and decision.mount.credential != "none":
        # Only anonymous fields and no edge token: Magento sees a guest.
        ctx.decision = decision._replace(mount=replace(decision.mount, credential="none"))
    elif verdict.credential == "customer":
        # Only a caller the mount found to hold a customer token gets this verdict (the
        # native mount): the client's Authorization goes to Magento untouched.
        ctx.decision = decision._replace(mount=replace(decision.mount, credential="caller"))
    receive = ctx.receive
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the disconnect watch

    ctx.receive = replay


def _error(refusal: Refusal, ctx: RequestContext, principal: Principal | None) -> EdgeError:
    status, message = refusal.status, refusal.message
    if status == 401:
        return Unauthorized(message, headers={"WWW-Authenticate": 'Bearer realm="magento-edge"'})
    if status == 403 and refusal.required is not None:
        resource, access = refusal.required
        if principal is not None and principal.kind == "jwt" and ctx.surface is not None:
            error = insufficient_scope(ctx.surface, resource, access)
            error.detail = f"{message} {error.detail}"
            return error
        return Forbidden(message, extra={"required": f"{resource}:{access}"})
    if status == 403:
        return Forbidden(message)
    if status == 405:
        return MethodNotAllowed(message, headers={"Allow": "POST"})
    if status == 413:
        return PayloadTooLarge(message)
    if status == 415:
        return UnsupportedMediaType(message)
    return BadRequest(message)
