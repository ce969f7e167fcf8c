"""proxy.openapi.build: the OpenAPI 3.1 document generated from a policy (SPEC §4.1)."""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from proxy.openapi import build, openapi_document
from proxy.policy import Surface, load_policy

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "policies" / "storeoncloud.toml"
TSV = ROOT / "magento_standin" / "data" / "magento_routes.tsv"
COMMERCE = "/stores/{storeId}/commerce"
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
    assert (doc["info"]["title"], doc["info"]["version"]) == ("StoreOnCloud Developer API", "1.0.0")
    assert "MagentoError" in doc["info"]["description"]  # Magento's answers, said once
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
    assert (
        ops["/stores/{storeId}/design/{rest}"]["delete"]["x-required-permission"] == "design:write"
    )


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
            assert names == ["storeId"]


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
        if not path.startswith("/stores/{storeId}/"):
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
        if path.startswith("/stores/{storeId}/") and not op.get("x-never-succeeds"):
            ok = op["responses"]["200" if "/async/" not in path else "202"]["headers"]
            assert ok["RateLimit-Remaining"] == {"$ref": "#/components/headers/RateLimit-Remaining"}
            assert op["responses"]["429"] == {"$ref": "#/components/responses/TooManyRequests"}


def test_problem_schema_and_error_responses(doc: dict[str, Any]) -> None:
    schema = doc["components"]["schemas"]["Error"]
    assert schema["required"] == ["type", "title", "status", "detail", "request_id"]
    unauthorized = doc["components"]["responses"]["Unauthorized"]
    assert "application/problem+json" in unauthorized["content"]
    # Magento's own 401 passes through in its own shape
    assert {"$ref": "#/components/schemas/MagentoError"} in unauthorized["content"][
        "application/json"
    ]["schema"]["anyOf"]


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
    assert (doc["info"]["title"], doc["info"]["version"]) == ("Small", "3.1.4")
    assert doc["servers"] == [{"url": "/api/v3"}]
    headers = doc["components"]["headers"]
    assert "X-Rate-Limit-Limit" in headers and "RateLimit-Limit" not in headers
    assert doc["components"]["schemas"]["Error"]["required"] == ["error"]
    assert "application/json" in doc["components"]["responses"]["Forbidden"]["content"]
    paths = doc["paths"]
    assert set(paths) == {
        "/openapi.json",
        "/shops/{storeId}/products/{sku}",
        "/shops/{storeId}/products/search",
        "/shops/{storeId}/panel/design/{rest}",
        "/shops/{storeId}/bulk/products/bySku",
    }
    assert set(paths["/shops/{storeId}/products/{sku}"]) == {"get", "put"}
    assert paths["/shops/{storeId}/products/{sku}"]["get"]["summary"] == "Get one"
    assert paths["/shops/{storeId}/products/search"]["post"]["x-required-permission"] == (
        "products:read"
    )
    assert set(paths["/shops/{storeId}/panel/design/{rest}"]) == {
        "get",
        "post",
        "put",
        "patch",
        "delete",
    }
    assert set(paths["/shops/{storeId}/bulk/products/bySku"]) == {"put"}
    ok = paths["/shops/{storeId}/products/{sku}"]["get"]["responses"]["200"]["headers"]
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
    assert (v3["info"]["title"], v3["info"]["version"]) == ("Store.icu Partner API", "3.0.0")
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
        if op.get("x-graphql"):  # per top-level field: test_v3_graphql_is_documented_per_field
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
        "/inventory/adjustments": ["get", "post"],  # GET: the stock item of SKU "adjustments"
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
        "/graphql": ["get", "post"],  # [graphql]
    }
    assert v3["paths"]["/openapi.json"]["get"]["security"] == []


def test_v3_page_and_limit_on_list_routes_only(v3: dict[str, Any]) -> None:
    lists = {"/products", "/orders", "/customers", "/inventory", "/pages"}
    for path, method, op in _operations(v3):
        query = {p["name"]: p for p in op.get("parameters", []) if p.get("in") == "query"}
        if path == "/graphql":  # GraphQL over GET: the document, not pages
            assert "page" not in query and "limit" not in query
            continue
        if method == "get" and path in lists:
            assert query["page"]["schema"] == {
                "type": "integer",
                "minimum": 1,
                "maximum": 2**31 - 1,
                "default": 1,
            }
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
        assert set(op["responses"]) == {"400", "501"}
        assert op["responses"]["501"]["$ref"] == "#/components/responses/NotImplemented"
        assert "Magento" in op["description"]
        assert op["security"] == []  # answered before any token is looked at
        assert "x-required-scopes" not in op


