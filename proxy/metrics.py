"""Prometheus metrics: what each request cost and how it ended, counted after the answer
(the ``finally`` of :meth:`proxy.edge.Edge._http`), served by the admin listener.

Names follow prometheus-client's conventions (``magento_edge_`` prefix, ``_total`` for
counters, base units ``_seconds``). Labels are only values the operator's files bound:
surface names, store ids, policy resource names, error codes, status classes — never a
token, a secret, a raw path or an id from a request, so a client cannot grow the series.

Each edge has its own :class:`~prometheus_client.CollectorRegistry` (tests and several edges
in one process never share series). Every family is built when scraped: from plain counts
kept on the request path (see :class:`Metrics` for why not prometheus-client's own
``Counter``) and from counters the steps already keep (idempotency replays, key-store cache
hits, JWKS fetches, backend errors).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
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
    """One edge's metrics. Trust model: every label value comes from config or policy.

    The hot path only bumps plain ints in dicts; the families are built when scraped.
    prometheus-client's own ``Counter``/``Histogram`` take a thread lock on every update:
    measured with ``benchmarks/inprocess.py --metrics``, they cost ~5.5 us per request
    (on/off ratio 1.29), these plain counts ~1.5 us (1.08). The edge runs on one event
    loop, which also serves the scrape, so no lock is needed."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.started = 0
        self.finished = 0
        # (surface, store, resource, status class) -> count
        self.requests: dict[tuple[str, str, str, str], int] = {}
        self.edge_seconds: dict[str, _Histogram] = {}  # surface ->
        self.upstream_seconds: dict[str, _Histogram] = {}  # store ->
        self.rejections: dict[tuple[str, str, str], int] = {}  # (surface, status, reason)
        self.limits: dict[tuple[str, str], int] = {}  # (surface, decision)
        self.reloads: dict[str, int] = {}  # result ->

    def watch(self, edge: Edge) -> None:
        """Serve this edge's metrics, and the counters its steps keep, from the registry."""
        self._steps = _StepCounters(edge, self)
        self.registry.register(self._steps)

    def watch_steps_of(self, edge: Edge) -> None:
        """After a reload: read the step counters of the edge now serving."""
        self._steps._edge = edge

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
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        upstream = ctx.upstream_seconds
        edge = self.edge_seconds.get(surface)
        if edge is None:
            edge = self.edge_seconds[surface] = _Histogram(_EDGE_BUCKETS)
        own = total - upstream if total > upstream else 0.0
        # _Histogram.observe, inlined: two calls fewer on every request
        edge.counts[bisect_left(edge.bounds, own)] += 1
        edge.total += own
        if upstream:
            up = self.upstream_seconds.get(store)
            if up is None:
                up = self.upstream_seconds[store] = _Histogram(_UPSTREAM_BUCKETS)
            up.counts[bisect_left(up.bounds, upstream)] += 1
            up.total += upstream
        if ctx.refusal is not None:
            rkey = (surface, str(status), ctx.refusal)
            self.rejections[rkey] = self.rejections.get(rkey, 0) + 1

    def limited(self, surface: str, decision: str) -> None:
        key = (surface, decision)
        self.limits[key] = self.limits.get(key, 0) + 1

    def reloaded(self, ok: bool) -> None:
        """For the reload step (SIGHUP): count one attempt."""
        result = "ok" if ok else "failed"
        self.reloads[result] = self.reloads.get(result, 0) + 1


class _Histogram:
    """Per-bucket counts (not cumulative) and a sum; Prometheus ``le`` buckets."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound (+Inf)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def family_entry(self) -> tuple[list[tuple[str, float]], float]:
        cumulative = list(accumulate(self.counts))
        pairs = zip(self.bounds, cumulative[:-1], strict=True)
        buckets = [(repr(bound), float(count)) for bound, count in pairs]  # as Go prints
        buckets.append(("+Inf", float(cumulative[-1])))
        return buckets, self.total


def _counter(name: str, doc: str, labels: tuple[str, ...], values: Any) -> Metric:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in values.items():
        family.add_metric(key if isinstance(key, tuple) else (key,), value)
    return family


def _histogram(name: str, doc: str, label: str, values: dict[str, _Histogram]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=(label,))
    for key, hist in values.items():
        buckets, total = hist.family_entry()
        family.add_metric((key,), buckets, total)
    return family


class _StepCounters(Collector):
    """Counters kept by the steps themselves, turned into metric families on scrape."""

    def __init__(self, edge: Edge, metrics: Metrics) -> None:
        self._edge = edge
        self._metrics = metrics

    def describe(self) -> Iterator[Metric]:
        return iter(())  # families vary with config; described when collected

    def collect(self) -> Iterator[Metric]:
        edge, m = self._edge, self._metrics
        yield _counter(
            "magento_edge_requests",
            "Requests answered, by surface, store, policy resource and status class.",
            ("surface", "store", "resource", "status_class"),
            m.requests,
        )
        yield _histogram(
            "magento_edge_edge_seconds",
            "Time the edge itself spent on a request (total minus the upstream's share).",
            "surface",
            m.edge_seconds,
        )
        yield _histogram(
            "magento_edge_upstream_seconds",
            "Time spent in the upstream call (send, Magento's work, streaming the answer).",
            "store",
            m.upstream_seconds,
        )
        yield _counter(
            "magento_edge_rejections",
            "Requests the edge answered itself with an error, by surface and reason code.",
            ("surface", "status", "reason"),
            m.rejections,
        )
        yield _counter(
            "magento_edge_ratelimit_decisions",
            "Rate-limit decisions by surface: allowed, limited, or error (backend down).",
            ("surface", "decision"),
            m.limits,
        )
        yield _counter(
            "magento_edge_config_reloads", "Config reloads by result (ok, failed).",
            ("result",), m.reloads,
        )  # fmt: skip
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
