"""Step 2 of the request path, the data: an API surface compiled from ``policies/*.toml``.

A policy says which public paths exist (``mounts``), which upstream each goes to and how
its path is rewritten, which resource and access every route needs (``routes``), what is
answered at the edge (``endpoints``), how callers authenticate, which error and rate-limit
header style the surface speaks, its tiers and its versions. An operator can write a new
surface without touching code; ``docs`` in the README describe every key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from . import versions
from ._shadowing import check_shadowing, mount_order
from ._toml import ConfigError, Reader
from .errors import ErrorStyle
from .graphql import GraphQLSettings, load_graphql  # issue #16: [graphql]
from .rewrite import NO_REWRITE, Lists, RouteRewrite, load_lists, load_route_rewrite
from .routing import Pattern, PatternError, RouteTable, compile_pattern
from .types import Access, HeaderStyle

if TYPE_CHECKING:
    from .native_policy import NativePolicy

__all__ = [
    "Endpoint",
    "JwtSettings",
    "Mount",
    "Route",
    "Surface",
    "Tier",
    "Version",
    "load_policy",
]

AuthKind = Literal["pat", "jwt", "none"]

_READ_METHODS = frozenset({"GET", "HEAD"})
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_ACCESS: tuple[Access, ...] = ("read", "write")
_HANDLERS = ("stores", "openapi", "leaked_tokens")
# The method each handler answers: leak reports are POSTed (GitHub secret scanning).
_HANDLER_METHODS = {"stores": "GET", "openapi": "GET", "leaked_tokens": "POST"}
# A version's migration link goes into a Link header: no spaces, quotes or angle brackets.
_LINK = re.compile(r"https?://[^\s<>\"]+")
# Claims a policy may rename under [auth.claims] (SPEC §4.2; iss/aud/exp/nbf/iat are fixed).
# [auth] keys that only document the issuer (proxy.openapi's OAuth 2.0 flows).
_OAUTH_URLS = ("token_url", "authorization_url")
_CLAIMS = ("scope", "scp", "store_id", "client_id", "partner_tier", "jti")


@dataclass(frozen=True, slots=True)
class Tier:
    """A rate-limit tier: ``rate`` requests per ``period`` seconds, bursting to ``burst``,
    and at most ``daily`` per UTC day (0: no daily quota)."""

    name: str
    rate: int
    period: float
    burst: int
    daily: int


@dataclass(frozen=True, slots=True)
class Route:
    """What one route needs. ``deny`` set: refused with 403 whatever the token holds."""

    table: str
    index: int
    method: str  # an HTTP method or "*"
    pattern: Pattern
    resource: str | None
    access: Access | None  # None: by method (GET/HEAD read, others write)
    deny: str | None
    target: str | None  # rewrite, relative to the mount's target; None: path kept
    form: Literal["any", "plain", "bulk"]
    summary: str
    # Method and query changes, or a 501 (proxy.rewrite): target_method, list, not_implemented
    rewrite: RouteRewrite = NO_REWRITE

    def required_access(self, method: str) -> Access:
        if self.access is not None:
            return self.access
        return "read" if method in _READ_METHODS else "write"


@dataclass(frozen=True, slots=True)
class Mount:
    """A public path prefix (after ``base_path``) forwarded to one upstream."""

    name: str
    pattern: Pattern
    upstream: str  # "magento" (the store's Magento) or a name in config [upstreams]
    target: str  # upstream path prefix; {store}, {store_code} and prefix variables
    routes: str  # route table deciding resource and access
    form: Literal["plain", "bulk"]
    methods: frozenset[str] | None
    auth: AuthKind | None  # None: the surface's
    # "none": to the store's Magento as a guest, never with the store's credential; the
    # store then comes from the Host or X-Store-Id (proxy.storefront)
    # "caller": the client's own Authorization, untouched (the native mount's self routes;
    # built by proxy.native_policy, never loaded from a [[mounts]] table)
    credential: Literal["store", "none", "caller"] = "store"
    # Magento's asynchronous REST (a segment "async" in a Magento target: /async/V1,
    # /async/bulk/V1): every request there queues an operation (proxy.decide)
    queues: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        target = self.target
        queues = self.upstream == "magento" and (
            "/async/" in target
            or target.endswith("/async")
            or target.startswith("async/")
            or target == "async"
        )
        object.__setattr__(self, "queues", queues)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A path answered at the edge itself (``GET /stores``, ``GET /openapi.json``)."""

    method: str
    pattern: Pattern
    handler: str
    auth: bool
    summary: str


