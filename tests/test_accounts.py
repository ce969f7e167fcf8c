"""Accounts (SPEC §5): a token never exceeds its account. Effective access per store is the
token's grants ∩ the account's current grants; shrinking the account shrinks its tokens on
the next request after the 1 s cache bound. The helpers, then the CLI and HTTP together on
both key stores."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.backends.keystore.base import AccountRecord, TokenRecord
from proxy.grants import effective_grants, grants_allow, intersect
from tests.governance import BACKENDS, GovernedEdge, governed_edge, wait_until

# -- the arithmetic -----------------------------------------------------------------------------


def test_intersect_write_and_read_is_read() -> None:
    token = {"orders": "write", "products": "write", "customers": "read", "design": "read"}
    ceiling = {"orders": "write", "products": "read", "customers": "write"}
    assert intersect(token, ceiling) == {  # type: ignore[arg-type]
        "orders": "write",
        "products": "read",
        "customers": "read",
    }
    assert intersect(token, {}) == {}  # type: ignore[arg-type]
    assert intersect({}, ceiling) == {}  # type: ignore[arg-type]


access = st.sampled_from(["read", "write"])
grants = st.dictionaries(st.sampled_from(["orders", "products", "customers", "design"]), access)


@given(grants, grants, st.sampled_from(["orders", "products", "customers", "design"]), access)
def test_intersect_allows_exactly_what_both_allow(
    token: dict[str, str], ceiling: dict[str, str], resource: str, want: str
) -> None:
    both = grants_allow(token, resource, want) and grants_allow(ceiling, resource, want)  # type: ignore[arg-type]
    assert grants_allow(intersect(token, ceiling), resource, want) == both  # type: ignore[arg-type]


def _token(**kw: object) -> TokenRecord:
    values: dict[str, object] = {
        "id": "tok_1",
        "name": "t",
        "kind": "live",
        "stores": ("acme", "oak", "elm"),
        "permissions": {"orders": "write", "products": "read"},
        "account_id": "acct_1",
    }
    values.update(kw)
    return TokenRecord(**values)  # type: ignore[arg-type]


def test_effective_grants_per_store() -> None:
    account = AccountRecord(
        "acct_1",
        "P",
        {"acme": {"orders": "write"}, "oak": {"orders": "read", "products": "write"}, "x": {}},
    )
    assert effective_grants(_token(), account) == {
        "acme": {"orders": "write"},
        "oak": {"orders": "read", "products": "read"},
        # elm: not the account's; x: not the token's
    }


def test_effective_grants_without_account_or_with_a_missing_one() -> None:
    own = _token(account_id=None)
    assert effective_grants(own, None) == {s: dict(own.permissions) for s in own.stores}
    assert effective_grants(_token(), None) == {}


def test_account_public_view() -> None:
    account = AccountRecord(
        "acct_1", "P", {"oak": {"products": "read", "orders": "write"}, "acme": {}}, 5.0
    )
    assert account.public() == {
        "id": "acct_1",
        "name": "P",
        "grants": {"acme": [], "oak": ["orders:write", "products:read"]},
        "created_at": 5.0,
    }


# -- CLI + HTTP, both key stores --------------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def edge(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GovernedEdge]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    with governed_edge(tmp_path_factory.mktemp("accounts"), request.param, redis_url) as e:
        yield e


ORDER = "/api/v1/stores/{store}/commerce/orders/1"
PRODUCT = "/api/v1/stores/{store}/commerce/products/MB-01"


def test_stores_lists_effective_permissions(edge: GovernedEdge) -> None:
    account = edge.account("orders:read", "products:write", stores=("acme", "oak"))
    token, _ = edge.token(
        "orders:read", "products:write", stores=("acme", "oak"), extra=("--account", account)
    )
    edge.ok("accounts", "revoke", account, "--store", "oak", "--permission", "products:write")
    # Within 1 s every replica (here: this one) sees the smaller account.
    assert wait_until(
        lambda: (
            edge.get("/api/v1/stores", token).json()["stores"][1]["permissions"]
            == ["orders:read", "products:read"]
        )
    )
    stores = edge.get("/api/v1/stores", token).json()["stores"]
    assert [(s["id"], s["permissions"]) for s in stores] == [
        ("acme", ["orders:read", "products:write"]),
        ("oak", ["orders:read", "products:read"]),
    ]


def test_shrinking_an_account_shrinks_its_tokens(edge: GovernedEdge) -> None:
    account = edge.account("orders:write", "products:read")
    token, _ = edge.token("orders:write", "products:read", extra=("--account", account))
    assert edge.get(PRODUCT.format(store="acme"), token).status_code == 200
    # orders:write → orders:read: writes to orders are 403, saying why
    edge.ok("accounts", "revoke", account, "--permission", "orders:write")
    edge.ok("accounts", "revoke", account, "--permission", "products:read")

    def refused() -> bool:
        return edge.get(PRODUCT.format(store="acme"), token).status_code == 403

    assert wait_until(refused)
    r = edge.get(PRODUCT.format(store="acme"), token)
    assert r.json()["detail"] == (
        "This token's account does not currently grant products:read on this store."
    )
    assert r.json()["required"] == "products:read"
    # Granting it back brings the token back (its own grants never changed).
    edge.ok("accounts", "grant", account, "--store", "acme", "--permission", "products:read")
    assert wait_until(lambda: edge.get(PRODUCT.format(store="acme"), token).status_code == 200)


def test_taking_a_store_from_the_account_hides_it(edge: GovernedEdge) -> None:
    account = edge.account("products:read", stores=("acme", "oak"))
    token, _ = edge.token("products:read", stores=("acme", "oak"), extra=("--account", account))
    assert edge.get(PRODUCT.format(store="oak"), token).status_code == 200
    edge.ok("accounts", "revoke", account, "--store", "oak")
    assert wait_until(lambda: edge.get(PRODUCT.format(store="oak"), token).status_code == 404)
    # Exactly like a store that does not exist (no hint that it did).
    gone = edge.get(PRODUCT.format(store="oak"), token).json()["detail"]
    unknown = edge.get(PRODUCT.format(store="nope"), token).json()["detail"]
    assert gone.replace("oak", "X") == unknown.replace("nope", "X")
    assert edge.get(PRODUCT.format(store="acme"), token).status_code == 200
    # Everything taken back: the account's tokens reach nothing.
    edge.ok("accounts", "revoke", account)
    assert wait_until(lambda: edge.get("/api/v1/stores", token).json()["stores"] == [])
    assert edge.get(PRODUCT.format(store="acme"), token).status_code == 404


def test_token_without_account_is_not_capped(edge: GovernedEdge) -> None:
    token, _ = edge.token("orders:read")
    assert edge.get(ORDER.format(store="acme"), token).status_code == 200
