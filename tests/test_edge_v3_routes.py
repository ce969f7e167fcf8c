"""The v3 routes, the storefront and the v1 default page size, end to end.

Real uvicorn servers on loopback: the edge with the three shipped policies in front of the
Magento stand-in and the panel. ``policies/storeicu.toml`` ships with JWT auth, which
another part of issue 11 builds; these tests load a copy whose ``[auth]`` table is replaced
by personal access tokens, so every route, rewrite and credential is exercised as it will
run (a token reaching one store stands for the JWT's ``store_id``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MAGENTO_TOKEN, REPO, Harness, running_edge

V3 = "/api/v3"
SF = "/api/storefront/v3"
SHOP = "shop.example.com"
DEFAULT_PAGE = "searchCriteria[pageSize]=50&searchCriteria[currentPage]=1"

STORES = """
[stores.shop]
name = "Shop (storefront only)"
magento_url = "{MAGENTO_URL}"
store_code = "default"
credential = { kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }
hosts = ["shop.example.com", "WWW.Shop.Example.com"]
"""


def pat_copy(directory: Path) -> Path:
    """policies/storeicu.toml with its [auth] tables (JWT, scopes) replaced by PAT auth, and
    without its earlier versions (their /api/v1 is the developer API's here; versions are
    tested in test_versions.py)."""
    text = (REPO / "policies" / "storeicu.toml").read_text()
    text = text[: text.index("[[versions]]")]
    replaced, n = re.subn(
        r"\[auth\]\n.*?(?=\n\[errors\])", '[auth]\nkind = "pat"\n', text, flags=re.S
    )
    assert n == 1 and "jwt" not in replaced.split("[errors]")[0]
    path = directory / "storeicu-pat.toml"
    path.write_text(replaced)
    return path


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    directory = tmp_path_factory.mktemp("v3")
    policies = [
        REPO / "policies" / "storeoncloud.toml",
        pat_copy(directory),
        REPO / "policies" / "storefront.toml",
    ]
    with running_edge(directory, policy=policies, extra=STORES) as h:
        yield h


def _sent(h: Harness, before: int) -> list[dict[str, Any]]:
    return list(h.standin.requests)[before:] if len(h.standin.requests) > before else []


def _header(request: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in request["headers"] if k == name]


def _envelope(r: httpx.Response, code: str) -> dict[str, Any]:
    assert r.headers["content-type"] == "application/json", r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == code, r.text
    assert error["request_id"] == r.headers["x-request-id"]
    return error


# (grant, v3 method, v3 path, JSON body, Magento method, Magento path after /rest/default)
ROUTES = [
    ("products:read", "GET", "/products", None, "GET", "/V1/products"),
    ("products:write", "POST", "/products", {"product": {"sku": "V3-1", "name": "n", "price": 1}}, "POST", "/V1/products"),
    ("products:read", "GET", "/products/BAG%2F01", None, "GET", "/V1/products/BAG%2F01"),
    ("products:write", "PUT", "/products/V3-2", {"product": {"name": "n", "price": 2}}, "PUT", "/V1/products/V3-2"),
    ("products:write", "DELETE", "/products/V3-1", None, "DELETE", "/V1/products/V3-1"),
    ("orders:read", "GET", "/orders", None, "GET", "/V1/orders"),
    ("orders:write", "POST", "/orders", {"entity": {"customer_email": "a@example.com"}}, "PUT", "/V1/orders/create"),
    ("orders:read", "GET", "/orders/1", None, "GET", "/V1/orders/1"),
    ("customers:read", "GET", "/customers", None, "GET", "/V1/customers/search"),
    ("customers:write", "POST", "/customers", {"customer": {"email": "b@example.com"}}, "POST", "/V1/customers"),
    ("customers:read", "GET", "/customers/1", None, "GET", "/V1/customers/1"),
    ("customers:write", "PUT", "/customers/1", {"customer": {"firstname": "B"}}, "PUT", "/V1/customers/1"),
    ("customers:write", "DELETE", "/customers/1", None, "DELETE", "/V1/customers/1"),
    ("inventory:read", "GET", "/inventory", None, "GET", "/V1/inventory/source-items"),
    ("inventory:read", "GET", "/inventory/BAG%2F01", None, "GET", "/V1/stockItems/BAG%2F01"),
    ("inventory:write", "POST", "/inventory/adjustments", {"sourceItems": [{"sku": "BAG/01", "source_code": "default", "quantity": 3, "status": 1}]}, "POST", "/V1/inventory/source-items"),
    ("content:read", "GET", "/pages", None, "GET", "/V1/cmsPage/search"),
    ("content:write", "POST", "/pages", {"page": {"identifier": "about", "title": "About"}}, "POST", "/V1/cmsPage"),
    ("content:read", "GET", "/pages/3", None, "GET", "/V1/cmsPage/3"),
    ("content:write", "PUT", "/pages/3", {"page": {"title": "About us"}}, "PUT", "/V1/cmsPage/3"),
    ("content:write", "DELETE", "/pages/3", None, "DELETE", "/V1/cmsPage/3"),
    ("orders:write", "POST", "/carts", None, "POST", "/V1/guest-carts"),
    ("orders:read", "GET", "/carts/abc123", None, "GET", "/V1/guest-carts/abc123"),
    ("orders:write", "POST", "/carts/abc123/checkout", {"paymentMethod": {"method": "checkmo"}}, "PUT", "/V1/guest-carts/abc123/order"),
    ("products:write", "POST", "/bulk/products/import", [{"product": {"sku": "B1"}}, {"product": {"sku": "B2"}}], "POST", "/async/bulk/V1/products"),
]  # fmt: skip
LISTS = {"/products", "/orders", "/customers", "/inventory", "/pages"}


@pytest.mark.parametrize(("grant", "method", "path", "body", "m_method", "m_path"), ROUTES)
def test_every_v3_route_reaches_magento_rewritten_with_the_store_credential(
    edge: Harness,
    grant: str,
    method: str,
    path: str,
    body: Any,
    m_method: str,
    m_path: str,
) -> None:
    token = edge.token(grant)
    before = len(edge.standin.requests)
    with edge.client(token) as c:
        r = c.request(method, V3 + path, json=body)
    (sent,) = _sent(edge, before)
    assert r.status_code == sent["status"], r.text  # Magento's answer, passed through
    assert r.status_code in (200, 202, 404), r.text
    assert sent["method"] == m_method
    assert sent["raw_path"] == ("/rest/default" + m_path).encode()
    listed = method == "GET" and path in LISTS
    assert sent["query"] == (DEFAULT_PAGE.encode() if listed else b"")
    assert _header(sent, "authorization") == [f"Bearer {MAGENTO_TOKEN}"]
    if body is not None:
        assert sent["body_length"] > 0  # streamed unchanged
    assert "x-rate-limit-limit" in r.headers


def test_v3_list_answers_are_magento_search_results(edge: Harness) -> None:
    with edge.client(edge.token("products:read")) as c:
        r = c.get(f"{V3}/products", params={"limit": "2", "page": "1"})
    assert r.status_code == 200, r.text
    data = r.json()
    assert len(data["items"]) == 2
    assert data["search_criteria"]["page_size"] == 2
    assert data["total_count"] > 2


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("page=3&limit=10", "searchCriteria[pageSize]=10&searchCriteria[currentPage]=3"),
        ("limit=250", "searchCriteria[pageSize]=250&searchCriteria[currentPage]=1"),
        ("page=2", "searchCriteria[pageSize]=50&searchCriteria[currentPage]=2"),
        # The client's own criteria and other parameters pass byte for byte.
        (
            "searchCriteria[filter_groups][0][filters][0][field]=sku&fields=items[sku]&limit=5",
            "searchCriteria[filter_groups][0][filters][0][field]=sku&fields=items[sku]"
            "&searchCriteria[pageSize]=5&searchCriteria[currentPage]=1",
        ),
        (
            "searchCriteria%5BpageSize%5D=7",
            "searchCriteria%5BpageSize%5D=7&searchCriteria[currentPage]=1",
        ),
        (
            "searchCriteria[pageSize]=7&searchCriteria[currentPage]=2",
            "searchCriteria[pageSize]=7&searchCriteria[currentPage]=2",
        ),
    ],
)
def test_page_and_limit_become_search_criteria(edge: Harness, query: str, expected: str) -> None:
    before = len(edge.standin.requests)
    with edge.client(edge.token("orders:read")) as c:
        r = c.get(f"{V3}/orders?{query}")
    assert r.status_code == 200, r.text
    (sent,) = _sent(edge, before)
    assert sent["query"] == expected.encode()


@pytest.mark.parametrize(
    "query",
    [
        "limit=0", "limit=-1", "limit=251", "limit=abc", "limit=1.5", "limit=", "limit=+5",
        "page=0", "page=-1", "page=x", "page=99999999999", "limit=1&limit=2",
        "limit=5&searchCriteria[pageSize]=5", "page=2&searchCriteria[current_page]=2",
    ],
)  # fmt: skip
def test_bad_page_or_limit_is_400_with_nothing_sent(edge: Harness, query: str) -> None:
    before = len(edge.standin.requests)
    with edge.client(edge.token("products:read")) as c:
        r = c.get(f"{V3}/products?{query}")
    assert r.status_code == 400, r.text
    error = _envelope(r, "BAD_REQUEST")
    assert error["details"]["parameter"] in ("page", "limit")
    assert _sent(edge, before) == []


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/orders/1"), ("PUT", "/carts/abc123"), ("POST", "/bulk/customers/export")],
)
def test_routes_without_a_magento_equivalent_are_501(edge: Harness, method: str, path: str) -> None:
    before = len(edge.standin.requests)
    with edge.client(edge.token("orders:write", "customers:write")) as c:
        r = c.request(method, V3 + path, json={"x": 1})
    assert r.status_code == 501, r.text
    assert "Magento" in _envelope(r, "NOT_IMPLEMENTED")["message"]
    assert _sent(edge, before) == []


@pytest.mark.parametrize(
    ("grant", "method", "path", "panel_path"),
    [
        ("webhooks:write", "POST", "/webhooks", "/stores/acme/webhooks"),
        ("webhooks:read", "GET", "/webhooks", "/stores/acme/webhooks"),
        ("webhooks:write", "DELETE", "/webhooks/wh_1", "/stores/acme/webhooks/wh_1"),
        ("themes:write", "PUT", "/themes/current/colors", "/stores/acme/themes/current/colors"),
        ("reports:read", "GET", "/reports/sales", "/stores/acme/reports/sales"),
    ],
)
def test_webhooks_themes_and_reports_go_to_the_panel(
    edge: Harness, grant: str, method: str, path: str, panel_path: str
) -> None:
    with edge.client(edge.token(grant)) as c:
        r = c.request(method, V3 + path)
    assert r.status_code == 200, r.text
    seen = edge.panel.requests[-1]
    assert (seen["method"], seen["raw_path"]) == (method, panel_path)
    assert not [v for k, v in seen["headers"] if k == "authorization"]


def test_reports_are_read_only(edge: Harness) -> None:
    with edge.client(edge.token("reports:write")) as c:
        r = c.post(f"{V3}/reports/sales")
    assert r.status_code == 405
    _envelope(r, "METHOD_NOT_ALLOWED")


def test_v3_refusals_send_nothing(edge: Harness) -> None:
    before = len(edge.standin.requests)
    with edge.client(edge.token("products:read")) as c:
        scope = c.get(f"{V3}/orders")
        write = c.post(f"{V3}/products", json={"product": {}})
    with edge.client(edge.token("orders:read", stores=("acme", "oak"))) as c:
        two_stores = c.get(f"{V3}/orders")
    with edge.client() as c:
        anonymous = c.get(f"{V3}/orders")
    assert scope.status_code == 403 and write.status_code == 403
    _envelope(scope, "INSUFFICIENT_SCOPE")  # SPEC §4.2: a missing permission
    assert two_stores.status_code == 400
    assert "one store" in _envelope(two_stores, "BAD_REQUEST")["message"]
    assert anonymous.status_code == 401
    assert _sent(edge, before) == []


def test_oauth1_store_signs_the_rewritten_method_and_query(edge: Harness) -> None:
    """The stand-in verifies the OAuth 1.0a signature over the method and query it gets:
    a 200 means the edge signed the rewritten request, not the client's."""
    token = edge.token("orders:write", "products:read", stores=("oak",))
    before = len(edge.standin.requests)
    with edge.client(token) as c:
        listed = c.get(f"{V3}/products?limit=3&page=2&searchCriteria[sort_orders][0][field]=sku")
        created = c.post(f"{V3}/orders", json={"entity": {"customer_email": "o@example.com"}})
    assert listed.status_code == 200, listed.text
    assert created.status_code == 200, created.text
    list_req, create_req = _sent(edge, before)
    assert list_req["query"] == (
        b"searchCriteria[sort_orders][0][field]=sku"
        b"&searchCriteria[pageSize]=3&searchCriteria[currentPage]=2"
    )
    assert create_req["method"] == "PUT"
    assert create_req["raw_path"] == b"/rest/default/V1/orders/create"
    for sent in (list_req, create_req):
        assert _header(sent, "authorization")[0].startswith("OAuth ")


