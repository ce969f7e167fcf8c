"""proxy.openapi.build: the OpenAPI 3.1 document generated from a policy (SPEC §4.1)."""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from proxy.openapi import build, openapi_document
from proxy.policy import Surface, load_policy

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "policies" / "storeoncloud.toml"
TSV = ROOT / "magento_standin" / "data" / "magento_routes.tsv"
COMMERCE = "/stores/{store}/commerce"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


@pytest.fixture(scope="module")
def surface() -> Surface:
    return load_policy(POLICY)


@pytest.fixture(scope="module")
def doc(surface: Surface) -> dict[str, Any]:
    return build(surface)


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def _magento_routes() -> list[tuple[str, str]]:
    with TSV.open(encoding="utf-8", newline="") as fh:
        return [(r["method"], r["url"]) for r in csv.DictReader(fh, delimiter="\t")]


def _oas(url: str) -> str:
    """/V1/products/:sku/ -> /products/{sku}"""
    return re.sub(r":([A-Za-z_][A-Za-z0-9_]*)", r"{\1}", url.removeprefix("/V1").rstrip("/"))


def test_document_validates_as_openapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["openapi"] == "3.1.0"
    validate(doc)  # the whole document: ~8 s, the validator resolves every $ref


def test_info_servers_and_global_security(doc: dict[str, Any]) -> None:
    assert doc["info"] == {"title": "StoreOnCloud Developer API", "version": "1.0.0"}
    assert doc["servers"] == [{"url": "/api/v1"}]
    assert doc["security"] == [{"bearerAuth": []}]
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")


def test_every_mapped_magento_route_is_documented(surface: Surface, doc: dict[str, Any]) -> None:
    denied = {
        (r.method, r.pattern.sort_key) for r in surface.tables["magento"] if r.deny is not None
    }
    # Paths that differ only in parameter names are one path (OpenAPI 3.1 §4.8.8).
    by_shape = {re.sub(r"\{[^}]+\}", "{}", p): p for p in doc["paths"]}
    documented = 0
    for method, url in _magento_routes():
        wanted = COMMERCE + _oas(url)
        path = by_shape.get(re.sub(r"\{[^}]+\}", "{}", wanted), wanted)
        key = (method, url.removeprefix("/V1/").rstrip("/"))
        if key in denied:
            assert method.lower() not in doc["paths"].get(path, {}), (method, path)
            continue
        op = doc["paths"][path][method.lower()]
        resource, _, access = op["x-required-permission"].partition(":")
        assert resource in surface.resources
        assert access in ("read", "write")
        documented += 1
    assert documented == 384 - len(denied)


def test_permission_matches_the_policy(doc: dict[str, Any]) -> None:
    ops = doc["paths"]
    assert ops[f"{COMMERCE}/products/{{sku}}"]["get"]["x-required-permission"] == "products:read"
    assert ops[f"{COMMERCE}/products/{{sku}}"]["put"]["x-required-permission"] == "products:write"
    read_post = ops[f"{COMMERCE}/products/base-prices-information"]["post"]
    assert read_post["x-required-permission"] == "products:read"
    assert ops[f"{COMMERCE}/orders"]["get"]["x-required-permission"] == "orders:read"
    assert ops["/stores/{store}/design/{rest}"]["delete"]["x-required-permission"] == "design:write"


def test_denied_routes_are_left_out(doc: dict[str, Any]) -> None:
    for path in (
        f"{COMMERCE}/integration/admin/token",
        f"{COMMERCE}/integration/customer/token",
        f"{COMMERCE}/async/integration/admin/token",
        f"{COMMERCE}/modules",
        f"{COMMERCE}/carts/mine",
        f"{COMMERCE}/customers/me",
        f"{COMMERCE}/bulk",
    ):
        assert path not in doc["paths"]
    assert all(
        "x-required-permission" in op for p, _, op in _operations(doc) if p.startswith(COMMERCE)
    )


def test_async_and_bulk_paths(doc: dict[str, Any]) -> None:
    ops = doc["paths"]
    assert set(ops[f"{COMMERCE}/async/products/{{sku}}"]) == {"put", "delete"}
    assert set(ops[f"{COMMERCE}/async/bulk/products/bySku"]) == {"put", "delete"}
    assert "put" in ops[f"{COMMERCE}/async/bulk/products"]
    # No GET on async paths; bulk forms have no path parameters other than the store.
    for path, method, op in _operations(doc):
        if path.startswith(f"{COMMERCE}/async/"):
            assert method != "get"
        if path.startswith(f"{COMMERCE}/async/bulk/"):
            names = [p["name"] for p in op["parameters"] if "name" in p]
            assert names == ["store"]


