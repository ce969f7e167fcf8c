"""``magento-edge explain``: how the edge would decide one request, without sending it.

Every verdict comes from the edge's own steps, called in the edge's order
(:meth:`proxy.edge.Edge._http`): :func:`proxy.paths.split_path`, :mod:`proxy.versions`
(surface by host and base path, a version's dates), :func:`proxy.decide.resolve`,
authentication (:func:`proxy.auth.authenticate` for personal access tokens against the
configured key store; the issuer's :class:`~proxy.auth_jwt.JWTAuthenticator` for JWTs),
:func:`~proxy.decide.store_for` / :func:`~proxy.decide.authorize`, and for the Magento
target the edge's own path builder, :func:`proxy.rewrite.upstream_call` and
:meth:`proxy.credentials.MagentoOrigin.target`. So explain cannot disagree with the edge
(``tests/test_explain.py`` compares both on the same requests).

Nothing is sent upstream and no rate-limit budget is spent: the tier and limits shown are
those the request would be counted against. A JWT's key set is fetched from its issuer's
``jwks_url`` only when a token must be verified (the explanation says so); a ``jwks_file``
is read locally. No credential is ever shown: the Magento target is the URL alone, the
token is named by its id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from . import versions
from .auth import Principal, authenticate
from .auth_jwt import JWTAuthenticator
from .backends.keystore import KeyLookup
from .backends.keystore.base import AccountRecord, TokenRecord
from .backends.keystore.cached import CachedKeyStore
from .config import Config, Store
from .credentials import MagentoOrigin
from .decide import Decision, auth_needed, authorize, required_access, resolve, store_for
from .edge import _fill, _target_path
from .errors import EdgeError, NotFound, UpstreamNotConfigured
from .graphql_edge import resolve_graphql  # issue #16
from .paths import split_path
from .policy import Surface
from .rewrite import upstream_call
from .storefront import host_index, store_from_request

__all__ = ["Explanation", "explain"]


@dataclass
class Explanation:
    """One request's decision, step by step; ``None``: the step was not reached."""

    method: str
    url: str
    outcome: str = "refuse"  # "forward" | "answer" (an endpoint of the edge) | "refuse"
    status: int | None = None  # the refusal's status
    reason: str = ""  # why (a refusal's detail, in the edge's words)
    surface: str | None = None
    version: dict[str, Any] | None = None
    route: str | None = None  # the route template (a mount's, then the route's pattern)
    mount: str | None = None
    resource: str | None = None
    access: str | None = None
    store: str | None = None
    token: dict[str, Any] = field(default_factory=dict)
    tier: dict[str, Any] | None = None
    target: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The explanation as ``name: value`` lines, in the order the edge decides."""
        out = [f"request: {self.method} {self.url}"]
        out.append(f"surface: {self.surface or '-'}")
        if self.version is not None:
            v = self.version
            out.append(f"version: {v['name']} ({v['state']})")
        if self.route is not None:
            out.append(f"route: {self.route}" + (f" (mount {self.mount})" if self.mount else ""))
        if self.resource is not None:
            out.append(f"resource: {self.resource}:{self.access}")
        token = self.token
        if token:
            line = f"token: {token['verdict']}"
            if token.get("id"):
                line += f" (id {token['id']}, {token['kind']})"
            if token.get("reason"):
                line += f": {token['reason']}"
            out.append(line)
            if token.get("jwks"):
                out.append(f"jwks: {token['jwks']}")
        if self.store is not None:
            out.append(f"store: {self.store}")
        if self.tier is not None:
            t = self.tier
            daily = f", {t['daily']}/day" if t["daily"] else ""
            out.append(
                f"tier: {t['name']} ({t['rate']} per {t['period']:g} s, burst {t['burst']}"
                f"{daily}; counted per {t['key']})"
            )
        if self.target is not None:
            out.append(f"target: {self.target['method']} {self.target['url']}")
        if self.outcome == "refuse":
            out.append(f"verdict: refused {self.status}: {self.reason}")
        elif self.outcome == "answer":
            out.append("verdict: answered by the edge itself (an endpoint of the policy)")
        else:
            out.append("verdict: forwarded")
        return out


async def explain(
    config: Config,
    method: str,
    url: str,
    token: str | None = None,
    *,
    keystore: KeyLookup | None = None,
    client: str = "127.0.0.1",
    clock: Callable[[], float] = time.time,
) -> Explanation:
    """Explain ``method url`` (an absolute URL, whose host picks the surface, or a path).
    ``keystore``: where personal access tokens (and revoked JWT ids) are looked up; needed
    only when a token is given. ``client``: the address the request comes from (a token's
    ``--allow-ip`` is judged against it)."""
    method = method.upper()
    out = Explanation(method=method, url=url)
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    proto = "https" if parts.scheme == "https" else "http"
    raw_path = (parts.path or "/").encode("latin-1", "replace")
    headers: list[tuple[bytes, bytes]] = [(b"host", host.encode("latin-1", "replace"))]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode("latin-1", "replace")))
    jwt = JWTAuthenticator(config, clock=clock)
    cached = CachedKeyStore(keystore) if keystore is not None else None
    try:
        await _decide(out, config, method, parts.query, raw_path, host, proto, headers, token,
                      jwt, cached, client, clock)  # fmt: skip
    except EdgeError as exc:
        out.outcome, out.status, out.reason = "refuse", exc.status, exc.detail
        verdict = out.token.get("verdict")
        if verdict in ("checking", "missing"):  # the refusal is the token's
            out.token["verdict"] = "refused" if verdict == "checking" else "missing"
            out.token["reason"] = exc.detail
    finally:
        await jwt.close()
    return out


async def _decide(
    out: Explanation,
    config: Config,
    method: str,
    query: str,
    raw_path: bytes,
    host: str,
    proto: str,
    headers: list[tuple[bytes, bytes]],
    token: str | None,
    jwt: JWTAuthenticator,
    keystore: CachedKeyStore | None,
    client: str,
    clock: Callable[[], float],
) -> None:
    segments = split_path(raw_path)
    base = versions.match(versions.index(config.surfaces), segments, host)
    if base is None:
        raise NotFound("No API is served under this path.")
    surface = base.surface
    out.surface = surface.name
    if surface.native is not None:  # issue #16: sidecar mode is not explained yet
        raise NotFound("explain does not decide requests of the native mount (sidecar mode) yet.")
    if base.version is not None:
        v = base.version
        out.version = {"name": v.name, "state": v.status(clock()), "base_path": v.base_path}
        segments = versions.enter(base, segments, clock(), [])
    # issue #16: the [graphql] path (decided per field when the body is there, not here)
    decision = resolve_graphql(surface, method, segments) or resolve(surface, method, segments)
    _describe_route(out, decision, method)
    kind = auth_needed(decision)
    principal: Principal | None = None
    if kind is None:
        out.token = {"verdict": "not needed", "reason": "this route takes no token"}
    else:
        principal = await _authenticate(out, config, surface, kind, headers, token, jwt, keystore,
                                        client, clock)  # fmt: skip
    out.tier = _tier(surface, principal)
    if decision.endpoint is not None:
        out.outcome = "answer"
        return
    store = store_for(decision, principal, config.stores)
    if decision.mount is not None and decision.mount.credential == "none":
        store = store_from_request(headers, host_index(config.stores), config.stores)
    out.store = store.id if store is not None else None
    if principal is not None:
        authorize(decision, principal, method, store)
    out.target = _target(config, decision, store, method, query, proto)
    out.outcome = "forward"


def _describe_route(out: Explanation, decision: Decision, method: str) -> None:
    if decision.endpoint is not None:
        out.route = decision.surface.base_path + "/" + decision.endpoint.pattern.text.lstrip("/")
        return
    mount, route = decision.mount, decision.route
    assert mount is not None and route is not None
    out.mount = mount.name
    prefix = decision.surface.base_path.rstrip("/") + "/" + mount.pattern.text.strip("/")
    out.route = prefix.rstrip("/") + "/" + route.pattern.text.lstrip("/")
    if route.resource is not None:
        out.resource, out.access = route.resource, required_access(mount, route, method)


async def _authenticate(
    out: Explanation,
    config: Config,
    surface: Surface,
    kind: str,
    headers: list[tuple[bytes, bytes]],
    token: str | None,
    jwt: JWTAuthenticator,
    keystore: CachedKeyStore | None,
    client: str,
    clock: Callable[[], float],
) -> Principal:
    out.token = {"verdict": "checking", "kind": "jwt" if kind == "jwt" else "personal access"}
    if token is None:
        out.token["verdict"] = "missing"
    if keystore is None:  # only without a token (the CLI opens the store for one)
        keystore = CachedKeyStore(_NoKeys())
    # Never closed or flushed: explaining a request is not a use of its token (no
    # last-used time is recorded).
    if kind == "jwt":
        keysets = jwt.keysets
        before = {name: keys.fetches for name, keys in keysets.items()}
        try:
            principal = await jwt.authenticate(headers, surface, keystore)
        finally:
            fetched = [name for name, keys in keysets.items() if keys.fetches > before[name]]
            if fetched:
                out.token["jwks"] = (
                    f"issuer {', '.join(fetched)}: key set fetched from its jwks_url"
                )
            elif token is not None and surface.jwt is not None:
                name = surface.jwt.issuer
                why = (
                    "its keys are a local jwks_file"
                    if config.issuers[name].jwks_url is None
                    else "its keys were not needed to decide this token"
                )
                out.token["jwks"] = f"issuer {name}: not fetched, {why}"
    else:
        principal = await authenticate(headers, keystore, client=client, clock=clock)
    out.token.update(verdict="valid", id=principal.token_id, kind=principal.kind)
    out.token["reason"] = "accepted; its grants are checked against the route below"
    return principal


def _tier(surface: Surface, principal: Principal | None) -> dict[str, Any]:
    """The tier and key :meth:`proxy.edge.Edge._limit` counts this request against."""
    if principal is None:
        key, tier = "client address", surface.tiers[surface.default_tier]
    else:
        tier = surface.tiers.get(principal.tier or "") or surface.tiers[surface.default_tier]
        if principal.client_id is not None:
            key = "partner application and store"
        elif surface.limit_key == "account" and principal.record and principal.record.account_id:
            key = "account"
        else:
            key = "token"
    return {
        "name": tier.name,
        "rate": tier.rate,
        "period": tier.period,
        "burst": tier.burst,
        "daily": tier.daily,
        "key": key,
    }


def _target(
    config: Config, decision: Decision, store: Store | None, method: str, query: str, proto: str
) -> dict[str, str]:
    """Where :meth:`proxy.edge.Edge._forward` would send the request: the same path
    builder, query rewrite and Magento origin. URLs only: never a credential."""
    mount, route = decision.mount, decision.route
    assert mount is not None and route is not None
    # The edge's own refusals, in its order and words.
    if mount.upstream == "magento" and store is None:
        raise UpstreamNotConfigured("This route needs a store, and none is configured.")
    upstream = config.upstreams.get(mount.upstream)
    if mount.upstream != "magento" and upstream is None:
        raise UpstreamNotConfigured(
            f'The "{mount.upstream}" service is not configured on this edge.'
        )
    path = _target_path(mount.target, decision, store)
    if route.target is not None:
        path += _fill(route.target, decision.route_vars, decision, store)
    elif decision.rest:
        path += "/" + "/".join(decision.rest)
    if route.rewrite.changes_request:
        method, query = upstream_call(route.rewrite, method, query, decision.surface.lists)
    if mount.upstream == "magento":
        assert store is not None
        origin = MagentoOrigin(store.magento_url, store.offloader_header)
        url = origin.target(proto, path, query).url
    else:
        assert upstream is not None
        url = upstream.url + path + ("?" + query if query else "")
    return {"upstream": mount.upstream, "method": method, "url": url}


class _NoKeys:
    """The key store when no token is given: authentication refuses the missing header
    before any lookup, so nothing here is ever asked (and the configured store is not
    opened for nothing)."""

    async def lookup(self, token_hash: str) -> TokenRecord | None:
        return None

    async def get_account(self, account_id: str) -> AccountRecord | None:
        return None

    async def record_use(self, uses: Mapping[str, float]) -> None:
        return None

    async def revoke(self, token_id: str, reason: str | None = None) -> bool:
        return False

    async def jti_revoked(self, jti: str) -> bool:
        return False

    async def close(self) -> None:
        return None
