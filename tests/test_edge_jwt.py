"""JWT access tokens end to end (SPEC §4.2, issue #11): a real edge on loopback in front of
the Magento stand-in, with the issuer's JWKS served by a real server. What is accepted
reaches Magento with the store's credential; everything refused never reaches it."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.cli import main
from tests.conftest import MAGENTO_TOKEN, Harness, running_edge, wait_for
from tests.servers import free_port, serving
from tests.test_jwt_auth import EC_KEY, ED_KEY, RSA_KEY, RSA_KEY_2, JWKSApp, _b64, forge, jwk

ISS = "https://auth.store.icu/"
AUD = "https://api.store.icu"
V3 = "/api/v3"

POLICY = """\
resources = ["products", "orders"]

[surface]
name = "partner"
base_path = "/api/v3"

[auth]
kind = "jwt"
issuer = "storeicu"

[auth.scopes]
read_products = ["products:read"]
write_products = ["products:write"]
read_orders = ["orders:read"]
admin = ["*:write"]

[errors]
style = "envelope"

[ratelimit]
headers = "x-rate-limit"
default_tier = "standard"

[ratelimit.tiers.standard]
rate = 100000
burst = 100000

[ratelimit.tiers.tiny]
rate = 2
burst = 2
period = 3600

# The v3 shape: no store in the path, the token's store_id names it.
[[mounts]]
name = "v3"
path = "/"
target = "/rest/{store_code}/V1"
routes = "v3"

# A store in the path: the token may only name its own.
[[mounts]]
name = "by-store"
path = "/stores/{store}"
target = "/rest/{store_code}/V1"
routes = "v3"

