"""The stand-in's carts (magento_standin.carts, ``carts=True``) and customer tokens, alone:
Magento's shapes and texts for unknown carts, a customer without a cart, sign-in."""

from __future__ import annotations

import httpx
import pytest

from magento_standin import create_standin

INTEGRATION = "integration-" + "c" * 20


def _client(**kw: object) -> httpx.AsyncClient:
    app = create_standin(
        bearer_tokens=[INTEGRATION],
        customer_passwords={"john.doe@example.com": "pw"},
        carts=True,
        **kw,  # type: ignore[arg-type]
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://m")


async def test_guest_cart_lifecycle_and_unknown_carts() -> None:
    async with _client() as c:
        missing = await c.get("/rest/V1/guest-carts/nope")
        assert missing.status_code == 404
        assert missing.json() == {
            "message": "No such entity with %fieldName = %fieldValue",
            "parameters": {"fieldName": "cartId", "fieldValue": "nope"},
        }
        cart = (await c.post("/rest/V1/guest-carts")).json()
        empty = await c.put(f"/rest/V1/guest-carts/{cart}/order", json={})
        assert empty.status_code == 400
        unknown = await c.post(
            f"/rest/V1/guest-carts/{cart}/items", json={"cartItem": {"sku": "NOPE"}}
        )
        assert unknown.status_code == 404
        item = await c.post(
            f"/rest/V1/guest-carts/{cart}/items", json={"cartItem": {"sku": "mb-01"}}
        )
        assert item.json()["sku"] == "MB-01"  # SKUs match case-insensitively, as in MySQL
        order_id = (await c.put(f"/rest/V1/guest-carts/{cart}/order", json={})).json()
        order = await c.get(
            f"/rest/V1/orders/{order_id}", headers={"Authorization": f"Bearer {INTEGRATION}"}
        )
        assert order.json()["items"][0]["sku"] == "MB-01"
        assert (await c.get(f"/rest/V1/guest-carts/{cart}")).status_code == 404  # ordered


@pytest.mark.parametrize("password", ["wrong", ""])
async def test_customer_sign_in_failures(password: str) -> None:
    async with _client() as c:
        r = await c.post(
            "/rest/V1/integration/customer/token",
            json={"username": "john.doe@example.com", "password": password},
        )
    assert r.status_code in (400, 401)


async def test_customer_token_reaches_its_own_cart_only_while_valid() -> None:
    async with _client() as c:
        token = (
            await c.post(
                "/rest/V1/integration/customer/token",
                json={"username": "john.doe@example.com", "password": "pw"},
            )
        ).json()
        me = {"Authorization": f"Bearer {token}"}
        none = await c.get("/rest/V1/carts/mine/items", headers=me)
        assert none.status_code == 404
        assert none.json() == {"message": "Current customer does not have an active cart."}
        quote = (await c.post("/rest/V1/carts/mine", headers=me)).json()
        assert (await c.get("/rest/V1/carts/mine", headers=me)).json()["id"] == quote
        assert (await c.get("/rest/V1/customers/me", headers=me)).json()["id"] == 2
        assert (await c.get("/rest/V1/orders/1", headers=me)).status_code == 401  # no ACL
        assert (
            await c.post("/rest/V1/integration/customer/revoke-customer-token", headers=me)
        ).json() is True
        assert (await c.get("/rest/V1/customers/me", headers=me)).status_code == 401
