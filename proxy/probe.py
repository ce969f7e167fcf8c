"""The credential probe: does each store's Magento accept the edge's credential?

``magento-edge check --probe`` (and, later, the readiness probe) sends one harmless signed
read per store, ``GET /rest/{code}/V1/store/storeConfigs`` (ACL ``Magento_Backend::store``),
built exactly as the request path builds a forwarded request (same target, same headers,
same signature), and reports per store: reachable, credential accepted, and why not in
Magento's own terms — a wrong secret, an unknown key, a clock too far ahead, Two-Factor
Auth blocking admin tokens. Magento's ``Date`` header gives the clock skew either way.

For OAuth 1.0a it also signs once as a TLS ingress would make it (offloader header
``https``): if Magento then rejects the signature, its ``web/secure/offloader_header`` is
not the store's ``magento_offloader_header``, and every request behind a TLS ingress would
fail. Secrets never appear in a result.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from .admin_token import AdminTokenAuth
from .config import AdminCredential, Config, OAuth1Credential, Store
from .credentials import MagentoOrigin, UpstreamAuth, auth_for

__all__ = ["BackendProbe", "ProbeResult", "probe_backends", "probe_config", "probe_store"]

_PATH = "/rest/{code}/V1/store/storeConfigs"
_SKEW_WARNING = 60.0  # seconds; Magento refuses OAuth timestamps over 600 s ahead
# Magento's messages (Framework/Oauth, Integration, Webapi) and what they mean here.
_OAUTH_VERDICTS = (
    ("Incorrect timestamp value", "clock"),
    ("The signature is invalid", "Magento rejected the OAuth signature: the consumer secret "
     "or the access token secret is wrong."),
    ("A consumer having the specified key does not exist", "Magento knows no integration with "
     "this consumer key."),
    ("Consumer key is not the correct length", "The consumer key is not 32 characters: it is "
     "not a Magento integration's key."),
    ("Specified token does not exist", "Magento knows no such access token (was the "
     "integration re-activated? That issues new tokens)."),
    ("Token is not associated with the specified consumer", "The access token belongs to "
     "another integration than the consumer key."),
    ("The token length is invalid", "The access token is not 32 characters: it is not a "
     "Magento integration's token."),
    ("The nonce is already being used", "Magento saw this nonce before (a replayed request)."),
)  # fmt: skip


@dataclass(slots=True)
class ProbeResult:
    store: str
    credential: str  # bearer | oauth1 | admin
    ok: bool
    verdict: str  # one line for an operator
    reachable: bool = False
    status: int | None = None  # Magento's status
    milliseconds: float | None = None
    clock_skew_seconds: float | None = None  # this machine minus Magento's Date header
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _kind(store: Store) -> str:
    if isinstance(store.credential, OAuth1Credential):
        return "oauth1"
    if isinstance(store.credential, AdminCredential):
        return "admin"
    return "bearer"


def _message(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    return str(doc.get("message", "")) if isinstance(doc, dict) else ""


def _skew(response: httpx.Response, received: float) -> float | None:
    date = response.headers.get("date")
    if not date:
        return None
    try:
        return round(received - parsedate_to_datetime(date).timestamp(), 1)
    except (TypeError, ValueError):
        return None


async def _send(
    client: httpx.AsyncClient,
    store: Store,
    origin: MagentoOrigin,
    auth: UpstreamAuth,
    proto: str,
    clock: Callable[[], float],
) -> tuple[httpx.Response, float, float]:
    target = origin.target(proto, _PATH.format(code=store.store_code))
    value = auth.authorization("GET", target.signed_url) or ""
    # The same headers a forwarded request carries (credential, Host, offloader header).
    headers = dict(origin.headers(target, value))
    headers["accept"] = "application/json"
    headers["x-forwarded-proto"] = target.proto
    started = time.perf_counter()
    response = await client.get(target.url, headers=headers)
    return response, (time.perf_counter() - started) * 1000, clock()


def _refusal(store: Store, kind: str, status: int, message: str, skew: float | None) -> str:
    for needle, verdict in _OAUTH_VERDICTS:
        if needle in message:
            if verdict == "clock":
                ahead = f" by about {skew:.0f} s" if skew is not None else ""
                return (
                    f"Magento refused the OAuth timestamp: this machine's clock is ahead of "
                    f"Magento's{ahead}; Magento allows at most 600 s. Fix the clock (NTP)."
                )
            return verdict
    if status == 404:
        return (
            f'Magento answered 404 "{message}": store code "{store.store_code}" is not one of '
            "its store views, or magento_url does not point at Magento's web root."
        )
    if "isn't authorized" in message:
        if kind == "bearer":
            return (
                "Magento treated the request as a guest: the token is unknown, expired or "
                "revoked, or it is an integration token and Magento 2.4.4+ does not accept "
                "those as bearer tokens unless 'Allow OAuth Access Tokens to be used as "
                'standalone Bearer tokens\' is on (use kind "oauth1" instead); or the '
                "integration lacks the ACL resource Magento_Backend::store."
            )
        return (
            "Magento accepted the credential but its role lacks the ACL resource "
            "Magento_Backend::store (Stores > Settings > All Stores) the probe reads."
        )
    shown = f' "{message[:200]}"' if message else ""
    return f"Magento answered {status}{shown}."


async def probe_store(
    store: Store,
    *,
    client: httpx.AsyncClient,
    clock: Callable[[], float] = time.time,
    auth: UpstreamAuth | None = None,
) -> ProbeResult:
    """``auth``: the running edge's own credential object (readiness: an admin token is
    then the edge's, not a fresh login per probe); by default one made for this probe."""
    kind = _kind(store)
    origin = MagentoOrigin(store.magento_url, store.offloader_header)
    own = auth is None
    if auth is None:
        auth = auth_for(store, clock=clock)
    result = ProbeResult(store=store.id, credential=kind, ok=False, verdict="")
    try:
        if isinstance(auth, AdminTokenAuth):
            await auth.refresh()
            if auth.authorization("GET", "") is None:
                error = auth.last_error
                result.reachable = error is None or error.kind != "unreachable"
                result.verdict = str(error) if error else "No admin token could be had."
                return result
        try:
            response, ms, received = await _send(client, store, origin, auth, "http", clock)
        except httpx.HTTPError as exc:
            result.verdict = (
                f"Magento is not reachable at {store.magento_url} ({type(exc).__name__})."
            )
            return result
        result.reachable = True
        result.status = response.status_code
        result.milliseconds = round(ms, 1)
        result.clock_skew_seconds = _skew(response, received)
        if (
            result.clock_skew_seconds is not None
            and abs(result.clock_skew_seconds) >= _SKEW_WARNING
        ):
            side = "ahead of" if result.clock_skew_seconds > 0 else "behind"
            result.warnings.append(
                f"this machine's clock is {abs(result.clock_skew_seconds):.0f} s {side} "
                "Magento's (its Date header)"
            )
        if response.status_code != 200:
            result.verdict = _refusal(
                store, kind, response.status_code, _message(response.content),
                result.clock_skew_seconds,
            )  # fmt: skip
            return result
        result.ok = True
        result.verdict = f"credential accepted ({kind}); Magento answered 200 in {ms:.0f} ms"
        if kind == "oauth1" and not origin.tls:
            behind_tls, _, _ = await _send(client, store, origin, auth, "https", clock)
            if behind_tls.status_code != 200:
                result.warnings.append(
                    f"signed as behind a TLS ingress ({store.offloader_header}: https), "
                    f"Magento answered {behind_tls.status_code} "
                    f'"{_message(behind_tls.content)}": its web/secure/offloader_header is '
                    f'not "{store.offloader_header}"; set magento_offloader_header to match, '
                    "or every request arriving over HTTPS will be refused"
                )
        return result
    finally:
        if own:
            await auth.close()


