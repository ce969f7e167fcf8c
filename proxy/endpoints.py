"""The few answers the edge gives itself (``[[endpoints]]`` in a policy), as a Starlette
application: ``GET /stores`` (the stores this token reaches, with its effective grants on
each), ``GET /openapi.json`` (generated from the policy) and ``POST`` leaked-token reports
(:mod:`proxy.leaks`). Nothing else is answered at the edge.

Each policy endpoint is a Starlette route with a Starlette request and response. The edge
has already routed, authenticated and rate-limited the request by the time it gets here
(the same steps as a forwarded request, :mod:`proxy.edge`), so a route matches on that
decision rather than matching the path a second time: the two can never disagree. Errors
raised here are rendered by the edge's one renderer, in the surface's style.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from . import leaks
from .context import SCOPE_KEY, RequestContext
from .errors import EdgeError, Unauthorized, render
from .openapi import openapi_document
from .policy import Endpoint, Surface

if TYPE_CHECKING:
    from .config import Config
    from .edge import Edge

__all__ = ["application", "error_response"]

Handler = Callable[[Request], Awaitable[Response]]


def application(
    edge: Edge, lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]]
) -> Starlette:
    """The Starlette application for ``edge``'s own answers, one route per policy endpoint."""
    routes: list[BaseRoute] = [
        _EndpointRoute(surface, endpoint, _HANDLERS[endpoint.handler])
        for surface in edge.config.surfaces
        for endpoint in surface.endpoints
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={EdgeError: _edge_error, Exception: _unexpected},
        lifespan=lifespan,
    )
    app.state.edge = edge
    return app


class _EndpointRoute(Route):
    """A policy endpoint: matches the request the edge resolved to it."""

    def __init__(self, surface: Surface, endpoint: Endpoint, handler: Handler) -> None:
        path = surface.base_path.rstrip("/") + endpoint.pattern.text
        super().__init__(
            path, handler, methods=[endpoint.method], name=f"{surface.name}:{endpoint.handler}"
        )
        self.policy_endpoint = endpoint

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        ctx = scope.get(SCOPE_KEY)
        if (
            scope["type"] == "http"
            and isinstance(ctx, RequestContext)
            and ctx.decision is not None
            and ctx.decision.endpoint is self.policy_endpoint
        ):
            return Match.FULL, {"endpoint": self.endpoint, "path_params": {}}
        return Match.NONE, {}


def _context(request: Request) -> RequestContext:
    ctx: RequestContext = request.scope[SCOPE_KEY]
    return ctx


def _edge(request: Request) -> Edge:
    edge: Edge = request.app.state.edge
    return edge


def _json(ctx: RequestContext, body: bytes, *, cache: str = "no-store") -> Response:
    response = Response(body, media_type="application/json", headers={"cache-control": cache})
    response.raw_headers.extend(ctx.answer_headers)
    return response


async def stores(request: Request) -> Response:
    ctx = _context(request)
    if ctx.principal is None:  # a policy that lists stores without auth is refused at load
        raise Unauthorized("This API needs a bearer token.")
    edge = _edge(request)
    return _json(ctx, orjson.dumps({"stores": _stores(edge.config, ctx)}))


async def openapi(request: Request) -> Response:
    ctx = _context(request)
    assert ctx.surface is not None  # the route matched a decision within a surface
    # Built once per config (~0.5 s for the v1 surface's ~860 operations): off the event
    # loop, so the first fetch after a start or reload stalls no other request.
    body = await run_in_threadpool(openapi_document, ctx.surface, _edge(request).config)
    return _json(ctx, body, cache="max-age=300")


async def leaked_tokens(request: Request) -> Response:
    ctx = _context(request)
    edge = _edge(request)
    body = await leaks.handle_report(
        edge.config.secret_scanning_keys, edge.keystore, ctx.headers, request.receive
    )
    return _json(ctx, body)


_HANDLERS: dict[str, Handler] = {
    "stores": stores,
    "openapi": openapi,
    "leaked_tokens": leaked_tokens,
}


def error_response(ctx: RequestContext, exc: EdgeError) -> tuple[int, list[Any], bytes]:
    """``exc`` in the surface's error style, with the answer headers gathered so far."""
    surface = ctx.surface
    status, headers, body = render(
        exc,
        style=surface.error_style if surface else "problem",
        request_id=ctx.request_id,
        type_base=surface.error_type_base if surface else "about:blank#",
    )
    headers.extend(ctx.answer_headers)
    return status, headers, body


def _response(ctx: RequestContext, exc: EdgeError) -> Response:
    status, headers, body = error_response(ctx, exc)
    response = Response(body, status_code=status)
    response.raw_headers = headers  # render() set content-type and content-length
    return response


async def _edge_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EdgeError)  # registered for EdgeError only
    return _response(_context(request), exc)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Starlette's ServerErrorMiddleware calls this, then re-raises: the edge logs it once,
    # with the request id, where it catches it (proxy.edge).
    return _response(
        _context(request),
        EdgeError("The edge failed to handle this request; it has been logged."),
    )


def _stores(config: Config, ctx: RequestContext) -> list[dict[str, Any]]:
    principal = ctx.principal
    assert principal is not None
    out = []
    order = principal.record.stores if principal.record else sorted(principal.stores)
    for store_id in order:  # the token's order
        if store_id not in principal.stores:
            continue  # its account no longer has this store
        store = config.stores.get(store_id)
        if store is None:
            continue  # a store removed from config since the token was made
        if not principal.reaches(store.environment):
            continue  # live tokens never reach sandbox stores, nor test tokens live ones
        out.append(
            {
                "id": store.id,
                "name": store.name,
                "environment": store.environment,
                "permissions": [
                    f"{r}:{a}" for r, a in sorted(principal.permissions_for(store_id).items())
                ],
            }
        )
    return out
