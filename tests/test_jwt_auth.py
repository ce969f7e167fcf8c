"""proxy.jwt_auth: JWT access tokens verified against a real JWKS server on loopback, with
keys rotated under it, the issuer going down, and hostile tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from proxy.jwt_auth import InvalidToken, IssuerUnavailable, JWTVerifier, KeySet
from tests.servers import ThreadServer, serving

ISS = "https://auth.store.icu/"
AUD = "https://api.store.icu"
NOW = 1_900_000_000.0

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def jwk(kid: str, private: Any, alg: str | None = None) -> dict[str, Any]:
    public = private.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        doc = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        doc = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        doc = OKPAlgorithm.to_jwk(public, as_dict=True)
    doc = {**doc, "kid": kid, "use": "sig"}
    if alg:
        doc["alg"] = alg
    return doc


class JWKSApp:
    """The issuer's JWKS endpoint: keys, Cache-Control and availability set by the test."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.cache_control = "max-age=300"
        self.down = False
        self.fetches = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.fetches += 1
        status, body = (
            (503, b"down") if self.down else (200, json.dumps({"keys": self.keys}).encode())
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"cache-control", self.cache_control.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def jwks() -> Iterator[tuple[JWKSApp, ThreadServer]]:
    app = JWKSApp()
    app.keys = [jwk("rsa-1", RSA_KEY), jwk("ec-1", EC_KEY), jwk("ed-1", ED_KEY)]
    with serving(app) as server:
        yield app, server


def claims(**overrides: Any) -> dict[str, Any]:
    base = {
        "iss": ISS,
        "aud": [AUD, "other"],
        "exp": int(NOW) + 600,
        "iat": int(NOW) - 10,
        "nbf": int(NOW) - 10,
        "sub": "user-1",
        "client_id": "partner-app",
        "store_id": "acme",
        "scope": "read_products write_orders",
        "partner_tier": "gold",
        "jti": "jti-1",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(
    payload: dict[str, Any], key: Any = RSA_KEY, alg: str = "RS256", kid: str = "rsa-1"
) -> str:
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), _b64(signature)]
    )


def verifier(url: str, mono: Clock | None = None, **kw: Any) -> JWTVerifier:
    keys = KeySet(url=url, clock=mono or Clock(0.0), **kw)
    return JWTVerifier(issuer=ISS, audience=AUD, keys=keys, clock=Clock(NOW))


@pytest.mark.parametrize(
    ("alg", "key", "kid"),
    [
        ("RS256", RSA_KEY, "rsa-1"),
        ("PS256", RSA_KEY, "rsa-1"),
        ("ES256", EC_KEY, "ec-1"),
        ("EdDSA", ED_KEY, "ed-1"),
    ],
)
async def test_each_allowed_algorithm(
    jwks: tuple[JWKSApp, ThreadServer], alg: str, key: Any, kid: str
) -> None:
    _, server = jwks
    v = verifier(server.url)
    try:
        got = await v.verify(sign(claims(scp=["read_customers"]), key, alg, kid))
    finally:
        await v.keys.close()
    assert got.client_id == "partner-app" and got.store_id == "acme"
    assert got.scopes == {"read_products", "write_orders", "read_customers"}
    assert (got.tier, got.jti, got.subject, got.expires_at) == (
        "gold",
        "jti-1",
        "user-1",
        NOW + 600,
    )


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (claims(exp=int(NOW) - 31), "expired"),
        (claims(nbf=int(NOW) + 31), "not valid yet"),
        (claims(iat=int(NOW) + 31), "issued in the future"),
        (claims(aud="https://elsewhere"), "not meant for this API"),
        (claims(iss="https://evil.example/"), "another issuer"),
        (claims(exp=None), '"exp"'),
        (claims(client_id=None), '"client_id"'),
        (claims(scope=["read_products"]), "space-separated"),
        (claims(exp="tomorrow"), "must be a number"),
        (claims(store_id=7), '"store_id" claim must be a string'),
    ],
)
async def test_claims_are_checked(
    jwks: tuple[JWKSApp, ThreadServer], payload: dict[str, Any], reason: str
) -> None:
    _, server = jwks
    v = verifier(server.url)
    try:
        with pytest.raises(InvalidToken, match=reason):
            await v.verify(sign(payload))
    finally:
        await v.keys.close()


async def test_leeway_of_30_seconds(jwks: tuple[JWKSApp, ThreadServer]) -> None:
    _, server = jwks
    v = verifier(server.url)
    try:
        assert (await v.verify(sign(claims(exp=int(NOW) - 29, nbf=int(NOW) + 29)))).client_id
    finally:
        await v.keys.close()


async def test_none_hmac_and_mismatched_algorithms_are_refused(
    jwks: tuple[JWKSApp, ThreadServer],
) -> None:
    app, server = jwks
    app.keys.append(jwk("pinned", RSA_KEY_2, alg="RS256"))
    v = verifier(server.url)
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims()).encode())}"
    hs = signing_input + "." + _b64(hmac.new(pem, signing_input.encode(), hashlib.sha256).digest())
    try:
        for token in (
            forge({"alg": "none", "kid": "rsa-1"}, claims()),
            forge({"alg": "None", "kid": "rsa-1"}, claims()),
            hs,  # the public key used as an HMAC secret
            sign(claims(), EC_KEY, "ES256", kid="rsa-1"),  # EC signature, RSA key
            sign(claims(), RSA_KEY_2, "PS256", kid="pinned"),  # the JWK pins RS256
        ):
            with pytest.raises(InvalidToken):
                await v.verify(token)
        with pytest.raises(ValueError, match="never allowed"):
            JWTVerifier(issuer=ISS, audience=AUD, keys=v.keys, algorithms=["RS256", "HS256"])
    finally:
        await v.keys.close()


