"""proxy.graphql: reading a GraphQL HTTP request and deciding it, for every caller kind
(no token, a Magento customer token, an edge token, a partner JWT), on a mount with guests
(the native mount) and without (the v3 surface); limits, introspection, batches,
fragments, GET. And the policy's [graphql] table, validated at load."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from proxy._toml import ConfigError
from proxy.graphql import (
    Allowed,
    Caller,
    GraphQLSettings,
    Refusal,
    check,
    decide,
    read_request,
)
from proxy.policy import load_policy

REPO = Path(__file__).resolve().parent.parent

FIELDS = {
    "products": "products",
    "storeConfig": "anonymous",
    "cart": "anonymous",
    "createEmptyCart": "anonymous",
    "customer": "self",
    "updateCustomer": "self",
    "orders": "orders",
    "createOrder": "orders",
}
SETTINGS = GraphQLSettings(
    path="/graphql",
    parts=("graphql",),
    fields=FIELDS,
    max_depth=5,
    max_aliases=3,
    max_fields=20,
    max_bytes=2048,
    introspection=False,
)

NOBODY = Caller("none")
CUSTOMER = Caller("customer")
READER = Caller("edge", {"products": "read", "orders": "read"})
WRITER = Caller("edge", {"orders": "write"})
PARTNER = Caller("edge", {"products": "read", "orders": "write"}, partner=True)
ADMIN = Caller("edge", {"*": "write"}, partner=True)


def post(
    body: Any,
    caller: Caller,
    *,
    guests: bool = True,
    settings: GraphQLSettings = SETTINGS,
    content_type: str = "application/json",
) -> Allowed | Refusal:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return check("POST", b"", content_type, raw, settings, caller, guests=guests)


def get(params: dict[str, str], caller: Caller, *, guests: bool = True) -> Allowed | Refusal:
    query = urlencode(params).encode()
    return check("GET", query, None, b"", SETTINGS, caller, guests=guests)


def q(query: str, **extra: Any) -> dict[str, Any]:
    return {"query": query, **extra}


def allowed(verdict: Allowed | Refusal) -> Allowed:
    assert isinstance(verdict, Allowed), verdict
    return verdict


def refused(verdict: Allowed | Refusal, status: int, text: str = "") -> Refusal:
    assert isinstance(verdict, Refusal), verdict
    assert verdict.status == status, verdict
    assert text in verdict.message, verdict
    return verdict


# -- credentials by caller kind ------------------------------------------------------------


def test_anonymous_fields_pass_with_no_token_and_no_credential_on_a_mount_with_guests() -> None:
    v = allowed(post(q('{ storeConfig { store_code } cart(cart_id: "x") { id } }'), NOBODY))
    assert v.credential == "none"
    assert v.fields == ("storeConfig", "cart")


def test_anonymous_fields_need_a_token_without_guests_but_no_particular_grant() -> None:
    refused(post(q("{ storeConfig { store_code } }"), NOBODY, guests=False), 401)
    v = allowed(post(q("{ storeConfig { store_code } }"), Caller("edge", {}), guests=False))
    assert v.credential == "store"


def test_an_edge_token_sends_no_credential_for_anonymous_fields_where_guests_are_served() -> None:
    # As the native mount's anonymous REST routes: what Magento serves a guest goes out as
    # a guest's, whoever asks; the store's credential only for fields a grant opened.
    assert allowed(post(q("{ storeConfig { locale } }"), READER)).credential == "none"
    mixed = q('{ storeConfig { locale } products(search: "x") { total_count } }')
    assert allowed(post(mixed, READER)).credential == "store"
    assert allowed(post(q("{ storeConfig { locale } }"), READER, guests=False)).credential == (
        "store"
    )


def test_self_fields_pass_the_customer_token_untouched() -> None:
    v = allowed(post(q("{ customer { email } storeConfig { locale } }"), CUSTOMER))
    assert v.credential == "customer"


def test_a_customer_token_keeps_its_token_on_anonymous_fields() -> None:
    # A logged-in shopper sends its token on catalog queries too (customer-group prices).
    assert allowed(post(q("{ storeConfig { locale } }"), CUSTOMER)).credential == "customer"


def test_self_fields_without_any_token_need_the_customer_token() -> None:
    refused(post(q("{ customer { email } }"), NOBODY), 401, "customer's own Magento")


@pytest.mark.parametrize("caller", [READER, PARTNER, ADMIN])
def test_self_fields_are_refused_for_edge_and_partner_tokens(caller: Caller) -> None:
    r = refused(post(q("{ customer { email } }"), caller), 403, "customer's own Magento token")
    assert ("a partner token" in r.message) == caller.partner


def test_resource_fields_need_an_edge_token_granting_read_for_a_query() -> None:
    refused(post(q("{ products { total_count } }"), NOBODY), 401, "granting products")
    refused(post(q("{ products { total_count } }"), CUSTOMER), 401)
    assert allowed(post(q("{ products { total_count } }"), READER)).credential == "store"
    r = refused(post(q("{ products { total_count } }"), WRITER), 403, "products:read")
    assert r.required == ("products", "read")


def test_mutations_need_write() -> None:
    r = refused(post(q("mutation { createOrder { id } }"), READER), 403, "orders:write")
    assert r.required == ("orders", "write")
    assert allowed(post(q("mutation { createOrder { id } }"), WRITER)).credential == "store"
    # write implies read, and "*" grants every resource
    assert allowed(post(q("{ orders { id } }"), WRITER))
    assert allowed(post(q("mutation { createOrder { id } }"), ADMIN))


def test_a_field_the_policy_does_not_name_is_refused_for_everyone() -> None:
    for caller in (NOBODY, CUSTOMER, READER, ADMIN):
        refused(post(q("{ storeConfig { locale } secrets { key } }"), caller), 403, '"secrets"')
    refused(post(q("mutation { generateCustomerTokenAsAdmin { t } }"), ADMIN), 403, "mutation")


def test_typename_is_always_allowed() -> None:
    assert allowed(post(q("{ __typename }"), NOBODY)).credential == "none"
    assert allowed(post(q("mutation { __typename }"), NOBODY))


def test_mixing_a_self_field_and_a_resource_field_can_never_pass() -> None:
    doc = q("{ customer { email } products { total_count } }")
    for caller in (NOBODY, CUSTOMER, READER, ADMIN):
        assert isinstance(post(doc, caller), Refusal)


# -- every operation, fragments, operationName ---------------------------------------------


def test_every_operation_of_a_document_is_checked_whatever_operation_name_selects() -> None:
    doc = "query A { storeConfig { locale } } mutation B { createOrder { id } }"
    refused(post(q(doc, operationName="A"), NOBODY), 401)
    refused(post(q(doc, operationName="A"), READER), 403, "orders:write")
    assert allowed(post(q(doc, operationName="A"), WRITER))


def test_an_operation_name_the_document_lacks_is_a_400() -> None:
    refused(post(q("query A { storeConfig { locale } }", operationName="B"), NOBODY), 400, '"B"')


def test_fields_reached_through_fragments_at_top_level_are_checked() -> None:
    spread = "query { ...F } fragment F on Query { products { total_count } }"
    refused(post(q(spread), NOBODY), 401, "products")
    inline = "query { ... on Query { customer { email } } }"
    refused(post(q(inline), READER), 403, "customer")
    nested = "{ ...A } fragment A on Query { ...B } fragment B on Query { orders { id } }"
    refused(post(q(nested), NOBODY), 401, "orders")
    assert allowed(post(q(nested), READER)).fields == ("orders",)


def test_skip_directives_do_not_hide_a_field() -> None:
    doc = "{ products @skip(if: true) { total_count } }"
    refused(post(q(doc), NOBODY), 401, "products")


def test_fragment_cycles_and_unknown_fragments_are_400() -> None:
    refused(post(q("{ ...A } fragment A on Query { ...A }"), ADMIN), 400, "spreads itself")
    refused(post(q("{ ...Nope }"), ADMIN), 400, "Unknown fragment")


def test_subscriptions_are_refused() -> None:
    refused(post(q("subscription { products { total_count } }"), ADMIN), 400, "Subscriptions")


def test_a_document_without_an_operation_is_a_400() -> None:
    refused(post(q("fragment F on Query { storeConfig { locale } }"), NOBODY), 400)


# -- limits ------------------------------------------------------------------------------


def test_depth_limit_counts_through_fragments() -> None:
    ok = "{ storeConfig { a { b { c { d } } } } }"  # depth 5
    assert allowed(post(q(ok), NOBODY))
    deep = "{ storeConfig { a { b { c { d { e } } } } } }"
    refused(post(q(deep), NOBODY), 400, "6 levels deep; at most 5")
    via = "{ storeConfig { ...F } } fragment F on StoreConfig { a { b { c { d { e } } } } }"
    refused(post(q(via), NOBODY), 400, "levels deep")


def test_alias_limit_counts_each_spread() -> None:
    assert allowed(post(q("{ a: storeConfig { x } b: storeConfig { x } c: cart { id } }"), NOBODY))
    refused(post(q("{ a: storeConfig { x } b: storeConfig { x } c: cart { id } d: cart { id } }"), NOBODY), 400, "4 aliases")  # fmt: skip
    twice = "{ ...F ...G } fragment F on Query { a: cart { id } b: cart { id } } fragment G on Query { ...F }"
    refused(post(q(twice), NOBODY), 400, "4 aliases")


def test_field_limit_counts_fragments_as_executed_without_exponential_work() -> None:
    # Each fragment spreads the next twice: 2**40 fields as executed, counted in O(size).
    frags = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(40))
    doc = "{ ...F0 } " + frags + " fragment F40 on Query { storeConfig { x } }"
    refused(
        post(q(doc), NOBODY, settings=_with(max_bytes=8192, max_fields=100)), 400, "at most 100"
    )


def test_byte_limit_is_checked_before_parsing() -> None:
    big = "{ storeConfig { " + "x " * 2000 + "} }"
    refused(post(q(big), NOBODY), 413, "2048 bytes")
    refused(get({"query": big}, NOBODY), 413)


# -- introspection ---------------------------------------------------------------------------


def test_introspection_refused_when_the_policy_says_so() -> None:
    refused(post(q("{ __schema { types { name } } }"), ADMIN), 403, "Introspection")
    refused(post(q('{ __type(name: "Cart") { name } }'), ADMIN), 403, "Introspection")


def test_introspection_allowed_when_the_policy_says_so() -> None:
    on = _with(introspection=True, max_depth=10, max_fields=50)
    assert allowed(post(q("{ __schema { types { name } } }"), NOBODY, settings=on))
    refused(post(q("{ __schema { types { name } } }"), NOBODY, guests=False, settings=on), 401)


# -- batches ---------------------------------------------------------------------------------


def test_a_batch_is_checked_operation_by_operation_and_one_refusal_refuses_it() -> None:
    ok = [q("{ storeConfig { locale } }"), q("mutation { createEmptyCart }")]
    assert allowed(post(ok, NOBODY)).fields == ("storeConfig", "createEmptyCart")
    bad = [*ok, q("{ customer { email } }")]
    refused(post(bad, NOBODY), 401, "customer")
    refused(post([*ok, q("{ broken ")], NOBODY), 400, "Batch entry 2: GraphQL syntax error")
    refused(post([*ok, 42], NOBODY), 400, "Batch entry 2")


def test_an_empty_batch_or_a_scalar_body_is_a_400() -> None:
    refused(post([], NOBODY), 400)
    refused(post("query", NOBODY), 400)
    refused(post(b"{not json", NOBODY), 400, "not valid JSON")


# -- request shapes -----------------------------------------------------------------------


def test_syntax_errors_are_400_with_the_parser_message() -> None:
    refused(post(q("{ products { "), NOBODY), 400, "GraphQL syntax error")
    refused(post(q("{ }"), NOBODY), 400, "syntax error")  # empty selection sets refused


@pytest.mark.parametrize(
    "body",
    [{}, {"query": 1}, {"query": "{ x }", "variables": []}, {"query": "{ x }", "operationName": 3}],
)
def test_malformed_request_objects_are_400(body: Any) -> None:
    refused(post(body, NOBODY), 400)


def test_post_must_be_json() -> None:
    doc = b"{ storeConfig { locale } }"
    refused(post(doc, NOBODY, content_type="application/graphql"), 415, "application/json")
    refused(post(doc, NOBODY, content_type=""), 415)
    ok = post(
        q("{ storeConfig { locale } }"), NOBODY, content_type="application/json; charset=utf-8"
    )
    assert allowed(ok)


def test_a_post_with_graphql_parameters_in_the_url_is_refused() -> None:
    body = json.dumps(q("{ storeConfig { locale } }")).encode()
    v = check("POST", b"query=%7Bcustomer%7Bemail%7D%7D", "application/json", body, SETTINGS, NOBODY, guests=True)  # fmt: skip
    refused(v, 400, "in the body")


def test_get_queries_follow_the_same_rules() -> None:
    assert allowed(get({"query": "{ storeConfig { locale } }"}, NOBODY)).credential == "none"
    refused(get({"query": "{ products { total_count } }"}, NOBODY), 401)
    assert allowed(get({"query": "query P { products { total_count } }", "operationName": "P", "variables": '{"a": 1}'}, READER))  # fmt: skip
    refused(get({"query": "{ storeConfig { locale } }", "variables": "[1]"}, NOBODY), 400)
    refused(get({"query": "{ storeConfig { locale } }", "variables": "{"}, NOBODY), 400)
    refused(get({}, NOBODY), 400, "query parameter")


def test_get_with_a_mutation_is_405() -> None:
    refused(get({"query": "mutation { createEmptyCart }"}, NOBODY), 405, "POST")


@pytest.mark.parametrize(
    "raw",
    [
        b"query=%7BstoreConfig%7Blocale%7D%7D&query=%7Bcustomer%7Bemail%7D%7D",
        b"query[]=%7BstoreConfig%7Blocale%7D%7D",
        b"query=%7BstoreConfig%7Blocale%7D%7D&operationName=A&operationName=B",
        b"query=%ff",
    ],
)
def test_get_parameters_a_php_server_could_read_differently_are_refused(raw: bytes) -> None:
    refused(check("GET", raw, None, b"", SETTINGS, NOBODY, guests=True), 400)


def test_other_methods_are_405() -> None:
    refused(check("PUT", b"", "application/json", b"{}", SETTINGS, NOBODY, guests=True), 405)


def test_read_request_returns_the_parsed_operations() -> None:
    body = json.dumps([q("{ a }"), q("query X { b }", operationName="X")]).encode()
    requests = read_request("POST", b"", "application/json", body, SETTINGS)
    assert not isinstance(requests, Refusal)
    assert [r.operation_name for r in requests] == [None, "X"]
    verdict = decide(requests, SETTINGS, ADMIN, method="POST", guests=True)
    refused(verdict, 403, '"a"')


# -- the policy's [graphql] ------------------------------------------------------------------


def _with(**changes: Any) -> GraphQLSettings:
    from dataclasses import replace

    return replace(SETTINGS, **changes)


def _policy(tmp_path: Path, graphql: str) -> Path:
    text = (REPO / "policies" / "storeoncloud.toml").read_text() + "\n" + graphql
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


def test_the_shipped_v3_policy_has_a_graphql_path_and_a_deny_by_default_mapping() -> None:
    surface = load_policy(REPO / "policies" / "storeicu.toml")
    g = surface.graphql
    assert g is not None and g.parts == ("graphql",)
    assert g.fields["products"] == "products" and g.fields["customer"] == "self"
    assert g.fields["createEmptyCart"] == "orders" and g.fields["storeConfig"] == "anonymous"
    assert "generateCustomerToken" not in g.fields  # customer logins: the native mount's
    assert set(g.fields.values()) <= {"anonymous", "self", *surface.resources}
    assert surface.graphql.mount is not None and surface.graphql.mount.target == "/graphql"


def test_graphql_settings_load_with_defaults(tmp_path: Path) -> None:
    s = load_policy(_policy(tmp_path, '[graphql.fields]\nproducts = "products"\n'))
    assert s.graphql is not None
    assert (s.graphql.max_depth, s.graphql.max_fields, s.graphql.introspection) == (20, 300, False)


@pytest.mark.parametrize(
    ("graphql", "message"),
    [
        ('[graphql]\nfoo = 1\n[graphql.fields]\nproducts = "products"\n', "graphql.foo: unknown key"),
        ('[graphql.fields]\nproducts = "product"\n', 'graphql.fields.products: "product" is not a resource'),
        ('[graphql.fields]\nproducts = 3\n', "graphql.fields.products"),
        ("[graphql]\nintrospection = true\n", "graphql.fields: must name at least one field"),
        ('[graphql]\nmax_depth = 0\n[graphql.fields]\nproducts = "products"\n', "graphql.max_depth: must be at least 1"),
        ('[graphql]\nmax_bytes = "big"\n[graphql.fields]\nproducts = "products"\n', "graphql.max_bytes: must be an integer"),
        ('[graphql]\npath = "graphql"\n[graphql.fields]\nproducts = "products"\n', "graphql.path"),
        ('[graphql]\npath = "/{x}"\n[graphql.fields]\nproducts = "products"\n', "graphql.path"),
        ('[graphql]\nintrospection = "yes"\n[graphql.fields]\nproducts = "products"\n', "graphql.introspection"),
        ('[graphql.fields]\n"__schema" = "anonymous"\n', "graphql.fields.__schema"),
        ('[graphql.fields]\n"bad-name" = "anonymous"\n', "graphql.fields.bad-name"),
        # per-address tiers are the native mount's (its guests): refused elsewhere
        ('[graphql.fields]\nproducts = "products"\n[graphql.tiers]\nproducts = "default"\n', "graphql.tiers: unknown key"),
    ],
)  # fmt: skip
def test_bad_graphql_settings_are_refused_with_file_key_and_line(
    tmp_path: Path, graphql: str, message: str
) -> None:
    path = _policy(tmp_path, graphql)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    problems = [p for p in info.value.problems if message in p]
    assert problems, info.value.problems
    assert problems[0].startswith(f"{path}:")
    line = int(problems[0].split(":")[1])
    assert line > len((REPO / "policies" / "storeoncloud.toml").read_text().splitlines())


def test_a_graphql_path_hiding_a_mount_route_is_refused(tmp_path: Path) -> None:
    text = re.sub(
        r'(?m)^path = "/graphql".*$',
        'path = "/products"',
        (REPO / "policies" / "storeicu.toml").read_text(),
    )
    path = tmp_path / "icu.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"graphql.path: \"/products\" hides GET /products"):
        load_policy(path)


# -- the parse cache ---------------------------------------------------------------------


def test_a_document_is_parsed_once_and_decided_per_caller() -> None:
    from proxy import graphql_document as graphql

    doc = q("query Cached { products { total_count } }")
    graphql._ANALYSED.clear()
    refused(post(doc, NOBODY), 401)
    assert len(graphql._ANALYSED) == 1
    assert allowed(post(doc, READER))  # the same analysis, another caller
    refused(post({**doc, "operationName": "Other"}, READER), 400)
    assert len(graphql._ANALYSED) == 1


def test_the_parse_cache_is_bounded_under_a_flood_of_distinct_documents() -> None:
    from proxy import graphql_document as graphql

    for i in range(graphql._ANALYSED.maxsize + 500):
        post(q(f"{{ storeConfig {{ f{i} }} }}"), NOBODY)
    assert len(graphql._ANALYSED) == graphql._ANALYSED.maxsize


def test_a_document_with_too_many_tokens_is_refused_before_it_is_parsed_whole() -> None:
    small = _with(max_fields=10, max_bytes=100_000)  # 100 tokens
    doc = "{ " + " ".join(f"a{i}: storeConfig {{ x }}" for i in range(30)) + " }"
    refused(post(q(doc), NOBODY, settings=small), 400, "more than 100 tokens")


def _native_policy(tmp_path: Path, old: str, new: str) -> Path:
    text = (REPO / "policies" / "magento.toml").read_text()
    text = text.replace(
        'policy = "storeoncloud.toml"', f'policy = "{REPO / "policies" / "storeoncloud.toml"}"'
    )
    assert old in text
    path = tmp_path / "native.toml"
    path.write_text(text.replace(old, new))
    return path


def test_the_shipped_native_policy_maps_guests_customers_and_login_tiers() -> None:
    surface = load_policy(REPO / "policies" / "magento.toml")
    g = surface.graphql
    assert g is not None and g.parts == ("graphql",) and not g.introspection
    assert g.fields["products"] == "anonymous" and g.fields["customer"] == "self"
    assert g.fields["generateCustomerToken"] == "anonymous"
    assert "generateCustomerTokenAsAdmin" not in g.fields  # admin impersonation: refused
    assert g.tiers["generateCustomerToken"] == "login"
    assert set(g.tiers.values()) <= set(surface.tiers)


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ('generateCustomerToken = "gold"', 'graphql.tiers.generateCustomerToken: "gold" is not a rate-limit tier'),
        ('notAField = "login"', 'graphql.tiers.notAField: "notAField" is not a field'),
    ],
)  # fmt: skip
def test_bad_native_graphql_tiers_are_refused(tmp_path: Path, new: str, message: str) -> None:
    path = _native_policy(tmp_path, 'generateCustomerToken = "login"', new)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert any(message in p and p.startswith(f"{path}:") for p in info.value.problems), (
        info.value.problems
    )


def _both_apis(tmp_path: Path, hosts: str) -> Path:
    policies = ", ".join(f'"{REPO / "policies" / n}"' for n in ("storeicu.toml", "magento.toml"))
    path = tmp_path / "config.toml"
    path.write_text(f"""
[server]
policies = [{policies}]
{hosts}
[keystore]
path = "e.db"
[issuers.storeicu]
issuer = "https://auth.store.icu/"
audience = "https://api.store.icu"
jwks_url = "https://auth.store.icu/.well-known/jwks.json"
[stores.shop]
magento_url = "http://127.0.0.1:9"
credential = {{ kind = "bearer", token_env = "T" }}
native = true
""")
    return path


def test_the_partner_root_graphql_and_the_native_graphql_need_their_own_hosts(
    tmp_path: Path,
) -> None:
    from proxy.config import load_config

    with pytest.raises(ConfigError) as info:
        load_config(_both_apis(tmp_path, ""), env={"T": "t"})
    assert any('"/graphql"' in p and "every host" in p for p in info.value.problems), (
        info.value.problems
    )
    config = load_config(
        _both_apis(
            tmp_path,
            'surface_hosts = { storeicu = ["api.store.icu"], magento = ["shop.example.com"] }',
        ),
        env={"T": "t"},
    )
    icu = next(s for s in config.surfaces if s.name == "storeicu")
    assert icu.graphql is not None and icu.graphql.root_parts == ("graphql",)
