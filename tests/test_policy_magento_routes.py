"""The table walk (SPEC §4.1): every one of Magento 2.4.6's 384 REST routes is either mapped
by the shipped policy to one of its 15 resources or explicitly denied, and the edge picks
the same route Magento's own router would (contract.md §2.1), so no token reaches a route
its permissions do not cover."""

from __future__ import annotations

import csv
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from proxy.auth import Principal
from proxy.backends.keystore.base import TokenRecord
from proxy.decide import Decision, authorize, resolve
from proxy.errors import Forbidden, MethodNotAllowed, NotFound
from proxy.paths import split_path
from proxy.policy import Mount, Route, Surface, load_policy
from proxy.routing import RouteTable, compile_pattern
from proxy.types import Access

ROOT = Path(__file__).resolve().parent.parent
TSV = ROOT / "magento_standin" / "data" / "magento_routes.tsv"
POLICY = ROOT / "policies" / "storeoncloud.toml"
PREFIX = "/api/v1/stores/acme/commerce"
RESOURCES = {
    "stores", "design", "settings", "email", "domains", "members", "webhooks", "integrations",
    "extensions", "backups", "deployments", "orders", "products", "customers", "inventory",
}  # fmt: skip


@dataclass(frozen=True)
class MagentoRoute:
    method: str
    url: str  # as in the TSV: /V1/products/:sku, sometimes with a trailing slash
    acl: tuple[str, ...]

    @property
    def key(self) -> str:
        """The route in ``Pattern.sort_key`` form: after /V1/, no trailing slash."""
        return self.url.removeprefix("/V1/").rstrip("/")

    @property
    def parts(self) -> list[str]:
        return self.key.split("/")

    def sample_path(self, value: str = "x1") -> str:
        """The URL after /V1/ with every :var replaced, trailing slash kept."""
        return re.sub(r":[A-Za-z_][A-Za-z0-9_]*", value, self.url.removeprefix("/V1/"))

    def bulk_path(self) -> str:
        """Magento's async bulk form: :param becomes by<Param> (BulkServiceConfig.php)."""
        return "/".join(
            "by" + p[1:2].upper() + p[2:] if p.startswith(":") else p for p in self.parts
        )


def _read_tsv() -> list[MagentoRoute]:
    with TSV.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [
        MagentoRoute(r["method"], r["url"], tuple(a.strip() for a in r["acl_resources"].split(",")))
        for r in rows
    ]


ROUTES = _read_tsv()


@pytest.fixture(scope="module")
def surface() -> Surface:
    return load_policy(POLICY)


@pytest.fixture(scope="module")
def magento_table() -> RouteTable[MagentoRoute]:
    """Magento's own routes in a RouteTable: what Magento's router would dispatch to."""
    entries = []
    for r in ROUTES:
        pattern = "/" + re.sub(r":([A-Za-z_][A-Za-z0-9_]*)", r"{\1}", r.key)
        entries.append((r.method, compile_pattern(pattern), r))
    return RouteTable(entries)


def _mount(surface: Surface, name: str) -> Mount:
    (mount,) = [m for m in surface.mounts if m.name == name]
    return mount


def _resolve(surface: Surface, method: str, path: str) -> Decision:
    return resolve(surface, method, split_path(path.encode("ascii")))


def _route_or_denial(
    surface: Surface, mount: str, method: str, path: str
) -> tuple[Route, Decision | None]:
    """The route the policy picks for ``path`` (after the mount), with the decision if it is
    mapped, or None if the route is denied (after checking resolve raised Forbidden)."""
    prefix = {"commerce": PREFIX, "commerce_async": PREFIX + "/async"}.get(
        mount, PREFIX + "/async/bulk"
    )
    segments = tuple(path.rstrip("/").split("/"))
    hit = surface.table_for(_mount(surface, mount)).lookup(method, segments)
    assert hit is not None, (method, path)
    route = hit[0]
    try:
        decision = _resolve(surface, method, f"{prefix}/{path}")
    except Forbidden as exc:
        assert route.deny is not None
        assert route.deny in exc.detail
        return route, None
    assert route.deny is None
    assert decision.route is route
    return route, decision


def _principal(permissions: dict[str, Access]) -> Principal:
    record = TokenRecord(
        id="tok_1", name="t", kind="live", stores=("acme",), permissions=permissions
    )
    return Principal("tok_1", "live", frozenset({"acme"}), permissions, None, record)


# -- the inventory itself -------------------------------------------------------------------


def test_the_table_has_384_routes() -> None:
    assert len(ROUTES) == 384
    assert len({(r.method, r.key) for r in ROUTES}) == 384
    assert {r.method for r in ROUTES} == {"GET", "POST", "PUT", "DELETE"}
    assert all(r.url.startswith("/V1/") for r in ROUTES)


