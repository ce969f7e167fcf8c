"""The v1 request path end to end over real HTTP: auth, store visibility, permissions,
routing, forwarding rules and errors (edge → Magento stand-in / panel upstream)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conftest import MAGENTO_TOKEN, FakeClock, Harness, running_edge

V1 = "/api/v1"
PRODUCTS = f"{V1}/stores/acme/commerce/products"


def _problem(response: httpx.Response) -> dict[str, object]:
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert set(body) >= {"type", "title", "status", "detail", "request_id"}
    assert body["status"] == response.status_code
    assert body["request_id"] == response.headers["x-request-id"]
    return dict(body)


# -- authentication ---------------------------------------------------------------------


def test_missing_token_is_401_with_bare_challenge(harness: Harness) -> None:
    with harness.client() as c:
        r = c.get(f"{PRODUCTS}/MB-01")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="magento-edge"'
    _problem(r)


def test_malformed_token_is_401_invalid_token_and_never_echoed(harness: Harness) -> None:
    bad = "soc_pat_live_" + "A" * 36
    with harness.client(bad) as c:
        r = c.get(f"{PRODUCTS}/MB-01")
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    assert bad not in r.text
    assert "checksum" in _problem(r)["detail"]  # type: ignore[operator]


def test_unknown_wellformed_token_is_401(harness: Harness) -> None:
    from proxy.tokens import generate_token

    token = generate_token()
    with harness.client(token) as c:
        r = c.get(f"{PRODUCTS}/MB-01")
    assert r.status_code == 401
    assert "not known" in _problem(r)["detail"]  # type: ignore[operator]
    assert token not in r.text


def test_non_bearer_scheme_is_401_invalid_token(harness: Harness) -> None:
    with harness.client() as c:
        r = c.get(f"{PRODUCTS}/MB-01", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_revocation_is_seen_once_the_lookup_cache_ttl_has_passed(tmp_path: Path) -> None:
    import asyncio

    from proxy.backends.keystore.cached import CACHE_TTL_SECONDS
    from proxy.backends.keystore.sqlite import SQLiteKeyStore

    clock = FakeClock()
    with running_edge(tmp_path, panel=False, cache_clock=clock) as h:
        token = h.token("products:read")
        with h.client(token) as c:
            assert c.get(f"{PRODUCTS}/MB-01").status_code == 200  # now cached as valid
            store = SQLiteKeyStore(h.config.keystore_path or "")
            assert asyncio.run(store.revoke(h.last_token_id))
            asyncio.run(store.close())
            clock.now += CACHE_TTL_SECONDS * 0.9
            assert c.get(f"{PRODUCTS}/MB-01").status_code == 200  # within the stated bound
            clock.now += CACHE_TTL_SECONDS * 0.2
            r = c.get(f"{PRODUCTS}/MB-01")
    assert r.status_code == 401
    assert "revoked" in _problem(r)["detail"]  # type: ignore[operator]


def test_a_revoked_token_never_looked_up_is_401_at_once(harness: Harness) -> None:
    import asyncio

    from proxy.backends.keystore.sqlite import SQLiteKeyStore

    token = harness.token("products:read")
    store = SQLiteKeyStore(harness.config.keystore_path or "")
    assert asyncio.run(store.revoke(harness.last_token_id))
    asyncio.run(store.close())
    with harness.client(token) as c:
        r = c.get(f"{PRODUCTS}/MB-01")
    assert r.status_code == 401
    assert "revoked" in _problem(r)["detail"]  # type: ignore[operator]


def test_expired_token_is_401(harness: Harness) -> None:
    token = harness.token("products:read", expires_at=time.time() - 1)
    with harness.client(token) as c:
        r = c.get(f"{PRODUCTS}/MB-01")
    assert r.status_code == 401
    assert "expired" in _problem(r)["detail"]  # type: ignore[operator]


# -- stores and permissions ---------------------------------------------------------------


def test_store_outside_token_is_404_same_as_unknown_store(harness: Harness) -> None:
    token = harness.token("products:read", stores=("acme",))
    with harness.client(token) as c:
        other = c.get(f"{V1}/stores/oak/commerce/products/MB-01")
        unknown = c.get(f"{V1}/stores/nope/commerce/products/MB-01")
    assert other.status_code == unknown.status_code == 404
    assert _problem(other)["detail"].replace("oak", "X") == _problem(unknown)["detail"].replace(  # type: ignore[union-attr]
        "nope", "X"
    )


def test_missing_permission_is_403_naming_it(harness: Harness) -> None:
    token = harness.token("products:read")
    with harness.client(token) as c:
        r = c.get(f"{V1}/stores/acme/commerce/orders/1")
        w = c.post(PRODUCTS, json={"product": {"sku": "NEW-1", "name": "x"}})
    assert r.status_code == 403
    assert _problem(r)["required"] == "orders:read"
    assert "orders:read" in _problem(r)["detail"]  # type: ignore[operator]
    assert w.status_code == 403
    assert _problem(w)["required"] == "products:write"


def test_write_implies_read(harness: Harness) -> None:
    token = harness.token("products:write")
    with harness.client(token) as c:
        r = c.get(f"{PRODUCTS}/MB-01")
    assert r.status_code == 200, r.text


def test_read_only_post_needs_only_read(harness: Harness) -> None:
    token = harness.token("products:read")
    with harness.client(token) as c:
        r = c.post(f"{PRODUCTS}/base-prices-information", json={"skus": ["MB-01"]})
    assert r.status_code != 403, r.text


def test_live_token_cannot_reach_sandbox_store(harness: Harness) -> None:
    live = harness.token("products:read", stores=("acme", "lab"))
    test = harness.token("products:read", stores=("lab",), kind="test")
    with harness.client(live) as c:
        r = c.get(f"{V1}/stores/lab/commerce/products/MB-01")
    assert r.status_code == 403
    assert "sandbox" in _problem(r)["detail"]  # type: ignore[operator]
    with harness.client(test) as c:
        ok = c.get(f"{V1}/stores/lab/commerce/products/MB-01")
    assert ok.status_code == 200, ok.text


def test_stores_lists_only_reachable_stores_with_grants(harness: Harness) -> None:
    token = harness.token("orders:read", "products:write", stores=("acme", "oak", "lab"))
    with harness.client(token) as c:
        r = c.get(f"{V1}/stores")
    assert r.status_code == 200
    stores = r.json()["stores"]
    assert [s["id"] for s in stores] == ["acme", "oak"]  # lab is sandbox: not for a live token
    assert stores[0] == {
        "id": "acme",
        "name": "Acme Outdoor",
        "environment": "live",
        "permissions": ["orders:read", "products:write"],
    }


def test_stores_needs_a_token(harness: Harness) -> None:
    with harness.client() as c:
        assert c.get(f"{V1}/stores").status_code == 401


# -- routing ------------------------------------------------------------------------------


def test_unknown_commerce_route_is_404_problem(harness: Harness) -> None:
    token = harness.token("products:read")
    last = harness.standin.requests[-1] if harness.standin.requests else None
    before = last, sum(harness.standin.hits.values())
    with harness.client(token) as c:
        r = c.get(f"{V1}/stores/acme/commerce/no-such-thing")
    assert r.status_code == 404
    _problem(r)
    # refused at the edge: Magento saw nothing
    last = harness.standin.requests[-1] if harness.standin.requests else None
    assert (last, sum(harness.standin.hits.values())) == before


def test_denied_route_is_403_problem(harness: Harness) -> None:
    token = harness.token("products:write", "customers:write", "orders:write")
    with harness.client(token) as c:
        r = c.post(
            f"{V1}/stores/acme/commerce/integration/admin/token",
            json={"username": "admin", "password": "x"},
        )
    assert r.status_code == 403
    assert "credential endpoints" in _problem(r)["detail"]  # type: ignore[operator]


def test_unknown_api_path_is_404(harness: Harness) -> None:
    with harness.client() as c:
        r = c.get("/nothing/here")
    assert r.status_code == 404
    _problem(r)


def test_method_not_in_table_is_405_with_allow(harness: Harness) -> None:
    token = harness.token("products:write")
    with harness.client(token) as c:
        r = c.patch(f"{PRODUCTS}/MB-01", json={})
    assert r.status_code == 405
    assert "GET" in r.headers["allow"] and "PUT" in r.headers["allow"]


def test_bad_paths_are_400(harness: Harness) -> None:
    token = harness.token("products:read")
    bad = [
        f"{PRODUCTS}/%2e%2e/orders",
        f"{PRODUCTS}/..%2Forders",
        f"{PRODUCTS}/a%5Cb",
        f"{PRODUCTS}/a%00b",
        f"{PRODUCTS}/a%zzb",
        f"{V1}/stores/acme//commerce/products",
    ]
    with harness.client(token) as c:
        for path in bad:
            r = c.get(path)
            assert r.status_code == 400, path
            _problem(r)


# -- forwarding -----------------------------------------------------------------------------


def test_get_is_forwarded_with_store_credential(harness: Harness) -> None:
    token = harness.token("products:read")
    with harness.client(token) as c:
        r = c.get(
            f"{PRODUCTS}/MB-01",
            headers={"Cookie": "frontend=abc", "X-Request-Id": "req-123", "Accept": "*/*"},
        )
    assert r.status_code == 200, r.text
    assert r.json()["sku"] == "MB-01"
    assert r.headers["x-request-id"] == "req-123"
    seen = harness.standin.requests[-1]
    headers = {k.lower(): v for k, v in seen["headers"]}
    assert headers["authorization"] == f"Bearer {MAGENTO_TOKEN}"
    assert token not in str(seen["headers"])
    assert "cookie" not in headers
    assert headers["x-request-id"] == "req-123"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["via"] == "1.1 magento-edge"
    assert headers["host"] == harness.config.stores["acme"].magento_url.removeprefix("http://")


def test_sku_with_encoded_slash_and_query_pass_byte_for_byte(harness: Harness) -> None:
    token = harness.token("products:read")
    query = (
        "searchCriteria[filter_groups][0][filters][0][field]=sku"
        "&searchCriteria[filter_groups][0][filters][0][value]=BAG%25"
        "&searchCriteria[filter_groups][0][filters][0][condition_type]=like"
    )
    with harness.client(token) as c:
        one = c.get(f"{PRODUCTS}/BAG%2F01")
        raw = harness.standin.requests[-1]
        listing = c.get(f"{PRODUCTS}?{query}")
        listed = harness.standin.requests[-1]
    assert one.status_code == 200, one.text
    assert raw["raw_path"] == b"/rest/default/V1/products/BAG%2F01"
    assert listing.status_code == 200, listing.text
    assert listed["query"] == query.encode()
    assert listing.json()["total_count"] >= 1


def test_magento_errors_pass_through_verbatim(harness: Harness) -> None:
    token = harness.token("products:read")
    with harness.client(token) as c:
        r = c.get(f"{PRODUCTS}/NO-SUCH-SKU")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["message"].startswith("The product that was requested doesn't exist")


def test_post_body_reaches_magento_and_answer_returns(harness: Harness) -> None:
    token = harness.token("products:write")
    with harness.client(token) as c:
        r = c.post(PRODUCTS, json={"product": {"sku": "EDGE-1", "name": "Edge", "price": 3}})
        again = c.get(f"{PRODUCTS}/EDGE-1")
    assert r.status_code == 200, r.text
    assert r.json()["sku"] == "EDGE-1"
    assert again.json()["name"] == "Edge"


def test_async_and_bulk_paths_map_to_magento_async(harness: Harness) -> None:
    token = harness.token("products:write")
    with harness.client(token) as c:
        a = c.post(f"{V1}/stores/acme/commerce/async/products", json={"product": {"sku": "A-1"}})
        a_path = harness.standin.requests[-1]["raw_path"]
        b = c.put(
            f"{V1}/stores/acme/commerce/async/bulk/products/bySku",
            json=[{"product": {"sku": "B-1"}}, {"product": {"sku": "B-2"}}],
        )
        b_path = harness.standin.requests[-1]["raw_path"]
        g = c.get(f"{V1}/stores/acme/commerce/async/products")
    assert a.status_code == 202, a.text
    assert a_path == b"/rest/default/async/V1/products"
    assert b.status_code == 202, b.text
    assert len(b.json()["request_items"]) == 2
    assert b_path == b"/rest/default/async/bulk/V1/products/bySku"
    assert g.status_code == 405


def test_panel_routes_go_to_the_panel_upstream(harness: Harness) -> None:
    token = harness.token("design:write")
    with harness.client(token) as c:
        r = c.put(
            f"{V1}/stores/acme/design",
            json={"design": {"primaryColor": "#111827"}},
            headers={"Connection": "keep-alive, X-Secret-Hop", "X-Secret-Hop": "1"},
        )
        sub = c.get(f"{V1}/stores/acme/design/themes/42?x=1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["raw_path"] == "/stores/acme/design"
    names = {k for k, _ in body["headers"]}
    assert "x-secret-hop" not in names
    assert "set-cookie" not in r.headers
    assert r.headers["x-panel"] == "yes"
    assert sub.json()["raw_path"] == "/stores/acme/design/themes/42"
    assert sub.json()["query"] == "x=1"


def test_panel_route_without_upstream_is_503(tmp_path: Path) -> None:
    with running_edge(tmp_path, panel=False) as h:
        token = h.token("design:read")
        with h.client(token) as c:
            r = c.get(f"{V1}/stores/acme/design")
    assert r.status_code == 503
    assert "panel" in _problem(r)["detail"]  # type: ignore[operator]


def test_upstream_refused_is_502_and_slow_is_504(harness: Harness) -> None:
    token = harness.token("products:read", "backups:read", stores=("gone", "acme"))
    with harness.client(token) as c:
        refused = c.get(f"{V1}/stores/gone/commerce/products/MB-01")
        slow = c.get(f"{V1}/stores/acme/backups/slow")
    assert refused.status_code == 502
    _problem(refused)
    assert slow.status_code == 504
    _problem(slow)


def test_oauth1_store_is_signed_and_accepted_by_magento(harness: Harness) -> None:
    token = harness.token("products:read", stores=("oak",))
    with harness.client(token) as c:
        r = c.get(
            f"{V1}/stores/oak/commerce/products",
            params={"searchCriteria[pageSize]": "2", "searchCriteria[currentPage]": "1"},
        )
    assert r.status_code == 200, r.text
    auth = dict((k.lower(), v) for k, v in harness.standin.requests[-1]["headers"])["authorization"]
    assert auth.startswith("OAuth ") and 'oauth_signature_method="HMAC-SHA256"' in auth


def test_openapi_is_public_and_valid(harness: Harness) -> None:
    from openapi_spec_validator import validate

    with harness.client() as c:
        r = c.get(f"{V1}/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert "/stores/{storeId}/commerce/products/{sku}" in doc["paths"]
