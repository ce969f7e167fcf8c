"""Readiness: may a load balancer send this process requests? Answered from the results of
background probes, never by probing on the request path or on ``GET /readyz`` itself.

Every ``probe_interval`` seconds, all at once and each bounded by ``probe_timeout``: the key
store (a lookup of a hash no token has), Redis behind rate limits and idempotency (``PING``),
each issuer's JWKS (:meth:`proxy.jwt_auth.KeySet.probe`), each store's Magento with the
edge's own credential (:func:`proxy.probe.probe_store`: a wrong credential is Magento's
reason), and each ``[upstreams.NAME]`` (any HTTP answer). Backends kept in this process
(memory) need no probe. A drain (:meth:`Readiness.start_drain`) makes the edge not ready at
once, whatever the probes said.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from .credentials import UpstreamAuth
    from .edge import Edge

__all__ = ["Readiness"]

log = logging.getLogger("magento_edge.readiness")

# A sha256 hex digest no token hashes to in practice: a lookup that reads, never writes.
_PROBE_HASH = "0" * 64


class Readiness:
    """The last probe round's verdicts and the drain flag. Trust model: the probed
    backends are the operator's; no secret reaches a reason (exception types, not text,
    for Redis and HTTP failures; Magento's verdicts never quote a credential)."""

    def __init__(self, edge: Edge, *, interval: float, timeout: float) -> None:
        self._edge = edge
        self._interval = interval
        self._timeout = timeout
        self._checks: dict[str, str | None] = {}  # check -> None (ok) or why not
        self._probed = False
        self.draining = False
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    def edge_auth(self, store_id: str) -> UpstreamAuth | None:
        """The serving edge's credential object for ``store_id``."""
        return self._edge.upstream_auth(store_id)

    def start_drain(self) -> None:
        """Not ready from now on (SIGTERM: the load balancer stops sending requests)."""
        self.draining = True

    def verdict(self) -> tuple[bool, dict[str, Any]]:
        """(ready, a JSON-able body saying why)."""
        failing = {name: why for name, why in self._checks.items() if why is not None}
        if self.draining:
            reason = "draining: the edge is shutting down"
        elif not self._probed:
            reason = "starting: the first probe round has not finished"
        elif failing:
            reason = "; ".join(f"{name}: {why}" for name, why in sorted(failing.items()))
        else:
            return True, {"ready": True, "checks": dict.fromkeys(self._checks, "ok")}
        checks = {name: why or "ok" for name, why in self._checks.items()}
        return False, {"ready": False, "reason": reason, "checks": checks}

    # -- the probe loop (the admin listener's lifespan) ---------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while True:
            try:
                await self.probe_once()
            except Exception:  # a bug in a probe must not end readiness for good
                log.exception("readiness probe round failed")
            await asyncio.sleep(self._interval)

    async def probe_once(self) -> None:
        """One round: every check at once, each bounded; the verdicts replace the last."""
        checks = self._probes()
        names = list(checks)
        results = await asyncio.gather(*(self._bounded(checks[n]) for n in names))
        self._checks = dict(zip(names, results, strict=True))
        self._probed = True
        for name, why in self._checks.items():
            if why is not None:
                log.warning("not ready: %s: %s", name, why)

    async def _bounded(self, check: Callable[[], Awaitable[str | None]]) -> str | None:
        try:
            return await asyncio.wait_for(check(), self._timeout)
        except TimeoutError:
            return f"no answer within {self._timeout:g} s"
        except Exception as exc:
            # Types, not text: a message may name an address or carry a secret.
            cause = exc.__cause__
            inner = f": {type(cause).__name__}" if cause is not None else ""
            return f"failed ({type(exc).__name__}{inner})"

    def _probes(self) -> dict[str, Callable[[], Awaitable[str | None]]]:
        edge = self._edge
        config = edge.config
        probes: dict[str, Callable[[], Awaitable[str | None]]] = {"keystore": self._keystore}
        for name, backend in (("ratelimit", edge.limiter), ("idempotency", edge.idempotency.store)):
            ping = getattr(backend, "ping", None)
            if ping is not None:  # memory backends live in this process: nothing to probe
                probes[name] = _pinging(ping)
        for issuer, keys in edge.jwt.keysets.items():
            probes[f"jwks:{issuer}"] = keys.probe
        for store in config.stores.values():
            probes[f"store:{store.id}"] = _store_probe(self, store)
        for upstream in config.upstreams.values():
            probes[f"upstream:{upstream.name}"] = _upstream_probe(self, upstream.url)
        return probes

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx  # control plane only: never imported on the request path

            self._client = httpx.AsyncClient(trust_env=False, timeout=self._timeout)
        return self._client

    async def _keystore(self) -> str | None:
        keystore = self._edge.keystore
        problem = keystore.health()  # the SQLite file deleted: readable, yet not the store
        if problem is not None:
            return problem
        await keystore.store.lookup(_PROBE_HASH)  # raises when unreachable
        return None


def _pinging(ping: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[str | None]]:
    async def check() -> str | None:
        await ping()
        return None

    return check


def _store_probe(readiness: Readiness, store: Any) -> Callable[[], Awaitable[str | None]]:
    async def check() -> str | None:
        from .probe import probe_store  # imports httpx: control plane only

        # The edge's own credential: an admin store is not logged into on every round.
        auth = readiness.edge_auth(store.id)
        result = await probe_store(store, client=readiness.client(), auth=auth)
        return None if result.ok else result.verdict

    return check


def _upstream_probe(readiness: Readiness, url: str) -> Callable[[], Awaitable[str | None]]:
    async def check() -> str | None:
        await readiness.client().get(url)  # any HTTP answer: it is up
        return None

    return check
