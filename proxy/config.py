"""Deployment configuration: ``config.toml`` loaded into validated, frozen objects.

The keys documented in SPEC §2 (and ``config.example.toml``) are a public contract:
operators' scripts rely on them, so they keep their meaning; new keys may be added.
Secrets are never inline: credentials name environment variables, read at load.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from ._toml import ConfigError, Reader
from .backends import idempotency as _idempotency
from .backends import keystore as _keystore
from .backends import ratelimit as _ratelimit
from .backends._classpath import is_class_path, load_class
from .policy import Surface, load_policy
from .versions import host_problem, shared_hosts

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

__all__ = [
    "AdminCredential",
    "BearerCredential",
    "Config",
    "Issuer",
    "OAuth1Credential",
    "Store",
    "Timeouts",
    "Upstream",
    "load_config",
    "unresolved_hosts",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 2.0  # TCP connect
    read: float = 30.0  # between two reads of the upstream's answer
    pool: float = 5.0  # waiting for a pooled connection
    # -- the edge's own transport (issue #14, proxy.transport) --
    write: float = 30.0  # the upstream taking the request body (its socket draining)
    body: float = 30.0  # between two parts of the client's request body (408 beyond)
    keepalive: float = 4.0  # an idle upstream connection is closed after this (below 5 s)


@dataclass(frozen=True, slots=True)
class BearerCredential:
    """An integration or admin token sent as ``Authorization: Bearer``."""

    token: str

    def __repr__(self) -> str:  # never print the secret
        return "BearerCredential(token=***)"


@dataclass(frozen=True, slots=True)
class OAuth1Credential:
    """Magento integration keys for OAuth 1.0a HMAC-SHA256 request signing."""

    consumer_key: str
    consumer_secret: str
    access_token: str
    access_token_secret: str

    def __repr__(self) -> str:
        return "OAuth1Credential(***)"


@dataclass(frozen=True, slots=True)
class AdminCredential:
    """A Magento admin's username and password; the edge logs in with them at
    ``POST /V1/integration/admin/token`` and keeps the token fresh (``admin_token.py``)."""

    username: str
    password: str
    token_lifetime: float = 4 * 3600.0  # opaque tokens; a JWT's own "exp" wins
    min_refresh_interval: float = 30.0  # never log in more often than this

    def __repr__(self) -> str:
        return "AdminCredential(***)"


Credential = BearerCredential | OAuth1Credential | AdminCredential


@dataclass(frozen=True, slots=True)
class Store:
    id: str
    name: str
    environment: Literal["live", "sandbox"]
    magento_url: str  # scheme://host[:port][/base], no trailing slash
    store_code: str
    credential: Credential
    timeouts: Timeouts
    # issue #14: connections this store may hold to its Magento (its own pool)
    max_connections: int = 64
    # Magento's web/secure/offloader_header: the header whose value "https" makes Magento
    # treat a request as secure (and sign-check it as https://...).
    offloader_header: str = "X-Forwarded-Proto"
    # Host names (lower case, no port) whose storefront requests address this store
    # (proxy.storefront); SPEC §2 pins the key.
    hosts: tuple[str, ...] = ()
    # Sidecar mode (issue #16, proxy.native): Magento's own /rest paths served for this
    # store, and the store codes a path may name (default: store_code, "all", "default").
    native: bool = False
    store_codes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    url: str
    timeouts: Timeouts
    max_connections: int = 64  # issue #14: its own pool's cap


@dataclass(frozen=True, slots=True)
class AdminSettings:
    """``[admin]``: health, readiness and metrics, never on the API port (issue #12)."""

    host: str = "127.0.0.1"
    port: int = 9901
    probe_interval: float = 10.0  # seconds between readiness probe rounds
    probe_timeout: float = 5.0  # the most one probe (one backend, one store) may take


@dataclass(frozen=True, slots=True)
class Issuer:
    """``[issuers.NAME]``: an OAuth 2.0 authorization server whose JWT access tokens a
    ``auth.kind = "jwt"`` policy accepts (SPEC §4.2). Exactly one of ``jwks_url`` and
    ``jwks_file`` is set; a file was read and found to hold a usable key at load."""

    name: str
    issuer: str  # must equal the token's "iss"
    audience: str  # must be in the token's "aud"
    jwks_url: str | None
    jwks_file: Path | None
    refresh_cooldown: float = 30.0  # at most one refresh per this for unknown kids
    stale_for: float = 86400.0  # serve the last good key set this long when the issuer is down
    algorithms: tuple[str, ...] = ("RS256", "PS256", "ES256", "EdDSA")
    leeway: float = 30.0  # seconds of clock skew allowed on exp/nbf/iat


@dataclass(frozen=True, slots=True)
class Config:
    source: Path
    host: str
    port: int
    trusted_proxies: tuple[Network, ...]
    surfaces: tuple[Surface, ...]
    # A built-in name, or "package.module:Class" (an operator's own, checked at load)
    keystore_backend: str
    keystore_path: Path | None
    keystore_url: str | None
    ratelimit_backend: str
    ratelimit_url: str | None
    ratelimit_on_backend_error: Literal["allow", "deny"]
    idempotency_backend: str
    idempotency_url: str | None
    idempotency_ttl: int
    stores: Mapping[str, Store]
    upstreams: Mapping[str, Upstream]
    max_connections: int
    log_level: str
    access_log: bool
    keystore_prefix: str = "edge:ks:"  # redis: key prefix (several deployments, one Redis)
    # [secret_scanning]: key identifier → ECDSA P-256 public key (GitHub's format)
    secret_scanning_keys: Mapping[str, EllipticCurvePublicKey] = field(default_factory=dict)
    # [idempotency]: bytes a keyed request body may have (413 above), and an answer may
    # have to be recorded (above: not replayable, see README "Idempotency")
    idempotency_max_body_bytes: int = 1024 * 1024
    idempotency_max_record_bytes: int = 1024 * 1024
    # [issuers.NAME]: who signs the JWT access tokens of auth.kind = "jwt" policies
    issuers: Mapping[str, Issuer] = field(default_factory=dict)
    # [admin] (issue #12, proxy.admin_listener): health, readiness and metrics listener
    admin: AdminSettings = field(default_factory=lambda: AdminSettings())
    # -- operations (issue #12, SPEC §9; proxy.lifecycle, proxy.logs, proxy.workers) --
    log_format: Literal["json", "text"] = "json"
    workers: int = 1
    drain_seconds: float = 5.0
    grace_seconds: float = 30.0
    allow_per_process_state: bool = False
    # -- the front door (issue #14, SPEC §8; proxy.frontdoor) --
    max_header_bytes: int = 16384
    max_header_fields: int = 100
    header_timeout: float = 10.0


_TOP = (
    "server", "keystore", "ratelimit", "idempotency", "stores", "upstreams", "logging",
    "secret_scanning", "issuers", "admin",
)  # fmt: skip


class _Unloaded(Mapping[str, str]):
    """Stands in for the environment when secrets are not needed (token and account
    commands): every variable reads as a placeholder, so none has to be set."""

    def __getitem__(self, key: str) -> str:
        return "(not loaded)"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def load_config(
    path: str | Path, *, env: Mapping[str, str] | None = None, secrets: bool = True
) -> Config:
    """Read ``config.toml`` and every policy it names; raise :class:`ConfigError` listing
    every problem (file, key path, line where known). ``secrets=False`` skips reading the
    upstream credentials (for commands that never talk to an upstream)."""
    path = Path(path)
    environ: Mapping[str, str] = os.environ if env is None else env
    if not secrets:
        environ = _Unloaded()
    r = Reader(path)
    if r.problems:
        raise ConfigError(r.problems)
    d = r.data
    r.unknown_keys(d, "", _TOP)
    base = path.parent

    server = r.table(d, "server", "")
    r.unknown_keys(
        server,
        "server",
        (
            "host",
            "port",
            "policies",
            "trusted_proxies",
            "max_connections",
            "surface_hosts",
            *_OPS_SERVER_KEYS,
            *_FRONT_DOOR_KEYS,
        ),
    )
    host = r.string(server, "host", "server", "127.0.0.1")
    port = r.number(server, "port", "server", 8080, integer=True, minimum=0)
    if isinstance(port, int) and port > 65535:
        r.problem("server.port", f"must be at most 65535, got {port}")
    trusted = _networks(r, server)
    max_connections = r.number(server, "max_connections", "server", 512, integer=True, minimum=1)

    surfaces: list[Surface] = []
    policy_problems: list[str] = []
    policy_paths = r.strings(server, "policies", "server", ["policies/storeoncloud.toml"])
    if not policy_paths:
        r.problem("server.policies", "must name at least one policy file")
    for rel in policy_paths:
        ppath = (base / rel).resolve() if not Path(rel).is_absolute() else Path(rel)
        try:
            surfaces.append(load_policy(ppath, display=rel))
        except ConfigError as exc:
            policy_problems.extend(exc.problems)
        except (
            Exception
        ) as exc:  # pragma: no cover - defensive: a loader bug must still name the file
            policy_problems.append(f"{rel}: cannot load: {exc}")
    surfaces = _surface_hosts(r, server, surfaces, checked=not policy_problems)
    _check_surface_overlap(r, surfaces)

    ks = r.table(d, "keystore", "")
    r.unknown_keys(ks, "keystore", ("backend", "path", "url", "prefix"))
    ks_backend = _backend(r, ks, "keystore", _keystore.BACKENDS, _keystore.KeyStore)
    _only_for(r, ks, "keystore", ks_backend, {"path": "sqlite", "url": "redis", "prefix": "redis"})
    ks_path = (
        (base / r.string(ks, "path", "keystore", "edge.db")) if ks_backend == "sqlite" else None
    )
    ks_url = _redis(r, ks, "keystore") if ks_backend == "redis" else None
    ks_prefix = r.string(ks, "prefix", "keystore", "edge:ks:")

    rl = r.table(d, "ratelimit", "")
    r.unknown_keys(rl, "ratelimit", ("backend", "url", "on_backend_error"))
    rl_backend = _backend(r, rl, "ratelimit", _ratelimit.BACKENDS, _ratelimit.RateLimiter)
    _only_for(r, rl, "ratelimit", rl_backend, {"url": "redis"})
    rl_url = _redis(r, rl, "ratelimit") if rl_backend == "redis" else None
    rl_on_error = r.string(rl, "on_backend_error", "ratelimit", "allow", choices=("allow", "deny"))

    idem = r.table(d, "idempotency", "")
    r.unknown_keys(
        idem, "idempotency", ("backend", "url", "ttl_seconds", "max_body_bytes", "max_record_bytes")
    )
    idem_backend = _backend(
        r, idem, "idempotency", _idempotency.BACKENDS, _idempotency.IdempotencyStore
    )
    _only_for(r, idem, "idempotency", idem_backend, {"url": "redis"})
    idem_url = _redis(r, idem, "idempotency") if idem_backend == "redis" else None
    idem_ttl = r.number(idem, "ttl_seconds", "idempotency", 86400, integer=True, minimum=1)
    idem_body = r.number(idem, "max_body_bytes", "idempotency", 1 << 20, integer=True, minimum=0)
    idem_record = r.number(
        idem, "max_record_bytes", "idempotency", 1 << 20, integer=True, minimum=0
    )

    stores = _stores(r, d, environ)
    if not d.get("stores"):  # absent or empty; entries that are not tables are named already
        r.problem("stores", "no store is configured: add a [stores.ID] table")
    for store in stores.values():
        _check_magento_base(r, store)
    _check_store_hosts(r, stores, surfaces, policies_loaded=not policy_problems)
    upstreams = _upstreams(r, d)

    logging_t = r.table(d, "logging", "")
    r.unknown_keys(logging_t, "logging", ("level", "access_log", "format"))
    log_format = r.string(logging_t, "format", "logging", "json", choices=("json", "text"))
    level = r.string(
        logging_t, "level", "logging", "info", choices=("debug", "info", "warning", "error")
    )
    access_log = r.boolean(logging_t, "access_log", "logging", True)

    admin = _admin(r, d, port)  # issue #12: admin listener
    scanning_keys = _secret_scanning(r, d, base)
    issuers = _issuers(r, d, base)
    policy_problems.extend(_unknown_issuers(surfaces, issuers))
    used = {s.jwt.issuer for s in surfaces if s.jwt is not None}
    for name in issuers.keys() - used:
        # A setting that loads is a setting that works: an issuer no policy names would
        # look like accepted JWTs where none are.
        r.problem(f"issuers.{name}", "no policy names this issuer (auth.issuer = ...)")

    ops = _operations(r, server, rl_backend, idem_backend)  # issue #12
    ops.update(_front_door(r, server))  # issue #14

    problems = r.problems + policy_problems
    if problems:
        raise ConfigError(problems)
    return Config(
        source=path,
        host=host,
        port=port,
        trusted_proxies=trusted,
        # Longest base path first, so /api/v1 wins over a broader /api.
        surfaces=tuple(sorted(surfaces, key=lambda s: -len(s.base_parts))),
        keystore_backend=ks_backend,
        keystore_path=ks_path,
        keystore_url=ks_url,
        ratelimit_backend=rl_backend,
        ratelimit_url=rl_url,
        ratelimit_on_backend_error=rl_on_error,
        idempotency_backend=idem_backend,
        idempotency_url=idem_url,
        idempotency_ttl=idem_ttl,
        idempotency_max_body_bytes=idem_body,
        idempotency_max_record_bytes=idem_record,
        stores=stores,
        upstreams=upstreams,
        max_connections=max_connections,
        log_level=level,
        access_log=access_log,
        keystore_prefix=ks_prefix,
        secret_scanning_keys=scanning_keys,
        issuers=issuers,
        admin=admin,
        log_format="text" if log_format == "text" else "json",
        **ops,
    )


def _admin(r: Reader, d: Mapping[str, Any], api_port: object) -> AdminSettings:
    """``[admin]``: where health, readiness and metrics are served, and how often the
    readiness probes run (issue #12)."""
    t = r.table(d, "admin", "")
    r.unknown_keys(t, "admin", ("host", "port", "probe_interval_seconds", "probe_timeout_seconds"))
    host = r.string(t, "host", "admin", "127.0.0.1")
    port = r.number(t, "port", "admin", 9901, integer=True, minimum=0)
    if isinstance(port, int) and port > 65535:
        r.problem("admin.port", f"must be at most 65535, got {port}")
    elif port and port == api_port:
        r.problem("admin.port", f"is the API port ({port}): the admin listener is never public")
    interval = r.number(t, "probe_interval_seconds", "admin", 10.0, minimum=0.1)
    timeout = r.number(t, "probe_timeout_seconds", "admin", 5.0, minimum=0.1)
    return AdminSettings(
        host=host, port=int(port), probe_interval=float(interval), probe_timeout=float(timeout)
    )


# -- operations (issue #12): [server] workers, drain and grace ---------------------------

_OPS_SERVER_KEYS = ("workers", "drain_seconds", "grace_seconds", "allow_per_process_state")


def _operations(r: Reader, server: Any, rl_backend: str, idem_backend: str) -> dict[str, Any]:
    workers = r.number(server, "workers", "server", 1, integer=True, minimum=1)
    drain = r.number(server, "drain_seconds", "server", 5, minimum=0)
    grace = r.number(server, "grace_seconds", "server", 30, minimum=0)
    allow = r.boolean(server, "allow_per_process_state", "server", False)
    if isinstance(workers, int) and not allow:
        problem = per_process_state_problem(rl_backend, idem_backend, workers)
        if problem:
            r.problem("server.workers", problem)
    return {
        "workers": workers,
        "drain_seconds": float(drain),
        "grace_seconds": float(grace),
        "allow_per_process_state": allow,
    }


_FRONT_DOOR_KEYS = ("max_header_bytes", "max_header_fields", "header_timeout_seconds")


def _front_door(r: Reader, server: Any) -> dict[str, Any]:
    # Below ~1 KiB no real client's head fits (a bearer JWT alone is often larger); a
    # deadline under a second cuts clients on slow links.
    head = r.number(server, "max_header_bytes", "server", 16384, integer=True, minimum=1024)
    fields = r.number(server, "max_header_fields", "server", 100, integer=True, minimum=8)
    timeout = r.number(server, "header_timeout_seconds", "server", 10, minimum=1)
    return {"max_header_bytes": head, "max_header_fields": fields, "header_timeout": float(timeout)}


def per_process_state_problem(rl_backend: str, idem_backend: str, workers: int) -> str | None:
    """Why ``workers`` processes cannot share this state, or None. Each process would
    count limits and keep idempotency records alone (N workers: N times the limit); only
    an operator who says so (``allow_per_process_state``) gets that."""
    if workers <= 1:
        return None
    memory = [
        f"[{part}] backend" for part, backend in (("ratelimit", rl_backend),
        ("idempotency", idem_backend)) if backend == "memory"
    ]  # fmt: skip
    if not memory:
        return None
    return (
        f'{workers} processes with {" and ".join(memory)} = "memory" keep '
        'that state per process; use backend = "redis", or set [server] '
        "allow_per_process_state = true if per-process limits are intended"
    )


def unresolved_hosts(
    config: Config,
    *,
    timeout: float = 5.0,
    resolve: Callable[[str], object] = lambda host: socket.getaddrinfo(host, None),
) -> list[str]:
    """A problem, with file and line, for every upstream, Magento or Redis host name that
    does not resolve (or not within ``timeout`` seconds: names are resolved in parallel).

    Not part of :func:`load_config`: whether a name resolves is the network's state at
    this moment, not the file's. ``check`` refuses on it; ``serve`` only warns, because the
    upstream client resolves on every new connection, so a resolver that is not ready yet
    when a pod starts heals by itself, while refusing would crash-loop the pod."""
    named: dict[str, list[str]] = {}  # host -> key paths naming it
    urls = [(f"stores.{s.id}.magento_url", s.magento_url) for s in config.stores.values()]
    urls += [(f"upstreams.{u.name}.url", u.url) for u in config.upstreams.values()]
    urls += [
        (f"{where}.url", url)
        for where, url in (
            ("keystore", config.keystore_url),
            ("ratelimit", config.ratelimit_url),
            ("idempotency", config.idempotency_url),
        )
        if url and urlsplit(url).scheme != "unix"
    ]
    for key, url in urls:
        host = urlsplit(url).hostname
        if host and not _is_ip(host):
            named.setdefault(host, []).append(key)
    if not named:
        return []
    failures: dict[str, str] = {}
    answered: set[str] = set()

    def lookup(host: str) -> None:
        try:
            resolve(host)
        except (OSError, UnicodeError) as exc:
            failures[host] = getattr(exc, "strerror", None) or str(exc)
        answered.add(host)

    # Daemon threads: a lookup the resolver never answers must not hold the process.
    threads = [threading.Thread(target=lookup, args=(h,), daemon=True) for h in named]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    r = Reader(config.source)
    for host, keys in named.items():
        reason = failures.get(host) if host in answered else f"no answer within {timeout:g} s"
        if reason is not None:
            for key in keys:
                r.problem(key, f'host "{host}" does not resolve ({reason})')
    return r.problems


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _networks(r: Reader, server: dict[str, Any]) -> tuple[Network, ...]:
    out: list[Network] = []
    for i, cidr in enumerate(r.strings(server, "trusted_proxies", "server")):
        try:
            out.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            r.problem(f"server.trusted_proxies[{i}]", f'"{cidr}" is not an IP network', near=cidr)
    return tuple(out)


def _backend(
    r: Reader, table: dict[str, Any], where: str, names: tuple[str, ...], protocol: type
) -> str:
    """``backend``: one of ``names`` (the first is the default), or an operator's own class
    as ``"package.module:Class"``, imported now so that a bad one is refused here."""
    value = table.get("backend")
    if isinstance(value, str) and is_class_path(value):
        try:
            load_class(value, protocol)
        except ValueError as exc:
            r.problem(f"{where}.backend", str(exc), near=value)
            return names[0]
        return value
    return str(r.string(table, "backend", where, names[0], choices=names))


def _redis(r: Reader, table: dict[str, Any], where: str) -> str:
    """A Redis backend's url (no default: a silent 127.0.0.1 hides a missing key until the
    first request) and its package, which is imported only when the backend is opened."""
    if importlib.util.find_spec("redis") is None:
        r.problem(
            f"{where}.backend",
            "\"redis\" needs the redis package (pip install 'magento-edge[redis]')",
        )
    if "url" not in table:
        r.problem(f"{where}.url", 'is required with backend = "redis" (redis://HOST:PORT/DB)')
        return ""
    url = r.string(table, "url", where)
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        r.problem(f"{where}.url", f'"{url}" is not a redis:// URL', near=url)
    return str(url)


def _only_for(
    r: Reader, table: dict[str, Any], where: str, backend: str, used_by: dict[str, str]
) -> None:
    """Refuse a key the chosen backend never reads (a url left behind by a switch to
    memory would look like shared limits that are not)."""
    for key, owner in used_by.items():
        if key in table and backend != owner:
            r.problem(
                f"{where}.{key}",
                f'is only used with backend = "{owner}" (this backend is "{backend}")',
            )


def _check_magento_base(r: Reader, store: Store) -> None:
    """``magento_url`` is the base URL: the policy's mount target adds ``/rest/{code}/V1``,
    so a URL already ending in ``/rest`` (or ``/rest/V1``...) would reach ``/rest/rest``."""
    url = urlsplit(store.magento_url)
    if not url.hostname:
        return  # named already as not a URL with a host
    parts = [p for p in url.path.split("/") if p]
    if "rest" in (p.lower() for p in parts[-3:]):
        r.problem(
            f"stores.{store.id}.magento_url",
            f'"{store.magento_url}" must be Magento\'s base URL, without /rest '
            "(the policy's mount target adds /rest/{store_code}/V1)",
        )


def _http_url(r: Reader, where: str, url: str) -> str:
    if not url:
        return url  # absent: named already as required
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        r.problem(where, f'"{url}" must be an http:// or https:// URL with a host', near=url)
    if parts.query or parts.fragment:
        r.problem(where, f'"{url}" must not carry a query or fragment', near=url)
    if parts.username is not None or parts.password is not None:
        # Never repeat the URL: it holds a secret.
        r.problem(where, "must not carry a user or password; use the store's credential")
    return url.rstrip("/")


def _timeouts(r: Reader, table: dict[str, Any], where: str) -> Timeouts:
    t = r.table(table, "timeouts", where)
    w = f"{where}.timeouts"
    r.unknown_keys(t, w, ("connect", "read", "pool", "write", "body", "keepalive"))
    return Timeouts(
        connect=float(r.number(t, "connect", w, 2.0, minimum=0.001)),
        read=float(r.number(t, "read", w, 30.0, minimum=0.001)),
        pool=float(r.number(t, "pool", w, 5.0, minimum=0.001)),
        write=float(r.number(t, "write", w, 30.0, minimum=0.001)),
        body=float(r.number(t, "body", w, 30.0, minimum=0.001)),
        keepalive=float(r.number(t, "keepalive", w, 4.0, minimum=0.001)),
    )


def _max_connections(r: Reader, table: dict[str, Any], where: str) -> int:
    """Issue #14: the connections one store (or upstream) may hold, so a hung one cannot
    take the connections of the others."""
    return int(r.number(table, "max_connections", where, 64, integer=True, minimum=1))


def _env(r: Reader, where: str, cred: dict[str, Any], key: str, environ: Mapping[str, str]) -> str:
    name = r.string(cred, key, where)
    if not name:
        return ""
    value = environ.get(name)
    if not value:
        # Name the variable, never a value.
        r.problem(f"{where}.{key}", f"environment variable {name} is not set or empty")
        return ""
    return value


def _stores(r: Reader, d: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Store]:
    stores: dict[str, Store] = {}
    for store_id, w, s in r.named_tables(d, "stores", ""):
        if not store_id.replace("-", "").replace("_", "").isalnum() or not store_id.isascii():
            r.problem(w, "store ids may use only ASCII letters, digits, '-' and '_'")
        r.unknown_keys(
            s,
            w,
            (
                "name", "environment", "magento_url", "store_code", "credential", "timeouts",
                "magento_offloader_header", "hosts", "max_connections", "native",
                "store_codes",
            ),
        )  # fmt: skip
        cred_t = r.table(s, "credential", w)
        cw = f"{w}.credential"
        kind = r.string(cred_t, "kind", cw, choices=("bearer", "oauth1", "admin"))
        credential: Credential
        if kind == "admin":
            r.unknown_keys(
                cred_t,
                cw,
                ("kind", "username_env", "password_env", "token_lifetime_seconds",
                 "min_refresh_seconds"),
            )  # fmt: skip
            credential = AdminCredential(
                username=_env(r, cw, cred_t, "username_env", environ),
                password=_env(r, cw, cred_t, "password_env", environ),
                token_lifetime=float(
                    r.number(cred_t, "token_lifetime_seconds", cw, 14400, minimum=60)
                ),
                min_refresh_interval=float(
                    r.number(cred_t, "min_refresh_seconds", cw, 30, minimum=1)
                ),
            )
        elif kind == "oauth1":
            r.unknown_keys(
                cred_t,
                cw,
                (
                    "kind", "consumer_key_env", "consumer_secret_env",
                    "access_token_env", "access_token_secret_env",
                ),
            )  # fmt: skip
            credential = OAuth1Credential(
                consumer_key=_env(r, cw, cred_t, "consumer_key_env", environ),
                consumer_secret=_env(r, cw, cred_t, "consumer_secret_env", environ),
                access_token=_env(r, cw, cred_t, "access_token_env", environ),
                access_token_secret=_env(r, cw, cred_t, "access_token_secret_env", environ),
            )
        else:
            r.unknown_keys(cred_t, cw, ("kind", "token_env"))
            credential = BearerCredential(_env(r, cw, cred_t, "token_env", environ))
        code = r.string(s, "store_code", w, "default")
        if not code or not code.replace("_", "").isalnum() or not code.isascii():
            r.problem(f"{w}.store_code", f'"{code}" is not a Magento store code', near=code)
        stores[store_id] = Store(
            id=store_id,
            name=r.string(s, "name", w, store_id),
            environment=r.string(s, "environment", w, "live", choices=("live", "sandbox")),
            magento_url=_http_url(r, f"{w}.magento_url", r.string(s, "magento_url", w)),
            store_code=code,
            credential=credential,
            timeouts=_timeouts(r, s, w),
            max_connections=_max_connections(r, s, w),
            offloader_header=_header_name(
                r, f"{w}.magento_offloader_header",
                r.string(s, "magento_offloader_header", w, "X-Forwarded-Proto"),
            ),
            hosts=_hosts(r, w, s),
            **_native_store(r, w, s, code),  # issue #16: sidecar mode
        )  # fmt: skip
    return stores


def _native_store(r: Reader, w: str, s: dict[str, Any], code: str) -> dict[str, Any]:
    """``native`` and ``store_codes`` (issue #16); the codes only where native is on."""
    native = r.boolean(s, "native", w, False)
    if "store_codes" in s and not native:
        r.problem(f"{w}.store_codes", "is read only with native = true (sidecar mode)")
    codes = r.strings(s, "store_codes", w, [code, "all", "default"])
    if "store_codes" in s and not codes:
        r.problem(f"{w}.store_codes", "must name at least one store code")
    for one in codes:
        if not one or not one.replace("_", "").isalnum() or not one.isascii():
            r.problem(f"{w}.store_codes", f'"{one}" is not a Magento store code', near=one)
    return {"native": native, "store_codes": tuple(dict.fromkeys(codes)) if native else ()}


_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")


def _hosts(r: Reader, w: str, s: dict[str, Any]) -> tuple[str, ...]:
    out: list[str] = []
    for host in r.strings(s, "hosts", w, []):
        name = host.lower()
        if not name or not set(name) <= _HOST_CHARS or name.startswith((".", "-")):
            r.problem(
                f"{w}.hosts", f'"{host}" is not a host name (no scheme, port or path)', near=host
            )
        elif name in out:
            r.problem(f"{w}.hosts", f'lists "{host}" twice', near=host)
        else:
            out.append(name)
    return tuple(out)


def _check_store_hosts(
    r: Reader, stores: Mapping[str, Store], surfaces: list[Surface], *, policies_loaded: bool
) -> None:
    """A host addresses one store; and ``hosts`` only loads where a policy reads it."""
    owner: dict[str, str] = {}
    for store in stores.values():
        for host in store.hosts:
            if host in owner:
                where = f"stores.{store.id}.hosts"
                r.problem(where, f'"{host}" is also a host of store "{owner[host]}"', near=host)
            owner.setdefault(host, store.id)
    guest = any(m.credential == "none" for s in surfaces for m in s.mounts)
    native = any(s.native is not None for s in surfaces)  # issue #16: picks by host too
    guest = guest or (native and any(st.native and st.hosts for st in stores.values()))
    if policies_loaded:
        _check_native_stores(r, stores, native)
    if owner and not guest and policies_loaded:  # a broken policy is named already
        first = next(s for s in stores.values() if s.hosts)
        r.problem(
            f"stores.{first.id}.hosts",
            'no loaded policy picks a store by host (a mount with credential = "none", '
            "e.g. policies/storefront.toml): this key would do nothing",
        )


def _check_native_stores(r: Reader, stores: Mapping[str, Store], loaded: bool) -> None:
    """Sidecar mode (issue #16) needs a native policy and a native store, each the other."""
    natives = [s for s in stores.values() if s.native]
    if natives and not loaded:
        r.problem(
            f"stores.{natives[0].id}.native",
            "no loaded policy serves Magento's own paths (add policies/magento.toml to "
            "[server] policies): this key would do nothing",
        )
    elif loaded and not natives:
        r.problem(
            "server.policies",
            "a native policy (sidecar mode) is loaded but no store sets native = true",
        )
    elif len(natives) > 1:
        for store in natives:
            if not store.hosts:
                r.problem(
                    f"stores.{store.id}.native",
                    "with several native stores each needs hosts = [...]: the Host picks one",
                )


# RFC 9110 §5.1 field-name token characters.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Headers the edge itself owns on the way to Magento: an offloader header cannot be one.
_OWNED = frozenset(
    {"host", "authorization", "content-length", "transfer-encoding", "connection", "cookie",
     "x-forwarded-for", "x-forwarded-host", "x-request-id", "via", "forwarded"}
)  # fmt: skip


def _header_name(r: Reader, where: str, name: str) -> str:
    if not name or not set(name) <= _TCHAR:
        r.problem(where, f'"{name}" is not an HTTP header name', near=name)
    elif name.lower() in _OWNED:
        r.problem(where, f'"{name}" is set by the edge itself; name Magento\'s offloader header')
    return name


def _upstreams(r: Reader, d: dict[str, Any]) -> dict[str, Upstream]:
    ups: dict[str, Upstream] = {}
    for name, w, u in r.named_tables(d, "upstreams", ""):
        if name == "magento":
            r.problem(w, '"magento" is reserved for each store\'s own Magento')
        r.unknown_keys(u, w, ("url", "timeouts", "max_connections"))
        ups[name] = Upstream(
            name=name,
            url=_http_url(r, f"{w}.url", r.string(u, "url", w)),
            timeouts=_timeouts(r, u, w),
            max_connections=_max_connections(r, u, w),
        )
    return ups


def _surface_hosts(
    r: Reader, server: dict[str, Any], surfaces: list[Surface], *, checked: bool
) -> list[Surface]:
    """``[server] surface_hosts = { NAME = ["api.example.com"] }``: the Host names each
    surface answers on in this deployment (white-labelled API domains are deployment data),
    in place of its policy's ``[surface] hosts``."""
    table = r.table(server, "surface_hosts", "server")
    by_name = {s.name: s for s in surfaces}
    out = list(surfaces)
    for name in table:
        where = f"server.surface_hosts.{name}"
        hosts = [h.lower().rstrip(".") for h in r.strings(table, name, "server.surface_hosts")]
        if not hosts:
            r.problem(where, "must name at least one host (leave the surface out for every host)")
        for host in hosts:
            problem = host_problem(host)
            if problem is not None:
                r.problem(where, problem, near=host)
        surface = by_name.get(name)
        if surface is None:
            if checked:  # a policy that failed to load is reported already
                r.problem(where, f'no loaded policy is the surface "{name}" '
                          f"(loaded: {', '.join(sorted(by_name)) or 'none'})")  # fmt: skip
            continue
        out[out.index(surface)] = dataclasses.replace(surface, hosts=frozenset(hosts))
    return out


def _check_surface_overlap(r: Reader, surfaces: list[Surface]) -> None:
    """Two surfaces (or versions) may share a base path only on disjoint hosts."""
    seen: dict[str, list[Surface]] = {}
    for s in surfaces:
        paths = [s.base_path, *(v.base_path for v in s.versions)]
        if s.graphql is not None and (s.graphql.root_parts or not s.base_parts):
            # A root GraphQL path ([graphql] root, or a surface's own at the root: the
            # native mount's /graphql) is claimed like a base path.
            paths.append("/" + "/".join(s.graphql.root_parts or s.graphql.parts))
        for p in paths:
            for other in seen.get(p, ()):
                where = shared_hosts(s.hosts, other.hosts)
                if where is not None:
                    r.problem(
                        "server.policies",
                        f'{s.source.name} and {other.source.name} both claim the base path "{p}" '
                        f"{where}",
                    )
            seen.setdefault(p, []).append(s)


# What jwt_auth can match to a key type (its DEFAULT_ALGORITHMS; a test keeps them equal).
_ALGORITHMS = ("RS256", "PS256", "ES256", "EdDSA")


def _issuers(r: Reader, d: dict[str, Any], base: Path) -> dict[str, Issuer]:
    out: dict[str, Issuer] = {}
    for name, w, t in r.named_tables(d, "issuers", ""):
        r.unknown_keys(
            t, w,
            ("issuer", "audience", "jwks_url", "jwks_file", "refresh_cooldown_seconds",
             "stale_for_seconds", "algorithms", "leeway_seconds"),
        )  # fmt: skip
        url = r.string(t, "jwks_url", w, None)
        rel = r.string(t, "jwks_file", w, None)
        if (url is None) == (rel is None):
            r.problem(w, "needs exactly one of jwks_url and jwks_file")
        if url is not None:
            _http_url(r, f"{w}.jwks_url", url)
        path: Path | None = None
        if rel is not None:
            # Imported here: httpx (JWKS fetching) loads only for configs that use JWTs.
            from .jwt_auth import KeySet

            path = base / rel
            try:
                KeySet(path=path)  # reads and checks it now: a bad file is refused here
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                r.problem(f"{w}.jwks_file", f"cannot use {rel}: {reason}", near=rel)
        algorithms = tuple(r.strings(t, "algorithms", w, list(_ALGORITHMS)))
        if not algorithms and "algorithms" in t:
            r.problem(f"{w}.algorithms", "must list at least one algorithm")
        for alg in algorithms:
            if alg.lower() == "none" or alg.upper().startswith("HS"):
                r.problem(
                    f"{w}.algorithms",
                    f'"{alg}" is never accepted for access tokens (no signature, or a shared '
                    "secret anyone with the public key would know)",
                    near=alg,
                )
            elif alg not in _ALGORITHMS:
                r.problem(
                    f"{w}.algorithms",
                    f'unknown algorithm "{alg}" (known: {", ".join(_ALGORITHMS)})',
                    near=alg,
                )
        out[name] = Issuer(
            name=name,
            issuer=r.string(t, "issuer", w),
            audience=r.string(t, "audience", w),
            jwks_url=url,
            jwks_file=path,
            refresh_cooldown=float(r.number(t, "refresh_cooldown_seconds", w, 30, minimum=1)),
            stale_for=float(r.number(t, "stale_for_seconds", w, 86400, minimum=0)),
            algorithms=tuple(a for a in algorithms if a in _ALGORITHMS),
            leeway=float(r.number(t, "leeway_seconds", w, 30, minimum=0)),
        )
    return out


def _unknown_issuers(surfaces: list[Surface], issuers: Mapping[str, Issuer]) -> list[str]:
    """A JWT policy's ``auth.issuer`` must name a config issuer (reported at the policy's
    line: that is where the name is)."""
    problems = []
    for s in surfaces:
        if s.jwt is not None and s.jwt.issuer and s.jwt.issuer not in issuers:
            known = ", ".join(sorted(issuers)) or "none defined"
            problems.append(
                f'{s.jwt.where}: auth.issuer: unknown issuer "{s.jwt.issuer}" (known in '
                f"config.toml [issuers]: {known})"
            )
    return problems


def _secret_scanning(r: Reader, d: dict[str, Any], base: Path) -> dict[str, EllipticCurvePublicKey]:
    """``[secret_scanning]``: the keys leak reports are signed with, inline
    (``public_keys = [{key_identifier, key}]``) and/or from ``public_keys_file`` (the JSON
    GitHub serves at ``/meta/public_keys/secret_scanning``). Each must be ECDSA P-256."""
    t = r.table(d, "secret_scanning", "")
    r.unknown_keys(t, "secret_scanning", ("public_keys", "public_keys_file"))
    entries: list[tuple[str, object]] = []
    inline = t.get("public_keys", [])
    if not isinstance(inline, list):
        r.problem("secret_scanning.public_keys", "must be an array of tables")
        inline = []
    entries.extend((f"secret_scanning.public_keys[{i}]", e) for i, e in enumerate(inline))
    rel = r.string(t, "public_keys_file", "secret_scanning", None)
    if rel:
        where = "secret_scanning.public_keys_file"
        try:
            doc = json.loads((base / rel).read_text())
            listed = doc.get("public_keys") if isinstance(doc, dict) else None
            if not isinstance(listed, list):
                raise ValueError('no "public_keys" array')
        except (OSError, ValueError) as exc:
            r.problem(where, f"cannot read {rel}: {exc}", near=rel)
        else:
            entries.extend((f"{rel}: public_keys[{i}]", e) for i, e in enumerate(listed))
    keys: dict[str, EllipticCurvePublicKey] = {}
    for where, entry in entries:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("key_identifier"), str)
            or (not isinstance(entry.get("key"), str))
        ):
            r.problem(where, "must be a table with string key_identifier and key")
            continue
        try:
            keys[entry["key_identifier"]] = _p256_key(entry["key"])
        except ValueError as exc:
            r.problem(f"{where}.key", str(exc))
    return keys


def _p256_key(pem: str) -> EllipticCurvePublicKey:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        key = load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM public key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("must be an ECDSA P-256 public key (ECDSA-NIST-P256V1-SHA256)")
    return key
