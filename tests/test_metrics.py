"""``GET /metrics`` against a real uvicorn, parsed with prometheus-client's own parser:
requests by surface/store/resource/status class, the edge's and the upstream's time apart,
rejections by reason, and label values bounded whatever paths and ids clients send."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.config import load_config
from proxy.edge import Edge
from tests.admin_servers import admin_edge
from tests.conftest import env, write_config

PRODUCTS = "/api/v1/stores/acme/commerce/products"


def _scrape(url: str) -> dict[str, list[Sample]]:
    r = httpx.get(f"{url}/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(r.text)}


def _value(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_requests_latencies_and_rejections_are_counted(tmp_path: Path) -> None:
    with admin_edge(tmp_path) as e:
        token = e.token("products:read")
        with httpx.Client(base_url=e.url, headers={"Authorization": f"Bearer {token}"}) as c:
            for _ in range(3):
                assert c.get(f"{PRODUCTS}/MB-01").status_code == 200
            assert c.post(f"{PRODUCTS}", json={}).status_code == 403  # read-only token
        assert httpx.get(f"{e.url}{PRODUCTS}/MB-01").status_code == 401
        m = _scrape(e.admin_url)
        requests = m["magento_edge_requests"]
        ok = dict(surface="storeoncloud", store="acme", resource="products", status_class="2xx")
        assert _value(requests, "magento_edge_requests_total", **ok) == 3
        assert _value(requests, "magento_edge_requests_total", status_class="4xx") == 2
        edge = m["magento_edge_edge_seconds"]
        upstream = m["magento_edge_upstream_seconds"]
        assert _value(edge, "magento_edge_edge_seconds_count", surface="storeoncloud") == 5
        # Only the three forwarded requests spent time upstream.
        assert _value(upstream, "magento_edge_upstream_seconds_count", store="acme") == 3
        assert _value(upstream, "magento_edge_upstream_seconds_sum") > 0
        rejections = m["magento_edge_rejections"]
        assert _value(rejections, "magento_edge_rejections_total", status="401") == 1
        assert _value(rejections, "magento_edge_rejections_total", status="403") == 1
        reasons = {s.labels["reason"] for s in rejections if s.name.endswith("_total")}
        assert reasons == {"unauthorized", "forbidden"}, reasons
        decisions = m["magento_edge_ratelimit_decisions"]
        assert (
            _value(decisions, "magento_edge_ratelimit_decisions_total", decision="allowed") == 4
        )  # the 401 never reached it
        cache = m["magento_edge_keystore_cache"]
        hits = _value(cache, "magento_edge_keystore_cache_total", result="hit")
        misses = _value(cache, "magento_edge_keystore_cache_total", result="miss")
        assert misses >= 1 and hits + misses == 4  # four requests carried the token
        assert _value(m["magento_edge_in_flight_requests"], "magento_edge_in_flight_requests") == 0
        idem = m["magento_edge_idempotency"]
        assert _value(idem, "magento_edge_idempotency_total", outcome="replay") == 0
        assert "magento_edge_backend_errors" in m
        assert token not in httpx.get(f"{e.admin_url}/metrics").text


def test_labels_stay_bounded_whatever_paths_and_ids_clients_send(tmp_path: Path) -> None:
    with admin_edge(tmp_path) as e:
        token = e.token("products:read")
        sent: list[str] = []
        with httpx.Client(base_url=e.url) as c:
            for i in range(40):
                sku = f"SKU-{secrets.token_hex(4)}"
                sent.append(sku)
                c.get(f"{PRODUCTS}/{sku}", headers={"Authorization": f"Bearer {token}"})
                c.get(f"/api/v1/nowhere-{i}/{sku}")  # 404: no route
                c.get(f"{PRODUCTS}/{sku}", headers={"Authorization": f"Bearer bad-{sku}"})
                c.get(f"/api/v1/stores/store-{i}/commerce/products/{sku}")
        text = httpx.get(f"{e.admin_url}/metrics").text
        series = [
            s
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "magento_edge_requests_total"
        ]
        # 160 requests with 120 distinct paths and ids: a handful of series.
        assert sum(s.value for s in series) == 160
        assert len(series) <= 6, series
        for sku in sent:
            assert sku not in text
        assert token not in text
        assert "nowhere" not in text and "store-1" not in text
        labels = {v for f in text_string_to_metric_families(text) for s in f.samples
                  for v in s.labels.values()}  # fmt: skip
        assert len(labels) < 60, labels  # config, policy and code names only


def test_each_edge_has_its_own_registry(tmp_path: Path) -> None:
    path = write_config(tmp_path, "http://127.0.0.1:9", None)
    config = load_config(path, env=env())
    one = Edge.from_config(config, SQLiteKeyStore(config.keystore_path or ""))
    two = Edge.from_config(config, SQLiteKeyStore(config.keystore_path or ""))
    assert one.metrics is not None and two.metrics is not None
    assert one.metrics.registry is not two.metrics.registry
    one.metrics.reloaded(ok=False)
    assert b'magento_edge_config_reloads_total{result="failed"} 1.0' in one.metrics.render()
    assert b"magento_edge_config_reloads_total{" not in two.metrics.render()


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    from proxy.metrics import _Histogram

    hist = _Histogram((0.1, 1.0))
    for value in (0.1, 0.5, 1.0, 7.0):  # a value equal to a bound is in that bucket (le)
        hist.observe(value)
    buckets, total = hist.family_entry()
    assert buckets == [("0.1", 1.0), ("1.0", 3.0), ("+Inf", 4.0)]
    assert total == 8.6