async def test_tampered_payload_fails_the_signature(jwks: tuple[JWKSApp, ThreadServer]) -> None:
    _, server = jwks
    v = verifier(server.url)
    header, _, sig = sign(claims()).split(".")
    tampered = f"{header}.{_b64(json.dumps(claims(scope='admin')).encode())}.{sig}"
    try:
        with pytest.raises(InvalidToken, match="signature"):
            await v.verify(tampered)
    finally:
        await v.keys.close()


async def test_rotation_one_fetch_for_a_hundred_requests_with_a_new_kid(
    jwks: tuple[JWKSApp, ThreadServer],
) -> None:
    app, server = jwks
    mono = Clock(0.0)
    v = verifier(server.url, mono)
    try:
        await v.verify(sign(claims()))
        assert app.fetches == 1
        app.keys = [jwk("rsa-2", RSA_KEY_2)]  # the issuer rotates
        mono.now = 31.0  # past the cooldown since the first fetch
        token = sign(claims(), RSA_KEY_2, kid="rsa-2")
        results = await asyncio.gather(*(v.verify(token) for _ in range(100)))
        assert all(r.client_id == "partner-app" for r in results)
        assert app.fetches == 2  # one refresh, shared
        # An unknown kid within the cooldown: no fetch, refused.
        with pytest.raises(InvalidToken, match="does not publish"):
            await v.verify(sign(claims(), EC_KEY, "ES256", kid="nobody"))
        assert app.fetches == 2
        mono.now += 30
        with pytest.raises(InvalidToken, match="does not publish"):
            await v.verify(sign(claims(), EC_KEY, "ES256", kid="nobody"))
        assert app.fetches == 3
    finally:
        await v.keys.close()


@pytest.mark.parametrize(
    ("cache_control", "ttl"),
    [
        ("public, max-age=120", 120),
        ("max-age=5", 60),
        ("max-age=999999999", 86400),
        ("no-cache", 300),
    ],
)
async def test_cache_control_within_bounds(
    jwks: tuple[JWKSApp, ThreadServer], cache_control: str, ttl: float
) -> None:
    app, server = jwks
    app.cache_control = cache_control
    mono = Clock(0.0)
    v = verifier(server.url, mono)
    try:
        await v.verify(sign(claims()))
        mono.now = ttl - 1
        await v.verify(sign(claims()))
        assert app.fetches == 1
        mono.now = ttl
        await v.verify(sign(claims()))
        assert app.fetches == 2
    finally:
        await v.keys.close()


async def test_issuer_down_serves_the_last_good_keys_for_a_bound(
    jwks: tuple[JWKSApp, ThreadServer], caplog: pytest.LogCaptureFixture
) -> None:
    app, server = jwks
    mono = Clock(0.0)
    v = verifier(server.url, mono, stale_for=3600)
    try:
        await v.verify(sign(claims()))
        app.down = True
        mono.now = 301.0  # the set's max-age is over; the refresh fails
        with caplog.at_level(logging.WARNING, logger="magento_edge.jwt"):
            assert (await v.verify(sign(claims()))).client_id == "partner-app"
        assert v.keys.stale and v.keys.failures == 1
        assert "serving the last good key set" in caplog.text
        mono.now = 3601.0
        with pytest.raises(IssuerUnavailable):
            await v.verify(sign(claims()))
        app.down = False
        mono.now += 30  # the next attempt after the cooldown succeeds
        assert (await v.verify(sign(claims()))).client_id == "partner-app"
        assert not v.keys.stale
    finally:
        await v.keys.close()


async def test_never_reachable_issuer() -> None:
    from tests.servers import free_port

    v = verifier(f"http://127.0.0.1:{free_port()}/jwks")
    try:
        with pytest.raises(IssuerUnavailable):
            await v.verify(sign(claims()))
    finally:
        await v.keys.close()


async def test_jwks_file(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk("rsa-1", RSA_KEY), {"kty": "weird"}]}))
    v = JWTVerifier(issuer=ISS, audience=AUD, keys=KeySet(path=path), clock=Clock(NOW))
    assert (await v.verify(sign(claims()))).client_id == "partner-app"
    with pytest.raises(InvalidToken, match="does not publish"):
        await v.verify(sign(claims(), EC_KEY, "ES256", kid="ec-1"))
    path.write_text(json.dumps({"keys": [{"kty": "weird"}]}))
    with pytest.raises(ValueError, match="no usable signing key"):
        KeySet(path=path)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.text(max_size=300)
    | st.builds(
        lambda h, p, s: forge(h, p, s),
        st.dictionaries(
            st.sampled_from(["alg", "kid", "typ", "crit", "jku"]), _json_values, max_size=4
        ),
        st.dictionaries(
            st.sampled_from(
                ["iss", "aud", "exp", "nbf", "iat", "client_id", "scope", "scp", "store_id"]
            ),
            _json_values,
            max_size=9,
        ),
        st.binary(max_size=64),
    )
)
def test_hostile_tokens_only_ever_raise_invalid_token(
    tmp_path_factory: pytest.TempPathFactory, raw: str
) -> None:
    path = tmp_path_factory.getbasetemp() / "hostile-jwks.json"
    if not path.exists():
        path.write_text(json.dumps({"keys": [jwk("rsa-1", RSA_KEY), jwk("ec-1", EC_KEY)]}))
    v = JWTVerifier(issuer=ISS, audience=AUD, keys=KeySet(path=path), clock=Clock(NOW))
    with pytest.raises(InvalidToken):
        asyncio.run(v.verify(raw))