@dataclass(frozen=True, slots=True)
class JwtSettings:
    """``auth.kind = "jwt"``: which ``config.toml`` issuer verifies the surface's tokens
    (checked against config by :func:`proxy.config.load_config`) and claim renames."""

    issuer: str  # a name in config [issuers]
    claims: Mapping[str, str]  # SPEC claim name -> the name this issuer uses
    where: str  # file:line of auth.issuer, for config's cross-check
    # The issuer's OAuth 2.0 endpoints, for the OpenAPI document's flows only (the edge
    # verifies tokens, it never calls these): auth.token_url, auth.authorization_url.
    token_url: str | None = None
    authorization_url: str | None = None


@dataclass(frozen=True, slots=True)
class Version:
    """Another base path of the same surface, served like it until its ``sunset``
    (:mod:`proxy.versions` says what happens on which date)."""

    name: str
    base_path: str
    base_parts: tuple[str, ...]
    deprecation: float | None  # epoch seconds; from then on: Deprecation/Sunset/Link
    sunset: float | None  # epoch seconds; from then on: 410 VERSION_RETIRED
    link: str | None  # migration guide
    headers: tuple[tuple[bytes, bytes], ...]  # what a deprecated version's answers carry

    def status(self, now: float) -> Literal["current", "deprecated", "retired"]:
        if self.sunset is not None and now >= self.sunset:
            return "retired"
        if self.headers and (self.deprecation is None or now >= self.deprecation):
            return "deprecated"
        return "current"


# A mount as resolve tries it: the mount, its prefix's segment count, its route table, its
# pattern's literals deepest first (mounts sharing a prefix differ at their end).
MountStep = tuple[Mount, int, "RouteTable[Route] | None", tuple[tuple[int, str], ...]]


@dataclass(frozen=True, slots=True)
class Surface:
    """One compiled policy file."""

    name: str
    title: str
    version: str
    source: Path
    base_path: str
    base_parts: tuple[str, ...]
    auth: AuthKind
    jwt: JwtSettings | None
    scopes: Mapping[str, tuple[tuple[str, Access], ...]]
    error_style: ErrorStyle
    error_type_base: str
    header_style: HeaderStyle
    ietf_headers: bool  # also send RateLimit-Policy / RateLimit (draft-ietf-httpapi-ratelimit)
    limit_key: Literal["token", "account"]
    default_tier: str
    tiers: Mapping[str, Tier]
    resources: tuple[str, ...]
    mounts: tuple[Mount, ...]
    endpoints: tuple[Endpoint, ...]
    tables: Mapping[str, tuple[Route, ...]]
    versions: tuple[Version, ...]
    lists: Lists = field(default_factory=Lists)  # [lists]: page sizes (proxy.rewrite)
    hosts: frozenset[str] = frozenset()  # [surface] hosts (lower-case); empty: every host
    graphql: GraphQLSettings | None = None  # [graphql] (issue #16, proxy.graphql)
    # [native]: Magento's own paths, decided by ACL class (sidecar mode, proxy.native)
    native: NativePolicy | None = None
    _compiled: dict[tuple[str, str], RouteTable[Route]] = field(default_factory=dict, repr=False)
    _plans: dict[int, tuple[tuple[Endpoint, ...], tuple[MountStep, ...]]] = field(
        default_factory=dict, repr=False
    )

    def plan(self, n: int) -> tuple[tuple[Endpoint, ...], tuple[MountStep, ...]]:
        """What :func:`proxy.decide.resolve` tries for a path of ``n`` segments after the
        base path, each in the order tried: the endpoints whose patterns fit that length,
        and the mounts whose prefixes do, each with its route table (``None``: the mount
        names no table; :meth:`table_for` then fails as it always did). No lookups per
        mount and request."""
        found = self._plans.get(n)
        if found is None:
            steps = tuple(
                (
                    m,
                    len(m.pattern.parts),
                    self.table_for(m) if m.routes in self.tables else None,
                    m.pattern.literals[::-1],
                )
                for m in self.mounts
                if len(m.pattern.parts) <= n
            )
            found = (tuple(e for e in self.endpoints if e.pattern.fits(n)), steps)
            if n <= _CANDIDATE_LENGTHS:  # n is the client's: only short paths are kept
                self._plans[n] = found
        return found

    def table_for(self, mount: Mount) -> RouteTable[Route]:
        """The route table as this mount sees it (bulk mounts see ``by<Param>`` forms)."""
        key = (mount.routes, mount.form)
        table = self._compiled.get(key)
        if table is None:
            table = _build_table(self.tables[mount.routes], mount.form)
            self._compiled[key] = table
        return table


