"""The v3 surface's GraphQL (/api/v3/graphql), end to end: a real uvicorn edge with the
SHIPPED storeicu policy in front of the Magento stand-in's /graphql (graphql-core executing
a slice of Magento's schema), partner JWTs signed by a key a real JWKS server publishes.

What is checked at the stand-in: an allowed operation arrives unchanged with the store's
credential; a refused one (syntax, scope, unmapped field, self field, limits, method) is the
v3 envelope and nothing reaches Magento. Hypothesis writes GraphQL documents from the
policy's field names and checks, against an independent oracle, that the edge never
answers 5xx and never forwards an operation the token's scopes do not grant.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.policy import load_policy
from tests.conftest import MAGENTO_TOKEN, REPO, Harness, running_edge
from tests.servers import serving
from tests.test_edge_jwt import AUD, ISS, claims, sign
from tests.test_jwt_auth import RSA_KEY, JWKSApp, jwk

GQL = "/api/v3/graphql"
POLICY = REPO / "policies" / "storeicu.toml"
SURFACE = load_policy(POLICY)
assert SURFACE.graphql is not None
FIELDS = SURFACE.graphql.fields
_clients = itertools.count()


def mint(*scopes: str, store: str = "acme") -> str:
    """A partner token with ``scopes``; its own client id, so no test meets a limit."""
    return sign(
        claims(
            scope=" ".join(scopes),
            store_id=store,
            client_id=f"gql-app-{next(_clients)}",
            partner_tier="platinum",
        )
    )


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    jwks = JWKSApp()
    jwks.keys = [jwk("rsa-1", RSA_KEY)]
    with serving(jwks) as jwks_server:
        issuer = (
            f'\n[issuers.storeicu]\nissuer = "{ISS}"\naudience = "{AUD}"\n'
            f'jwks_url = "{jwks_server.url}/jwks.json"\n'
        )
        with running_edge(tmp_path_factory.mktemp("gql"), policy=POLICY, extra=issuer) as harness:
            yield harness


def client(h: Harness, token: str | None) -> httpx.Client:
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=h.url, headers=auth, timeout=30)


def graphql(
    h: Harness, token: str | None, body: Any, *, method: str = "POST", **kw: Any
) -> tuple[httpx.Response, list[dict[str, Any]]]:
    """Send one request; what reached the stand-in because of it."""
    before = len(h.standin.requests)
    with client(h, token) as c:
        if method == "GET":
            r = c.get(GQL, params=body, **kw)
        elif isinstance(body, bytes):
            r = c.request(method, GQL, content=body, **kw)
        else:
            r = c.request(method, GQL, json=body, **kw)
    return r, list(h.standin.requests)[before:]


def envelope(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["code"] == code, r.text
    assert error["request_id"] == r.headers["x-request-id"]
    return error


def _header(sent: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in sent["headers"] if k == name]


# -- allowed: forwarded unchanged with the store's credential ---------------------------------


def test_a_query_reaches_magento_graphql_with_the_store_credential(h: Harness) -> None:
    body = {"query": "query P($n: Int) { products(pageSize: $n) { total_count items { sku } } }",
            "variables": {"n": 2}, "operationName": "P"}  # fmt: skip
    r, sent = graphql(h, mint("read_products"), body)
    assert r.status_code == 200, r.text
    data = r.json()["data"]["products"]
    assert data["total_count"] >= 2 and len(data["items"]) == 2
    (one,) = sent
    assert (one["method"], one["raw_path"]) == ("POST", b"/graphql")
    assert _header(one, "authorization") == [f"Bearer {MAGENTO_TOKEN}"]
    assert json.loads(one["body"]) == body  # the body, as the client sent it
    assert r.headers["x-rate-limit-limit"]  # v3 rate-limit headers, as on every route


def test_the_host_root_graphql_of_the_partner_document_is_the_same_endpoint(h: Harness) -> None:
    # "POST https://api.store.icu/graphql" ([graphql] root): decided as /api/v3/graphql.
    body = {"query": "{ products(pageSize: 1) { total_count } }"}
    before = len(h.standin.requests)
    with client(h, mint("read_products")) as c:
        r = c.post("/graphql", json=body)
    with client(h, mint("read_orders")) as c:
        refused = c.post("/graphql", json=body)  # the scope is checked there too
    assert r.status_code == 200, r.text
    assert r.json()["data"]["products"]["total_count"] >= 1
    envelope(refused, 403, "INSUFFICIENT_SCOPE")
    (one,) = list(h.standin.requests)[before:]
    assert one["raw_path"] == b"/graphql"
    assert _header(one, "authorization") == [f"Bearer {MAGENTO_TOKEN}"]


def test_the_store_view_is_the_tokens_not_the_clients(h: Harness) -> None:
    body = {"query": "{ storeConfig { store_code } }"}
    r, sent = graphql(h, mint("read_reports"), body, headers={"Store": "other_view"})
    assert r.status_code == 200, r.text
    (one,) = sent
    assert _header(one, "store") == ["default"]  # [stores.acme] store_code


def test_an_idempotency_key_replays_a_mutation_without_a_second_call(h: Harness) -> None:
    token = mint("write_orders")
    body = {"query": "mutation { createEmptyCart }"}
    key = {"Idempotency-Key": "gql-cart-1"}
    first, sent = graphql(h, token, body, headers=key)
    again, sent_again = graphql(h, token, body, headers=key)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    assert len(sent) == 1 and sent_again == []


def test_a_get_query_is_forwarded_with_its_query_string(h: Harness) -> None:
    params = {"query": "{ storeConfig { store_code locale } }"}
    r, sent = graphql(h, mint("read_reports"), params, method="GET")  # any valid token
    assert r.status_code == 200, r.text
    assert r.json()["data"]["storeConfig"]["store_code"] == "default"
    (one,) = sent
    assert one["method"] == "GET" and one["raw_path"] == b"/graphql"
    assert one["query"] == httpx.QueryParams(params).__str__().encode()


def test_a_mutation_with_write_scope_creates_a_cart_and_fills_it(h: Harness) -> None:
    token = mint("write_orders", "read_products")
    r, _ = graphql(h, token, {"query": "mutation { createEmptyCart }"})
    cart_id = r.json()["data"]["createEmptyCart"]
    assert len(cart_id) == 32
    add = {
        "query": "mutation A($c: String!) { addProductsToCart(cartId: $c, cartItems: "
        '[{sku: "BAG/01", quantity: 2}]) { cart { total_quantity items { product { sku } } } } }',
        "variables": {"c": cart_id},
    }
    r, sent = graphql(h, token, add)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["addProductsToCart"]["cart"]["total_quantity"] == 2
    assert len(sent) == 1


def test_a_batch_of_allowed_operations_is_forwarded_once(h: Harness) -> None:
    batch = [{"query": "{ storeConfig { locale } }"}, {"query": "{ cmsPage { title } }"}]
    r, sent = graphql(h, mint("read_content"), batch)
    assert r.status_code == 200, r.text
    assert [list(x["data"]) for x in r.json()] == [["storeConfig"], ["cmsPage"]]
    assert len(sent) == 1


def test_introspection_is_allowed_for_a_valid_token_by_the_shipped_policy(h: Harness) -> None:
    r, sent = graphql(h, mint("read_reports"), {"query": "{ __schema { queryType { name } } }"})
    assert r.status_code == 200 and r.json()["data"]["__schema"]["queryType"]["name"] == "Query"
    assert len(sent) == 1


def test_magento_graphql_errors_pass_through(h: Harness) -> None:
    r, sent = graphql(h, mint("read_orders"), {"query": '{ cart(cart_id: "nope") { id } }'})
    assert r.status_code == 200
    assert r.json()["errors"][0]["extensions"]["category"] == "graphql-no-such-entity"
    assert len(sent) == 1


# -- refused: the envelope, nothing forwarded -----------------------------------------------

REFUSALS = [
    # (name, scopes, body, method, status, code, text)
    ("no token", None, {"query": "{ storeConfig { locale } }"}, "POST", 401, "UNAUTHORIZED", ""),
    ("syntax error", ("admin",), {"query": "{ products { "}, "POST", 400, "BAD_REQUEST", "syntax error"),
    ("missing scope", ("read_orders",), {"query": "{ products { total_count } }"}, "POST", 403, "INSUFFICIENT_SCOPE", "products:read"),
    ("read for a mutation", ("read_orders",), {"query": "mutation { createEmptyCart }"}, "POST", 403, "INSUFFICIENT_SCOPE", "orders:write"),
    ("unmapped field", ("admin",), {"query": 'mutation { generateCustomerToken(email: "a", password: "b") { token } }'}, "POST", 403, "FORBIDDEN", "generateCustomerToken"),
    ("self field", ("admin",), {"query": "{ customer { email } }"}, "POST", 403, "FORBIDDEN", "partner token"),
    ("one bad in a batch", ("admin",), [{"query": "{ storeConfig { locale } }"}, {"query": "{ customer { email } }"}], "POST", 403, "FORBIDDEN", "customer"),
    ("via a fragment", ("read_products",), {"query": "{ ...F } fragment F on Query { customerCart { id } }"}, "POST", 403, "FORBIDDEN", "customerCart"),
    ("mutation over GET", ("admin",), {"query": "mutation { createEmptyCart }"}, "GET", 405, "METHOD_NOT_ALLOWED", "POST"),
    ("too deep", ("admin",), {"query": "{ products " + "{ items " * 20 + "{ sku }" + " }" * 21}, "POST", 400, "BAD_REQUEST", "levels deep"),
    ("too many aliases", ("admin",), {"query": "{ " + " ".join(f"a{i}: storeConfig {{ locale }}" for i in range(31)) + " }"}, "POST", 400, "BAD_REQUEST", "aliases"),
    ("not JSON", ("admin",), b"{ storeConfig { locale } }", "POST", 415, "UNSUPPORTED_MEDIA_TYPE", "application/json"),
    ("subscription", ("admin",), {"query": "subscription { products { total_count } }"}, "POST", 400, "BAD_REQUEST", "Subscriptions"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "scopes", "body", "method", "status", "code", "text"),
    REFUSALS,
    ids=[r[0] for r in REFUSALS],
)
def test_refusals_are_the_envelope_and_nothing_reaches_magento(
    h: Harness,
    name: str,
    scopes: tuple[str, ...] | None,
    body: Any,
    method: str,
    status: int,
    code: str,
    text: str,
) -> None:
    token = mint(*scopes) if scopes is not None else None
    kw: dict[str, Any] = {}
    if isinstance(body, bytes):
        kw["headers"] = {"Content-Type": "application/graphql"}
    r, sent = graphql(h, token, body, method=method, **kw)
    error = envelope(r, status, code)
    assert text in error["message"]
    assert sent == []


def test_a_missing_scope_names_the_scopes_that_would_do(h: Harness) -> None:
    r, _ = graphql(h, mint("read_orders"), {"query": "mutation { createEmptyCart }"})
    challenge = r.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and "write_orders" in challenge


def test_a_body_over_the_limit_is_413_unread(h: Harness) -> None:
    body = {"query": "{ storeConfig { locale } }", "pad": "x" * 70_000}
    r, sent = graphql(h, mint("admin"), body)
    envelope(r, 413, "PAYLOAD_TOO_LARGE")
    assert sent == []


def test_other_methods_are_405_with_allow(h: Harness) -> None:
    r, sent = graphql(h, mint("admin"), {"query": "{ storeConfig { locale } }"}, method="PUT")
    envelope(r, 405, "METHOD_NOT_ALLOWED")
    assert r.headers["allow"] == "GET, POST" and sent == []


def test_a_retired_version_answers_410_for_graphql_too(h: Harness) -> None:
    with client(h, mint("admin")) as c:
        r = c.post("/api/v1/graphql", json={"query": "{ storeConfig { locale } }"})
    envelope(r, 410, "VERSION_RETIRED")


# -- hypothesis: never a 5xx, never a forwarded operation the token lacks ------------------

_NAMES = [*sorted(FIELDS), "__typename", "secretAdminField", "generateCustomerToken"]
_SCOPES = ["read_products", "write_products", "read_orders", "write_orders", "read_content",
           "read_customers", "write_customers", "read_reports"]  # fmt: skip


def _grants(scopes: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for scope in scopes:
        for grant in SURFACE.scopes.get(scope, ()):
            resource, access = grant
            if out.get(resource) != "write":
                out[resource] = access
    return out


def _oracle(ops: list[tuple[str, list[str]]], scopes: list[str]) -> bool:
    """Whether a partner token with ``scopes`` may send these operations, written from
    the policy's table alone (not with proxy.graphql)."""
    grants = _grants(scopes)
    for kind, names in ops:
        for name in names:
            if name == "__typename":
                continue
            rule = FIELDS.get(name)
            if rule is None or rule == "self":
                return False
            if rule == "anonymous":
                continue
            held = grants.get(rule)
            if held != "write" and not (held == "read" and kind == "query"):
                return False
    return True


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, list[tuple[str, list[str]]]]:
    """A small document: operations of top-level fields (some aliased, some behind an
    inline fragment or a named fragment), with what each operation selects."""
    ops: list[tuple[str, list[str]]] = []
    parts: list[str] = []
    fragments: list[str] = []
    for i in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["query", "mutation"]))
        names = draw(st.lists(st.sampled_from(_NAMES), min_size=1, max_size=4))
        selections = []
        for j, name in enumerate(names):
            sel = name if name == "__typename" else f"{name} {{ __typename }}"
            if draw(st.booleans()):
                sel = f"x{j}: {sel}"
            how = draw(st.sampled_from(["plain", "inline", "fragment"]))
            if how == "inline":
                sel = f"... {{ {sel} }}"
            elif how == "fragment":
                fragments.append(f"fragment F{i}_{j} on {kind.title()} {{ {sel} }}")
                sel = f"...F{i}_{j}"
            selections.append(sel)
        parts.append(f"{kind} Op{i} {{ {' '.join(selections)} }}")
        ops.append((kind, names))
    return " ".join(parts + fragments), ops


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=documents(), scopes=st.lists(st.sampled_from(_SCOPES), max_size=3), batch=st.booleans())
def test_never_a_5xx_and_never_a_forwarded_operation_the_token_lacks(
    h: Harness, doc: tuple[str, list[tuple[str, list[str]]]], scopes: list[str], batch: bool
) -> None:
    text, ops = doc
    body: Any = {"query": text, "operationName": "Op0"}
    if batch:
        body = [body, {"query": "{ storeConfig { locale } }"}]
    r, sent = graphql(h, mint(*scopes), body)
    assert r.status_code < 500, r.text
    expected = _oracle(ops, scopes)
    if sent:
        assert expected, (text, scopes, r.text)
        assert json.loads(sent[0]["body"]) == body
    else:
        assert not expected, (text, scopes, r.text)  # and an allowed one is forwarded
        assert r.status_code in (401, 403), r.text


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    query=st.one_of(
        st.text(max_size=200),
        st.text(alphabet="{}()[]:$@!.=\"'#,\n query mutation fragment on ... customer products", max_size=120),
    ),
    as_get=st.booleans(),
)  # fmt: skip
def test_hostile_text_is_never_a_5xx_and_never_forwards_an_ungranted_field(
    h: Harness, query: str, as_get: bool
) -> None:
    from graphql import parse
    from graphql.language import FieldNode, OperationDefinitionNode

    if as_get:
        r, sent = graphql(h, mint("read_products"), {"query": query}, method="GET")
    else:
        r, sent = graphql(h, mint("read_products"), {"query": query})
    assert r.status_code < 500, r.text
    if sent:  # then it parsed, and every plain top-level field is granted to read_products
        doc = parse(query)
        for op in doc.definitions:
            if isinstance(op, OperationDefinitionNode):
                for sel in op.selection_set.selections:
                    if isinstance(sel, FieldNode) and sel.name.value != "__typename":
                        assert FIELDS.get(sel.name.value) in ("products", "anonymous"), query
