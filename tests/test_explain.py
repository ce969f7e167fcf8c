"""``magento-edge explain`` against a real edge: for the same requests, explain's verdict
(forward, answer, or the refusal's status) is what the running edge does, and a forwarded
request's Magento target (method, raw path, query) is exactly what the Magento stand-in
received. The edge serves the three shipped policies on their hosts; v3 tokens are JWTs
signed by a key of a JWKS served by a real server, v1 tokens are personal access tokens
in the edge's key store.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.cli import main
from proxy.explain import Explanation, explain
from tests.conftest import MAGENTO_TOKEN, REPO, Harness, running_edge
from tests.servers import serving
from tests.test_edge_jwt import AUD, ISS, claims, sign
from tests.test_jwt_auth import RSA_KEY, JWKSApp, jwk

ICU, SOC, SHOP = "api.store.icu", "api.storeoncloud.com", "shop.example.com"
STORES = """
[server.surface_hosts]
storeoncloud = ["api.storeoncloud.com"]
storeicu = ["api.store.icu"]

[stores.shop]
name = "Shop"
magento_url = "{MAGENTO_URL}"
store_code = "default"
credential = { kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }
hosts = ["shop.example.com"]
"""
_clients = itertools.count()


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    policies = [REPO / "policies" / f"{n}.toml" for n in ("storeoncloud", "storeicu", "storefront")]
    jwks = JWKSApp()
    jwks.keys = [jwk("rsa-1", RSA_KEY)]
    with serving(jwks) as jwks_server:
        issuer = (
            f'\n[issuers.storeicu]\nissuer = "{ISS}"\naudience = "{AUD}"\n'
            f'jwks_url = "{jwks_server.url}/jwks.json"\n'
        )
        directory = tmp_path_factory.mktemp("explain")
        with running_edge(directory, policy=policies, extra=STORES + issuer) as harness:
            yield harness


def jwt_for(*scopes: str, store: str | None = "acme", **extra: Any) -> Callable[[Harness], str]:
    def make(_: Harness) -> str:
        payload = claims(scope=" ".join(scopes), store_id=store, **extra)
        payload["client_id"] = f"explain-app-{next(_clients)}"  # its own rate-limit key
        return sign(payload)

    return make


def pat(*grants: str, stores: tuple[str, ...] = ("acme",), kind: str = "live") -> Any:
    return lambda h: h.token(*grants, stores=stores, kind=kind)  # type: ignore[arg-type]


def _explain(h: Harness, method: str, url: str, token: str | None) -> Explanation:
    async def run() -> Explanation:
        store = SQLiteKeyStore(h.config.keystore_path or "")
        try:
            return await explain(h.config, method, url, token, keystore=store)
        finally:
            await store.close()

    return asyncio.run(run())


# (method, host, path and query, token maker or None)
CASES = [
    ("GET", ICU, "/api/v3/products?limit=5", jwt_for("read_products")),
    ("POST", ICU, "/api/v3/orders", jwt_for("write_orders")),
    ("GET", ICU, "/api/v3/orders", jwt_for("read_products")),  # 403: no scope
    ("GET", ICU, "/api/v3/products", None),  # 401: no token
    ("GET", ICU, "/api/v3/products", lambda h: "not.a.jwt"),  # 401
    ("GET", ICU, "/api/v3/products", jwt_for("read_products", aud="https://other")),  # 401
    ("GET", ICU, "/api/v3/products?limit=0", jwt_for("read_products")),  # 400
    ("GET", ICU, "/api/v1/products", jwt_for("read_products")),  # 410: retired version
    ("GET", ICU, "/api/v3/nothing-here", jwt_for("read_products")),  # 404
    ("GET", ICU, "/api/v3/stores", jwt_for("read_products", store="nowhere")),
    ("GET", SOC, "/api/v1/stores/acme/commerce/products/MB-01", pat("products:read")),
    ("GET", SOC, "/api/v1/stores/acme/commerce/products", pat("products:read")),
    ("PUT", SOC, "/api/v1/stores/acme/commerce/products/MB-01", pat("products:read")),  # 403
    ("GET", SOC, "/api/v1/stores/lab/commerce/products/MB-01", pat("products:read", stores=("acme", "lab"))),  # 403 live->sandbox
    ("GET", SOC, "/api/v1/stores/oak/commerce/products/MB-01", pat("products:read")),  # 404 hidden
    ("GET", SOC, "/api/v1/stores/acme/commerce/products/MB-01", lambda h: "soc_pat_live_" + "x" * 40),
    ("DELETE", SOC, "/api/v1/stores/acme/commerce/async/bulk/products/bySku", pat("products:write")),
    ("GET", SOC, "/api/v1/stores", pat("products:read")),  # an endpoint of the edge
    ("GET", SOC, "/api/v1/openapi.json", None),
    ("GET", SHOP, "/api/storefront/v3/products", None),  # the storefront, no token
    ("GET", SOC, "/nothing", None),  # 404: no API under this path
    ("GET", SOC, "/api/v1/stores/acme/commerce/products/%2e%2e", pat("products:read")),  # 400
]  # fmt: skip


@pytest.mark.parametrize(("method", "host", "target", "make"), CASES)
def test_explain_agrees_with_the_edge(
    h: Harness, method: str, host: str, target: str, make: Any
) -> None:
    token = make(h) if make else None
    url = f"http://{host}{target}"
    said = _explain(h, method, url, token)  # before the edge: explain spends no budget
    before = len(h.standin.requests)
    headers = {"Host": host, **({"Authorization": f"Bearer {token}"} if token else {})}
    with h.client() as c:
        r = c.request(method, target, headers=headers)
    sent = list(h.standin.requests)[before:]
    if said.outcome == "refuse":
        assert r.status_code == said.status, (said.reason, r.text)
        assert not sent
    elif said.outcome == "answer":
        assert r.status_code == 200 and not sent, r.text
    else:
        (request,) = sent
        assert said.target is not None
        parts = urlsplit(said.target["url"])
        assert request["method"] == said.target["method"]
        assert request["raw_path"] == parts.path.encode()
        assert request["query"] == parts.query.encode()
        assert said.store is not None
        assert said.target["url"].startswith(h.config.stores[said.store].magento_url)
    assert token is None or token not in json.dumps(said.as_dict())


def test_the_cases_cover_every_outcome(h: Harness) -> None:
    """The comparison above is only worth something if explain forwards, answers and
    refuses with each kind of status among its cases."""
    seen = set()
    for method, host, target, make in CASES:
        said = _explain(h, method, f"http://{host}{target}", make(h) if make else None)
        seen.add(said.status or said.outcome)
    assert {"forward", "answer", 400, 401, 403, 404, 410} <= seen


def test_a_jwt_says_whether_the_jwks_was_fetched(h: Harness) -> None:
    first = _explain(h, "GET", f"http://{ICU}/api/v3/products", jwt_for("read_products")(h))
    assert first.outcome == "forward"
    assert "fetched from its jwks_url" in first.token["jwks"]
    assert first.token["verdict"] == "valid" and first.token["id"].startswith("jwt:")
    garbage = _explain(h, "GET", f"http://{ICU}/api/v3/products", "not.a.jwt")
    assert garbage.token["verdict"] == "refused"
    assert "not fetched" in garbage.token["jwks"]


def test_tier_and_limits_are_the_ones_the_edge_counts(h: Harness) -> None:
    token = jwt_for("read_products", partner_tier="gold")(h)
    said = _explain(h, "GET", f"http://{ICU}/api/v3/products", token)
    assert said.tier is not None and said.tier["name"] == "gold"
    with h.client(token) as c:
        r = c.get("/api/v3/products", headers={"Host": ICU})
    assert r.headers["x-rate-limit-limit"] == str(said.tier["burst"])  # the bucket's size


def test_cli_prints_the_decision_and_never_a_secret(
    h: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    token = h.token("products:read")
    url = f"http://{SOC}/api/v1/stores/acme/commerce/products/MB-01"
    args = ["explain", "--config", str(h.config_path), "GET", url, "--token", token]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "surface: storeoncloud" in text
    assert "route: /api/v1/stores/{store}/commerce/products/{sku}" in text
    assert "resource: products:read" in text
    assert f"token: valid (id {h.last_token_id}, live)" in text
    assert "/rest/default/V1/products/MB-01" in text and "verdict: forwarded" in text
    assert token not in text and MAGENTO_TOKEN not in text
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["outcome"] == "forward" and doc["store"] == "acme"
    assert doc["target"]["url"].endswith("/rest/default/V1/products/MB-01")


def test_cli_refusals_and_bad_config(h: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://{SOC}/api/v1/stores/acme/commerce/products/MB-01"
    assert main(["explain", "--config", str(h.config_path), "GET", url]) == 0
    assert "verdict: refused 401" in capsys.readouterr().out
    assert main(["explain", "--config", "/nonexistent.toml", "GET", url]) == 1
    assert main(["explain", "--config", str(h.config_path), "GET"]) == 2