# Path lengths whose candidates a surface keeps (longer paths compute theirs each time).
_CANDIDATE_LENGTHS = 64


def _build_table(routes: tuple[Route, ...], form: str) -> RouteTable[Route]:
    entries: list[tuple[str, Pattern, Route]] = []
    for route in routes:
        if route.form not in ("any", form):
            continue
        pattern = route.pattern.bulk_form() if form == "bulk" else route.pattern
        entries.append((route.method, pattern, route))
    return RouteTable(entries)


def load_policy(path: Path, display: str | None = None) -> Surface:
    """Load and validate one policy file; raise :class:`ConfigError` with every problem."""
    r = Reader(path, display)
    if r.problems:
        raise ConfigError(r.problems)
    d = r.data
    r.unknown_keys(
        d,
        "",
        (
            "surface", "auth", "errors", "ratelimit", "resources", "mounts",
            "endpoints", "routes", "versions", "lists", "native",
            "graphql",  # issue #16 (proxy.graphql)
        ),
    )  # fmt: skip
    s = r.table(d, "surface", "")
    r.unknown_keys(s, "surface", ("name", "title", "version", "base_path", "hosts"))
    name = r.string(s, "name", "surface")
    base_path = r.string(s, "base_path", "surface")
    base_parts: tuple[str, ...] = ()
    try:
        base = compile_pattern(base_path or "/")
        if base.names:
            r.problem("surface.base_path", "must not contain variables")
        base_parts = tuple(p or "" for p in base.parts)
    except PatternError as exc:
        r.problem("surface.base_path", str(exc))

    resources = tuple(r.strings(d, "resources", ""))
    native: NativePolicy | None = None
    if "native" in d:  # sidecar mode: its resources are those of the table it shares
        from .native_policy import load_native

        rl_raw = d.get("ratelimit")
        tiers_raw = rl_raw.get("tiers") if isinstance(rl_raw, dict) else None
        native = load_native(r, d, path, set(tiers_raw) if isinstance(tiers_raw, dict) else set())
        if native is not None and "resources" in d:
            r.problem("resources", "a native policy's resources are those of the table it shares")
        resources = native.resources if native is not None else resources
    elif not resources:
        r.problem("resources", "must list at least one resource")
    known = set(resources)

    auth_t = r.table(d, "auth", "")
    r.unknown_keys(auth_t, "auth", ("kind", "issuer", "claims", "scopes", "jwt", *_OAUTH_URLS))
    auth: AuthKind = r.string(auth_t, "kind", "auth", "pat", choices=("pat", "jwt", "none"))
    raw_mounts = d.get("mounts")
    jwt_mount = isinstance(raw_mounts, list) and any(
        isinstance(m, dict) and m.get("auth") == "jwt" for m in raw_mounts
    )
    native_jwt = "native" in d and "issuer" in auth_t  # a native mount's JWTs (proxy.native)
    jwt = _load_jwt(r, auth_t, auth == "jwt" or jwt_mount or native_jwt)
    scopes = _load_scopes(r, auth_t, known)
    if jwt is not None and not scopes:
        r.problem("auth.scopes", "JWT access tokens need [auth.scopes]: scope name -> grants")

    err = r.table(d, "errors", "")
    r.unknown_keys(err, "errors", ("style", "type_base"))
    error_style: ErrorStyle = r.string(
        err, "style", "errors", "problem", choices=("problem", "envelope", "magento")
    )
    if (error_style == "magento") != ("native" in d):
        r.problem("errors.style", '"magento" is the error style of a [native] policy, and only')
    type_base = r.string(err, "type_base", "errors", "about:blank#")

    rl = r.table(d, "ratelimit", "")
    r.unknown_keys(rl, "ratelimit", ("headers", "default_tier", "tiers", "ietf_headers", "key"))
    header_style: HeaderStyle = r.string(
        rl, "headers", "ratelimit", "ratelimit", choices=("ratelimit", "x-rate-limit")
    )
    ietf_headers = r.boolean(rl, "ietf_headers", "ratelimit", False)
    limit_key = r.string(rl, "key", "ratelimit", "token", choices=("token", "account"))
    tiers = _load_tiers(r, rl)
    default_tier = r.string(rl, "default_tier", "ratelimit", next(iter(tiers), ""))
    if tiers and default_tier not in tiers:
        r.problem(
            "ratelimit.default_tier",
            f'unknown tier "{default_tier}" (known: {", ".join(tiers)})',
            near=default_tier,
        )
    if not tiers:
        r.problem("ratelimit.tiers", "must define at least one tier")

    lists = load_lists(r, d)
    tables = _load_tables(r, d, known)
    indexed_mounts = _load_mounts(r, d, tables)
    for i, mount in indexed_mounts:
        if mount.credential == "none" and (mount.auth or auth) != "none":
            # A token would be checked and then not used: Magento sees a guest anyway.
            r.problem(f"mounts[{i}].auth", 'a credential = "none" mount needs auth "none"')
    indexed_endpoints = _load_endpoints(r, d)
    versions = _load_versions(r, d, "/" + "/".join(base_parts))
    hosts = _load_hosts(r, s)
    graphql = _graphql(  # issue #16
        r, d, known, indexed_mounts, tables, set(tiers) if native is not None else None
    )
    check_shadowing(r, indexed_endpoints, indexed_mounts, tables)
    # Most specific prefix first: more literal segments, then more segments.
    mounts = tuple(m for _, m in sorted(indexed_mounts, key=lambda im: mount_order(im[1])))
    endpoints = tuple(e for _, e in indexed_endpoints)

    if r.problems:
        raise ConfigError(r.problems)
    return Surface(
        name=name,
        title=r.string(s, "title", "surface", name),
        version=r.string(s, "version", "surface", "1.0.0"),
        source=path,
        base_path="/" + "/".join(base_parts),
        base_parts=base_parts,
        auth=auth,
        jwt=jwt,
        scopes=scopes,
        error_style=error_style,
        error_type_base=type_base,
        header_style=header_style,
        ietf_headers=ietf_headers,
        limit_key=limit_key,
        default_tier=default_tier,
        tiers=tiers,
        resources=resources,
        mounts=mounts,
        endpoints=endpoints,
        tables=tables,
        versions=versions,
        lists=lists,
        hosts=hosts,
        graphql=graphql,
        native=native,
    )