def test_path_parameters_are_declared(doc: dict[str, Any]) -> None:
    for path, _, op in _operations(doc):
        declared = {p["name"] for p in op.get("parameters", []) if p.get("in") == "path"}
        assert declared == set(re.findall(r"\{([^}]+)\}", path)), path


def test_idempotency_key_on_writes_only(doc: dict[str, Any]) -> None:
    ref = {"$ref": "#/components/parameters/IdempotencyKey"}
    param = doc["components"]["parameters"]["IdempotencyKey"]
    assert (param["name"], param["in"], param["required"]) == ("Idempotency-Key", "header", False)
    assert param["schema"]["maxLength"] == 255
    for path, method, op in _operations(doc):
        if not path.startswith("/stores/{store}/"):
            continue
        assert (ref in op["parameters"]) == (method in ("post", "put", "patch", "delete")), (
            method,
            path,
        )
    assert ref in doc["paths"][f"{COMMERCE}/orders"]["post"]["parameters"]


def test_rate_limit_headers(doc: dict[str, Any]) -> None:
    headers = doc["components"]["headers"]
    for name in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
        assert headers[name]["schema"] == {"type": "integer"}
    assert "X-Rate-Limit-Limit" not in headers
    for path, _, op in _operations(doc):
        if path.startswith("/stores/{store}/"):
            ok = op["responses"]["default"]["headers"]
            assert ok["RateLimit-Remaining"] == {"$ref": "#/components/headers/RateLimit-Remaining"}
            assert op["responses"]["429"] == {"$ref": "#/components/responses/TooManyRequests"}


def test_problem_schema_and_error_responses(doc: dict[str, Any]) -> None:
    schema = doc["components"]["schemas"]["Error"]
    assert schema["required"] == ["type", "title", "status", "detail", "request_id"]
    unauthorized = doc["components"]["responses"]["Unauthorized"]
    assert "application/problem+json" in unauthorized["content"]


def test_edge_endpoints(doc: dict[str, Any]) -> None:
    stores = doc["paths"]["/stores"]["get"]
    assert stores["responses"]["401"] == {"$ref": "#/components/responses/Unauthorized"}
    assert "security" not in stores
    openapi = doc["paths"]["/openapi.json"]["get"]
    assert openapi["security"] == []


def test_operation_ids_are_unique(doc: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in _operations(doc)]
    assert len(ids) == len(set(ids))


def test_no_two_paths_differ_only_in_parameter_names(doc: dict[str, Any]) -> None:
    shapes: dict[str, list[str]] = defaultdict(list)
    for path in doc["paths"]:
        shapes[re.sub(r"\{[^}]+\}", "{}", path)].append(path)
    assert {k: v for k, v in shapes.items() if len(v) > 1} == {}


def test_openapi_document_is_json_and_cached(surface: Surface) -> None:
    body = openapi_document(surface)
    assert json.loads(body) == build(surface)
    assert openapi_document(surface) is body


SMALL = """\
resources = ["products", "design"]

[surface]
name = "small"
title = "Small"
version = "3.1.4"
base_path = "/api/v3"

[errors]
style = "envelope"

[ratelimit]
headers = "x-rate-limit"

[ratelimit.tiers.standard]
rate = 1

[[endpoints]]
path = "/openapi.json"
handler = "openapi"
auth = false

[[mounts]]
name = "bulk"
path = "/shops/{store}/bulk"
target = "/rest/{store_code}/async/bulk/V1"
routes = "main"
form = "bulk"
methods = ["PUT"]

[[mounts]]
name = "main"
path = "/shops/{store}"
target = "/rest/{store_code}/V1"
routes = "main"

[[mounts]]
name = "panel"
path = "/shops/{store}/panel"
upstream = "panel"
target = "/"
routes = "panel"

[routes]
panel = [{ method = "*", path = "/design/{rest:path}", resource = "design" }]
main = [
  { method = "GET", path = "/products/{sku}", resource = "products", summary = "Get one" },
  { method = "PUT", path = "/products/{sku}", resource = "products" },
  { method = "POST", path = "/products/search", resource = "products", access = "read" },
  { method = "GET", path = "/products/secret", deny = "no" },
]
"""


