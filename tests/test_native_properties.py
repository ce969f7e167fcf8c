"""Property tests of the native mount against a real edge and the stand-in: over Magento's
own paths (every route of the 2.4.6 table, filled with hostile values, under every store
prefix, with any method and any kind of caller) the edge never answers 5xx and never lets
a request reach a route its credential does not cover. The oracle is the stand-in's own
router and Magento's ACL column, not the edge's decision:

* forwarded with no Authorization                → Magento served an ``anonymous`` route
* forwarded with the caller's own Authorization  → a ``self`` route (customer tokens only)
* forwarded with the store's credential          → a route of the products family, read
                                                   (the only grant the edge token holds)
* the edge token itself never reaches Magento.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.native_servers import (
    CUSTOMER_EMAIL,
    CUSTOMER_PASSWORD,
    STORE_TOKEN,
    NativeHarness,
    native_edge,
)

ROOT = Path(__file__).resolve().parent.parent
TSV = ROOT / "magento_standin" / "data" / "magento_routes.tsv"
with TSV.open(encoding="utf-8", newline="") as _fh:
    ROUTES = list(csv.DictReader(_fh, delimiter="\t"))
# Magento ACL ids the policy's "products" resource stands for (contract §3).
PRODUCTS_ACL = {
    "Magento_Catalog::products",
    "Magento_Catalog::categories",
    "Magento_Catalog::attributes_attributes",
    "Magento_Catalog::sets",
    "Magento_Catalog::catalog",
    "Magento_Downloadable::downloadable",
}
TIERS = """
[ratelimit.tiers.standard]
rate = 1000000
period = 1
burst = 1000000

[ratelimit.tiers.login]
rate = 1000000
period = 1
burst = 1000000
"""

PREFIXES = [
    "/rest/V1",
    "/rest/default/V1",
    "/rest/all/V1",
    "/rest/fr/V1",
    "/rest/nosuch/V1",
    "/rest/default/async/V1",
    "/rest/default/async/bulk/V1",
    "/rest/V1/V1",
    "/rest",
    "",
]
VALUES = st.sampled_from(
    ["MB-01", "BAG%2F01", "1", "999", "mine", "me", "all", "bySku", "%2e", "a%00b", "x%25y",
     "..%2F", "V1", "%E9", "-1", "searchCriteria"]
)  # fmt: skip
SEGMENT = st.text(alphabet="abcdefghiV01-_.%2FE", min_size=1, max_size=8)


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeHarness]:
    with native_edge(tmp_path_factory.mktemp("native-props"), tiers=TIERS) as harness:
        yield harness


@pytest.fixture(scope="module")
def callers(h: NativeHarness) -> dict[str, str | None]:
    with httpx.Client(base_url=h.url, timeout=10) as c:
        customer = c.post(
            "/rest/V1/integration/customer/token",
            json={"username": CUSTOMER_EMAIL, "password": CUSTOMER_PASSWORD},
        ).json()
    reader = h.token("products:read")
    return {
        "none": None,
        "reader": f"Bearer {reader}",
        "pat_basic": f"Basic {reader}",  # an edge token in another scheme: never forwarded
        "customer": f"Bearer {customer}",
        "garbage": "Bearer not-a-token",
        "basic": "Basic dXNlcjpwYXNz",
        "store": f"Bearer {STORE_TOKEN}",  # Magento's own credential, sent by a client
    }


def _fill(url: str, values: list[str]) -> str:
    it = iter(values)
    return "/".join(next(it, "x") if p.startswith(":") else p for p in url.split("/"))


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, str]:
    prefix = draw(st.sampled_from(PREFIXES))
    if draw(st.booleans()):
        row = draw(st.sampled_from(ROUTES))
        path = _fill(row["url"].removeprefix("/V1"), draw(st.lists(VALUES, max_size=4)))
        method = draw(st.sampled_from([row["method"], row["method"], "GET", "PATCH", "HEAD"]))
    else:
        path = "/" + "/".join(draw(st.lists(SEGMENT, min_size=1, max_size=5)))
        method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS"]))
    caller = draw(
        st.sampled_from(["none", "reader", "pat_basic", "customer", "garbage", "basic", "store"])
    )
    return method, prefix + path, caller


def _route(standin: Any, method: str, hit_key: str) -> Any:
    """The Magento route a stand-in hit was; an async or bulk hit is its synchronous route's
    (the same ACL), bulk's ``by<Param>`` segments standing for the route's ``:param``."""
    bulk = hit_key.startswith("/async/bulk/")
    key = hit_key.removeprefix("/async/bulk").removeprefix("/async")
    parts = key.split("/")

    def same(route: Any) -> bool:
        if route.hit_key == key:
            return True
        theirs = route.hit_key.split("/")
        return (
            bulk
            and len(theirs) == len(parts)
            and all(
                a == b or (a.startswith(":") and b.startswith("by"))
                for a, b in zip(theirs, parts, strict=True)
            )
        )

    return next(r for r in standin.routes if r.method == method and same(r))


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
def test_no_5xx_and_no_route_beyond_the_credential(
    h: NativeHarness, callers: dict[str, str | None], request: tuple[str, str, str]
) -> None:
    method, path, caller = request
    auth = callers[caller]
    standin = h.standin
    standin.requests.clear()
    hits_before = Counter(standin.hits)
    headers = {"Authorization": auth} if auth else {}
    if method in ("POST", "PUT"):
        headers["Content-Type"] = "application/json"
    with httpx.Client(base_url=h.url, timeout=10) as c:
        r = c.request(
            method, path, headers=headers, content=b"{}" if method in ("POST", "PUT") else None
        )
    assert r.status_code < 500, (method, path, caller, r.text)
    if r.status_code >= 400 and method != "HEAD" and path.startswith("/rest/"):
        assert "message" in r.json()  # Magento's body shape, edge or Magento alike
    served = Counter(standin.hits) - hits_before
    for req in list(standin.requests):
        sent = [v for k, v in req["headers"] if k == "authorization"]
        assert not any("soc_pat_" in v for v in sent)
        assert len(sent) <= 1
        for (hit_method, hit_key), _ in served.items():
            acl = _route(standin, hit_method, hit_key).resources
            if not sent:
                assert acl == ("anonymous",), (method, path, caller)
            elif sent[0] == f"Bearer {STORE_TOKEN}" and caller != "store":
                assert hit_method == "GET" and set(acl) <= PRODUCTS_ACL, (method, path, caller)
                assert caller == "reader"
            else:
                assert sent[0] == auth and acl == ("self",), (method, path, caller)
        if caller == "store" and sent:  # a client holding Magento's token gets no further
            assert sent[0] == auth