def _graphql(
    r: Reader,
    d: dict[str, Any],
    known: set[str],
    mounts: list[tuple[int, Mount]],
    tables: dict[str, tuple[Route, ...]],
    tier_names: set[str] | None,
) -> GraphQLSettings | None:
    """``[graphql]`` (proxy.graphql), with what the edge forwards a checked request as:
    the store's Magento ``/graphql`` with the store's credential. Its path is answered
    before the mounts, so a mount route on it would never be reached: refused."""
    settings = load_graphql(r, d, known, tier_names)
    if settings is None or not settings.parts:
        return settings
    for i, mount in mounts:
        n = len(mount.pattern.parts)
        if mount.pattern.match(settings.parts[:n]) is None:
            continue
        table = _build_table(tables.get(mount.routes, ()), mount.form)
        for method in ("GET", "POST"):
            if table.lookup(method, settings.parts[n:]) is not None:
                r.problem(
                    "graphql.path",
                    f'"{settings.path}" hides {method} {settings.path} of mounts[{i}] '
                    f"({r.where(f'mounts[{i}]')})",
                )
        if mount.name == "graphql":
            r.problem(f"mounts[{i}].name", '"graphql" is the name of the [graphql] path')
    mount = Mount(
        name="graphql",
        pattern=compile_pattern(settings.path),
        upstream="magento",
        target="/graphql",  # Magento's GraphQL front name (SPEC §4.4)
        routes="",
        form="plain",
        methods=frozenset({"GET", "HEAD", "POST"}),
        auth=None,
    )
    route = Route(
        table="graphql",
        index=0,
        method="*",
        pattern=replace(compile_pattern("/"), text=""),  # the mount's path is the route
        resource=None,  # per field: proxy.graphql.decide
        access=None,
        deny=None,
        target=None,
        form="any",
        summary="GraphQL, decided per top-level field ([graphql.fields])",
    )
    return replace(settings, mount=mount, route=route)