def test_envelope_and_x_rate_limit_surface(tmp_path: Path) -> None:
    path = tmp_path / "small.toml"
    path.write_text(SMALL)
    doc = build(load_policy(path))
    validate(doc)
    assert doc["info"] == {"title": "Small", "version": "3.1.4"}
    assert doc["servers"] == [{"url": "/api/v3"}]
    headers = doc["components"]["headers"]
    assert "X-Rate-Limit-Limit" in headers and "RateLimit-Limit" not in headers
    assert doc["components"]["schemas"]["Error"]["required"] == ["error"]
    assert "application/json" in doc["components"]["responses"]["Forbidden"]["content"]
    paths = doc["paths"]
    assert set(paths) == {
        "/openapi.json",
        "/shops/{store}/products/{sku}",
        "/shops/{store}/products/search",
        "/shops/{store}/panel/design/{rest}",
        "/shops/{store}/bulk/products/bySku",
    }
    assert set(paths["/shops/{store}/products/{sku}"]) == {"get", "put"}
    assert paths["/shops/{store}/products/{sku}"]["get"]["summary"] == "Get one"
    assert paths["/shops/{store}/products/search"]["post"]["x-required-permission"] == (
        "products:read"
    )
    assert set(paths["/shops/{store}/panel/design/{rest}"]) == {
        "get",
        "post",
        "put",
        "patch",
        "delete",
    }
    assert set(paths["/shops/{store}/bulk/products/bySku"]) == {"put"}
    ok = paths["/shops/{store}/products/{sku}"]["get"]["responses"]["default"]["headers"]
    assert set(ok) == {
        "X-Rate-Limit-Limit",
        "X-Rate-Limit-Remaining",
        "X-Rate-Limit-Reset",
        "X-Request-Id",
    }


# -- the partner API v3 (policies/storeicu.toml, JWT access tokens) --------------------------

ICU = ROOT / "policies" / "storeicu.toml"


@pytest.fixture(scope="module")
def icu() -> Surface:
    return load_policy(ICU)


@pytest.fixture(scope="module")
def v3(icu: Surface) -> dict[str, Any]:
    return build(icu)


def test_v3_document_validates_as_openapi_3_1(v3: dict[str, Any]) -> None:
    validate(v3)
    assert v3["info"] == {"title": "Store.icu Partner API", "version": "3.0.0"}
    assert v3["security"] == [{"oauth2": []}]
    assert "bearerAuth" not in v3["components"]["securitySchemes"]


def test_v3_oauth2_scheme_lists_the_policys_scopes(icu: Surface, v3: dict[str, Any]) -> None:
    scheme = v3["components"]["securitySchemes"]["oauth2"]
    assert scheme["type"] == "oauth2"
    flows = scheme["flows"]
    assert set(flows) == {"clientCredentials", "authorizationCode"}
    assert icu.jwt is not None
    assert flows["clientCredentials"]["tokenUrl"] == icu.jwt.token_url
    assert flows["authorizationCode"]["tokenUrl"] == icu.jwt.token_url
    assert flows["authorizationCode"]["authorizationUrl"] == icu.jwt.authorization_url
    for flow in flows.values():
        assert set(flow["scopes"]) == set(icu.scopes)  # every scope of [auth.scopes]
        assert flow["scopes"]["read_products"] == "products:read"
        assert flow["scopes"]["admin"] == "every resource:write"


def _grants(icu: Surface, scope: str, resource: str, access: str) -> bool:
    for res, acc in icu.scopes[scope]:
        if res in ("*", resource) and (acc == access or acc == "write"):
            return True
    return False


def test_v3_every_operation_names_the_scopes_that_grant_it(
    icu: Surface, v3: dict[str, Any]
) -> None:
    checked = 0
    for path, method, op in _operations(v3):
        if path == "/openapi.json" or "501" in op["responses"]:
            continue
        resource, _, access = op["x-required-permission"].partition(":")
        # Derived here from the scope table, independently of the generator.
        wanted = sorted(s for s in icu.scopes if _grants(icu, s, resource, access))
        assert wanted, (method, path)
        assert op["x-required-scopes"] == wanted
        assert op["security"] == [{"oauth2": [s]} for s in wanted]
        checked += 1
    assert checked >= 30
    ops = v3["paths"]
    assert ops["/products"]["get"]["x-required-scopes"] == [
        "admin",
        "read_products",
        "write_products",
    ]
    assert ops["/orders"]["post"]["x-required-scopes"] == ["admin", "write_orders"]
    assert ops["/reports/{rest}"]["get"]["x-required-scopes"] == ["admin", "read_reports"]
    # Only admin grants webhooks (the seed has no webhook scope).
    assert ops["/webhooks/{id}"]["delete"]["x-required-scopes"] == ["admin"]


