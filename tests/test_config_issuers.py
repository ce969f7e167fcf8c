"""proxy.config: ``[issuers.NAME]`` (SPEC §2, §4.2), the OAuth 2.0 issuers whose JWT access
tokens ``auth.kind = "jwt"`` policies accept, and the policy ↔ config cross-check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from proxy._toml import ConfigError
from proxy.config import Issuer, load_config
from proxy.jwt_auth import DEFAULT_ALGORITHMS
from tests.test_jwt_auth import jwk

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

POLICY = """\
resources = ["products"]

[surface]
name = "partner"
base_path = "/api/v3"

[auth]
kind = "jwt"
issuer = "storeicu"

[auth.scopes]
read_products = ["products:read"]

[ratelimit.tiers.standard]
rate = 10

[[mounts]]
name = "catalog"
path = "/"
target = "/rest/{store_code}/V1"
routes = "v3"

[routes]
v3 = [{ method = "GET", path = "/products/{id}", resource = "products", target = "/products/{id}" }]
"""

HEAD = """\
[server]
policies = ["partner.toml"]

[stores.acme]
magento_url = "http://127.0.0.1:9000"
credential = { kind = "bearer", token_env = "T" }
"""

ISSUER = """
[issuers.storeicu]
issuer = "https://auth.store.icu/"
audience = "https://api.store.icu"
jwks_url = "https://auth.store.icu/.well-known/jwks.json"
"""


def _config(tmp_path: Path, issuers: str, policy: str = POLICY) -> Path:
    (tmp_path / "partner.toml").write_text(policy)
    path = tmp_path / "config.toml"
    path.write_text(HEAD + issuers)
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"T": "x"})
    return info.value.problems


def _one(problems: list[str], pattern: str) -> None:
    hits = [p for p in problems if re.search(pattern, p)]
    assert len(hits) == 1, (pattern, problems)


def test_an_issuer_as_spec_shows_it_with_its_defaults(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, ISSUER), env={"T": "x"})
    assert config.issuers == {
        "storeicu": Issuer(
            name="storeicu",
            issuer="https://auth.store.icu/",
            audience="https://api.store.icu",
            jwks_url="https://auth.store.icu/.well-known/jwks.json",
            jwks_file=None,
            refresh_cooldown=30.0,
            stale_for=86400.0,
            algorithms=DEFAULT_ALGORITHMS,
            leeway=30.0,
        )
    }
    (surface,) = config.surfaces
    assert surface.jwt is not None and surface.jwt.issuer == "storeicu"


def test_every_issuer_key_is_read(tmp_path: Path) -> None:
    text = ISSUER + (
        "refresh_cooldown_seconds = 5\nstale_for_seconds = 600\n"
        'algorithms = ["ES256"]\nleeway_seconds = 0\n'
    )
    issuer = load_config(_config(tmp_path, text), env={"T": "x"}).issuers["storeicu"]
    assert (issuer.refresh_cooldown, issuer.stale_for, issuer.algorithms, issuer.leeway) == (
        5.0,
        600.0,
        ("ES256",),
        0.0,
    )


def test_a_jwks_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "jwks.json").write_text(json.dumps({"keys": [jwk("k1", KEY)]}))
    text = ISSUER.replace(
        'jwks_url = "https://auth.store.icu/.well-known/jwks.json"', 'jwks_file = "keys/jwks.json"'
    )
    issuer = load_config(_config(tmp_path, text), env={"T": "x"}).issuers["storeicu"]
    assert issuer.jwks_url is None and issuer.jwks_file == tmp_path / "keys" / "jwks.json"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "No such file or directory"),
        ("{not json", "Expecting property name"),
        ('{"keys": "no"}', 'a JWKS is a JSON object with a "keys" array'),
        ('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "the JWKS holds no usable signing key"),
    ],
)
def test_a_bad_jwks_file_is_refused_at_load(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    if content is not None:
        (tmp_path / "jwks.json").write_text(content)
    text = ISSUER.replace(
        'jwks_url = "https://auth.store.icu/.well-known/jwks.json"', 'jwks_file = "jwks.json"'
    )
    path = _config(tmp_path, text)
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:11: issuers.storeicu.jwks_file: cannot use jwks.json: ")
    assert reason in problem


def test_exactly_one_of_jwks_url_and_jwks_file(tmp_path: Path) -> None:
    both = _config(tmp_path, ISSUER + 'jwks_file = "jwks.json"\n')
    _one(_problems(both), r":8: issuers\.storeicu: needs exactly one of jwks_url and jwks_file")
    neither = _config(tmp_path, ISSUER.replace("jwks_url", "# jwks_url"))
    _one(_problems(neither), r":8: issuers\.storeicu: needs exactly one of jwks_url and jwks_file")


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512", "hs384"])
def test_none_and_hmac_algorithms_are_refused_at_load(tmp_path: Path, alg: str) -> None:
    path = _config(tmp_path, ISSUER + f'algorithms = ["RS256", "{alg}"]\n')
    problems = _problems(path)
    assert problems == [
        f'{path}:12: issuers.storeicu.algorithms: "{alg}" is never accepted for access tokens '
        "(no signature, or a shared secret anyone with the public key would know)"
    ]


def test_unknown_algorithms_and_keys_are_refused(tmp_path: Path) -> None:
    path = _config(tmp_path, ISSUER + 'algorithms = ["RS512"]\naudiences = ["x"]\n')
    problems = _problems(path)
    _one(problems, r':12: issuers\.storeicu\.algorithms: unknown algorithm "RS512" \(known: RS256')
    _one(problems, r":13: issuers\.storeicu\.audiences: unknown key")


def test_issuer_audience_and_a_http_jwks_url_are_required(tmp_path: Path) -> None:
    path = _config(tmp_path, '[issuers.storeicu]\njwks_url = "ftp://keys"\n')
    problems = _problems(path)
    _one(problems, r":7: issuers\.storeicu\.issuer: is required")
    _one(problems, r":7: issuers\.storeicu\.audience: is required")
    _one(problems, r':8: issuers\.storeicu\.jwks_url: "ftp://keys" must be an http')


def test_an_issuer_no_policy_names_is_refused(tmp_path: Path) -> None:
    path = _config(tmp_path, ISSUER + ISSUER.replace("storeicu]", "spare]"))
    assert _problems(path) == [
        f"{path}:13: issuers.spare: no policy names this issuer (auth.issuer = ...)"
    ]


def test_the_policy_must_name_a_config_issuer(tmp_path: Path) -> None:
    # Reported where the name is: the policy's auth.issuer line.
    path = _config(tmp_path, ISSUER.replace("[issuers.storeicu]", "[issuers.other]"))
    assert _problems(path) == [
        f"{path}:8: issuers.other: no policy names this issuer (auth.issuer = ...)",
        'partner.toml:9: auth.issuer: unknown issuer "storeicu" '
        "(known in config.toml [issuers]: other)",
    ]
    path = _config(tmp_path, "")
    assert _problems(path) == [
        'partner.toml:9: auth.issuer: unknown issuer "storeicu" '
        "(known in config.toml [issuers]: none defined)"
    ]


def test_config_knows_the_verifiers_algorithms() -> None:
    # config checks names without importing jwt_auth (httpx): the two lists must agree.
    from proxy.config import _ALGORITHMS

    assert _ALGORITHMS == DEFAULT_ALGORITHMS
