"""proxy.routing: patterns and a route table that decides the way Magento's REST router
does (contract.md §2.1 "Route matching")."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from proxy.routing import PatternError, RouteTable, compile_pattern

# -- compile_pattern ----------------------------------------------------------------------


def test_compile_literal_and_variable_segments() -> None:
    p = compile_pattern("/products/{sku}/media/{entryId}")
    assert p.text == "/products/{sku}/media/{entryId}"
    assert p.parts == ("products", None, "media", None)
    assert p.names == ("sku", "entryId")
    assert p.tail is False
    assert p.sort_key == "products/:sku/media/:entryId"
    assert p.literal_count == 2


def test_compile_tail_variable() -> None:
    p = compile_pattern("/design/{rest:path}")
    assert p.parts == ("design", None)
    assert p.names == ("rest",)
    assert p.tail is True
    assert p.sort_key == "design/:rest"


def test_compile_root_and_trailing_slash() -> None:
    assert compile_pattern("/").parts == ()
    assert compile_pattern("/carts/").parts == ("carts",)
    assert compile_pattern("/carts/").sort_key == "carts"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("products", 'must start with "/"'),
        ("", 'must start with "/"'),
        ("products/{sku}", 'must start with "/"'),
        ("/products//media", "empty segment"),
        ("/a/{x}/b/{x}", 'repeats the variable "x"'),
        ("/{sku}/{sku:path}", 'repeats the variable "sku"'),
        ("/files/{rest:path}/more", "must be the last segment"),
        ("/a%2Fb", "not a plain literal"),
        ("/products/%7Bsku%7D", "not a plain literal"),
        ("/a/../b", "not a plain literal"),
        ("/a/./b", "not a plain literal"),
        ("/a\\b", "not a plain literal"),
        ("/products/{sku", "bad variable segment"),
        ("/products/x{sku}", "bad variable segment"),
        ("/products/{1sku}", "bad variable segment"),
        ("/products/{sku:int}", "bad variable segment"),
        ("/products/{}", "bad variable segment"),
    ],
)
def test_compile_errors(text: str, message: str) -> None:
    with pytest.raises(PatternError, match=message.replace("(", r"\(")) as info:
        compile_pattern(text)
    assert text in str(info.value)  # the message names the pattern it refuses


# -- Pattern.match ------------------------------------------------------------------------


def test_match_returns_raw_variable_values() -> None:
    p = compile_pattern("/products/{sku}/media/{entryId}")
    assert p.match(("products", "a%2Fb", "media", "7")) == {"sku": "a%2Fb", "entryId": "7"}
    assert p.match(("products", "a%2Fb", "media")) is None
    assert p.match(("products", "a", "media", "7", "x")) is None
    assert p.match(("products", "a", "links", "7")) is None
    # A variable never matches an empty segment.
    assert p.match(("products", "", "media", "7")) is None


def test_tail_match_swallows_the_rest() -> None:
    p = compile_pattern("/design/{rest:path}")
    assert p.match(("design", "themes")) == {"rest": "themes"}
    assert p.match(("design", "themes", "a%2Fb", "x")) == {"rest": "themes/a%2Fb/x"}
    assert p.match(("design",)) is None
    assert p.match(("settings", "x")) is None


# -- bulk form ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bulk"),
    [
        ("/products/{sku}", "/products/bySku"),
        ("/products/{sku}/media/{entryId}", "/products/bySku/media/byEntryId"),
        ("/orders/{parent_id}", "/orders/byParent_id"),
        ("/carts/mine/items", "/carts/mine/items"),
        ("/bundle-products/{sku}/links/{id}", "/bundle-products/bySku/links/byId"),
    ],
)
def test_bulk_form_replaces_params_with_by_param(text: str, bulk: str) -> None:
    b = compile_pattern(text).bulk_form()
    assert b.text == bulk
    assert b.names == ()
    assert b.literal_count == len(b.parts)


# -- RouteTable: Magento's rule -----------------------------------------------------------


def _table(routes: Iterable[tuple[str, str]]) -> RouteTable[str]:
    """Routes as (method, pattern); the value is "METHOD pattern"."""
    return RouteTable((m, compile_pattern(t), f"{m} {t}") for m, t in routes)


def _pick(table: RouteTable[str], method: str, path: str) -> str | None:
    hit = table.lookup(method, tuple(path.strip("/").split("/")))
    return None if hit is None else hit[0]


def test_exact_literal_match_wins() -> None:
    t = _table([("GET", "/carts/{cartId}"), ("GET", "/carts/mine"), ("GET", "/carts/{x}/y")])
    assert t.lookup("GET", ("carts", "mine")) == ("GET /carts/mine", {})
    assert t.lookup("GET", ("carts", "5")) == ("GET /carts/{cartId}", {"cartId": "5"})


def test_literal_beats_variable_magento_example() -> None:
    # contract.md §2.1: /V1/carts/mine/items/5 picks /V1/carts/mine/items/:itemId,
    # not /V1/carts/:cartId/items/:itemId, whatever order the routes were declared in.
    routes = [("PUT", "/carts/{cartId}/items/{itemId}"), ("PUT", "/carts/mine/items/{itemId}")]
    for order in (routes, routes[::-1]):
        t = _table(order)
        assert t.lookup("PUT", ("carts", "mine", "items", "5")) == (
            "PUT /carts/mine/items/{itemId}",
            {"itemId": "5"},
        )
        assert t.lookup("PUT", ("carts", "7", "items", "5")) == (
            "PUT /carts/{cartId}/items/{itemId}",
            {"cartId": "7", "itemId": "5"},
        )


def test_last_in_byte_sorted_order_wins_among_variable_routes() -> None:
    # Two real Magento GET routes with two literal segments each; both match
    # categories/attributes/products. Sorted, "categories/:categoryId/products" comes
    # before "categories/attributes/:attributeCode" (":" is 0x3A, below letters), so
    # Magento's router (last match wins) dispatches to the attributes route.
    routes = [
        ("GET", "/categories/{categoryId}/products"),
        ("GET", "/categories/attributes/{attributeCode}"),
    ]
    for order in (routes, routes[::-1]):
        t = _table(order)
        assert t.lookup("GET", ("categories", "attributes", "products")) == (
            "GET /categories/attributes/{attributeCode}",
            {"attributeCode": "products"},
        )
        assert _pick(t, "GET", "categories/5/products") == "GET /categories/{categoryId}/products"


def test_sort_order_not_literal_count_decides() -> None:
    # The earliest literal decides, even against a route with more literals overall:
    # "x/:a/lit1/lit2" < "x/lit0/:b/:c", so the latter wins for x/lit0/lit1/lit2.
    routes = [("GET", "/x/{a}/lit1/lit2"), ("GET", "/x/lit0/{b}/{c}")]
    for order in (routes, routes[::-1]):
        t = _table(order)
        assert t.lookup("GET", ("x", "lit0", "lit1", "lit2")) == (
            "GET /x/lit0/{b}/{c}",
            {"b": "lit1", "c": "lit2"},
        )
        assert _pick(t, "GET", "x/other/lit1/lit2") == "GET /x/{a}/lit1/lit2"


def test_sort_is_by_bytes_so_a_digit_led_literal_loses_to_a_variable() -> None:
    # Byte order, not "literal beats variable": "1" (0x31) sorts below ":" (0x3A), so
    # "x/1/:c" < "x/:a/b" and Magento's last-match-wins picks the variable route.
    routes = [("GET", "/x/{a}/b"), ("GET", "/x/1/{c}")]
    for order in (routes, routes[::-1]):
        t = _table(order)
        assert t.lookup("GET", ("x", "1", "b")) == ("GET /x/{a}/b", {"a": "1"})
        assert _pick(t, "GET", "x/1/c") == "GET /x/1/{c}"


def test_variable_names_take_part_in_the_order() -> None:
    # Both first segments are variables; the names decide: "v/:id/x" < "v/:idx/:w" because
    # "/" (0x2F) sorts below "x" (0x78).
    routes = [("GET", "/v/{id}/x"), ("GET", "/v/{idx}/{w}")]
    for order in (routes, routes[::-1]):
        assert _pick(_table(order), "GET", "v/1/x") == "GET /v/{idx}/{w}"


def test_a_literal_first_segment_is_tried_before_a_variable_one() -> None:
    # Magento only considers routes whose URL starts with the path's leading segments
    # (Config::getRestRoutes), so /1/{c} is the candidate for 1/b even though ":a/b" sorts
    # after "1/:c" in bytes.
    routes = [("GET", "/{a}/b"), ("GET", "/1/{c}")]
    for order in (routes, routes[::-1]):
        t = _table(order)
        assert t.lookup("GET", ("1", "b")) == ("GET /1/{c}", {"c": "b"})
        assert t.lookup("GET", ("2", "b")) == ("GET /{a}/b", {"a": "2"})


def test_same_segment_count_only() -> None:
    t = _table([("GET", "/products/{sku}"), ("GET", "/products/{sku}/media")])
    assert _pick(t, "GET", "products/a") == "GET /products/{sku}"
    assert _pick(t, "GET", "products/a/media") == "GET /products/{sku}/media"
    assert _pick(t, "GET", "products/a/media/1") is None
    assert _pick(t, "GET", "products") is None


def test_method_is_part_of_the_route() -> None:
    t = _table([("GET", "/products/{sku}"), ("PUT", "/products/{sku}"), ("POST", "/products")])
    assert _pick(t, "GET", "products/a") == "GET /products/{sku}"
    assert _pick(t, "PUT", "products/a") == "PUT /products/{sku}"
    assert _pick(t, "DELETE", "products/a") is None
    assert _pick(t, "POST", "products/a") is None
    assert _pick(t, "POST", "products") == "POST /products"


def test_variable_values_are_raw_segments() -> None:
    t = _table([("GET", "/products/{sku}")])
    assert t.lookup("GET", ("products", "a%2Fb")) == ("GET /products/{sku}", {"sku": "a%2Fb"})


def test_tail_routes() -> None:
    t = _table(
        [
            ("*", "/design"),
            ("*", "/design/{rest:path}"),
            ("*", "/design/themes/{rest:path}"),
            ("GET", "/settings/{rest:path}"),
        ]
    )
    assert t.lookup("GET", ("design",)) == ("* /design", {})
    assert t.lookup("GET", ("design", "a", "b")) == ("* /design/{rest:path}", {"rest": "a/b"})
    # The longer literal prefix is tried first.
    assert t.lookup("POST", ("design", "themes", "x")) == (
        "* /design/themes/{rest:path}",
        {"rest": "x"},
    )
    assert t.lookup("GET", ("settings", "x", "y")) == (
        "GET /settings/{rest:path}",
        {"rest": "x/y"},
    )
    assert t.lookup("PUT", ("settings", "x")) is None
    assert t.lookup("GET", ("settings",)) is None


def test_star_method_is_a_fallback_for_any_method() -> None:
    t = _table([("*", "/webhooks/{id}"), ("DELETE", "/webhooks/{id}")])
    assert _pick(t, "DELETE", "webhooks/1") == "DELETE /webhooks/{id}"
    for method in ("GET", "POST", "PUT", "PATCH", "HEAD"):
        assert _pick(t, method, "webhooks/1") == "* /webhooks/{id}"


def test_methods_and_allowed_methods() -> None:
    t = _table(
        [
            ("GET", "/products/{sku}"),
            ("PUT", "/products/{sku}"),
            ("DELETE", "/products/{sku}"),
            ("POST", "/products"),
            ("*", "/panel/{rest:path}"),
        ]
    )
    assert t.methods() == {"GET", "PUT", "DELETE", "POST", "*"}
    assert t.allowed_methods(("products", "a")) == ["DELETE", "GET", "PUT"]
    assert t.allowed_methods(("products",)) == ["POST"]
    assert t.allowed_methods(("nothing",)) == []
    # "*" is never listed as a method.
    assert t.allowed_methods(("panel", "x")) == []


def test_lookup_of_an_empty_table() -> None:
    t: RouteTable[str] = RouteTable([])
    assert t.lookup("GET", ("a",)) is None
    assert t.allowed_methods(("a",)) == []
    assert t.methods() == set()