# -- the v1 commerce gateway's default page size -------------------------------------------


@pytest.mark.parametrize(
    "path", ["/orders", "/products", "/customers/search", "/inventory/source-items"]
)
def test_v1_list_route_without_criteria_gets_the_default_page_size(
    edge: Harness, path: str
) -> None:
    grant = {"/orders": "orders", "/products": "products", "/customers/search": "customers"}
    token = edge.token(f"{grant.get(path, 'inventory')}:read")
    before = len(edge.standin.requests)
    with edge.client(token) as c:
        r = c.get(f"/api/v1/stores/acme/commerce{path}")
    assert r.status_code == 200, r.text  # Magento would say "searchCriteria is required"
    (sent,) = _sent(edge, before)
    assert sent["query"] == DEFAULT_PAGE.encode()
    assert "items" in r.json()


def test_v1_other_queries_pass_byte_for_byte(edge: Harness) -> None:
    token = edge.token("products:read", "orders:read")
    before = len(edge.standin.requests)
    with edge.client(token) as c:
        own = c.get("/api/v1/stores/acme/commerce/orders?searchCriteria[pageSize]=1000")
        empty = c.get("/api/v1/stores/acme/commerce/products?searchCriteria=")
        item = c.get("/api/v1/stores/acme/commerce/products/BAG%2F01?page=2")
    assert own.status_code == empty.status_code == item.status_code == 200
    sent = _sent(edge, before)
    assert [s["query"] for s in sent] == [
        b"searchCriteria[pageSize]=1000",
        b"searchCriteria=",
        b"page=2",
    ]