def _load_jwt(r: Reader, auth_t: dict[str, Any], used: bool) -> JwtSettings | None:
    """``auth.issuer`` and ``[auth.claims]``; only with JWTs in use (``used``), so that a
    setting that loads is one the edge acts on (SPEC §2)."""
    if "jwt" in auth_t:
        r.problem(
            "auth.jwt",
            "the issuer is deployment data: define it in config.toml [issuers.NAME] "
            "(issuer, audience, jwks_url) and name it here with auth.issuer",
        )
    if not used:
        for key in ("issuer", "claims", "scopes", *_OAUTH_URLS):
            if key in auth_t:
                r.problem(f"auth.{key}", 'is only read with auth.kind = "jwt" (or a jwt mount)')
        return None
    issuer = r.string(auth_t, "issuer", "auth")
    claims_t = r.table(auth_t, "claims", "auth")
    r.unknown_keys(claims_t, "auth.claims", _CLAIMS)
    claims: dict[str, str] = {}
    for claim in _CLAIMS:
        if claim in claims_t:
            name = r.string(claims_t, claim, "auth.claims")
            if isinstance(claims_t[claim], str) and not name.strip():
                r.problem(f"auth.claims.{claim}", "must name a claim")
            elif name:
                claims[claim] = name
    urls = {key: _oauth_url(r, auth_t, key) for key in _OAUTH_URLS}
    if urls["authorization_url"] and not urls["token_url"]:
        r.problem("auth.authorization_url", "the authorization code flow needs auth.token_url too")
    return JwtSettings(
        issuer=issuer,
        claims=claims,
        where=r.where("auth.issuer"),
        token_url=urls["token_url"],
        authorization_url=urls["authorization_url"],
    )


def _oauth_url(r: Reader, auth_t: dict[str, Any], key: str) -> str | None:
    url: str | None = r.string(auth_t, key, "auth", None)
    if url is not None and not _LINK.fullmatch(url):
        r.problem(f"auth.{key}", f'"{url}" must be an http:// or https:// URL', near=url)
        return None
    return url


def _parse_grant(r: Reader, where: str, text: str, known: set[str]) -> tuple[str, Access] | None:
    resource, _, access = text.partition(":")
    if access not in _ACCESS:
        r.problem(where, f'"{text}" must be RESOURCE:read or RESOURCE:write', near=text)
        return None
    if resource != "*" and resource not in known:
        r.problem(where, _unknown("resource", resource, known), near=resource)
        return None
    return resource, access


