"""The Magento stand-in's /graphql (magento_standin.graphql): Magento's transport rules
(GET for queries only, POST as application/json), its authorization error for customer
fields, guest and customer carts, and every call recorded like a REST one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from magento_standin import MagentoStandin, create_standin

INTEGRATION = "integration-" + "g" * 20
CUSTOMER = "customer-token-1"
OTHER = "customer-token-2"
UNAUTHORIZED = {
    "message": "The current customer isn't authorized.",
    "extensions": {"category": "graphql-authorization"},
}


@pytest.fixture
def standin() -> MagentoStandin:
    return create_standin(bearer_tokens=[INTEGRATION], customer_tokens={CUSTOMER: 1, OTHER: 2})


@pytest.fixture
async def client(standin: MagentoStandin) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=standin)
    async with httpx.AsyncClient(transport=transport, base_url="http://magento.test") as c:
        yield c


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_products_query_answers_data_from_the_catalog(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/graphql",
        json={
            "query": "query($s: String) { products(filter: {sku: {eq: $s}}) "
            "{ total_count items { __typename sku name } } }",
            "variables": {"s": "bag/01"},
        },
    )
    assert r.status_code == 200
    products = r.json()["data"]["products"]
    assert products["total_count"] == 1
    assert products["items"][0]["sku"] == "BAG/01"
    assert products["items"][0]["__typename"] == "SimpleProduct"


async def test_get_serves_queries(client: httpx.AsyncClient) -> None:
    r = await client.get("/graphql", params={"query": "{ storeConfig { store_code } }"})
    assert r.json() == {"data": {"storeConfig": {"store_code": "default"}}}


async def test_get_refuses_mutations_as_magento_does(client: httpx.AsyncClient) -> None:
    r = await client.get("/graphql", params={"query": "mutation { createEmptyCart }"})
    assert r.json()["errors"][0]["message"] == "Mutation requests allowed only for POST requests"


async def test_post_must_be_json(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/graphql", content=b"{ storeConfig { locale } }", headers={"Content-Type": "text/plain"}
    )
    assert r.json()["errors"][0]["message"] == "Request content type must be application/json"


async def test_customer_needs_a_customer_token(client: httpx.AsyncClient) -> None:
    for headers in ({}, _as(INTEGRATION)):
        r = await client.post("/graphql", json={"query": "{ customer { email } }"}, headers=headers)
        body = r.json()
        assert body["data"] == {"customer": None}
        error = body["errors"][0]
        assert {k: error[k] for k in ("message", "extensions")} == UNAUTHORIZED
    r = await client.post(
        "/graphql", json={"query": "{ customer { email } }"}, headers=_as(CUSTOMER)
    )
    # customer 1 of the seed, as REST's customers/me shows the same token
    assert r.json() == {"data": {"customer": {"email": "roni_cost@example.com"}}}


async def test_carts_belong_to_who_created_them(client: httpx.AsyncClient) -> None:
    async def gql(query: str, token: str | None = None, **variables: Any) -> Any:
        headers = _as(token) if token else {}
        body = {"query": query, "variables": variables}
        return (await client.post("/graphql", json=body, headers=headers)).json()

    guest = (await gql("mutation { createEmptyCart }"))["data"]["createEmptyCart"]
    added = await gql(
        'mutation($c: String!) { addProductsToCart(cartId: $c, cartItems: [{sku: "BAG/01", '
        'quantity: 1}, {sku: "NOPE", quantity: 1}]) { cart { total_quantity } '
        "user_errors { code } } }",
        c=guest,
    )
    out = added["data"]["addProductsToCart"]
    assert out["cart"]["total_quantity"] == 1
    assert out["user_errors"] == [{"code": "PRODUCT_NOT_FOUND"}]
    mine = (await gql("{ customerCart { id } }", CUSTOMER))["data"]["customerCart"]["id"]
    refused = await gql("query($c: String!) { cart(cart_id: $c) { id } }", OTHER, c=mine)
    assert refused["errors"][0]["extensions"]["category"] == "graphql-authorization"
    missing = await gql('{ cart(cart_id: "nope") { id } }')
    assert missing["errors"][0]["extensions"]["category"] == "graphql-no-such-entity"


async def test_a_batch_is_answered_entry_by_entry(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/graphql", json=[{"query": "{ storeConfig { locale } }"}, {"query": "{ nope }"}]
    )
    first, second = r.json()
    assert first == {"data": {"storeConfig": {"locale": "en_US"}}}
    assert "errors" in second


async def test_calls_are_recorded(client: httpx.AsyncClient, standin: MagentoStandin) -> None:
    await client.post(
        "/graphql", json={"query": "{ storeConfig { locale } }"}, headers=_as(CUSTOMER)
    )
    (seen,) = standin.requests
    assert seen["raw_path"] == b"/graphql" and seen["method"] == "POST"
    assert ("authorization", f"Bearer {CUSTOMER}") in seen["headers"]
    assert standin.hits[("POST", "/graphql")] == 1