def test_v3_paths_are_the_route_table(v3: dict[str, Any]) -> None:
    methods = {p: sorted(m for m in item if m in METHODS) for p, item in v3["paths"].items()}
    assert methods == {
        "/openapi.json": ["get"],
        "/products": ["get", "post"],
        "/products/{id}": ["delete", "get", "put"],
        "/orders": ["get", "post"],
        "/orders/{id}": ["get", "put"],
        "/customers": ["get", "post"],
        "/customers/{id}": ["delete", "get", "put"],
        "/inventory": ["get"],
        "/inventory/{product_id}": ["get"],
        "/inventory/adjustments": ["post"],
        "/pages": ["get", "post"],
        "/pages/{id}": ["delete", "get", "put"],
        "/carts": ["post"],
        "/carts/{id}": ["get", "put"],
        "/carts/{id}/checkout": ["post"],
        "/bulk/products/import": ["post"],
        "/bulk/customers/export": ["post"],
        "/webhooks": ["delete", "get", "patch", "post", "put"],
        "/webhooks/{id}": ["delete", "get", "patch", "post", "put"],
        "/themes": ["delete", "get", "patch", "post", "put"],
        "/themes/{rest}": ["delete", "get", "patch", "post", "put"],
        "/reports": ["get"],
        "/reports/{rest}": ["get"],
    }
    assert v3["paths"]["/openapi.json"]["get"]["security"] == []


def test_v3_page_and_limit_on_list_routes_only(v3: dict[str, Any]) -> None:
    lists = {"/products", "/orders", "/customers", "/inventory", "/pages"}
    for path, method, op in _operations(v3):
        query = {p["name"]: p for p in op.get("parameters", []) if p.get("in") == "query"}
        if method == "get" and path in lists:
            assert query["page"]["schema"] == {"type": "integer", "minimum": 1, "default": 1}
            assert query["limit"]["schema"] == {
                "type": "integer",
                "minimum": 1,
                "maximum": 250,
                "default": 50,
            }
        else:
            assert query == {}, (method, path)


def test_v3_501_routes_are_documented_as_such(v3: dict[str, Any]) -> None:
    for path, method in (
        ("/orders/{id}", "put"),
        ("/carts/{id}", "put"),
        ("/bulk/customers/export", "post"),
    ):
        op = v3["paths"][path][method]
        assert set(op["responses"]) == {"501"}
        assert op["responses"]["501"]["$ref"] == "#/components/responses/NotImplemented"
        assert "Magento" in op["description"]
        assert op["security"] == []  # answered before any token is looked at
        assert "x-required-scopes" not in op


def test_v3_envelope_and_x_rate_limit_headers(v3: dict[str, Any]) -> None:
    schema = v3["components"]["schemas"]["Error"]
    assert schema["required"] == ["error"]
    assert schema["properties"]["error"]["required"] == ["code", "message", "request_id"]
    for name in ("Unauthorized", "Forbidden", "TooManyRequests", "NotImplemented"):
        content = v3["components"]["responses"][name]["content"]
        assert content == {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    headers = v3["components"]["headers"]
    assert "epoch" in headers["X-Rate-Limit-Reset"]["description"]
    ok = v3["paths"]["/orders"]["get"]["responses"]["default"]["headers"]
    assert set(ok) == {
        "X-Rate-Limit-Limit",
        "X-Rate-Limit-Remaining",
        "X-Rate-Limit-Reset",
        "X-Request-Id",
    }


def test_v3_earlier_versions_are_deprecated_servers(v3: dict[str, Any]) -> None:
    current, v2, v1 = v3["servers"]
    assert current == {"url": "/api/v3"}
    assert v2["url"] == "/api/v2" and v2["x-deprecated"] is True
    assert (v2["x-deprecation"], v2["x-sunset"]) == ("2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z")
    assert v2["x-link"] == "https://developers.store.icu/api/changelog"
    assert "VERSION_RETIRED" in v2["description"]
    assert v1["url"] == "/api/v1" and v1["x-sunset"] == "2025-06-30T00:00:00Z"
    assert "x-deprecation" not in v1


def test_a_jwt_surface_without_a_token_url_is_http_bearer_with_scope_roles(
    tmp_path: Path,
) -> None:
    text = ICU.read_text()
    text = re.sub(r"\ntoken_url = .*\nauthorization_url = .*\n", "\n", text)
    assert "token_url" not in text
    path = tmp_path / "icu.toml"
    path.write_text(text)
    doc = build(load_policy(path))
    validate(doc)
    scheme = doc["components"]["securitySchemes"]["oauth2"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    assert "read_products (products:read)" in scheme["description"]
    # OpenAPI 3.1: for non-OAuth schemes the requirement lists role names.
    assert doc["paths"]["/pages"]["post"]["security"] == [
        {"oauth2": ["admin"]},
        {"oauth2": ["write_content"]},
    ]