def test_policy_lists_exactly_the_magento_routes(surface: Surface) -> None:
    policy = {(r.method, r.pattern.sort_key, r.form) for r in surface.tables["magento"]}
    magento = {(r.method, r.key, "any") for r in ROUTES}
    # The one extra is Magento's async bulk alias of PUT /products/bySku (webapi_async.xml).
    assert policy - magento == {("PUT", "products", "bulk")}
    assert magento - policy == set()


# -- the walk -------------------------------------------------------------------------------


@pytest.mark.parametrize("mroute", ROUTES, ids=[f"{r.method} {r.url}" for r in ROUTES])
def test_every_route_is_mapped_or_explicitly_denied(
    surface: Surface, magento_table: RouteTable[MagentoRoute], mroute: MagentoRoute
) -> None:
    path = mroute.sample_path()
    route, decision = _route_or_denial(surface, "commerce", mroute.method, path)
    if decision is not None:
        assert decision.route is not None and decision.route.resource is not None
        assert decision.route.resource in surface.resources
        assert decision.route.resource in RESOURCES
        assert decision.mount is not None and decision.mount.name == "commerce"
        assert decision.store_id == "acme"
    # The same Magento route, by its Magento URL ...
    assert route.pattern.sort_key == mroute.key
    assert route.method == mroute.method
    # ... which is also the one Magento's own matching picks for this path.
    hit = magento_table.lookup(mroute.method, tuple(path.rstrip("/").split("/")))
    assert hit is not None and hit[0] == mroute


def test_edge_and_magento_pick_the_same_route_for_every_ambiguous_path(
    surface: Surface, magento_table: RouteTable[MagentoRoute]
) -> None:
    """Each variable is filled with a neutral value or with any literal that appears at the
    same position in a route with as many segments: every path where two routes compete."""
    literals: dict[tuple[int, int], set[str]] = {}
    for r in ROUTES:
        for i, p in enumerate(r.parts):
            if not p.startswith(":"):
                literals.setdefault((len(r.parts), i), set()).add(p)
    table = surface.table_for(_mount(surface, "commerce"))
    checked = 0
    for r in ROUTES:
        n = len(r.parts)
        choices = [
            [p] if not p.startswith(":") else ["x1", *sorted(literals.get((n, i), ()))]
            for i, p in enumerate(r.parts)
        ]
        for combo in itertools.product(*choices):
            edge = table.lookup(r.method, combo)
            magento = magento_table.lookup(r.method, combo)
            assert edge is not None and magento is not None
            assert edge[0].pattern.sort_key == magento[0].key, (r.method, "/".join(combo))
            assert edge[1] == magento[1]
            checked += 1
    assert checked > 5000


# -- access -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "resource"),
    [
        ("POST", "products/base-prices-information", "products"),
        ("POST", "products/cost-information", "products"),
        ("POST", "products/special-price-information", "products"),
        ("POST", "products/tier-prices-information", "products"),
        ("POST", "customers/isEmailAvailable", "customers"),
        ("PUT", "customers/validate", "customers"),
        ("POST", "carts/7/estimate-shipping-methods", "orders"),
        ("POST", "carts/7/estimate-shipping-methods-by-address-id", "orders"),
        ("POST", "carts/7/totals-information", "orders"),
        ("POST", "inventory/source-selection-algorithm-result", "inventory"),
    ],
)
def test_read_only_posts_need_read(surface: Surface, method: str, path: str, resource: str) -> None:
    decision = _resolve(surface, method, f"{PREFIX}/{path}")
    assert decision.route is not None
    assert decision.route.resource == resource
    assert decision.route.required_access(method) == "read"
    authorize(decision, _principal({resource: "read"}), method, None)
    with pytest.raises(Forbidden):
        authorize(decision, _principal({"stores": "write"}), method, None)


@pytest.mark.parametrize(
    ("method", "path", "resource", "access"),
    [
        ("GET", "products", "products", "read"),
        ("POST", "products", "products", "write"),
        ("PUT", "products/a%2Fb", "products", "write"),
        ("POST", "products/base-prices", "products", "write"),
        ("GET", "orders/1", "orders", "read"),
        ("POST", "orders/1/cancel", "orders", "write"),
        ("PUT", "carts/5/order", "orders", "write"),
        ("GET", "store/websites", "stores", "read"),
        ("DELETE", "taxRules/3", "settings", "write"),
        ("GET", "inventory/stocks/1", "inventory", "read"),
        ("PUT", "products/x/stockItems/1", "inventory", "write"),
    ],
)
def test_required_permission(
    surface: Surface, method: str, path: str, resource: str, access: Access
) -> None:
    decision = _resolve(surface, method, f"{PREFIX}/{path}")
    assert decision.route is not None
    assert (decision.route.resource, decision.route.required_access(method)) == (resource, access)
    authorize(decision, _principal({resource: access}), method, None)
    authorize(decision, _principal({resource: "write"}), method, None)
    if access == "write":
        with pytest.raises(Forbidden, match=f"lacks the permission {resource}:write"):
            authorize(decision, _principal({resource: "read"}), method, None)


