"""The partner API v3, the storefront and the v1 default page size, end to end.

Real uvicorn servers on loopback: the edge with the three SHIPPED policies (as
config.example.toml serves them: each API on its own host through ``[server]
surface_hosts``) in front of the Magento stand-in and the panel, and the issuer's JWKS
served by a real server. v3 calls carry JWT access tokens signed by a key of that JWKS,
minted with pyjwt with the claims a partner's token has (``store_id``, ``client_id``,
``scope``, ``partner_tier``, ``jti``). Every v3 route reaches Magento (or the panel)
rewritten and with the token's store's credential; every refusal of SPEC §4.2 is the
envelope with nothing sent upstream. (``tests/test_edge_jwt.py`` covers the verifier's
edge cases on a small policy: algorithms, cooldown counts, tiers, hostile tokens.)
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from proxy.cli import main
from proxy.openapi import build
from proxy.policy import load_policy
from tests.conftest import MAGENTO_TOKEN, REPO, Harness, running_edge, wait_for
from tests.servers import serving
from tests.test_edge_jwt import AUD, ISS, REFUSED, claims, sign
from tests.test_jwt_auth import RSA_KEY, RSA_KEY_2, JWKSApp, jwk

V3 = "/api/v3"
SF = "/api/storefront/v3"
SHOP = "shop.example.com"
ICU = "api.store.icu"  # the partner API's host
SOC = "api.storeoncloud.com"  # the developer API's host
DEFAULT_PAGE = "searchCriteria[pageSize]=50&searchCriteria[currentPage]=1"
CHANGELOG = "https://developers.store.icu/api/changelog"

STORES = """
[server.surface_hosts]
storeoncloud = ["api.storeoncloud.com"]
storeicu = ["api.store.icu"]