def _load_scopes(
    r: Reader, auth_t: dict[str, Any], known: set[str]
) -> dict[str, tuple[tuple[str, Access], ...]]:
    scopes: dict[str, tuple[tuple[str, Access], ...]] = {}
    for scope_name, grants in r.table(auth_t, "scopes", "auth").items():
        where = f"auth.scopes.{scope_name}"
        if not isinstance(grants, list) or not all(isinstance(g, str) for g in grants):
            r.problem(where, "must be a list of RESOURCE:read|write strings")
            continue
        parsed = [_parse_grant(r, where, g, known) for g in grants]
        scopes[scope_name] = tuple(g for g in parsed if g is not None)
    return scopes


def _load_tiers(r: Reader, rl: dict[str, Any]) -> dict[str, Tier]:
    tiers: dict[str, Tier] = {}
    for tier_name, w, t in r.named_tables(rl, "tiers", "ratelimit"):
        r.unknown_keys(t, w, ("rate", "period", "burst", "daily"))
        rate = r.number(t, "rate", w, integer=True, minimum=1)
        burst = r.number(t, "burst", w, rate, integer=True, minimum=1)
        tiers[tier_name] = Tier(
            name=tier_name,
            rate=rate,
            period=float(r.number(t, "period", w, 60, minimum=0.001)),
            burst=burst,
            daily=r.number(t, "daily", w, 0, integer=True, minimum=0),
        )
    return tiers


def _load_tables(r: Reader, d: dict[str, Any], known: set[str]) -> dict[str, tuple[Route, ...]]:
    tables: dict[str, tuple[Route, ...]] = {}
    for table_name, entries in r.table(d, "routes", "").items():
        where = f"routes.{table_name}"
        if not isinstance(entries, list):
            r.problem(where, "must be an array of route tables")
            continue
        routes: list[Route] = []
        seen: dict[tuple[str, str, str], int] = {}
        for i, e in enumerate(entries):
            w = f"{where}[{i}]"
            if not isinstance(e, dict):
                r.problem(w, "must be a table")
                continue
            route = _load_route(r, w, table_name, i, e, known)
            if route is None:
                continue
            # Same shape (variable names aside) is the same route: one would never match.
            key = (route.method, str(route.pattern.parts) + str(route.pattern.tail), route.form)
            if key in seen:
                other = f"{where}[{seen[key]}]"
                r.problem(
                    w,
                    f"duplicates {other} ({r.where(other)}): both are {route.method} "
                    f"{route.pattern.text}; only one can ever match",
                )
            seen[key] = i
            routes.append(route)
        tables[table_name] = tuple(routes)
    return tables


def _load_route(
    r: Reader, w: str, table: str, index: int, e: dict[str, Any], known: set[str]
) -> Route | None:
    r.unknown_keys(
        e,
        w,
        (
            "method", "path", "resource", "access", "deny", "target", "form", "summary",
            "target_method", "list", "not_implemented",
        ),
    )  # fmt: skip
    method = r.string(e, "method", w, choices=(*_METHODS, "*"))
    pattern = _path_pattern(r, e, w)
    if pattern is None:
        return None
    deny = e.get("deny")
    if deny is not None and (not isinstance(deny, str) or not deny):
        r.problem(f"{w}.deny", "must be a non-empty string giving the reason")
        deny = None
    resource = r.string(e, "resource", w, None)
    rewrite = load_route_rewrite(r, w, e, method, _METHODS)
    if deny is None and resource is None and rewrite.not_implemented is None:
        r.problem(w, 'needs a resource (or deny = "reason")')
    if deny is not None:
        # A denied route is never forwarded: these would look like a mapping that is not.
        for key in ("resource", "access", "target"):
            if key in e:
                r.problem(f"{w}.{key}", "a denied route is never forwarded: drop this or deny")
    if resource is not None and known and resource not in known:
        r.problem(f"{w}.resource", _unknown("resource", resource, known), near=resource)
    access = r.string(e, "access", w, None, choices=_ACCESS)
    target = r.string(e, "target", w, None)
    if target is not None:
        _check_target(r, f"{w}.target", target, set(pattern.names))
    return Route(
        table=table,
        index=index,
        method=method,
        pattern=pattern,
        resource=resource,
        access=access,
        deny=deny,
        target=target,
        form=r.string(e, "form", w, "any", choices=("any", "plain", "bulk")),
        summary=r.string(e, "summary", w, ""),
        rewrite=rewrite,
    )


