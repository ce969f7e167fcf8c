"""``/graphql`` on the native mount (sidecar mode, SPEC §4.4): a headless storefront's
GraphQL through the edge, decided per top-level field by ``policies/magento.toml``'s
``[graphql]`` — through a real edge and the stand-in, each a uvicorn server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.native_servers import (
    CUSTOMER_EMAIL,
    STORE_TOKEN,
    NativeHarness,
    native_edge,
    sent_header,
)

PRODUCTS = '{ products(search: "bag") { items { sku } } }'


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeHarness]:
    with native_edge(tmp_path_factory.mktemp("native-graphql")) as harness:
        yield harness


def _graphql_calls(h: NativeHarness, since: int) -> list[Any]:
    return [r for r in h.seen(since) if r["raw_path"] == b"/graphql"]


def test_a_guest_catalog_query_goes_out_with_no_credential(h: NativeHarness) -> None:
    before = len(h.standin.requests)
    with h.client() as c:
        r = c.post("/graphql", json={"query": PRODUCTS})
        get = c.get("/graphql", params={"query": "{ storeConfig { store_code } }"})
    assert r.status_code == 200, r.text
    assert "errors" not in r.json() and isinstance(r.json()["data"]["products"]["items"], list)
    assert get.status_code == 200 and get.json()["data"]["storeConfig"]["store_code"]
    calls = _graphql_calls(h, before)
    assert len(calls) == 2
    assert all(sent_header(call, "authorization") == [] for call in calls)
    assert "ratelimit-remaining" in r.headers  # per client address


def test_an_edge_token_on_anonymous_fields_is_never_forwarded(h: NativeHarness) -> None:
    pat = h.token("products:read")
    before = len(h.standin.requests)
    with h.client(pat) as c:
        r = c.post("/graphql", json={"query": PRODUCTS})
    assert r.status_code == 200, r.text
    [call] = _graphql_calls(h, before)
    assert sent_header(call, "authorization") == []  # a guest's question goes out as a guest's


def test_a_customer_token_reaches_self_fields_untouched(h: NativeHarness) -> None:
    token = h.customer_token()
    before = len(h.standin.requests)
    with h.client(token) as c:
        r = c.post("/graphql", json={"query": "{ customer { email } }"})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["customer"]["email"] == CUSTOMER_EMAIL
    [call] = _graphql_calls(h, before)
    assert sent_header(call, "authorization") == [f"Bearer {token}"]


@pytest.mark.parametrize("who", ["nobody", "pat"])
def test_self_fields_without_a_customer_token_are_refused_in_magentos_shape(
    h: NativeHarness, who: str
) -> None:
    token = h.token("customers:write") if who == "pat" else None
    before = len(h.standin.requests)
    with h.client(token) as c:
        r = c.post("/graphql", json={"query": "{ customer { email } }"})
    assert r.status_code in (401, 403)
    body = r.json()
    assert set(body) <= {"message", "parameters"} and "customer" in body["message"]
    assert h.seen(before) == []
    if token is not None:
        assert token not in r.text


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ('{ products(search: "x") { total_count } secretAdminField }', 403),  # not named
        ("{ products(search: ", 400),  # syntax error
        ('mutation { generateCustomerTokenAsAdmin(input: {customer_email: "a"}) { token } }', 403),
        ("{ __schema { types { name } } }", 403),  # introspection off for the public
    ],
)
def test_refusals_send_nothing(h: NativeHarness, query: str, status: int) -> None:
    before = len(h.standin.requests)
    with h.client() as c:
        r = c.post("/graphql", json={"query": query})
    assert r.status_code == status, r.text
    assert set(r.json()) <= {"message", "parameters"}
    assert h.seen(before) == []


def test_a_store_view_from_the_store_codes_is_kept_another_is_refused(h: NativeHarness) -> None:
    before = len(h.standin.requests)
    with h.client() as c:
        fr = c.post("/graphql", json={"query": PRODUCTS}, headers={"Store": "fr"})
        plain = c.post("/graphql", json={"query": PRODUCTS})
        bad = c.post("/graphql", json={"query": PRODUCTS}, headers={"Store": "admin"})
    assert fr.status_code == 200 and plain.status_code == 200
    assert bad.status_code == 400 and bad.json() == {"message": "Requested store is not found"}
    first, second = _graphql_calls(h, before)
    assert sent_header(first, "store") == ["fr"]
    assert sent_header(second, "store") == ["default"]  # the store's own view


def test_a_customer_token_cannot_borrow_the_store_credential(h: NativeHarness) -> None:
    # A field mapped to a resource needs an edge token's grant; a customer's token is none.
    token = h.customer_token()
    before = len(h.standin.requests)
    with h.client(token) as c:
        r = c.post("/graphql", json={"query": "{ customer { email } secretAdminField }"})
    assert r.status_code == 403
    assert h.seen(before) == []
    assert all(STORE_TOKEN not in str(sent_header(call, "authorization")) for call in h.seen(0))


def test_customer_logins_over_graphql_are_limited_per_address(tmp_path: Path) -> None:
    tiers = """
[ratelimit.tiers.standard]
rate = 100
period = 60
burst = 100

[ratelimit.tiers.login]
rate = 1
period = 3600
burst = 2
"""
    login = (
        'mutation { generateCustomerToken(email: "roni_cost@example.com", password: "x") '
        "{ token } }"
    )
    with native_edge(tmp_path, tiers=tiers) as h, h.client() as c:
        before = len(h.standin.requests)
        answers = [c.post("/graphql", json={"query": login}) for _ in range(3)]
        catalog = c.post("/graphql", json={"query": PRODUCTS})  # the standard bucket
        assert len(_graphql_calls(h, before)) == 3  # two logins and the catalog
    assert [r.status_code for r in answers[:2]] != [429, 429]
    assert answers[2].status_code == 429
    assert answers[2].headers["ratelimit-limit"] == "2"  # the login tier's, not standard's
    assert len(answers[1].headers.get_list("ratelimit-limit")) == 1
    assert catalog.status_code == 200
    assert catalog.headers["ratelimit-limit"] == "100"
