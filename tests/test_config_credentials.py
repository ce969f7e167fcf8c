"""Store credential and offloader keys of config.toml: the three credential kinds, the
offloader header, and a magento_url that would put a secret in the URL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy._toml import ConfigError
from proxy.config import AdminCredential, load_config

ROOT = Path(__file__).resolve().parent.parent


def _load(tmp_path: Path, store: str, env: dict[str, str] | None = None) -> object:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""[server]
policies = ["{ROOT / "policies" / "storeoncloud.toml"}"]

[stores.acme]
magento_url = "http://127.0.0.1:9000"
{store}
"""
    )
    return load_config(path, env=env or {})


def _problems(tmp_path: Path, store: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        _load(tmp_path, store, env)
    return exc.value.problems


def test_admin_credential(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        'credential = { kind = "admin", username_env = "U", password_env = "P", '
        "token_lifetime_seconds = 3600, min_refresh_seconds = 10 }",
        {"U": "ops", "P": "admin-password-1"},
    )
    cred = config.stores["acme"].credential  # type: ignore[attr-defined]
    assert cred == AdminCredential("ops", "admin-password-1", 3600.0, 10.0)
    assert "admin-password-1" not in repr(cred)


def test_admin_credential_defaults_and_missing_env(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        'credential = { kind = "admin", username_env = "U", password_env = "P" }',
        {"U": "ops", "P": "x"},
    )
    cred = config.stores["acme"].credential  # type: ignore[attr-defined]
    assert (cred.token_lifetime, cred.min_refresh_interval) == (14400.0, 30.0)
    problems = _problems(
        tmp_path, 'credential = { kind = "admin", username_env = "U", password_env = "P" }'
    )
    assert any(
        re.search(r"stores\.acme\.credential\.username_env: environment variable U is not set", p)
        for p in problems
    ), problems


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            'credential = { kind = "admin", username_env = "U", password_env = "P", token = "x" }',
            "stores.acme.credential.token: unknown key",
        ),
        (
            'credential = { kind = "admin", username_env = "U", password_env = "P", '
            "min_refresh_seconds = 0 }",
            "stores.acme.credential.min_refresh_seconds",
        ),
        ('credential = { kind = "jwt" }', "stores.acme.credential.kind"),
    ],
)
def test_admin_credential_refusals(tmp_path: Path, line: str, message: str) -> None:
    problems = _problems(tmp_path, line, {"U": "u", "P": "p"})
    assert any(message in p for p in problems), problems


def test_offloader_header_default_and_custom(tmp_path: Path) -> None:
    bearer = 'credential = { kind = "bearer", token_env = "T" }'
    config = _load(tmp_path, bearer, {"T": "t"})
    assert config.stores["acme"].offloader_header == "X-Forwarded-Proto"  # type: ignore[attr-defined]
    config = _load(
        tmp_path, bearer + '\nmagento_offloader_header = "X-Forwarded-Scheme"', {"T": "t"}
    )
    assert config.stores["acme"].offloader_header == "X-Forwarded-Scheme"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "is not an HTTP header name"),
        ("X Forwarded", "is not an HTTP header name"),
        ("Host", "is set by the edge itself"),
        ("authorization", "is set by the edge itself"),
    ],
)
def test_offloader_header_refusals(tmp_path: Path, value: str, message: str) -> None:
    problems = _problems(
        tmp_path,
        f'credential = {{ kind = "bearer", token_env = "T" }}\nmagento_offloader_header = "{value}"',
        {"T": "t"},
    )
    assert any("stores.acme.magento_offloader_header: " in p and message in p for p in problems)


def test_magento_url_with_userinfo_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""[server]
policies = ["{ROOT / "policies" / "storeoncloud.toml"}"]
[stores.acme]
magento_url = "http://admin:hunter2-secret@127.0.0.1:9000"
credential = {{ kind = "bearer", token_env = "T" }}
"""
    )
    with pytest.raises(ConfigError) as exc:
        load_config(path, env={"T": "t"})
    text = "\n".join(exc.value.problems)
    assert "stores.acme.magento_url: must not carry a user or password" in text
    assert "hunter2-secret" not in text