def _check_target(r: Reader, where: str, target: str, names: set[str]) -> None:
    if not target.startswith("/"):
        r.problem(where, f'"{target}" must start with "/"', near=target)
    allowed = names | {"store", "store_code"}
    for part in target.split("/"):
        if part.startswith("{") and part.endswith("}") and part[1:-1] not in allowed:
            r.problem(where, f'"{target}" uses unknown variable {part}', near=target)


def _path_pattern(r: Reader, table: dict[str, Any], where: str) -> Pattern | None:
    """The entry's ``path`` compiled, or ``None`` with the problem reported."""
    text = r.string(table, "path", where)
    try:
        return compile_pattern(text)
    except PatternError as exc:
        r.problem(f"{where}.path", str(exc), near=text)
        return None


def _load_mounts(
    r: Reader, d: dict[str, Any], tables: dict[str, tuple[Route, ...]]
) -> list[tuple[int, Mount]]:
    """Each mount with its index in the file, in file order."""
    mounts: list[tuple[int, Mount]] = []
    for i, w, m in r.array_of_tables(d, "mounts", ""):
        r.unknown_keys(
            m,
            w,
            (
                "name", "path", "upstream", "target", "routes", "form", "methods", "auth",
                "credential",
            ),
        )  # fmt: skip
        pattern = _path_pattern(r, m, w)
        if pattern is None:
            continue
        if pattern.tail:
            r.problem(f"{w}.path", "a mount path cannot end in {name:path}; routes match the rest")
        routes = r.string(m, "routes", w)
        if routes and routes not in tables:
            r.problem(f"{w}.routes", _unknown("route table", routes, set(tables)), near=routes)
        target = r.string(m, "target", w)
        _check_target(r, f"{w}.target", target, set(pattern.names))
        methods = m.get("methods")
        if methods is not None:
            methods = r.strings(m, "methods", w)
            for meth in methods:
                if meth not in _METHODS:
                    r.problem(f"{w}.methods", f'unknown method "{meth}"', near=meth)
        auth = r.string(m, "auth", w, None, choices=("pat", "jwt", "none"))
        upstream = r.string(m, "upstream", w, "magento")
        credential = r.string(m, "credential", w, "store", choices=("store", "none"))
        if credential == "none":
            _check_guest_mount(r, w, m, upstream, pattern)
        mount = Mount(
            name=r.string(m, "name", w, f"mount{i}"),
            pattern=pattern,
            upstream=upstream,
            target=target,
            routes=routes,
            form=r.string(m, "form", w, "plain", choices=("plain", "bulk")),
            methods=frozenset(methods) if methods is not None else None,
            auth=auth,
            credential=credential,
        )
        mounts.append((i, mount))
    return mounts


def _check_guest_mount(
    r: Reader, w: str, m: dict[str, Any], upstream: str, pattern: Pattern
) -> None:
    """``credential = "none"``: Magento as a guest (the storefront)."""
    if upstream != "magento":
        r.problem(
            f"{w}.credential",
            '"none" sends to the store\'s Magento as a guest: needs upstream = "magento"',
        )
    if "store" in pattern.names:
        r.problem(
            f"{w}.path",
            'a credential = "none" mount takes its store from the Host or X-Store-Id: '
            "drop {store} from the path",
        )


