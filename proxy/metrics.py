"""Prometheus metrics: what each request cost and how it ended, counted after the answer
(the ``finally`` of :meth:`proxy.edge.Edge._http`), served by the admin listener.

Names follow prometheus-client's conventions (``magento_edge_`` prefix, ``_total`` for
counters, base units ``_seconds``). Labels are only values the operator's files bound:
surface names, store ids, policy resource names, error codes, status classes — never a
token, a secret, a raw path or an id from a request, so a client cannot grow the series.

Each edge has its own :class:`~prometheus_client.CollectorRegistry` (tests and several edges
in one process never share series). Counters the steps already keep (idempotency replays,
key-store cache hits, JWKS fetches, backend errors) are read when scraped, not copied on
every request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .context import RequestContext
    from .edge import Edge

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Edge-own time is sub-millisecond when healthy; upstream time is Magento's, up to seconds.
_EDGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
_UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_CLASSES = {n: f"{n}xx" for n in range(1, 6)}


class Metrics:
    """One edge's metrics. Trust model: every label value comes from config or policy."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = Counter(
            "magento_edge_requests",
            "Requests answered, by surface, store, policy resource and status class.",
            ("surface", "store", "resource", "status_class"),
            registry=r,
        )
        self._edge = Histogram(
            "magento_edge_edge_seconds",
            "Time the edge itself spent on a request (total minus the upstream's share).",
            ("surface",),
            buckets=_EDGE_BUCKETS,
            registry=r,
        )
        self._upstream = Histogram(
            "magento_edge_upstream_seconds",
            "Time spent in the upstream call (send, Magento's work, streaming the answer).",
            ("store",),
            buckets=_UPSTREAM_BUCKETS,
            registry=r,
        )
        self._rejections = Counter(
            "magento_edge_rejections",
            "Requests the edge answered itself with an error, by surface and reason code.",
            ("surface", "status", "reason"),
            registry=r,
        )
        self._limits = Counter(
            "magento_edge_ratelimit_decisions",
            "Rate-limit decisions by surface: allowed, limited, or error (backend down).",
            ("surface", "decision"),
            registry=r,
        )
        self._reloads = Counter(
            "magento_edge_config_reloads",
            "Config reloads by result (ok, failed).",
            ("result",),
            registry=r,
        )
        # Plain ints on the hot path (asyncio: one thread); read by the collector.
        self.started = 0
        self.finished = 0
        # Label children looked up once per label tuple (labels() takes a lock each time).
        self._req_children: dict[tuple[str, str, str, str], Counter] = {}
        self._edge_children: dict[str, Histogram] = {}
        self._up_children: dict[str, Histogram] = {}

    def watch(self, edge: Edge) -> None:
        """Expose the counters ``edge``'s steps keep themselves, read at scrape time."""
        self.registry.register(_StepCounters(edge, self))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- hooks (proxy.edge) -----------------------------------------------------------

    def done(self, ctx: RequestContext, total: float) -> None:
        """One request finished after ``total`` seconds (``ctx.upstream_seconds`` of them
        in the upstream call)."""
        self.finished += 1
        surface = ctx.surface.name if ctx.surface is not None else "-"
        store = ctx.store.id if ctx.store is not None else "-"
        decision = ctx.decision
        resource = "-"
        if decision is not None:
            if decision.route is not None:
                resource = decision.route.resource or "-"
            elif decision.endpoint is not None:
                resource = "edge:" + decision.endpoint.handler
        status = ctx.status
        key = (surface, store, resource, _CLASSES.get(status // 100, "other"))
        child = self._req_children.get(key)
        if child is None:
            child = self._req_children[key] = self._requests.labels(*key)
        child.inc()
        upstream = ctx.upstream_seconds
        edge = self._edge_children.get(surface)
        if edge is None:
            edge = self._edge_children[surface] = self._edge.labels(surface)
        edge.observe(max(0.0, total - upstream))
        if upstream:
            up = self._up_children.get(store)
            if up is None:
                up = self._up_children[store] = self._upstream.labels(store)
            up.observe(upstream)
        if ctx.refusal is not None:
            self._rejections.labels(surface, str(status), ctx.refusal).inc()

    def limited(self, surface: str, decision: str) -> None:
        self._limits.labels(surface, decision).inc()

    def reloaded(self, ok: bool) -> None:
        """For the reload step (SIGHUP): count one attempt."""
        self._reloads.labels("ok" if ok else "failed").inc()


class _StepCounters(Collector):
    """Counters kept by the steps themselves, turned into metric families on scrape."""

    def __init__(self, edge: Edge, metrics: Metrics) -> None:
        self._edge = edge
        self._metrics = metrics

    def describe(self) -> Iterator[Metric]:
        return iter(())  # families vary with config; described when collected

    def collect(self) -> Iterator[Metric]:
        edge, m = self._edge, self._metrics
        yield GaugeMetricFamily(
            "magento_edge_in_flight_requests",
            "Requests being handled now.",
            value=m.started - m.finished,
        )
        idem = edge.idempotency
        family = CounterMetricFamily(
            "magento_edge_idempotency",
            "Keyed writes by outcome: replayed answer, conflict (409), mismatch (422).",
            labels=("outcome",),
        )
        family.add_metric(("replay",), idem.replays)
        family.add_metric(("conflict",), idem.conflicts)
        family.add_metric(("mismatch",), idem.mismatches)
        yield family
        ks = edge.keystore
        family = CounterMetricFamily(
            "magento_edge_keystore_cache",
            "Key-store lookups answered by the edge's cache (hit) or the store (miss).",
            labels=("result",),
        )
        family.add_metric(("hit",), ks.hits)
        family.add_metric(("miss",), ks.misses)
        yield family
        family = CounterMetricFamily(
            "magento_edge_jwks_refreshes",
            "JWKS fetches per issuer, by result.",
            labels=("issuer", "result"),
        )
        for issuer, keys in edge.jwt.keysets.items():
            family.add_metric((issuer, "ok"), keys.fetches - keys.failures)
            family.add_metric((issuer, "failed"), keys.failures)
        yield family
        family = CounterMetricFamily(
            "magento_edge_backend_errors",
            "Errors talking to a backend (Redis, the key store's database).",
            labels=("backend",),
        )
        family.add_metric(("keystore",), ks.errors)
        family.add_metric(("ratelimit",), getattr(edge.limiter, "errors", 0))
        family.add_metric(("idempotency",), idem.backend_errors)
        yield family
