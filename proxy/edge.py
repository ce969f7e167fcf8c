"""The request path, end to end: one ASGI app that reads top to bottom.

    raw path → paths.split_path            400 on anything ambiguous
             → decide.resolve              404 / 405 / 403 (denied route), no credential yet
             → auth.authenticate           401
             → ratelimit                   429 (headers on every answer from here on)
             → decide.store_for/authorize  404 (store hidden) / 403 (permission)
             → idempotency                 replay / 409 / 422 (writes with a key)
             → upstream.forward            stream to Magento and back; 502 / 504

The steps are plain functions called in order rather than a stack of middleware: each
step's outcome (request id, principal, rate-limit headers) lands in one response start,
and a request pays for no wrapper it does not need. Errors are rendered once, here, in the
surface's style, and only before the response has started.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from . import endpoints
from .auth import Principal, authenticate
from .backends.keystore import KeyStore
from .backends.keystore.cached import CachedKeyStore
from .backends.ratelimit import open_limiter
from .config import Config, Store
from .credentials import MagentoOrigin, auth_for
from .decide import Decision, authorize, resolve, store_for, surface_for
from .errors import (
    BackendUnavailable,
    EdgeError,
    LimiterUnavailable,
    NotFound,
    TooManyRequests,
    UpstreamCredentialUnavailable,
    UpstreamNotConfigured,
    render,
)
from .headers import (
    ForwardingContext,
    build_forwarding,
    request_id_from,
    upstream_request_headers,
)
from .idempotency import (
    KEYED_METHODS,
    caller_of,
    forward_idempotently,
    open_idempotency,
    parse_idempotency_key,
    request_target,
)
from .paths import split_path
from .policy import Surface
from .ratelimit import rate_limit_headers
from .types import Receive, Scope, Send
from .upstream import ClientGone, UpstreamBroke, UpstreamClient

__all__ = ["Edge"]

log = logging.getLogger("magento_edge")
access_log = logging.getLogger("magento_edge.access")


class Edge:
    """The edge ASGI application. Trust model: clients are untrusted; the config, the
    policies and the upstreams are the operator's."""

    def __init__(
        self,
        config: Config,
        keystore: KeyStore,
        *,
        upstream: UpstreamClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.keystore = CachedKeyStore(keystore)
        self.upstream = upstream or UpstreamClient(max_connections=config.max_connections)
        self.clock = clock
        self._auths = {sid: auth_for(store, clock=clock) for sid, store in config.stores.items()}
        self._origins = {
            sid: MagentoOrigin(store.magento_url, store.offloader_header)
            for sid, store in config.stores.items()
        }
        self.limiter = open_limiter(config.ratelimit_backend, config.ratelimit_url)
        self.idempotency = open_idempotency(config)
        self._prefixes: dict[tuple[str, str | None], str] = {}
        self._error_surface = config.surfaces[0] if config.surfaces else None
        self._access_log = config.access_log

    # -- ASGI -----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # websocket: not part of any surface; returning closes it (uvicorn answers 403).

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.upstream.start()
                except Exception as exc:  # pragma: no cover - reported to the server
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.upstream.close()
                for auth in self._auths.values():
                    await auth.close()
                await self.keystore.close()
                if self.limiter is not None:
                    await self.limiter.close()
                await self.idempotency.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- one request ----------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope["headers"]
        request_id = request_id_from(headers)
        surface = self._error_surface
        principal: Principal | None = None
        answer_headers: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id.encode())]
        status = 0
        started = time.perf_counter()
        try:
            segments = split_path(scope.get("raw_path") or scope["path"].encode())
            surface = surface_for(self.config.surfaces, segments)
            if surface is None:
                surface = self._error_surface
                raise NotFound("No API is served under this path.")
            method = scope["method"]
            decision = resolve(surface, method, segments)
            fwd = build_forwarding(
                scope.get("client"),
                scope.get("scheme", "http"),
                headers,
                self.config.trusted_proxies,
                request_id,
            )
            if decision.endpoint is not None:
                needs_auth = decision.endpoint.auth
            else:
                assert decision.mount is not None
                needs_auth = (decision.mount.auth or surface.auth) != "none"
            if needs_auth:
                principal = await authenticate(
                    headers, self.keystore, client=fwd.client, clock=self.clock
                )
            # -- rate limit: every answer from here on carries its headers --
            if self.limiter is not None:
                await self._limit(surface, principal, fwd.client, answer_headers)
            if decision.endpoint is not None:
                status = await endpoints.answer(
                    decision.endpoint.handler,
                    self,
                    surface,
                    principal,
                    answer_headers,
                    scope,
                    receive,
                    send,
                )
                return
            store = store_for(decision, principal, self.config.stores)
            if principal is not None:
                authorize(decision, principal, method, store)
            # -- idempotency wraps the forward when the client sent a key --
            if (
                principal is not None
                and method in KEYED_METHODS
                and (key := parse_idempotency_key(headers)) is not None
            ):
                status = await forward_idempotently(
                    self.idempotency,
                    caller=caller_of(principal),
                    key=key,
                    method=method,
                    target=request_target(scope, store),
                    headers=headers,
                    receive=receive,
                    send=send,
                    answer_headers=answer_headers,
                    forward=lambda rcv, snd: self._forward(
                        scope, rcv, snd, decision, store, fwd, answer_headers
                    ),
                )
            else:
                status = await self._forward(
                    scope, receive, send, decision, store, fwd, answer_headers
                )
        except ClientGone:
            status = 499
        except UpstreamBroke as exc:
            # The answer had started; returning without finishing it makes the server cut
            # the connection, the only honest signal left.
            status = 502
            log.warning("%s upstream broke off mid-answer: %s", request_id, exc.__cause__ or exc)
        except EdgeError as exc:
            status = exc.status
            await self._send_error(send, exc, surface, request_id, answer_headers)
        except Exception:
            # A bug, not a client's fault: log it with the request id, answer a plain 500
            # problem if the answer has not started (the server cuts it otherwise).
            status = 500
            log.exception("%s unexpected error", request_id)
            with contextlib.suppress(Exception):
                await self._send_error(
                    send,
                    EdgeError("The edge failed to handle this request; it has been logged."),
                    surface,
                    request_id,
                    answer_headers,
                )
        finally:
            if self._access_log:
                access_log.info(
                    "%s %s %s %d %.1fms",
                    request_id,
                    principal.token_id if principal else "-",
                    scope.get("method", "-"),
                    status,
                    (time.perf_counter() - started) * 1000,
                    extra={"request_id": request_id},
                )

    async def _limit(
        self,
        surface: Surface,
        principal: Principal | None,
        client: str,
        answer_headers: list[tuple[bytes, bytes]],
    ) -> None:
        assert self.limiter is not None
        if principal is None:
            key = f"{surface.name}:ip:{client}"
            tier = surface.tiers[surface.default_tier]
        else:
            account = principal.record.account_id
            if surface.limit_key == "account" and account:
                key = f"{surface.name}:acct:{account}"
            else:
                key = f"{surface.name}:tok:{principal.token_id}"
            tier = surface.tiers.get(principal.tier or "") or surface.tiers[surface.default_tier]
        try:
            result = await self.limiter.hit(key, tier)
        except BackendUnavailable:
            if self.config.ratelimit_on_backend_error == "deny":
                raise LimiterUnavailable(
                    "Rate limits cannot be checked right now; retry shortly.",
                    headers={"Retry-After": "1"},
                ) from None
            return  # fail open, as configured; logged and counted by the backend
        answer_headers.extend(
            rate_limit_headers(result, surface.header_style, ietf=surface.ietf_headers)
        )
        if not result.allowed:
            raise TooManyRequests(
                f"Rate limit exceeded for this {'token' if principal else 'address'}; "
                f"retry after {max(1, math.ceil(result.retry_after))} s."
            )

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        decision: Decision,
        store: Store | None,
        fwd: ForwardingContext,
        answer_headers: list[tuple[bytes, bytes]],
    ) -> int:
        mount = decision.mount
        route = decision.route
        assert mount is not None and route is not None  # resolve() returned a mount route
        if mount.upstream == "magento":
            if store is None:
                raise UpstreamNotConfigured("This route needs a store, and none is configured.")
            base_url = store.magento_url
            timeouts = store.timeouts
        else:
            upstream = self.config.upstreams.get(mount.upstream)
            if upstream is None:
                raise UpstreamNotConfigured(
                    f'The "{mount.upstream}" service is not configured on this edge.'
                )
            base_url = upstream.url
            timeouts = upstream.timeouts

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
        raw_query = scope.get("query_string", b"")
        query = raw_query.decode("latin-1") if raw_query else ""
        method = scope["method"]

        if mount.upstream != "magento":
            url = base_url + path + ("?" + query if query else "")
            up_headers = upstream_request_headers(scope["headers"], fwd)
            return await self.upstream.forward(
                method=method,
                url=url,
                headers=up_headers,
                request_headers=scope["headers"],
                receive=receive,
                send=send,
                timeouts=timeouts,
                extra_response_headers=answer_headers,
            )

        assert store is not None
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
        extra = [("authorization", credential), ("host", target.host)]
        drop: frozenset[bytes] = frozenset()
        if origin.offloader != "x-forwarded-proto":
            # Magento believes only its offloader header: the client's copy never passes.
            drop = frozenset({origin.offloader.encode("latin-1")})
            extra.append((origin.offloader, target.proto))
        up_headers = upstream_request_headers(scope["headers"], fwd, extra, drop=drop)
        status = await self.upstream.forward(
            method=method,
            url=target.url,
            headers=up_headers,
            request_headers=scope["headers"],
            receive=receive,
            send=send,
            timeouts=timeouts,
            extra_response_headers=answer_headers,
        )
        if status == 401:
            auth.rejected()  # an expired admin token: log in again (rate-limited)
        return status

    async def _send_error(
        self,
        send: Send,
        exc: EdgeError,
        surface: Surface | None,
        request_id: str,
        answer_headers: list[tuple[bytes, bytes]],
    ) -> None:
        status, headers, body = render(
            exc,
            style=surface.error_style if surface else "problem",
            request_id=request_id,
            type_base=surface.error_type_base if surface else "about:blank#",
        )
        headers.extend(answer_headers)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


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
