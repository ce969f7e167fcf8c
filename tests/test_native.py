"""proxy.native through a real edge in front of the stand-in: Magento's own paths, decided
by Magento's ACL classes (anonymous: no credential; self: the caller's customer token;
anything else: an edge token's grants and the store's credential), in Magento's error
shape, and nothing forwarded when refused."""

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

NOT_AUTHORIZED = "The consumer isn't authorized to access %resources."


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeHarness]:
    with native_edge(tmp_path_factory.mktemp("native")) as harness:
        yield harness


def test_guest_cart_to_order_goes_out_with_no_credential_at_all(h: NativeHarness) -> None:
    pat = h.token("orders:write", "products:write")  # sent, and still never forwarded
    before = len(h.standin.requests)
    with h.client(pat) as c:
        r = c.post("/rest/default/V1/guest-carts")
        assert r.status_code == 200, r.text
        cart = r.json()
        r = c.post(
            f"/rest/default/V1/guest-carts/{cart}/items",
            json={"cartItem": {"sku": "MB-01", "qty": 2, "quote_id": cart}},
        )
        assert r.status_code == 200, r.text
        assert r.json()["sku"] == "MB-01"
        assert c.get(f"/rest/V1/guest-carts/{cart}/items").json()[0]["qty"] == 2
        r = c.put(
            f"/rest/default/V1/guest-carts/{cart}/order",
            json={"paymentMethod": {"method": "checkmo"}, "email": "guest@example.com"},
        )
        assert r.status_code == 200, r.text
        order_id = r.json()
    assert isinstance(order_id, int)
    assert h.standin.orders[order_id]["customer_is_guest"] == 1
    seen = h.seen(before)
    assert len(seen) == 4
    assert all(
        sent_header(req, "authorization") == [] for req in seen
    )  # no edge token, no store credential
    assert "ratelimit-limit" in r.headers


def test_customer_token_traffic_passes_untouched_and_never_with_the_store_credential(
    h: NativeHarness,
) -> None:
    before = len(h.standin.requests)
    token = h.customer_token()
    with h.client(token) as c:
        me = c.get("/rest/V1/customers/me")
        assert me.status_code == 200, me.text
        assert me.json()["email"] == CUSTOMER_EMAIL
        quote = c.post("/rest/default/V1/carts/mine").json()
        assert isinstance(quote, int)
        r = c.post("/rest/default/V1/carts/mine/items", json={"cartItem": {"sku": "MB-04"}})
        assert r.status_code == 200, r.text
        order = c.put("/rest/default/V1/carts/mine/order", json={})
        assert order.status_code == 200, order.text
    assert h.standin.orders[order.json()]["customer_id"] == 1
    seen = h.seen(before)
    assert len(seen) == 5
    assert sent_header(seen[0], "authorization") == []  # the login itself: anonymous
    assert all(sent_header(req, "authorization") == [f"Bearer {token}"] for req in seen[1:])
    assert not any(STORE_TOKEN in v for req in seen for v in sent_header(req, "authorization"))


def test_an_edge_token_is_refused_on_self_routes_with_nothing_forwarded(h: NativeHarness) -> None:
    pat = h.token("customers:write")
    before = len(h.standin.requests)
    with h.client(pat) as c:
        r = c.get("/rest/default/V1/customers/me")
        # In another scheme too: it would reach Magento (and its logs) untouched.
        basic = c.get("/rest/default/V1/customers/me", headers={"Authorization": f"Basic {pat}"})
    for answer in (r, basic):
        assert answer.status_code == 401
        assert answer.json() == {"message": NOT_AUTHORIZED, "parameters": {"resources": "self"}}
    assert h.seen(before) == []


def test_protected_routes_need_an_edge_token_granting_the_resource(h: NativeHarness) -> None:
    reader = h.token("products:read")
    before = len(h.standin.requests)
    with h.client(reader) as c:
        orders = c.get("/rest/default/V1/orders/1")
        write = c.put("/rest/default/V1/products/MB-01", json={"product": {"price": 1}})
    with h.client() as c:
        anonymous = c.get("/rest/default/V1/products/MB-01")
    with h.client(h.customer_token()) as c:
        customer = c.get("/rest/default/V1/orders/1")
    for r, required in (
        (orders, "orders:read"),
        (write, "products:write"),
        (anonymous, "products:read"),
        (customer, "orders:read"),
    ):
        assert r.status_code == 401, r.text
        assert r.json() == {"message": NOT_AUTHORIZED, "parameters": {"resources": required}}
        assert r.headers["content-type"].startswith("application/json")
        assert "ratelimit-limit" in r.headers or r is anonymous or r is customer
    forwarded = [req for req in h.seen(before) if b"integration" not in req["raw_path"]]
    assert forwarded == []


def test_a_granted_route_goes_out_with_the_store_credential(h: NativeHarness) -> None:
    reader = h.token("products:read")
    before = len(h.standin.requests)
    with h.client(reader) as c:
        r = c.get("/rest/all/V1/products/BAG%2F01")
        listed = c.get("/rest/fr/V1/products", params={"searchCriteria[pageSize]": "2"})
    assert r.status_code == 200, r.text
    assert r.json()["sku"] == "BAG/01"
    assert listed.status_code == 200 and len(listed.json()["items"]) == 2
    seen = h.seen(before)
    assert [req["raw_path"] for req in seen] == [
        b"/rest/all/V1/products/BAG%2F01",
        b"/rest/fr/V1/products",
    ]
    assert all(sent_header(req, "authorization") == [f"Bearer {STORE_TOKEN}"] for req in seen)
    assert "ratelimit-remaining" in r.headers