# -- the storefront ------------------------------------------------------------------------


def test_storefront_products_go_to_magento_as_a_guest(edge: Harness) -> None:
    before = len(edge.standin.requests)
    with httpx.Client(base_url=edge.url) as c:
        r = c.get(
            f"{SF}/products?limit=5&storeId=1&currencyCode=USD",
            headers={"Host": SHOP, "Authorization": f"Bearer {MAGENTO_TOKEN}"},
        )
    assert r.status_code == 200, r.text
    (sent,) = _sent(edge, before)
    assert sent["raw_path"] == b"/rest/default/V1/products-render-info"
    assert (
        sent["query"]
        == b"storeId=1&currencyCode=USD&searchCriteria[pageSize]=5&searchCriteria[currentPage]=1"
    )
    # Not the store's credential, and not the client's either.
    assert _header(sent, "authorization") == []
    assert "x-rate-limit-remaining" in r.headers  # per address


@pytest.mark.parametrize(
    "headers",
    [{"Host": SHOP}, {"Host": "www.shop.example.com:8443"}, {"X-Store-Id": "acme"}, {"X-Store-Id": "oak"}],
)  # fmt: skip
def test_storefront_store_from_host_or_header(edge: Harness, headers: dict[str, str]) -> None:
    before = len(edge.standin.requests)
    with httpx.Client(base_url=edge.url) as c:
        created = c.post(f"{SF}/cart", headers=headers)
        placed = c.post(
            f"{SF}/cart/abc123/checkout",
            json={"paymentMethod": {"method": "checkmo"}},
            headers=headers,
        )
    assert created.status_code == 200, created.text
    assert placed.status_code == 200, placed.text
    assert len(created.json()) == 32  # Magento's masked cart id
    first, second = _sent(edge, before)
    assert (first["method"], first["raw_path"]) == ("POST", b"/rest/default/V1/guest-carts")
    assert (second["method"], second["raw_path"]) == (
        "PUT",
        b"/rest/default/V1/guest-carts/abc123/order",
    )
    assert _header(first, "authorization") == _header(second, "authorization") == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 404),  # the test client's own host is no store's
        ({"X-Store-Id": "nope"}, 404),
        ({"Host": "other.example.com"}, 404),
        ({"Host": SHOP, "X-Store-Id": "acme"}, 400),  # which one?
    ],
)
def test_storefront_without_a_store_is_refused(
    edge: Harness, headers: dict[str, str], status: int
) -> None:
    before = len(edge.standin.requests)
    with httpx.Client(base_url=edge.url) as c:
        r = c.post(f"{SF}/cart", headers=headers)
    assert r.status_code == status, r.text
    _envelope(r, "RESOURCE_NOT_FOUND" if status == 404 else "BAD_REQUEST")
    assert _sent(edge, before) == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/orders", 404),
        ("GET", "/customers/1", 404),
        ("PUT", "/cart/abc123", 405),  # Magento's PUT guest-carts/:id is a customer's (self)
        ("GET", "/products/BAG%2F01", 404),
    ],
)
def test_storefront_reaches_only_its_routes(
    edge: Harness, method: str, path: str, status: int
) -> None:
    before = len(edge.standin.requests)
    with httpx.Client(base_url=edge.url) as c:
        r = c.request(method, SF + path, headers={"Host": SHOP})
    assert r.status_code == status, r.text
    assert _sent(edge, before) == []
