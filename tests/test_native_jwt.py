"""The native mount with JWT access tokens (the native policy naming an issuer): a JWT of
that issuer is an edge token (its scopes grant resources, the store's credential goes out),
refused on customer routes; a Magento customer JWT (another issuer) passes untouched."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from tests.native_servers import JWT_AUDIENCE, JWT_ISSUER, STORE_TOKEN, NativeHarness, native_edge
from tests.test_jwt_auth import RSA_KEY, jwk


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeHarness]:
    directory = tmp_path_factory.mktemp("native-jwt")
    jwks = directory / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk("rsa-1", RSA_KEY)]}))
    with native_edge(directory, jwks=jwks) as harness:
        yield harness


def _jwt(scope: str, store: str = "shop", **extra: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "exp": now + 600, "iat": now - 5,
        "client_id": "erp", "store_id": store, "scope": scope, "jti": f"j{time.monotonic_ns()}",
        **extra,
    }  # fmt: skip
    return jwt.encode(claims, RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})


def _get(h: NativeHarness, path: str, token: str) -> httpx.Response:
    with httpx.Client(base_url=h.url, timeout=10) as c:
        return c.get(path, headers={"Authorization": f"Bearer {token}"})


def test_a_jwt_of_the_issuer_is_an_edge_token(h: NativeHarness) -> None:
    before = len(h.standin.requests)
    ok = _get(h, "/rest/V1/products/MB-01", _jwt("read_products"))
    assert ok.status_code == 200, ok.text
    (sent,) = list(h.standin.requests)[before:]
    assert ("authorization", f"Bearer {STORE_TOKEN}") in sent["headers"]

    before = len(h.standin.requests)
    refused = _get(h, "/rest/V1/orders/1", _jwt("read_products"))
    other_store = _get(h, "/rest/V1/products/MB-01", _jwt("read_products", store="other"))
    on_self = _get(h, "/rest/V1/customers/me", _jwt("admin"))
    assert refused.status_code == 401
    assert refused.json()["parameters"] == {"resources": "orders:read"}
    assert other_store.status_code == 401
    assert on_self.status_code == 401 and on_self.json()["parameters"] == {"resources": "self"}
    assert list(h.standin.requests)[before:] == []


def test_a_token_of_another_issuer_on_a_self_route_is_magentos_to_judge(h: NativeHarness) -> None:
    foreign = jwt.encode({"uid": 1, "utypid": 3, "iss": "magento"}, "k" * 32, algorithm="HS256")
    before = len(h.standin.requests)
    r = _get(h, "/rest/V1/customers/me", foreign)
    assert r.status_code == 401  # Magento's answer: an unknown token is a guest there
    (sent,) = list(h.standin.requests)[before:]
    assert ("authorization", f"Bearer {foreign}") in sent["headers"]