[stores.shop]
name = "Shop (storefront only)"
magento_url = "{MAGENTO_URL}"
store_code = "default"
credential = { kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }
hosts = ["shop.example.com", "WWW.Shop.Example.com"]
"""


@dataclass
class Edge:
    h: Harness
    jwks: JWKSApp

    @property
    def standin(self) -> Any:
        return self.h.standin

    def v3(self, token: str | None = None, **headers: str) -> httpx.Client:
        """A client of the partner API (its host), with a JWT when given."""
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=self.h.url, headers={"Host": ICU, **auth, **headers}, timeout=30
        )

    def v1(self, token: str | None = None) -> httpx.Client:
        """A client of the developer API (its host), with a personal access token."""
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.h.url, headers={"Host": SOC, **auth}, timeout=30)

    def mark(self) -> tuple[int, int]:
        """What reached Magento and the panel so far."""
        return len(self.h.standin.requests), len(self.h.panel.requests)

    def token(self, *permissions: str, stores: tuple[str, ...] = ("acme",)) -> str:
        return self.h.token(*permissions, stores=stores)


_clients = itertools.count()


def mint(*scopes: str, store: str | None = "acme", **extra: Any) -> str:
    """A partner's access token, signed by the issuer's published key. Each token is its
    own client (client x store is the rate-limit key), so the many calls of this module
    never meet a limit."""
    return sign(
        claims(
            scope=" ".join(scopes),
            store_id=store,
            client_id=f"partner-app-{next(_clients)}",
            partner_tier="gold",
            **extra,
        )
    )


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    directory = tmp_path_factory.mktemp("v3")
    policies = [
        REPO / "policies" / "storeoncloud.toml",
        REPO / "policies" / "storeicu.toml",
        REPO / "policies" / "storefront.toml",
    ]
    jwks = JWKSApp()
    jwks.keys = [jwk("rsa-1", RSA_KEY)]
    with serving(jwks) as jwks_server:
        issuer = (
            f'\n[issuers.storeicu]\nissuer = "{ISS}"\naudience = "{AUD}"\n'
            f'jwks_url = "{jwks_server.url}/jwks.json"\nrefresh_cooldown_seconds = 1\n'
        )
        with running_edge(directory, policy=policies, extra=STORES + issuer) as h:
            yield Edge(h, jwks)


def _sent(edge: Edge, before: tuple[int, int]) -> list[dict[str, Any]]:
    reqs = edge.standin.requests
    return list(reqs)[before[0] :] if len(reqs) > before[0] else []


def _header(request: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in request["headers"] if k == name]


def _envelope(r: httpx.Response, code: str) -> dict[str, Any]:
    assert r.headers["content-type"] == "application/json", r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == code, r.text
    assert error["request_id"] == r.headers["x-request-id"]
    return error


def _refused(edge: Edge, r: httpx.Response, status: int, code: str, before: object) -> None:
    assert r.status_code == status, r.text
    _envelope(r, code)
    assert edge.mark() == before  # nothing reached Magento or the panel


def _scope(grant: str) -> str:
    """The seed's scope for a grant: products:read -> read_products."""
    resource, access = grant.split(":")
    return f"{access}_{resource}"


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
    edge: Edge,
    grant: str,
    method: str,
    path: str,
    body: Any,
    m_method: str,
    m_path: str,
) -> None:
    token = mint(_scope(grant))  # exactly the scope the route needs
    before = edge.mark()
    with edge.v3(token) as c:
        r = c.request(method, V3 + path, json=body)
    (sent,) = _sent(edge, before)
    assert r.status_code == sent["status"], r.text  # Magento's answer, passed through
    assert r.status_code in (200, 202, 404), r.text
    assert sent["method"] == m_method
    assert sent["raw_path"] == ("/rest/default" + m_path).encode()
    listed = method == "GET" and path in LISTS
    assert sent["query"] == (DEFAULT_PAGE.encode() if listed else b"")
    assert _header(sent, "authorization") == [f"Bearer {MAGENTO_TOKEN}"]  # acme's, not the JWT
    assert all(token not in value for _, value in sent["headers"])
    if body is not None:
        assert sent["body_length"] > 0  # streamed unchanged
    assert r.headers["x-rate-limit-limit"] == "240"  # the token's partner_tier (gold)
    assert int(r.headers["x-rate-limit-reset"]) >= int(time.time())  # epoch seconds


ALL_SCOPES = [
    *(f"{a}_{r}" for r in ("products", "orders", "customers", "inventory", "content", "themes")
      for a in ("read", "write")),
    "read_reports",
    "admin",
]  # fmt: skip


@pytest.mark.parametrize(("grant", "method", "path", "body", "m_method", "m_path"), ROUTES)
def test_every_v3_route_refuses_a_token_without_its_scope(
    edge: Edge,
    grant: str,
    method: str,
    path: str,
    body: Any,
    m_method: str,
    m_path: str,
) -> None:
    resource, access = grant.split(":")
    granting = {"admin", f"write_{resource}"} | (
        {f"read_{resource}"} if access == "read" else set()
    )
    token = mint(*(s for s in ALL_SCOPES if s not in granting))  # every other scope
    before = edge.mark()
    with edge.v3(token) as c:
        r = c.request(method, V3 + path, json=body)
    _refused(edge, r, 403, "INSUFFICIENT_SCOPE", before)
    assert r.headers["www-authenticate"] == (
        f'Bearer realm="magento-edge", error="insufficient_scope", '
        f'scope="{" ".join(sorted(granting))}"'
    )
    assert r.json()["error"]["details"]["required"] == grant