async def probe_config(
    config: Config, *, clock: Callable[[], float] = time.time
) -> Mapping[str, ProbeResult]:
    """Every store, one after another (a probe is a deploy-time check, not load)."""
    results: dict[str, ProbeResult] = {}
    async with httpx.AsyncClient(trust_env=False) as client:
        for store in config.stores.values():
            client.timeout = httpx.Timeout(
                store.timeouts.read, connect=store.timeouts.connect, pool=store.timeouts.pool
            )
            results[store.id] = await probe_store(store, client=client, clock=clock)
    return results


# -- backends: the key store and Redis behind rate limits and idempotency ----------------


@dataclass(slots=True)
class BackendProbe:
    """One configured backend: reachable and usable, or why not (for an operator)."""

    backend: str  # keystore | ratelimit | idempotency
    kind: str  # sqlite | redis | the class path
    ok: bool
    verdict: str
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def probe_backends(config: Config, *, seconds: float = 3.0) -> list[BackendProbe]:
    """The key store (a read) and each Redis backend (``PING``), each bounded by
    ``seconds``. Backends kept in the process (memory) and an operator's own class are
    reported, not probed. Nothing is written (a missing SQLite file is not created)."""
    results = [await _probe_keystore(config, seconds)]
    for part, backend, url in (
        ("ratelimit", config.ratelimit_backend, config.ratelimit_url),
        ("idempotency", config.idempotency_backend, config.idempotency_url),
    ):
        if backend == "redis" and url:
            results.append(await _probe_redis(part, url, seconds))
        else:
            results.append(BackendProbe(part, backend, True, "in this process: nothing to probe"))
    return results


