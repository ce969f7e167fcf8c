"""The request path, end to end: one ASGI callable that reads top to bottom.

    raw path → paths.split_path            400 on anything ambiguous
             → decide.resolve              404 / 405 / 403 (denied route), no credential yet
             → auth.authenticate           401
             → ratelimit                   429 (headers on every answer from here on)
             ├─ an endpoint of the policy  → the Starlette application (proxy.endpoints)
             → decide.store_for/authorize  404 (store hidden) / 403 (permission)
             → idempotency                 replay / 409 / 422 (writes with a key)
             → upstream.forward            stream to Magento and back; 502 / 504

The edge is a Starlette application for its own answers (stores, OpenAPI, leak reports),
its lifespan and an operator's middleware; the forwarding hot path is this plain ASGI
callable, dispatched before Starlette's router so it pays nothing for it (measured:
README "Performance"). The steps are plain functions called in order rather than a stack
of middleware: each step's outcome (request id, principal, rate-limit headers) lands on the
request's one :class:`~proxy.context.RequestContext` and in one response start, and a
request pays for no wrapper it does not need. Errors are rendered once, in the surface's
style, and only before the response has started.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from starlette.middleware import Middleware
from starlette.types import ASGIApp

from . import endpoints, versions
from .auth import authenticate
from .auth_jwt import JWTAuthenticator
from .backends.keystore import KeyLookup
from .backends.keystore.cached import CachedKeyStore
from .backends.ratelimit import RateLimiter, open_limiter
from .backends.ratelimit.base import LimitResult
from .backends.ratelimit.memory import MemoryRateLimiter
from .body import ClientGone
from .config import Config, Store
from .context import SCOPE_KEY, Message, Receive, RequestContext, Scope, Send
from .credentials import MagentoOrigin, UpstreamAuth, auth_for
from .decide import Decision, auth_needed, authorize, resolve, store_for
from .envelope import magento_errors
from .errors import (
    BackendUnavailable,
    EdgeError,
    LimiterUnavailable,
    NotFound,
    TooManyRequests,
    UpstreamCredentialUnavailable,
    UpstreamNotConfigured,
)
from .graphql_edge import check_request, resolve_graphql  # issue #16: [graphql]
from .headers import build_forwarding, request_id_from, upstream_request_headers
from .idempotency import (
    KEYED_METHODS,
    Idempotency,
    caller_of,
    forward_idempotently,
    open_idempotency,
    parse_idempotency_key,
    request_target,
)
from .logs import count_bytes, log_access
from .metrics import Metrics
from .native import native_stores, serve_native
from .paths import split_path
from .policy import Tier
from .ratelimit import rate_limit_headers
from .readiness import Readiness
from .rewrite import NO_REWRITE, upstream_call
from .storefront import host_index, store_from_request
from .upstream import UpstreamBroke, UpstreamClient

__all__ = ["Edge"]

_NATIVE_PATHS = (b"/rest/", b"/graphql")  # issue #16: Magento's own front door

log = logging.getLogger("magento_edge")
access_log = logging.getLogger("magento_edge.access")


class Edge:
    """The edge ASGI application. Trust model: clients are untrusted; the config, the
    policies, the upstreams and the operator's middleware are the operator's.

    ``middleware`` (Starlette :class:`~starlette.middleware.Middleware` entries, outermost
    first) wraps every request the edge serves, forwarded or answered, and the lifespan;
    without any, a forwarded request goes straight to the forwarding step.
    """

    def __init__(
        self,
        config: Config,
        keystore: CachedKeyStore,
        *,
        limiter: RateLimiter | None,
        idempotency: Idempotency,
        upstream: UpstreamClient | None = None,
        clock: Callable[[], float] = time.time,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        self.config = config
        self.keystore = keystore
        self.limiter = limiter
        self.idempotency = idempotency
        self.upstream = upstream or UpstreamClient(max_connections=config.max_connections)
        self.clock = clock
        self._auths = {sid: auth_for(store, clock=clock) for sid, store in config.stores.items()}
        # auth.kind = "jwt" surfaces (issue #11): their issuers' key sets and verifiers
        self.jwt = JWTAuthenticator(config, clock=clock)
        self._origins = {
            sid: MagentoOrigin(store.magento_url, store.offloader_header)
            for sid, store in config.stores.items()
        }
        self._prefixes: dict[tuple[str, str | None], str] = {}
        self._hosts = host_index(config.stores)  # storefront: Host -> store
        self._error_surface = config.surfaces[0] if config.surfaces else None
        self._bases = versions.index(config.surfaces)  # host + base path → surface, version
        self.native = native_stores(config)  # issue #16: sidecar mode's stores by host
        # issue #16: a malformed Magento path is refused in Magento's shape too
        self._native_surface = next((s for s in config.surfaces if s.native is not None), None)
        self._access_log = config.access_log
        self.app = endpoints.application(self, self._lifespan)
        # issue #12: metrics (None: off, for the benchmark) and readiness, both served by
        # the admin listener (proxy.admin_listener)
        self.metrics: Metrics | None = Metrics()
        self.metrics.watch(self)
        self.readiness = Readiness(
            self, interval=config.admin.probe_interval, timeout=config.admin.probe_timeout
        )
        self._entry: ASGIApp | None = None
        if middleware:
            entry: ASGIApp = self._dispatch
            for cls, args, kwargs in reversed(middleware):  # as Starlette builds its stack
                entry = cls(entry, *args, **kwargs)
            self._entry = entry

    @classmethod
    def from_config(
        cls,
        config: Config,
        keystore: KeyLookup,
        *,
        upstream: UpstreamClient | None = None,
        clock: Callable[[], float] = time.time,
        middleware: Sequence[Middleware] = (),
    ) -> Edge:
        """An edge with the backends ``config`` names (rate limits, idempotency) and the
        default key-store cache in front of ``keystore``."""
        return cls(
            config,
            CachedKeyStore(keystore),
            limiter=open_limiter(config.ratelimit_backend, config.ratelimit_url),
            idempotency=open_idempotency(config),
            upstream=upstream,
            clock=clock,
            middleware=middleware,
        )

    def upstream_auth(self, store_id: str) -> UpstreamAuth | None:
        """The credential object forwarding uses for ``store_id`` (readiness probes it)."""
        return self._auths.get(store_id)

    # -- ASGI -----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._entry is not None:
            await self._entry(scope, receive, send)
        elif scope["type"] == "http":  # no operator middleware: straight to the request path
            await self._http(scope, receive, send)
        else:
            await self._dispatch(scope, receive, send)

    @property
    def http_handler(self) -> ASGIApp:
        """What serves one http request: the operator's middleware around the edge, else
        the request path itself (proxy.lifecycle.Reloadable calls it directly)."""
        return self._entry if self._entry is not None else self._http

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.app(scope, receive, send)
        # websocket: not part of any surface; returning closes it (uvicorn answers 403).

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: object) -> AsyncIterator[None]:
        await self.upstream.start()
        try:
            yield
        finally:
            await self.upstream.close()
            for auth in self._auths.values():
                await auth.close()
            await self.jwt.close()
            await self.keystore.close()
            if self.limiter is not None:
                await self.limiter.close()
            await self.idempotency.close()

    async def close_config_resources(self) -> None:
        """Close what this edge built from its config alone (store credentials, issuer
        key sets), not the backends it shares with a reloaded edge (proxy.lifecycle)."""
        for auth in self._auths.values():
            await auth.close()
        await self.jwt.close()

    # -- one request ----------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope["headers"]
        if self.metrics is not None:  # issue #12: in-flight requests
            self.metrics.started += 1
        ctx = RequestContext(
            scope, receive, send, request_id=request_id_from(headers), surface=self._error_surface
        )
        if self._access_log:  # issue #12: bytes in/out and upstream time (proxy.logs)
            count_bytes(ctx)
        try:
            raw_path = scope.get("raw_path") or scope["path"].encode()
            if self._native_surface is not None and raw_path.startswith(_NATIVE_PATHS):
                ctx.surface = self._native_surface  # issue #16: before the path is judged
            segments = split_path(raw_path)
            # Forwarding first: its host (Host, or a trusted X-Forwarded-Host) picks the surface.
            ctx.fwd = fwd = build_forwarding(
                scope.get("client"),
                scope.get("scheme", "http"),
                headers,
                self.config.trusted_proxies,
                ctx.request_id,
            )
            # -- versions: the surface by host and base path; a version's dates (410 / headers)
            base = versions.match(self._bases, segments, fwd.host)
            if base is None:
                ctx.surface = versions.host_surface(self._bases, fwd.host) or ctx.surface
                raise NotFound("No API is served under this path.")
            ctx.surface = surface = base.surface
            if base.version is not None:
                segments = versions.enter(base, segments, self.clock(), ctx.answer_headers)
            elif base.rebase is not None:  # [graphql] root: /graphql as /api/v3/graphql
                segments = base.rebase + tuple(segments[len(base.parts) :])
            if surface.native is not None:  # issue #16: Magento's own paths (proxy.native)
                ctx.status = await serve_native(self, ctx, segments)
                return
            method = scope["method"]
            decision = (
                resolve_graphql(surface, method, segments) if surface.graphql is not None else None
            )
            ctx.decision = decision = decision or resolve(surface, method, segments)
            kind = auth_needed(decision)
            if kind == "jwt":  # an OAuth 2.0 access token (auth_jwt)
                ctx.principal = await self.jwt.authenticate(headers, surface, self.keystore)
            elif kind is not None:
                ctx.principal = await authenticate(
                    headers, self.keystore, client=fwd.client, clock=self.clock
                )
            # -- rate limit: every answer from here on carries its headers --
            limiter = self.limiter
            if limiter is not None:
                if type(limiter) is MemoryRateLimiter:  # decided without a coroutine frame
                    self._limited(ctx, limiter.hit_now(*self._bucket(ctx)))
                else:
                    await self._limit(ctx)
            if decision.endpoint is not None:
                await self._answer(ctx)
                return
            principal = ctx.principal
            ctx.store = store = store_for(decision, principal, self.config.stores)
            if decision.mount is not None and decision.mount.credential == "none":
                # The storefront: no token names the store; the Host or X-Store-Id does.
                ctx.store = store = store_from_request(headers, self._hosts, self.config.stores)
            if principal is not None:
                authorize(decision, principal, method, store)
            if surface.graphql is not None and decision.mount is surface.graphql.mount:
                # issue #16: decided per top-level field (proxy.graphql), body replayed
                await check_request(ctx, surface.graphql, guests=kind is None)
            # -- idempotency wraps the forward when the client sent a key --
            if (
                principal is not None
                and method in KEYED_METHODS
                and (key := parse_idempotency_key(headers)) is not None
            ):
                ctx.status = await forward_idempotently(
                    self.idempotency,
                    ctx,
                    caller=caller_of(principal),
                    key=key,
                    target=request_target(scope, store),
                    forward=lambda rcv, snd: self._forward_keyed(ctx, rcv, snd),
                )
            else:
                ctx.status = await self._forward(ctx)
        except ClientGone:
            ctx.status = 499
        except UpstreamBroke as exc:
            # The answer had started; returning without finishing it makes the server cut
            # the connection, the only honest signal left.
            ctx.status = 502
            ctx.access.error = _one_line(exc.__cause__ or exc)
            log.warning(
                "%s upstream broke off mid-answer: %s", ctx.request_id, exc.__cause__ or exc
            )
        except EdgeError as exc:
            ctx.status = exc.status
            ctx.refusal = exc.code  # issue #12: metrics' rejection reason
            ctx.access.reason = exc.code  # issue #12: the refusal's reason, in the access line
            if exc.status >= 500:
                ctx.access.error = _one_line(exc.__cause__ or exc)
            await self._send_error(ctx, exc)
        except Exception as exc:
            # A bug, not a client's fault: log it with the request id, answer a plain 500
            # problem if the answer has not started (the server cuts it otherwise).
            ctx.status = 500
            ctx.access.error = _one_line(exc)
            log.exception("%s unexpected error", ctx.request_id)
            if not ctx.started:
                with contextlib.suppress(Exception):
                    await self._send_error(
                        ctx,
                        EdgeError("The edge failed to handle this request; it has been logged."),
                    )
        finally:
            if self.metrics is not None:  # issue #12
                self.metrics.done(ctx, time.perf_counter() - ctx.t0)
            if self._access_log:  # issue #12: one line per request (proxy.logs)
                log_access(access_log, ctx)

    async def _answer(self, ctx: RequestContext) -> None:
        """An endpoint of the policy: the Starlette application answers it, with the
        request's context in the scope."""
        send = ctx.send

        async def tracking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                ctx.started = True
                ctx.status = message["status"]
            await send(message)

        ctx.scope[SCOPE_KEY] = ctx
        await self.app(ctx.scope, ctx.receive, tracking_send)

    async def _limit(self, ctx: RequestContext, *, by: tuple[str, Tier] | None = None) -> None:
        """``by``: the bucket key and tier, where the step decided them (proxy.native)."""
        assert self.limiter is not None and ctx.surface is not None
        key, tier = by if by is not None else self._bucket(ctx)
        try:
            result = await self.limiter.hit(key, tier)
        except BackendUnavailable:
            if self.metrics is not None:  # issue #12
                self.metrics.limited(ctx.surface.name, "error")
            if self.config.ratelimit_on_backend_error == "deny":
                raise LimiterUnavailable(
                    "Rate limits cannot be checked right now; retry shortly.",
                    headers={"Retry-After": "1"},
                ) from None
            return  # fail open, as configured; logged and counted by the backend
        self._limited(ctx, result)

    def _bucket(self, ctx: RequestContext) -> tuple[str, Tier]:
        """The bucket key and tier of the request's caller (its address without one)."""
        assert ctx.surface is not None and ctx.fwd is not None
        surface = ctx.surface
        principal = ctx.principal
        if principal is None:
            return f"{surface.name}:ip:{ctx.fwd.client}", surface.tiers[surface.default_tier]
        tier = surface.tiers.get(principal.tier or "") or surface.tiers[surface.default_tier]
        if principal.client_id is not None:  # a JWT: its partner application on its store
            return f"{surface.name}:client:{principal.client_id}:{principal.store_id}", tier
        account = principal.record.account_id if principal.record else None
        if surface.limit_key == "account" and account:
            return f"{surface.name}:acct:{account}", tier
        return f"{surface.name}:tok:{principal.token_id}", tier

    def _limited(self, ctx: RequestContext, result: LimitResult) -> None:
        """The decision taken: counted, its headers on every answer from here, 429 if spent."""
        surface = ctx.surface
        assert surface is not None
        if self.metrics is not None:  # issue #12 (Metrics.limited, inlined)
            limits = self.metrics.limits
            key = (surface.name, "allowed" if result.allowed else "limited")
            limits[key] = limits.get(key, 0) + 1
        ctx.answer_headers.extend(
            rate_limit_headers(result, surface.header_style, ietf=surface.ietf_headers)
        )
        if not result.allowed:
            raise TooManyRequests(
                f"Rate limit exceeded for this {'token' if ctx.principal else 'address'}; "
                f"retry after {max(1, math.ceil(result.retry_after))} s."
            )

    async def _forward(self, ctx: RequestContext) -> int:
        decision = ctx.decision
        store = ctx.store
        fwd = ctx.fwd
        assert decision is not None and fwd is not None
        mount = decision.mount
        route = decision.route
        assert mount is not None and route is not None  # resolve() returned a mount route
        if mount.upstream == "magento":
            if store is None:
                raise UpstreamNotConfigured("This route needs a store, and none is configured.")
            base_url = ""  # the store's MagentoOrigin decides the URL below
            timeouts = store.timeouts
            pool, cap = store.id, store.max_connections  # issue #14: a pool per store
        else:
            upstream = self.config.upstreams.get(mount.upstream)
            if upstream is None:
                raise UpstreamNotConfigured(
                    f'The "{mount.upstream}" service is not configured on this edge.'
                )
            base_url = upstream.url
            timeouts = upstream.timeouts
            pool, cap = "upstream:" + upstream.name, upstream.max_connections

        # The mount's upstream prefix depends only on the mount and the store (checked
        # against config above), so it is built once per pair.
        prefix_key = (mount.name, store.id if store is not None else None)
        path = self._prefixes.get(prefix_key, "")
        if not path:
            path = _target_path(mount.target, decision, store)
            if decision.mount_vars.keys() <= {"store"}:
                self._prefixes[prefix_key] = path
        if route.target is not None:
            path += _fill(route.target, decision.route_vars, decision, store)
        elif decision.rest:
            path += "/" + "/".join(decision.rest)
        scope = ctx.scope
        raw_query = scope.get("query_string", b"")
        query = raw_query.decode("latin-1") if raw_query else ""
        method = scope["method"]
        rewrite = route.rewrite
        if rewrite is not NO_REWRITE and rewrite.changes_request:
            # The one place the upstream method and query are decided: what is signed
            # below is what is sent (proxy.rewrite).
            method, query = upstream_call(rewrite, method, query, decision.surface.lists)

        auth: UpstreamAuth | None = None
        if store is None or mount.upstream != "magento":
            url = base_url + path + ("?" + query if query else "")
            up_headers = upstream_request_headers(scope["headers"], fwd)
        elif mount.credential != "store":
            # Magento as a guest: its own URL and Host, and no credential at all (the
            # client's Authorization is dropped as on every request). "caller" (issue #16,
            # the native mount's self routes): the client's own customer token, untouched.
            origin = self._origins[store.id]
            target = origin.target(fwd.proto, path, query)
            url = target.url
            caller = _authorization(scope["headers"]) if mount.credential == "caller" else None
            up_headers = upstream_request_headers(
                scope["headers"], fwd, origin.headers(target, caller), origin.drop
            )
        else:
            # Scheme, Host and path+query decided once, for the signature and the headers.
            origin = self._origins[store.id]
            target = origin.target(fwd.proto, path, query)
            auth = self._auths[store.id]
            credential = auth.authorization(method, target.signed_url)
            if credential is None:
                await auth.refresh()
                credential = auth.authorization(method, target.signed_url)
                if credential is None:
                    raise UpstreamCredentialUnavailable(
                        "The store's Magento credential is not available right now; "
                        "the edge's log says why."
                    )
            url = target.url
            up_headers = upstream_request_headers(
                scope["headers"], fwd, origin.headers(target, credential), origin.drop
            )
        started = time.perf_counter()  # issue #12: the upstream's share (metrics, logs)
        ctx.access.t_upstream = started
        try:
            status = await self.upstream.forward(
                method,
                url,
                up_headers,
                scope["headers"],  # request_headers
                ctx.receive,
                ctx.send,
                timeouts,
                ctx.answer_headers,  # extra_response_headers
                # envelope surfaces only: Magento's JSON errors rewritten (proxy.envelope)
                magento_errors(decision.surface, mount, ctx.request_id),
                pool,  # issue #14: a pool per store or upstream, of at most cap
                cap,  # max_connections
            )
        finally:
            ctx.upstream_seconds = time.perf_counter() - started
        if status == 401 and auth is not None:
            auth.rejected()  # an expired admin token: log in again (rate-limited)
        return status

    async def _forward_keyed(self, ctx: RequestContext, receive: Receive, send: Send) -> int:
        """The forward inside the idempotency step, through its channels; the upstream's
        time lands on the request's own context (issue #12: metrics)."""
        keyed = ctx.with_io(receive, send)
        try:
            return await self._forward(keyed)
        finally:
            ctx.upstream_seconds = keyed.upstream_seconds

    async def _send_error(self, ctx: RequestContext, exc: EdgeError) -> None:
        status, headers, body = endpoints.error_response(ctx, exc)
        await ctx.send({"type": "http.response.start", "status": status, "headers": headers})
        await ctx.send({"type": "http.response.body", "body": body, "more_body": False})


def _authorization(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The client's one Authorization header as sent (issue #16: a customer's token)."""
    found = [value for name, value in headers if name == b"authorization"]
    return found[0].decode("latin-1") if len(found) == 1 else None


def _one_line(exc: BaseException) -> str:
    """An error for the access line: its class and message on one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _fill(template: str, values: Any, decision: Decision, store: Store | None) -> str:
    if "{" not in template:
        return template
    out = template
    for name, value in {**decision.mount_vars, **values}.items():
        out = out.replace("{" + name + "}", value)
    if store is not None:
        out = out.replace("{store_code}", store.store_code).replace("{store}", store.id)
    return out


def _target_path(template: str, decision: Decision, store: Store | None) -> str:
    return _fill(template, decision.mount_vars, decision, store).rstrip("/")