def test_v3_envelope_and_x_rate_limit_headers(v3: dict[str, Any]) -> None:
    schema = v3["components"]["schemas"]["Error"]
    assert schema["required"] == ["error"]
    assert schema["properties"]["error"]["required"] == ["code", "message", "request_id"]
    for name in ("Unauthorized", "Forbidden", "TooManyRequests", "NotImplemented", "NotFound"):
        content = v3["components"]["responses"][name]["content"]
        assert content == {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    headers = v3["components"]["headers"]
    assert "epoch" in headers["X-Rate-Limit-Reset"]["description"]
    ok = v3["paths"]["/orders"]["get"]["responses"]["200"]["headers"]
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


# -- issue #17: the document tells the truth about the config it runs ------------------------


def _config(tmp_path: Path, extra: str = "") -> Any:
    from proxy.config import load_config

    (tmp_path / "config.toml").write_text(
        f"""
[server]
policies = ["{POLICY}"]
[keystore]
backend = "sqlite"
path = "edge.db"
[stores.acme]
name = "Acme"
environment = "live"
magento_url = "http://127.0.0.1:9"
store_code = "default"
credential = {{ kind = "bearer", token_env = "T" }}
[stores.beta]
name = "Beta"
environment = "sandbox"
magento_url = "http://127.0.0.1:9"
store_code = "default"
credential = {{ kind = "bearer", token_env = "T" }}
{extra}
"""
    )
    return load_config(tmp_path / "config.toml", env={"T": "x"})


def test_unconfigured_upstreams_and_leak_reports_are_left_out(tmp_path: Path) -> None:
    config = _config(tmp_path)
    doc = build(config.surfaces[0], config)
    assert "/secret-scanning/leaks" not in doc["paths"]  # 404 without [secret_scanning]
    assert not any(p.startswith("/stores/{storeId}/design") for p in doc["paths"])  # 503
    with_panel = _config(tmp_path, '[upstreams.panel]\nurl = "http://127.0.0.1:9"\n')
    assert "/stores/{storeId}/design/{rest}" in build(with_panel.surfaces[0], with_panel)["paths"]


def test_store_ids_are_an_enum_and_get_stores_links_to_store_operations(tmp_path: Path) -> None:
    config = _config(tmp_path)
    doc = build(config.surfaces[0], config)
    op = doc["paths"][f"{COMMERCE}/products/{{sku}}"]["get"]
    store = next(p for p in op["parameters"] if p["name"] == "storeId")
    assert store["schema"]["enum"] == ["acme", "beta"]
    links = doc["paths"]["/stores"]["get"]["responses"]["200"]["links"]
    assert links["list_products"] == {
        "operationId": "list_products",
        "parameters": {"path.storeId": "$response.body#/stores/0/id"},
    }
    ids = {o["operationId"] for _, _, o in _operations(doc)}
    assert set(links) <= ids
    # A create links to what reads the item it made.
    created = doc["paths"][f"{COMMERCE}/products"]["post"]["responses"]["200"]["links"]
    assert created["get_product"]["parameters"]["path.sku"] == "$response.body#/sku"


def test_operation_ids_come_from_magentos_service_contract(doc: dict[str, Any]) -> None:
    ops = doc["paths"]
    assert ops[f"{COMMERCE}/products/{{sku}}"]["get"]["operationId"] == "get_product"
    assert ops[f"{COMMERCE}/products"]["get"]["operationId"] == "list_products"
    assert ops[f"{COMMERCE}/products"]["post"]["operationId"] == "save_product"
    assert ops[f"{COMMERCE}/products/{{sku}}"]["put"]["operationId"] == "save_product_by_sku"
    assert ops[f"{COMMERCE}/products/{{sku}}"]["delete"]["operationId"] == "delete_product_by_id"
    assert ops[f"{COMMERCE}/async/products/{{sku}}"]["put"]["operationId"] == (
        "save_product_by_sku_async"
    )
    assert ops[f"{COMMERCE}/async/bulk/products/bySku"]["put"]["operationId"].endswith("_bulk")
    for _, _, op in _operations(doc):
        assert re.fullmatch(r"[a-z][a-z0-9_]*", op["operationId"]), op["operationId"]
        assert not re.search(r"_\d+$", op["operationId"])  # never a running number


def test_v3_operation_ids_read_like_rest(v3: dict[str, Any]) -> None:
    ids = {(p, m): op["operationId"] for p, m, op in _operations(v3)}
    assert ids[("/products", "get")] == "list_products"
    assert ids[("/products", "post")] == "create_product"
    assert ids[("/products/{id}", "get")] == "get_product"
    assert ids[("/carts/{id}/checkout", "post")] == "checkout_cart"
    assert len(set(ids.values())) == len(ids)


def test_the_ids_are_stable() -> None:
    first = build(load_policy(POLICY))
    second = build(load_policy(POLICY))
    assert [o["operationId"] for _, _, o in _operations(first)] == [
        o["operationId"] for _, _, o in _operations(second)
    ]


def test_every_edge_status_is_a_response_with_its_headers(doc: dict[str, Any]) -> None:
    responses = doc["components"]["responses"]
    by_status = {
        "400": "BadRequest", "401": "Unauthorized", "403": "Forbidden", "404": "NotFound",
        "405": "MethodNotAllowed", "409": "Conflict", "413": "ContentTooLarge",
        "422": "UnprocessableContent", "429": "TooManyRequests", "502": "BadGateway",
        "503": "ServiceUnavailable", "504": "GatewayTimeout",
    }  # fmt: skip
    for name in by_status.values():
        assert "RateLimit-Remaining" in responses[name]["headers"]
    assert responses["TooManyRequests"]["headers"]["Retry-After"] == {
        "$ref": "#/components/headers/Retry-After-Required"
    }
    assert "Retry-After" in responses["ServiceUnavailable"]["headers"]
    assert "WWW-Authenticate" in responses["Unauthorized"]["headers"]
    assert "Allow" in responses["MethodNotAllowed"]["headers"]
    write = doc["paths"][f"{COMMERCE}/products"]["post"]["responses"]
    for status in ("400", "401", "403", "404", "409", "413", "422", "429", "502", "503", "504"):
        assert write[status] == {"$ref": f"#/components/responses/{by_status[status]}"}
    assert "Idempotent-Replayed" in write["200"]["headers"]
    body = doc["paths"][f"{COMMERCE}/products"]["post"]["requestBody"]
    schema = body["content"]["application/json"]["schema"]
    assert schema["required"] == ["product"]  # Magento's ProductRepositoryInterface::save


@given(st.text(max_size=12) | st.sampled_from([".", "..", "a/..", "%41", "%", "a%zz", "BAG/01"]))
@settings(max_examples=400, deadline=None)
def test_the_segment_pattern_is_what_paths_accepts(value: str) -> None:
    """A value matches the documented pattern exactly when proxy.paths accepts it once a
    client percent-encodes it (as schemathesis and openapi-python-client do)."""
    from urllib.parse import quote

    from proxy.errors import BadRequest
    from proxy.openapi import SEGMENT_VALUE
    from proxy.paths import split_path

    try:
        raw = ("/p/" + quote(value, safe="")).encode("ascii")
    except UnicodeEncodeError:
        return  # a lone surrogate: no client can send it
    try:
        split_path(raw)
        accepted = value != ""
    except BadRequest:
        accepted = False
    # ECMAScript "$" is the end of the input; Python's would also match before a final "\n"
    matches = re.search(SEGMENT_VALUE.removesuffix("$") + r"\Z", value) is not None
    if "%" in value and re.search(r"%[0-9A-Fa-f]{2}", value):
        assert not matches  # an escape inside a value: documented as not allowed
        return
    assert matches == accepted, value


def test_allow_on_405_lists_the_routes_own_methods(surface: Surface) -> None:
    from proxy.decide import resolve
    from proxy.errors import MethodNotAllowed

    bulk = ("api", "v1", "stores", "demo", "commerce", "async", "bulk", "products", "bySku")
    with pytest.raises(MethodNotAllowed) as caught:
        resolve(surface, "GET", bulk)
    assert caught.value.headers["Allow"] == "DELETE, PUT"  # not the mount's POST, PATCH
    async_ = ("api", "v1", "stores", "demo", "commerce", "async", "products")
    with pytest.raises(MethodNotAllowed) as caught:
        resolve(surface, "GET", async_)
    assert caught.value.headers["Allow"] == "POST"  # GET /products exists, not under async


@pytest.mark.parametrize("policy", ["storeoncloud.toml", "storeicu.toml"])
def test_each_path_documents_exactly_the_methods_the_edge_answers(policy: str) -> None:
    """Every documented path, with a value in each parameter, through the edge's own
    routing (proxy.decide.resolve): a documented method is answered, an undocumented one
    is a 405 whose Allow lists exactly the documented ones (or the path is not there)."""
    from proxy.decide import resolve
    from proxy.errors import EdgeError, MethodNotAllowed, RouteNotImplemented
    from proxy.graphql_edge import resolve_graphql

    surface = load_policy(ROOT / "policies" / policy)
    doc = build(surface)
    checked = 0
    for path, item in doc["paths"].items():
        if path in ("/openapi.json", "/stores", "/secret-scanning/leaks"):
            continue
        segments = (*surface.base_parts, *("0" if p[:1] == "{" else p for p in path[1:].split("/")))
        documented = sorted(m.upper() for m in item if m in METHODS)
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            try:
                # as the edge routes: the [graphql] path first, then the mounts
                resolve_graphql(surface, method, segments) or resolve(surface, method, segments)
                answered = True
            except RouteNotImplemented:
                answered = True  # documented as its 501
            except MethodNotAllowed as exc:
                answered = False
                assert exc.headers["Allow"].split(", ") == documented, (method, path)
            except EdgeError:
                answered = False
            assert answered == (method in documented), (method, path)
            checked += 1
    assert checked > 100


def test_a_literal_path_documents_what_it_answers_through_a_variable(
    doc: dict[str, Any],
) -> None:
    # PUT products/attribute-sets/groups is Magento's save of the attribute set "groups"
    item = doc["paths"][f"{COMMERCE}/products/attribute-sets/groups"]
    assert set(item) == {"get", "post", "put", "delete"}
    assert item["post"]["operationId"] == "save_product_attribute_group"
    assert item["put"]["operationId"] == "save_attribute_set_in_products_for_groups"
    assert "`groups`" in item["put"]["summary"]
    # GET customers/confirm reaches getById with "confirm": Magento's 400, always
    confirm = doc["paths"][f"{COMMERCE}/customers/confirm"]["get"]
    assert confirm["x-never-succeeds"] is True and "200" not in confirm["responses"]


def test_int_path_parameters_of_magento_services(doc: dict[str, Any], v3: dict[str, Any]) -> None:
    def schema(d: dict[str, Any], path: str, method: str, name: str) -> Any:
        op = d["paths"][path][method]
        return next(p["schema"] for p in op["parameters"] if p.get("name") == name)

    assert schema(doc, f"{COMMERCE}/orders/{{id}}", "get", "id") == {"type": "integer"}
    assert schema(doc, f"{COMMERCE}/customers/{{customerId}}", "get", "customerId") == {
        "type": "integer"
    }
    # queued calls are checked by Magento when they run, not when they are accepted
    assert schema(doc, f"{COMMERCE}/async/orders/{{id}}/cancel", "post", "id")["type"] == "string"
    assert schema(doc, f"{COMMERCE}/products/{{sku}}", "get", "sku")["type"] == "string"


def test_a_handler_without_a_builder_is_documented_generically(
    surface: Surface, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new policy handler (the partner API's /graphql) never breaks the document."""
    from proxy import openapi

    monkeypatch.delitem(openapi._ENDPOINT_OPERATIONS, "stores")
    op = build(surface)["paths"]["/stores"]["get"]
    assert op["operationId"] == "list_stores"
    assert set(op["responses"]) >= {"200", "401", "429", "503"}


def test_v3_graphql_is_documented_per_field(icu: Surface, v3: dict[str, Any]) -> None:
    assert icu.graphql is not None
    item = v3["paths"]["/graphql"]
    assert set(item) == {"get", "post"}  # exactly what resolve_graphql answers (else 405)
    assert (item["get"]["operationId"], item["post"]["operationId"]) == ("graphql_query", "graphql")
    fields = item["post"]["x-graphql-fields"]
    assert set(fields) == set(icu.graphql.fields)  # every named field, nothing else
    for name, rule in icu.graphql.fields.items():
        if rule in ("anonymous", "self"):
            assert fields[name] == rule
            continue
        for kind, access in (("query", "read"), ("mutation", "write")):
            wanted = sorted(s for s in icu.scopes if _grants(icu, s, rule, access))
            assert fields[name][kind] == wanted, (name, kind)
    for status in ("400", "401", "403", "405", "413", "415", "429"):
        assert status in item["post"]["responses"], status
    assert "415" not in item["get"]["responses"]  # no body, no content type
    assert "/graphql" in item["post"]["description"]  # the host-root alias is said