def test_a_token_for_another_store_is_refused(h: NativeHarness) -> None:
    other = h.token("products:read", stores=("other",))
    before = len(h.standin.requests)
    with h.client(other) as c:
        r = c.get("/rest/V1/products/MB-01")
    assert r.status_code == 401
    assert r.json()["parameters"] == {"resources": "products:read"}
    assert h.seen(before) == []


@pytest.mark.parametrize(
    ("method", "path", "status", "message"),
    [
        ("GET", "/rest/default/V1/no-such-route", 404, "Request does not match any route."),
        ("GET", "/rest/nosuchstore/V1/products", 404, "Request does not match any route."),
        ("GET", "/rest/default/V2/products", 404, "Request does not match any route."),
        ("GET", "/somewhere/else", 404, "Request does not match any route."),
        (
            "PATCH",
            "/rest/default/V1/products/MB-01",
            405,
            "The PATCH HTTP method is not supported.",
        ),
        ("GET", "/rest/default/async/V1/products", 400, "Specified request cannot be processed."),
        ("PUT", "/graphql", 405, "The PUT HTTP method is not supported."),
    ],
)
def test_refusals_are_in_magentos_shape_and_texts(
    h: NativeHarness, method: str, path: str, status: int, message: str
) -> None:
    before = len(h.standin.requests)
    with h.client(h.token("products:write")) as c:
        r = c.request(method, path)
    assert r.status_code == status
    assert r.json() == {"message": message}
    assert h.seen(before) == []


def test_admin_password_login_is_denied_on_the_native_mount(h: NativeHarness) -> None:
    before = len(h.standin.requests)
    with h.client() as c:
        r = c.post("/rest/V1/integration/admin/token", json={"username": "a", "password": "b"})
    assert r.status_code == 403
    assert "admin password login" in r.json()["message"]
    assert h.seen(before) == []


def test_async_and_bulk_need_write_even_for_read_only_posts(h: NativeHarness) -> None:
    reader = h.token("products:read")
    writer = h.token("products:write")
    with h.client(reader) as c:
        r = c.post(
            "/rest/default/async/V1/products/base-prices-information", json={"skus": ["MB-01"]}
        )
    assert r.status_code == 401
    assert r.json()["parameters"] == {"resources": "products:write"}
    before = len(h.standin.requests)
    with h.client(writer) as c:
        one = c.post("/rest/default/async/V1/products", json={"product": {"sku": "Q-1"}})
        bulk = c.put(
            "/rest/default/async/bulk/V1/products/bySku",
            json=[{"product": {"sku": "Q-2"}}, {"product": {"sku": "Q-3"}}],
        )
    assert one.status_code == 202 and one.json()["bulk_uuid"]
    assert bulk.status_code == 202 and len(bulk.json()["request_items"]) == 2
    assert [req["raw_path"] for req in h.seen(before)] == [
        b"/rest/default/async/V1/products",
        b"/rest/default/async/bulk/V1/products/bySku",
    ]


def test_customer_login_is_limited_per_address(tmp_path: Path) -> None:
    tiers = """
[ratelimit.tiers.standard]
rate = 100
period = 60
burst = 100

[ratelimit.tiers.login]
rate = 1
period = 3600
burst = 3
"""
    with native_edge(tmp_path, tiers=tiers) as h, h.client() as c:
        answers = [
            c.post(
                "/rest/V1/integration/customer/token",
                json={"username": CUSTOMER_EMAIL, "password": "wrong"},
            )
            for _ in range(4)
        ]
        other = c.get("/rest/V1/directory/countries")  # another bucket: still served
    assert [r.status_code for r in answers] == [401, 401, 401, 429]
    assert answers[0].json()["message"].startswith("The account sign-in was incorrect")
    assert set(answers[3].json()) == {"message"}
    assert "retry-after" in answers[3].headers
    assert answers[3].headers["ratelimit-remaining"] == "0"
    assert other.status_code == 200
    assert len(h.standin.requests) == 4  # three logins and the countries, not the fourth


def test_identify_caller_tells_the_graphql_hook_who_is_calling(h: NativeHarness) -> None:
    """The hook the GraphQL check is wired into (proxy.native.native_graphql)."""
    import asyncio

    from proxy.context import RequestContext
    from proxy.errors import Unauthorized
    from proxy.headers import build_forwarding
    from proxy.native import identify_caller

    store = h.config.stores["shop"]
    surface = next(s for s in h.config.surfaces if s.native is not None)

    def caller(authorization: str | None) -> Any:
        headers = [(b"authorization", authorization.encode())] if authorization else []
        scope = {"type": "http", "method": "POST", "headers": headers, "path": "/graphql"}
        ctx = RequestContext(scope, None, None, request_id="r", surface=surface)  # type: ignore[arg-type]
        ctx.fwd = build_forwarding(("127.0.0.1", 1), "http", headers, (), "r")
        return asyncio.run(identify_caller(h.edge, ctx, store))

    assert caller(None).kind == "none"
    assert caller("Bearer some.customer.jwt").kind == "customer"
    edge = caller(f"Bearer {h.token('products:read')}")
    assert edge.kind == "edge" and edge.principal is not None
    assert edge.principal.permissions_for("shop") == {"products": "read"}
    with pytest.raises(Unauthorized):
        caller(f"Bearer {h.token('products:read', stores=('other',))}")