def test_v3_list_answers_are_magento_search_results(edge: Edge) -> None:
    with edge.v3(mint("read_products")) as c:
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
def test_page_and_limit_become_search_criteria(edge: Edge, query: str, expected: str) -> None:
    before = edge.mark()
    with edge.v3(mint("read_orders")) as c:
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
def test_bad_page_or_limit_is_400_with_nothing_sent(edge: Edge, query: str) -> None:
    before = edge.mark()
    with edge.v3(mint("read_products")) as c:
        r = c.get(f"{V3}/products?{query}")
    assert r.status_code == 400, r.text
    error = _envelope(r, "BAD_REQUEST")
    assert error["details"]["parameter"] in ("page", "limit")
    assert edge.mark() == before


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/orders/1"), ("PUT", "/carts/abc123"), ("POST", "/bulk/customers/export")],
)
def test_routes_without_a_magento_equivalent_are_501(edge: Edge, method: str, path: str) -> None:
    before = edge.mark()
    with edge.v3(mint("admin")) as c:
        r = c.request(method, V3 + path, json={"x": 1})
    assert r.status_code == 501, r.text
    assert "Magento" in _envelope(r, "NOT_IMPLEMENTED")["message"]
    assert edge.mark() == before


@pytest.mark.parametrize(
    ("scope", "method", "path", "panel_path"),
    [
        ("admin", "POST", "/webhooks", "/stores/acme/webhooks"),  # only admin grants webhooks
        ("admin", "GET", "/webhooks", "/stores/acme/webhooks"),
        ("admin", "DELETE", "/webhooks/wh_1", "/stores/acme/webhooks/wh_1"),
        ("write_themes", "PUT", "/themes/current/colors", "/stores/acme/themes/current/colors"),
        ("read_themes", "GET", "/themes", "/stores/acme/themes"),
        ("read_reports", "GET", "/reports/sales", "/stores/acme/reports/sales"),
    ],
)
def test_webhooks_themes_and_reports_go_to_the_panel(
    edge: Edge, scope: str, method: str, path: str, panel_path: str
) -> None:
    token = mint(scope)
    before = edge.mark()
    with edge.v3(token) as c:
        r = c.request(method, V3 + path)
    assert r.status_code == 200, r.text
    assert edge.mark() == (before[0], before[1] + 1)  # the panel only
    seen = edge.h.panel.requests[-1]
    assert (seen["method"], seen["raw_path"]) == (method, panel_path)
    assert not [v for k, v in seen["headers"] if k == "authorization"]


@pytest.mark.parametrize(
    ("scope", "method", "path"),
    [("read_reports", "GET", "/webhooks"), ("read_themes", "PUT", "/themes/x"),
     ("write_themes", "GET", "/reports/sales")],
)  # fmt: skip
def test_panel_routes_need_their_scope(edge: Edge, scope: str, method: str, path: str) -> None:
    before = edge.mark()
    with edge.v3(mint(scope)) as c:
        r = c.request(method, V3 + path)
    _refused(edge, r, 403, "INSUFFICIENT_SCOPE", before)


def test_reports_are_read_only(edge: Edge) -> None:
    before = edge.mark()
    with edge.v3(mint("admin")) as c:
        r = c.post(f"{V3}/reports/sales")
    _refused(edge, r, 405, "METHOD_NOT_ALLOWED", before)


# -- refused on the v3 surface: the envelope, nothing sent upstream ----------------------------

V3_TARGETS = [("GET", "/products"), ("GET", "/products/BAG%2F01")]


@pytest.mark.parametrize("case", list(REFUSED))
@pytest.mark.parametrize(("method", "path"), V3_TARGETS)
def test_bad_tokens_are_refused_on_v3(edge: Edge, case: str, method: str, path: str) -> None:
    """test_edge_jwt's refusals (expired, wrong aud/iss, alg none, HMAC with the public key,
    a key not published, no client_id/store_id, ...; each a token with read_products for
    acme) on the shipped policy."""
    token = REFUSED[case]()
    before = edge.mark()
    with edge.v3(token) as c:
        r = c.request(method, V3 + path)
    _refused(edge, r, 401, "UNAUTHORIZED", before)
    assert r.headers["www-authenticate"] == 'Bearer realm="magento-edge", error="invalid_token"'
    assert token not in r.text