[routes]
v3 = [
  { method = "GET", path = "/products/{id}", resource = "products", target = "/products/{id}" },
  { method = "PUT", path = "/products/{id}", resource = "products", target = "/products/{id}" },
  { method = "GET", path = "/orders/{id}", resource = "orders", target = "/orders/{id}" },
]
"""


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "exp": now + 600,
        "iat": now - 5,
        "client_id": "partner-app",
        "store_id": "acme",
        "scope": "read_products",
        "jti": f"jti-{time.monotonic_ns()}",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(
    payload: dict[str, Any], key: Any = RSA_KEY, alg: str = "RS256", kid: str = "rsa-1"
) -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


class Edge:
    def __init__(self, harness: Harness, jwks: JWKSApp) -> None:
        self.h = harness
        self.jwks = jwks

    def get(self, path: str, token: str | None, **kw: Any) -> httpx.Response:
        with self.h.client(token) as c:
            return c.get(V3 + path, **kw)

    def sent(self) -> tuple[int, int]:
        """A mark of what reached the stand-in: changes whenever a request does."""
        reqs = self.h.standin.requests
        return len(reqs), id(reqs[-1]) if reqs else 0


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    app = JWKSApp()
    app.keys = [jwk("rsa-1", RSA_KEY), jwk("ec-1", EC_KEY), jwk("ed-1", ED_KEY)]
    directory = tmp_path_factory.mktemp("jwt")
    policy = directory / "partner.toml"
    policy.write_text(POLICY)
    with serving(app) as jwks_server:
        issuer = (
            f'[issuers.storeicu]\nissuer = "{ISS}"\naudience = "{AUD}"\n'
            f'jwks_url = "{jwks_server.url}/jwks.json"\nrefresh_cooldown_seconds = 1\n'
        )
        with running_edge(directory, policy=policy, extra=issuer) as h:
            yield Edge(h, app)


def _refused(edge: Edge, r: httpx.Response, status: int, code: str, before: object) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert edge.sent() == before  # nothing reached Magento


# -- accepted --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "alg", "kid"),
    [(RSA_KEY, "RS256", "rsa-1"), (RSA_KEY, "PS256", "rsa-1"), (EC_KEY, "ES256", "ec-1"),
     (ED_KEY, "EdDSA", "ed-1")],
)  # fmt: skip
def test_a_signed_token_reaches_magento_with_the_store_credential(
    edge: Edge, key: Any, alg: str, kid: str
) -> None:
    token = sign(claims(), key, alg, kid)
    r = edge.get("/products/MB-01", token)
    assert r.status_code == 200, r.text
    seen = edge.h.standin.requests[-1]
    assert seen["raw_path"] == b"/rest/default/V1/products/MB-01"
    headers = dict(seen["headers"])
    assert headers["authorization"] == f"Bearer {MAGENTO_TOKEN}"
    assert all(token not in value for _, value in seen["headers"])
    assert r.headers["x-rate-limit-limit"]


def test_a_store_in_the_path_must_be_the_tokens_own(edge: Edge) -> None:
    token = sign(claims())
    assert edge.get("/stores/acme/products/MB-01", token).status_code == 200
    before = edge.sent()
    r = edge.get("/stores/oak/products/MB-01", token)
    _refused(edge, r, 404, "RESOURCE_NOT_FOUND", before)


@pytest.mark.parametrize("store_id", ["nope", "../acme", "x" * 300])
def test_a_token_for_a_store_not_configured_is_refused(edge: Edge, store_id: str) -> None:
    before = edge.sent()
    r = edge.get("/products/MB-01", sign(claims(store_id=store_id)))
    _refused(edge, r, 404, "RESOURCE_NOT_FOUND", before)


def test_admin_scope_grants_every_resource_including_writes(edge: Edge) -> None:
    token = sign(claims(scope="admin"))
    assert edge.get("/orders/1", token).status_code != 403
    with edge.h.client(token) as c:
        r = c.put(V3 + "/products/MB-01", json={"product": {"name": "Renamed"}})
    assert r.status_code != 403, r.text
    assert edge.h.standin.requests[-1]["method"] == "PUT"


# -- refused with 401, nothing sent upstream -------------------------------------------------


def _hmac_with_public_key() -> str:
    # The classic confusion: HS256 "signed" with the RSA public key anyone can fetch.
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims()).encode())}"
    return (
        signing_input + "." + _b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    )


REFUSED = {
    "expired": lambda: sign(claims(exp=int(time.time()) - 120)),
    "wrong aud": lambda: sign(claims(aud="https://api.elsewhere")),
    "wrong iss": lambda: sign(claims(iss="https://evil.example/")),
    "alg none": lambda: forge({"alg": "none", "typ": "JWT", "kid": "rsa-1"}, claims()),
    "hmac with the public key": _hmac_with_public_key,
    "key not published": lambda: sign(claims(), RSA_KEY_2, kid="rsa-unknown"),
    "published kid, other key": lambda: sign(claims(), RSA_KEY_2, kid="rsa-1"),
    "no client_id": lambda: sign(claims(client_id=None)),
    "no store_id": lambda: sign(claims(store_id=None)),
    "not a jwt": lambda: "soc_pat_live_notajwt",
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_tokens_are_refused_with_invalid_token(edge: Edge, case: str) -> None:
    token = REFUSED[case]()
    before = edge.sent()
    r = edge.get("/products/MB-01", token)
    _refused(edge, r, 401, "UNAUTHORIZED", before)
    assert r.headers["www-authenticate"] == 'Bearer realm="magento-edge", error="invalid_token"'
    assert token not in r.text
    assert r.json()["error"]["message"].startswith(("The access token is not accepted", "The Au"))


def test_an_unknown_kid_refreshes_the_key_set_once_then_is_refused(edge: Edge) -> None:
    time.sleep(1.1)  # past the 1 s refresh cooldown of this test's issuer
    fetches = edge.jwks.fetches
    tokens = [sign(claims(), RSA_KEY_2, kid="rotated-in") for _ in range(5)]
    for token in tokens:
        assert edge.get("/products/MB-01", token).status_code == 401
    assert edge.jwks.fetches - fetches == 1  # one refresh per cooldown, not one per request
    # Once the issuer publishes it, the next refresh picks it up.
    edge.jwks.keys = [*edge.jwks.keys, jwk("rotated-in", RSA_KEY_2)]
    time.sleep(1.1)
    assert (
        edge.get("/products/MB-01", sign(claims(), RSA_KEY_2, kid="rotated-in")).status_code == 200
    )


def test_no_token_is_a_challenge_without_an_error(edge: Edge) -> None:
    before = edge.sent()
    r = edge.get("/products/MB-01", None)
    _refused(edge, r, 401, "UNAUTHORIZED", before)
    assert r.headers["www-authenticate"] == 'Bearer realm="magento-edge"'


# -- refused with 403: scopes -----------------------------------------------------------------


def test_a_missing_scope_is_403_naming_the_scopes_that_would_grant_it(edge: Edge) -> None:
    token = sign(claims(scope="read_orders"))
    before = edge.sent()
    r = edge.get("/products/MB-01", token)
    _refused(edge, r, 403, "INSUFFICIENT_SCOPE", before)
    assert r.headers["www-authenticate"] == (
        'Bearer realm="magento-edge", error="insufficient_scope", '
        'scope="admin read_products write_products"'
    )
    assert r.json()["error"]["details"] == {
        "required": "products:read",
        "scopes": ["admin", "read_products", "write_products"],
    }
    with edge.h.client(sign(claims(scope="read_products"))) as c:
        r = c.put(V3 + "/products/MB-01", json={})
    assert r.status_code == 403
    assert 'scope="admin write_products"' in r.headers["www-authenticate"]


def test_scp_as_a_list_and_unknown_scopes(edge: Edge) -> None:
    ok = sign(claims(scope=None, scp=["read_products", "not_a_scope_here"]))
    assert edge.get("/products/MB-01", ok).status_code == 200
    none = sign(claims(scope="openid profile"))
    assert edge.get("/products/MB-01", none).status_code == 403


# -- jti revocation ---------------------------------------------------------------------------


def test_revoke_jwt_refuses_the_token_on_the_edge_within_a_second(
    edge: Edge, capsys: pytest.CaptureFixture[str]
) -> None:
    token = sign(claims(jti="to-revoke-1"))
    other = sign(claims(jti="keep-1"))
    assert edge.get("/products/MB-01", token).status_code == 200  # verified and cached
    code = main(["tokens", "revoke-jwt", "--config", str(edge.h.config_path), "to-revoke-1"])
    assert code == 0
    assert "revoked jti to-revoke-1 until " in capsys.readouterr().out
    assert wait_for(lambda: edge.get("/products/MB-01", token).status_code == 401, timeout=3)
    before = edge.sent()
    r = edge.get("/products/MB-01", token)
    _refused(edge, r, 401, "UNAUTHORIZED", before)
    assert r.json()["error"]["message"] == "The access token has been revoked."
    assert edge.get("/products/MB-01", other).status_code == 200


# -- rate limits: client x store, tier from partner_tier ---------------------------------------


def test_jwt_limits_are_per_client_and_store_with_the_tokens_tier(edge: Edge) -> None:
    client = f"limited-{time.monotonic_ns()}"
    statuses = [
        edge.get("/products/MB-01", sign(claims(client_id=client, partner_tier="tiny"))).status_code
        for _ in range(3)  # a new token (new jti) each time: the key is the client, not the token
    ]
    assert statuses == [200, 200, 429]
    r = edge.get("/products/MB-01", sign(claims(client_id=client, partner_tier="tiny")))
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.headers["x-rate-limit-limit"] == "2"
    # Another client is not held back; an unknown tier name gets the default tier.
    assert edge.get("/products/MB-01", sign(claims(partner_tier="tiny"))).status_code == 200
    odd = edge.get("/products/MB-01", sign(claims(client_id=client + "-2", partner_tier="x")))
    assert odd.status_code == 200
    assert odd.headers["x-rate-limit-limit"] == "100000"


# -- hostile input never makes a 5xx -----------------------------------------------------------

_SEGMENT = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/.", max_size=80
)


def _mangled() -> st.SearchStrategy[str]:
    good = sign(claims())
    head, body, sig = good.split(".")
    return st.one_of(
        st.text(
            alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=300
        ),
        st.builds(lambda a, b, c: f"{a}.{b}.{c}", _SEGMENT, _SEGMENT, _SEGMENT),
        st.builds(lambda b: f"{head}.{b}.{sig}", _SEGMENT),
        st.builds(lambda s: f"{head}.{body}.{s}", _SEGMENT),
        st.builds(
            lambda h, p: forge(h, p),
            st.dictionaries(
                st.sampled_from(["alg", "kid", "typ", "crit", "jku"]),
                st.one_of(st.text(max_size=10), st.integers(), st.none()),
            ),
            st.dictionaries(
                st.sampled_from(["iss", "aud", "exp", "store_id", "scope", "scp"]),
                st.one_of(st.text(max_size=10), st.integers(), st.lists(st.text())),
            ),
        ),
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(token=_mangled())
def test_hostile_tokens_at_the_http_edge_are_4xx_never_5xx(edge: Edge, token: str) -> None:
    before = edge.sent()
    with edge.h.client() as c:
        r = c.get(V3 + "/products/MB-01", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, (r.status_code, r.text)
    assert edge.sent() == before


# -- the issuer unreachable ---------------------------------------------------------------------


def test_an_issuer_never_reached_is_503_not_401(tmp_path: Path) -> None:
    policy = tmp_path / "partner.toml"
    policy.write_text(POLICY)
    issuer = (
        f'[issuers.storeicu]\nissuer = "{ISS}"\naudience = "{AUD}"\n'
        f'jwks_url = "http://127.0.0.1:{free_port()}/jwks.json"\n'
    )
    with (
        running_edge(tmp_path, policy=policy, extra=issuer, panel=False) as h,
        h.client(sign(claims())) as c,
    ):
        r = c.get(V3 + "/products/MB-01")
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "TOKEN_ISSUER_UNAVAILABLE"
    assert r.headers["retry-after"] == "5"


def test_key_sets_close_with_the_app(tmp_path: Path) -> None:
    app = JWKSApp()
    app.keys = [jwk("rsa-1", RSA_KEY)]
    policy = tmp_path / "partner.toml"
    policy.write_text(POLICY)
    with serving(app) as jwks_server:
        issuer = (
            f'[issuers.storeicu]\nissuer = "{ISS}"\naudience = "{AUD}"\n'
            f'jwks_url = "{jwks_server.url}/jwks.json"\n'
        )
        with running_edge(tmp_path, policy=policy, extra=issuer, panel=False) as h:
            with h.client(sign(claims())) as c:
                assert c.get(V3 + "/products/MB-01").status_code == 200
            keys = h.edge.jwt.keysets["storeicu"]
            assert keys._http._client is not None  # the client it opened
    assert keys._http._client is None  # closed by the app's lifespan