def test_encoded_slash_in_a_sku_is_one_variable(surface: Surface) -> None:
    decision = _resolve(surface, "GET", f"{PREFIX}/products/a%2Fb/media")
    assert decision.route is not None
    assert decision.route.pattern.text == "/products/{sku}/media"
    assert decision.route_vars == {"sku": "a%2Fb"}
    assert decision.rest == ("products", "a%2Fb", "media")


def test_trailing_slash_picks_the_same_route(surface: Surface) -> None:
    with_slash = _resolve(surface, "GET", f"{PREFIX}/orders/5/")
    without = _resolve(surface, "GET", f"{PREFIX}/orders/5")
    assert with_slash.route is without.route
    assert with_slash.rest == ("orders", "5", "")


# -- denied and unknown ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "integration/admin/token"),
        ("POST", "integration/admin/token/"),
        ("POST", "integration/customer/token"),
        ("POST", "async/integration/admin/token"),
        ("GET", "customers/me"),
        ("PUT", "carts/mine/items/5"),
        ("GET", "modules"),
        ("GET", "bulk/abc/status"),
        ("POST", "coupons/generate"),
        ("GET", "guest-carts/abc/items"),
    ],
)
def test_denied_routes_are_forbidden(surface: Surface, method: str, path: str) -> None:
    with pytest.raises(Forbidden, match="not available through the edge") as info:
        _resolve(surface, method, f"{PREFIX}/{path}")
    assert info.value.status == 403


def test_carts_mine_is_not_taken_for_a_cart_id(surface: Surface) -> None:
    # contract.md §2.1: /V1/carts/mine/items/5 is the customer route, not carts/:cartId.
    with pytest.raises(Forbidden):
        _resolve(surface, "PUT", f"{PREFIX}/carts/mine/items/5")
    decision = _resolve(surface, "PUT", f"{PREFIX}/carts/42/items/5")
    assert decision.route is not None and decision.route.resource == "orders"
    assert decision.route_vars == {"cartId": "42", "itemId": "5"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "nothing-here"),
        ("GET", "products/a/b/c/d/e/f/g"),
        ("POST", "orders/1/ship-it/now"),
        ("GET", "V1/products"),
        ("GET", "schema"),
        ("GET", "integration/admin"),
    ],
)
def test_paths_not_in_the_table_are_not_found(surface: Surface, method: str, path: str) -> None:
    with pytest.raises(NotFound):
        _resolve(surface, method, f"{PREFIX}/{path}")


def test_known_path_with_another_method_is_405_with_allow(surface: Surface) -> None:
    with pytest.raises(MethodNotAllowed) as info:
        _resolve(surface, "DELETE", f"{PREFIX}/orders")
    assert info.value.headers == {"Allow": "GET, POST"}
    with pytest.raises(MethodNotAllowed):
        _resolve(surface, "PATCH", f"{PREFIX}/products/x")


def test_the_bulk_alias_is_not_a_plain_route(surface: Surface) -> None:
    with pytest.raises(MethodNotAllowed):
        _resolve(surface, "PUT", f"{PREFIX}/products")


# -- async and bulk -------------------------------------------------------------------------

WRITES = [r for r in ROUTES if r.method in ("POST", "PUT", "DELETE")]


@pytest.mark.parametrize("mroute", WRITES, ids=[f"{r.method} {r.url}" for r in WRITES])
def test_async_mount_accepts_the_same_routes(surface: Surface, mroute: MagentoRoute) -> None:
    route, decision = _route_or_denial(
        surface, "commerce_async", mroute.method, mroute.sample_path()
    )
    assert route.pattern.sort_key == mroute.key
    if decision is not None:
        assert decision.mount is not None and decision.mount.name == "commerce_async"
        assert decision.mount.target == "/rest/{store_code}/async/V1"
        assert decision.route is not None and decision.route.resource in RESOURCES


@pytest.mark.parametrize("mroute", WRITES, ids=[f"{r.method} {r.url}" for r in WRITES])
def test_bulk_mount_accepts_by_param_forms(surface: Surface, mroute: MagentoRoute) -> None:
    route, decision = _route_or_denial(surface, "commerce_bulk", mroute.method, mroute.bulk_path())
    assert route.pattern.sort_key == mroute.key
    if decision is not None:
        assert decision.mount is not None and decision.mount.name == "commerce_bulk"
        assert decision.mount.target == "/rest/{store_code}/async/bulk/V1"