def test_no_token_is_401_with_nothing_sent(edge: Edge) -> None:
    before = edge.mark()
    with edge.v3() as c:
        r = c.post(f"{V3}/orders", json={"entity": {}})
    _refused(edge, r, 401, "UNAUTHORIZED", before)
    assert r.headers["www-authenticate"] == 'Bearer realm="magento-edge"'


def test_an_unknown_kid_is_refused_after_one_refresh(edge: Edge) -> None:
    time.sleep(1.1)  # past the issuer's 1 s refresh cooldown
    fetches = edge.jwks.fetches
    token = sign(claims(scope="admin"), RSA_KEY_2, kid="rotated-in")
    before = edge.mark()
    with edge.v3(token) as c:
        r = c.get(f"{V3}/orders")
    _refused(edge, r, 401, "UNAUTHORIZED", before)
    assert edge.jwks.fetches == fetches + 1  # the key set was refreshed, the kid still unknown


@pytest.mark.parametrize("store", ["nope", "ACME", "acme/../oak", "oak "])
def test_a_store_id_not_configured_is_404_with_nothing_sent(edge: Edge, store: str) -> None:
    before = edge.mark()
    with edge.v3(mint("admin", store=store)) as c:
        r = c.get(f"{V3}/orders/1")
    _refused(edge, r, 404, "RESOURCE_NOT_FOUND", before)


def test_the_store_is_the_tokens_never_a_header(edge: Edge) -> None:
    """An acme token asking for oak by header still acts on acme (acme's bearer credential,
    not oak's OAuth 1.0a signature); an oak token acts on oak."""
    before = edge.mark()
    with edge.v3(mint("read_orders"), **{"X-Store-Id": "oak"}) as c:
        acme = c.get(f"{V3}/orders/1")
    with edge.v3(mint("read_orders", store="oak")) as c:
        oak = c.get(f"{V3}/orders/1")
    assert acme.status_code == oak.status_code == 200, (acme.text, oak.text)
    to_acme, to_oak = _sent(edge, before)
    assert _header(to_acme, "authorization") == [f"Bearer {MAGENTO_TOKEN}"]
    assert _header(to_oak, "authorization")[0].startswith("OAuth ")


def test_a_revoked_jti_is_refused_with_nothing_sent(
    edge: Edge, capsys: pytest.CaptureFixture[str]
) -> None:
    jti = f"v3-revoked-{time.monotonic_ns()}"
    token = mint("write_orders", jti=jti)
    with edge.v3(token) as c:
        assert c.get(f"{V3}/carts/abc123").status_code == 200  # verified and cached
        assert main(["tokens", "revoke-jwt", "--config", str(edge.h.config_path), jti]) == 0
        capsys.readouterr()
        assert wait_for(lambda: c.get(f"{V3}/carts/abc123").status_code == 401, timeout=3)
        before = edge.mark()
        r = c.post(f"{V3}/carts/abc123/checkout", json={"paymentMethod": {"method": "checkmo"}})
    _refused(edge, r, 401, "UNAUTHORIZED", before)
    assert r.json()["error"]["message"] == "The access token has been revoked."


def test_oauth1_store_signs_the_rewritten_method_and_query(edge: Edge) -> None:
    """The stand-in verifies the OAuth 1.0a signature over the method and query it gets:
    a 200 means the edge signed the rewritten request, not the client's."""
    token = mint("write_orders", "read_products", store="oak")
    before = edge.mark()
    with edge.v3(token) as c:
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


# -- versions and hosts on the shipped policies (the real clock: 2026-11-29 or later) ----------


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("token", [True, False])
def test_the_partner_apis_v1_and_v2_are_retired(edge: Edge, version: str, token: bool) -> None:
    before = edge.mark()
    with edge.v3(mint("admin") if token else None) as c:
        r = c.get(f"/api/{version}/products?limit=5")
    _refused(edge, r, 410, "VERSION_RETIRED", before)
    details = r.json()["error"]["details"]
    assert details["version"] == version and details["link"] == CHANGELOG
    assert CHANGELOG in r.json()["error"]["message"]
    assert (
        details["sunset"] == {"v1": "2025-06-30T00:00:00Z", "v2": "2026-01-01T00:00:00Z"}[version]
    )


