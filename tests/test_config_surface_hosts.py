"""``[server] surface_hosts``: which Host names each surface answers on in this deployment,
so both shipped APIs (each with an /api/v1) can be served by one edge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy._toml import ConfigError
from proxy.config import load_config
from tests.test_jwt_auth import RSA_KEY, jwk

ROOT = Path(__file__).resolve().parent.parent


def _config(tmp_path: Path, server_extra: str) -> Path:
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk("k1", RSA_KEY)]}))
    path = tmp_path / "config.toml"
    path.write_text(
        f"""[server]
policies = ["{ROOT / "policies" / "storeoncloud.toml"}", "{ROOT / "policies" / "storeicu.toml"}"]
{server_extra}

[issuers.storeicu]
issuer = "https://auth.store.icu/"
audience = "https://api.store.icu"
jwks_file = "jwks.json"

[stores.acme]
magento_url = "http://127.0.0.1:9000"
credential = {{ kind = "bearer", token_env = "T" }}

[upstreams.panel]
url = "http://127.0.0.1:9100"
"""
    )
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={"T": "t"})
    return exc.value.problems


def test_both_apis_need_their_own_hosts(tmp_path: Path) -> None:
    problems = _problems(_config(tmp_path, ""))
    assert any('both claim the base path "/api/v1"' in p for p in problems), problems


def test_surface_hosts_separate_them(tmp_path: Path) -> None:
    config = load_config(
        _config(
            tmp_path,
            'surface_hosts = { storeoncloud = ["API.StoreOnCloud.com"], '
            'storeicu = ["api.store.icu", "api.partner.example."] }',
        ),
        env={"T": "t"},
    )
    hosts = {s.name: s.hosts for s in config.surfaces}
    assert hosts == {
        "storeoncloud": frozenset({"api.storeoncloud.com"}),
        "storeicu": frozenset({"api.store.icu", "api.partner.example"}),
    }


def test_one_shared_host_is_refused(tmp_path: Path) -> None:
    problems = _problems(
        _config(
            tmp_path,
            'surface_hosts = { storeoncloud = ["api.example.com"], storeicu = ["api.example.com"] }',
        )
    )
    assert any("/api/v1" in p and "api.example.com" in p for p in problems), problems


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{ nosuch = ["a.example"] }', 'no loaded policy is the surface "nosuch"'),
        ("{ storeicu = [] }", "must name at least one host"),
        ('{ storeicu = ["https://api.store.icu"] }', "not a host name"),
        ('{ storeicu = "api.store.icu" }', "must be a list of strings"),
    ],
)
def test_bad_surface_hosts(tmp_path: Path, value: str, message: str) -> None:
    problems = _problems(_config(tmp_path, f"surface_hosts = {value}"))
    assert any(
        p.split(": ", 1)[0].endswith(":3") and "server.surface_hosts" in p and message in p
        for p in problems
    ), problems