def test_bulk_examples(surface: Surface) -> None:
    decision = _resolve(surface, "PUT", f"{PREFIX}/async/bulk/products/bySku")
    assert decision.route is not None
    assert decision.route.pattern.text == "/products/{sku}"
    assert decision.route.resource == "products"
    assert decision.route_vars == {}
    # Magento's alias: async/bulk/V1/products is async/bulk/V1/products/bySku.
    alias = _resolve(surface, "PUT", f"{PREFIX}/async/bulk/products")
    assert alias.route is not None and alias.route.resource == "products"
    assert alias.route.form == "bulk"
    # A concrete SKU is not a bulk URL.
    with pytest.raises(NotFound):
        _resolve(surface, "PUT", f"{PREFIX}/async/bulk/products/SKU-1")


@pytest.mark.parametrize("prefix", [f"{PREFIX}/async", f"{PREFIX}/async/bulk"])
@pytest.mark.parametrize("path", ["products", "products/x1", "products/bySku", "orders/1"])
def test_get_on_async_is_method_not_allowed(surface: Surface, prefix: str, path: str) -> None:
    # 405 with the route's own methods the mount takes, or 404 where the route has none
    # of them (issue #17: Allow never offers the mount's methods a route does not have)
    with pytest.raises((MethodNotAllowed, NotFound)) as info:
        _resolve(surface, "GET", f"{prefix}/{path}")
    if isinstance(info.value, MethodNotAllowed):
        allowed = info.value.headers["Allow"].split(", ")
        assert "GET" not in allowed and set(allowed) <= {"POST", "PUT", "PATCH", "DELETE"}


# -- the ACL column as a cross-check ----------------------------------------------------------


def _mapped_resource(surface: Surface, mroute: MagentoRoute) -> str | None:
    """The resource the policy maps the route to, or None if it is denied."""
    _, decision = _route_or_denial(surface, "commerce", mroute.method, mroute.sample_path())
    if decision is None:
        return None
    assert decision.route is not None
    return decision.route.resource


def _by_acl(prefix: str) -> list[MagentoRoute]:
    routes = [r for r in ROUTES if any(a.startswith(prefix) for a in r.acl)]
    assert routes, prefix
    return routes


@pytest.mark.parametrize(
    ("acl_prefix", "allowed"),
    [
        ("Magento_Catalog::products", {"products", "inventory"}),
        ("Magento_Catalog::categories", {"products"}),
        ("Magento_Catalog::catalog_inventory", {"inventory"}),
        ("Magento_Catalog::sets", {"products"}),
        ("Magento_Catalog::attributes_attributes", {"products"}),
        ("Magento_Downloadable::", {"products"}),
        ("Magento_Sales::", {"orders"}),
        ("Magento_Customer::", {"customers"}),
        ("Magento_Inventory", {"inventory", "orders"}),
        ("Magento_InventoryApi::", {"inventory"}),
        ("Magento_Cart::manage", {"orders"}),
        ("Magento_Tax::", {"settings"}),
        ("Magento_Backend::store", {"stores"}),
    ],
)
def test_acl_cross_check(surface: Surface, acl_prefix: str, allowed: set[str]) -> None:
    for mroute in _by_acl(acl_prefix):
        resource = _mapped_resource(surface, mroute)
        if resource is not None:
            assert resource in allowed, (mroute.method, mroute.url, resource)


def test_catalog_products_acl_only_inventory_for_inventory_paths(surface: Surface) -> None:
    # contract.md §3: the four POST /V1/inventory/bulk-* routes carry Magento_Catalog::products
    # but are inventory by path; every other products-ACL route is products.
    for mroute in _by_acl("Magento_Catalog::products"):
        resource = _mapped_resource(surface, mroute)
        expected = "inventory" if mroute.key.startswith("inventory/") else "products"
        assert resource == expected, mroute.url


@pytest.mark.parametrize(
    "acl_prefix",
    [
        "self",
        "Magento_Logging::",
        "Magento_Backend::admin",
        "Magento_Analytics::",
        "Magento_SalesRule::",
    ],
)
def test_acl_groups_that_are_denied_entirely(surface: Surface, acl_prefix: str) -> None:
    for mroute in _by_acl(acl_prefix):
        assert _mapped_resource(surface, mroute) is None, mroute.url


def test_mapped_and_denied_routes_add_up(surface: Surface) -> None:
    mapped = [r for r in ROUTES if _mapped_resource(surface, r) is not None]
    assert len(mapped) > 250
    assert len(ROUTES) - len(mapped) == sum(1 for r in surface.tables["magento"] if r.deny)