async def _probe_keystore(config: Config, seconds: float) -> BackendProbe:
    backend = config.keystore_backend
    if backend == "redis" and config.keystore_url:
        return await _probe_redis("keystore", config.keystore_url, seconds)
    if backend != "sqlite" or config.keystore_path is None:
        return BackendProbe("keystore", backend, True, "an operator's own class: not probed")
    import os
    import sqlite3

    path = config.keystore_path
    if not path.exists():
        return BackendProbe(
            "keystore", "sqlite", True,
            f"{path} does not exist yet: serve creates it empty (no tokens) on start",
        )  # fmt: skip
    try:
        uri = path.resolve().as_uri() + "?mode=ro"
        db = sqlite3.connect(uri, uri=True, timeout=seconds)
        try:
            tokens = db.execute("SELECT count(*) FROM tokens").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        return BackendProbe("keystore", "sqlite", False, f"{path} cannot be read: {exc}")
    result = BackendProbe("keystore", "sqlite", True, f"{path} readable ({tokens} tokens)")
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        result.warnings.append(
            f"{path} (or its directory) is not writable: revocations, rotations and "
            "last-used times cannot be written"
        )
    return result


async def _probe_redis(part: str, url: str, seconds: float) -> BackendProbe:
    import asyncio
    from urllib.parse import urlsplit

    from .backends._redis import connect

    split = urlsplit(url)  # never the password: host, port and database only
    where = f"{split.hostname}:{split.port or 6379}{split.path or ''}"
    redis = connect(url, max_connections=1)
    started = time.perf_counter()
    try:
        await asyncio.wait_for(redis.ping(), seconds)
    except Exception as exc:
        return BackendProbe(part, "redis", False, f"Redis at {where} not reachable "
                            f"({type(exc).__name__})")  # fmt: skip
    finally:
        await redis.aclose(close_connection_pool=True)
    ms = (time.perf_counter() - started) * 1000
    result = BackendProbe(part, "redis", True, f"Redis at {where} answered PING in {ms:.0f} ms")
    if part in ("keystore", "idempotency"):
        result.warnings.extend(await _persistence_warnings(url, seconds))
    return result


async def _persistence_warnings(url: str, seconds: float) -> list[str]:
    """Tokens and idempotency records survive a Redis restart only with persistence on."""
    import asyncio

    from .backends._redis import connect

    redis = connect(url, max_connections=1, decode=True)
    try:
        aof = (await asyncio.wait_for(redis.config_get("appendonly"), seconds)).get("appendonly")
        save = (await asyncio.wait_for(redis.config_get("save"), seconds)).get("save")
    except Exception:  # CONFIG may be renamed or denied (managed Redis): not this verdict
        return []
    finally:
        await redis.aclose(close_connection_pool=True)
    if aof == "yes":
        return []
    if not save:
        return ["Redis has neither AOF nor RDB snapshots: a Redis restart loses every "
                "token or idempotency record it holds"]  # fmt: skip
    return ["Redis AOF is off (appendonly no): a Redis restart loses writes since the "
            "last RDB snapshot; see README 'Guarantees under faults'"]  # fmt: skip
