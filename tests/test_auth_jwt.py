"""proxy.auth_jwt: a JWT bearer token → Principal (scopes → grants, store, tier, public id),
the verified-claims cache bounded by the token's exp, and the jti deny list on cached
tokens. The end-to-end behaviour through a real server is in test_edge_jwt.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest

from proxy.auth_jwt import JWTAuthenticator, insufficient_scope, scopes_granting
from proxy.backends.keystore.cached import CachedKeyStore
from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.config import Config, load_config
from proxy.errors import Unauthorized
from proxy.policy import Surface
from tests.test_config_issuers import HEAD, ISSUER
from tests.test_jwt_auth import RSA_KEY, jwk

NOW = 1_900_000_000.0

POLICY = """\
resources = ["products", "orders"]

[surface]
name = "partner"
base_path = "/api/v3"

[auth]
kind = "jwt"
issuer = "storeicu"

[auth.claims]
store_id = "https://store.icu/store"

[auth.scopes]
read_products = ["products:read"]
write_orders = ["orders:write"]
admin = ["*:write"]

[ratelimit.tiers.standard]
rate = 10
[ratelimit.tiers.gold]
rate = 20

[[mounts]]
name = "catalog"
path = "/"
target = "/rest/{store_code}/V1"
routes = "v3"

[routes]
v3 = [{ method = "GET", path = "/products/{id}", resource = "products", target = "/products/{id}" }]
"""


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk("rsa-1", RSA_KEY)]}))
    (tmp_path / "partner.toml").write_text(POLICY)
    issuer = ISSUER.replace(
        'jwks_url = "https://auth.store.icu/.well-known/jwks.json"', 'jwks_file = "jwks.json"'
    )
    (tmp_path / "config.toml").write_text(HEAD + issuer)
    return load_config(tmp_path / "config.toml", env={"T": "x"})


@pytest.fixture
async def keystore(tmp_path: Path) -> Any:
    store = CachedKeyStore(SQLiteKeyStore(tmp_path / "edge.db"))
    yield store
    await store.close()


def token(**overrides: Any) -> str:
    claims = {
        "iss": "https://auth.store.icu/",
        "aud": "https://api.store.icu",
        "exp": int(NOW) + 300,
        "client_id": "app-1",
        "https://store.icu/store": "acme",
        "scope": "read_products write_orders",
        "partner_tier": "gold",
        "jti": "j-1",
        **overrides,
    }
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})


def headers(tok: str) -> list[tuple[bytes, bytes]]:
    return [(b"authorization", b"Bearer " + tok.encode())]


async def test_a_token_becomes_a_principal(config: Config, keystore: CachedKeyStore) -> None:
    auth = JWTAuthenticator(config, clock=Clock())
    surface = config.surfaces[0]
    tok = token()
    p = await auth.authenticate(headers(tok), surface, keystore)
    assert (p.kind, p.token_id, p.client_id, p.store_id, p.tier, p.record) == (
        "jwt", "jwt:app-1:j-1", "app-1", "acme", "gold", None,
    )  # fmt: skip
    assert p.stores == {"acme"}
    assert dict(p.permissions) == {"products": "read", "orders": "write"}
    assert tok not in repr(p)
    await auth.close()


async def test_admin_is_every_resource_and_unknown_tiers_are_the_default(
    config: Config, keystore: CachedKeyStore
) -> None:
    auth = JWTAuthenticator(config, clock=Clock())
    tok = token(scope="admin read_products", partner_tier="diamond", jti=None)
    p = await auth.authenticate(headers(tok), config.surfaces[0], keystore)
    # "*:write" beside "products:read" still grants products:write.
    assert dict(p.permissions) == {"products": "write", "orders": "write"}
    assert p.tier is None  # _limit then uses the policy's default tier
    assert p.token_id.startswith("jwt:app-1:") and len(p.token_id) == len("jwt:app-1:") + 12


async def test_a_signature_is_checked_once_per_token_until_its_exp(
    config: Config, keystore: CachedKeyStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    auth = JWTAuthenticator(config, clock=clock)
    surface = config.surfaces[0]
    verifier = auth._verifiers["partner"]
    calls = []
    real = verifier.verify

    async def counting(tok: str) -> Any:
        calls.append(tok)
        return await real(tok)

    monkeypatch.setattr(verifier, "verify", counting)
    tok = token(exp=int(NOW) + 60)
    for _ in range(5):
        await auth.authenticate(headers(tok), surface, keystore)
    assert len(calls) == 1
    clock.now = NOW + 61  # past exp (within the verifier's leeway): checked again
    await auth.authenticate(headers(tok), surface, keystore)
    assert len(calls) == 2
    clock.now = NOW + 100  # past exp + leeway: refused, not served from a cache
    with pytest.raises(Unauthorized, match="expired"):
        await auth.authenticate(headers(tok), surface, keystore)


async def test_a_revoked_jti_is_refused_even_when_its_claims_are_cached(
    config: Config, tmp_path: Path
) -> None:
    clock = Clock()
    store = SQLiteKeyStore(tmp_path / "edge.db")
    cache_clock = Clock()
    keystore = CachedKeyStore(store, clock=cache_clock)
    auth = JWTAuthenticator(config, clock=clock)
    surface = config.surfaces[0]
    tok = token(jti="revoke-me")
    await auth.authenticate(headers(tok), surface, keystore)
    await store.revoke_jti("revoke-me", 4_000_000_000.0)
    cache_clock.now += 1.0  # the key-store cache's bound
    with pytest.raises(Unauthorized, match="revoked") as info:
        await auth.authenticate(headers(tok), surface, keystore)
    assert info.value.headers["WWW-Authenticate"].endswith('error="invalid_token"')
    await keystore.close()


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"https://store.icu/store": None}, 'no "https://store.icu/store" claim'),
        ({"client_id": None}, 'no "client_id" claim'),
        ({"aud": "other"}, "not meant for this API"),
    ],
)
async def test_refusals_say_why_without_the_token(
    config: Config, keystore: CachedKeyStore, overrides: dict[str, Any], reason: str
) -> None:
    auth = JWTAuthenticator(config, clock=Clock())
    tok = token(**overrides)
    with pytest.raises(Unauthorized) as info:
        await auth.authenticate(headers(tok), config.surfaces[0], keystore)
    assert reason in info.value.detail and tok not in info.value.detail


async def test_no_token_and_not_a_bearer(config: Config, keystore: CachedKeyStore) -> None:
    auth = JWTAuthenticator(config, clock=Clock())
    with pytest.raises(Unauthorized) as info:
        await auth.authenticate([], config.surfaces[0], keystore)
    assert info.value.headers["WWW-Authenticate"] == 'Bearer realm="magento-edge"'
    with pytest.raises(Unauthorized) as info:
        await auth.authenticate([(b"authorization", b"Basic eDp5")], config.surfaces[0], keystore)
    assert 'error="invalid_token"' in info.value.headers["WWW-Authenticate"]


async def test_hostile_claims_never_reach_the_public_id(
    config: Config, keystore: CachedKeyStore
) -> None:
    auth = JWTAuthenticator(config, clock=Clock())
    tok = token(client_id="app\n127.0.0.1 - forged log line", jti="x" * 500)
    p = await auth.authenticate(headers(tok), config.surfaces[0], keystore)
    assert "\n" not in p.token_id and len(p.token_id) < 60
    assert p.client_id == "app\n127.0.0.1 - forged log line"  # the limiter key may hold it


def test_scopes_granting_and_the_challenge(config: Config) -> None:
    surface: Surface = config.surfaces[0]
    assert scopes_granting(surface, "products", "read") == ["admin", "read_products"]
    assert scopes_granting(surface, "products", "write") == ["admin"]
    assert scopes_granting(surface, "orders", "read") == ["admin", "write_orders"]
    err = insufficient_scope(surface, "products", "write")
    assert err.status == 403 and err.code == "insufficient_scope"
    assert err.headers["WWW-Authenticate"] == (
        'Bearer realm="magento-edge", error="insufficient_scope", scope="admin"'
    )
    assert err.extra == {"required": "products:write", "scopes": ["admin"]}