def _load_endpoints(r: Reader, d: dict[str, Any]) -> list[tuple[int, Endpoint]]:
    """Each endpoint with its index in the file, in file order."""
    out: list[tuple[int, Endpoint]] = []
    for i, w, e in r.array_of_tables(d, "endpoints", ""):
        r.unknown_keys(e, w, ("method", "path", "handler", "auth", "summary"))
        pattern = _path_pattern(r, e, w)
        if pattern is None:
            continue
        handler = r.string(e, "handler", w, choices=_HANDLERS)
        auth = r.boolean(e, "auth", w, True)
        if handler == "stores" and not auth:
            r.problem(f"{w}.auth", 'the "stores" handler lists a token\'s stores: it needs auth')
        if handler == "leaked_tokens" and auth:
            r.problem(
                f"{w}.auth",
                'the "leaked_tokens" handler is called by GitHub, which sends no token: '
                "set auth = false (reports are verified by their signature)",
            )
        want = _HANDLER_METHODS.get(handler, "GET")
        endpoint = Endpoint(
            method=r.string(e, "method", w, want, choices=(want,)),
            pattern=pattern,
            handler=handler,
            auth=auth,
            summary=r.string(e, "summary", w, ""),
        )
        out.append((i, endpoint))
    return out


def _load_versions(r: Reader, d: dict[str, Any], base_path: str) -> tuple[Version, ...]:
    out: list[Version] = []
    claimed = {base_path: "surface.base_path"}
    names: dict[str, str] = {}
    for _, w, v in r.array_of_tables(d, "versions", ""):
        r.unknown_keys(v, w, ("name", "base_path", "deprecation", "sunset", "link"))
        name = r.string(v, "name", w)
        if name in names:
            r.problem(f"{w}.name", f'"{name}" is also {names[name]} ({r.where(names[name])})')
        names[name] = w
        parts: tuple[str, ...] = ()
        try:
            pattern = compile_pattern(r.string(v, "base_path", w) or "/")
            if pattern.names or pattern.tail:
                r.problem(f"{w}.base_path", "must not contain variables")
            parts = tuple(p or "" for p in pattern.parts)
        except PatternError as exc:
            r.problem(f"{w}.base_path", str(exc))
        path = "/" + "/".join(parts)
        if path in claimed:
            other = claimed[path]
            r.problem(f"{w}.base_path", f'"{path}" is also {other} ({r.where(other)})')
        claimed[path] = f"{w}.base_path"
        deprecation = _when(r, v, "deprecation", w)
        sunset = _when(r, v, "sunset", w)
        if deprecation is not None and sunset is not None and sunset <= deprecation:
            r.problem(f"{w}.sunset", "must come after deprecation")
        link = r.string(v, "link", w, None)
        if link is not None and not _LINK.fullmatch(link):
            r.problem(f"{w}.link", f'"{link}" must be an http:// or https:// URL', near=link)
        if link is None and (deprecation is not None or sunset is not None):
            r.problem(w, "a version with a deprecation or sunset date needs a migration link")
        if link is not None and "deprecation" not in v and "sunset" not in v:
            r.problem(f"{w}.link", "is only sent once a version is deprecated: add its dates")
        out.append(
            Version(
                name=name,
                base_path=path,
                base_parts=parts,
                deprecation=deprecation,
                sunset=sunset,
                link=link,
                headers=versions.lifecycle_headers(deprecation, sunset, link),
            )
        )
    return tuple(out)


def _when(r: Reader, table: dict[str, Any], key: str, where: str) -> float | None:
    if key not in table:
        return None
    when = versions.parse_when(table[key])
    if isinstance(when, str):
        r.problem(f"{where}.{key}", when, near=table[key])
        return None
    return when


def _load_hosts(r: Reader, s: dict[str, Any]) -> frozenset[str]:
    hosts = [h.lower() for h in r.strings(s, "hosts", "surface")]
    if "hosts" in s and not hosts:
        r.problem("surface.hosts", "must name at least one host (leave it out for every host)")
    for host in hosts:
        problem = versions.host_problem(host)
        if problem is not None:
            r.problem("surface.hosts", problem, near=host)
    return frozenset(h.rstrip(".") for h in hosts)


def _unknown(kind: str, value: str, known: set[str]) -> str:
    listed = ", ".join(sorted(known)) if known else "none defined"
    return f'unknown {kind} "{value}" (known: {listed})'