def test_each_api_answers_on_its_own_host(edge: Edge) -> None:
    """Both APIs have an /api/v1: the developer API's current one on its host, the partner
    API's retired one on its; v3 is the partner API's host only."""
    before = edge.mark()
    with edge.v1(edge.token("stores:read")) as c:
        stores = c.get("/api/v1/stores")
        no_v3 = c.get(f"{V3}/orders", headers={"Authorization": f"Bearer {mint('admin')}"})
    assert stores.status_code == 200, stores.text
    assert [s["id"] for s in stores.json()["stores"]] == ["acme"]
    assert no_v3.status_code == 404
    # The 404 speaks the style of the API that owns the host: problem+json here...
    assert no_v3.headers["content-type"] == "application/problem+json"
    assert edge.mark() == before
    with edge.v3(mint("admin")) as c:
        retired = c.get("/api/v1/stores")
        nowhere = c.get("/api/v9/nothing")
    assert retired.status_code == 410
    _envelope(nowhere, "RESOURCE_NOT_FOUND")  # ...and the envelope on the partner API's host


def test_v3_openapi_document_is_served_without_a_token(edge: Edge) -> None:
    with edge.v3() as c:
        r = c.get(f"{V3}/openapi.json")
    assert r.status_code == 200, r.text
    doc = json.loads(r.content)
    validate(doc)
    # as the edge's config runs it (issue #17: unconfigured upstreams are left out)
    full = build(load_policy(REPO / "policies" / "storeicu.toml"))
    assert set(doc["paths"]) <= set(full["paths"]) and "/products" in doc["paths"]
    assert set(doc["components"]["securitySchemes"]) == {"oauth2"}


# -- the v1 commerce gateway's default page size -------------------------------------------


@pytest.mark.parametrize(
    "path", ["/orders", "/products", "/customers/search", "/inventory/source-items"]
)
def test_v1_list_route_without_criteria_gets_the_default_page_size(edge: Edge, path: str) -> None:
    grant = {"/orders": "orders", "/products": "products", "/customers/search": "customers"}
    token = edge.token(f"{grant.get(path, 'inventory')}:read")
    before = edge.mark()
    with edge.v1(token) as c:
        r = c.get(f"/api/v1/stores/acme/commerce{path}")
    assert r.status_code == 200, r.text  # Magento would say "searchCriteria is required"
    (sent,) = _sent(edge, before)
    assert sent["query"] == DEFAULT_PAGE.encode()
    assert "items" in r.json()


def test_v1_other_queries_pass_byte_for_byte(edge: Edge) -> None:
    token = edge.token("products:read", "orders:read")
    before = edge.mark()
    with edge.v1(token) as c:
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


def test_storefront_products_go_to_magento_as_a_guest(edge: Edge) -> None:
    before = edge.mark()
    with httpx.Client(base_url=edge.h.url) as c:
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
def test_storefront_store_from_host_or_header(edge: Edge, headers: dict[str, str]) -> None:
    before = edge.mark()
    with httpx.Client(base_url=edge.h.url) as c:
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
    edge: Edge, headers: dict[str, str], status: int
) -> None:
    before = edge.mark()
    with httpx.Client(base_url=edge.h.url) as c:
        r = c.post(f"{SF}/cart", headers=headers)
    assert r.status_code == status, r.text
    _envelope(r, "RESOURCE_NOT_FOUND" if status == 404 else "BAD_REQUEST")
    assert edge.mark() == before


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
    edge: Edge, method: str, path: str, status: int
) -> None:
    before = edge.mark()
    with httpx.Client(base_url=edge.h.url) as c:
        r = c.request(method, SF + path, headers={"Host": SHOP})
    assert r.status_code == status, r.text
    assert edge.mark() == before
