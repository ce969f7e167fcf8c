"""``backend = "package.module:Class"``: an operator's own key store, rate limiter or
idempotency store. A good class loads and is what the edge uses; a bad one is refused by
``load_config`` (so by ``check``) with ``file:line: key.path:``, never at the first request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from proxy._toml import ConfigError
from proxy.backends.idempotency import open_idempotency_store
from proxy.backends.keystore import open_keystore
from proxy.backends.keystore.base import TokenRecord
from proxy.backends.ratelimit import open_limiter
from proxy.cli import main
from proxy.config import Config, load_config
from proxy.edge import Edge
from proxy.policy import Tier
from tests.backends.operator_backends import (
    CountingLimiter,
    OperatorIdempotencyStore,
    OperatorKeyStore,
)

ROOT = Path(__file__).resolve().parent.parent.parent
MOD = "tests.backends.operator_backends"
ENV = {"ACME_MAGENTO_TOKEN": "mgt-" + "x" * 24}


def _config(tmp_path: Path, keystore: str, ratelimit: str, idempotency: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""\
[server]
policies = ["{ROOT / "policies" / "storeoncloud.toml"}"]

[keystore]
{keystore}

[ratelimit]
{ratelimit}

[idempotency]
{idempotency}

[stores.acme]
name = "Acme"
environment = "live"
magento_url = "http://127.0.0.1:9"
store_code = "default"
credential = {{ kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }}
"""
    )
    return path


def _load(path: Path) -> Config:
    return load_config(path, env=ENV)


def _line(path: Path, text: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_an_operators_classes_load_and_are_what_the_edge_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPERATOR_KEYSTORE_PATH", str(tmp_path / "operator.db"))
    config = _load(
        _config(
            tmp_path,
            f'backend = "{MOD}:OperatorKeyStore"',
            f'backend = "{MOD}:CountingLimiter"',
            f'backend = "{MOD}:OperatorIdempotencyStore"',
        )
    )
    assert config.keystore_backend == f"{MOD}:OperatorKeyStore"
    assert (config.keystore_path, config.keystore_url) == (None, None)
    keystore = open_keystore(config)
    assert isinstance(keystore, OperatorKeyStore)
    assert keystore.path == tmp_path / "operator.db"
    edge = Edge.from_config(config, keystore)
    assert isinstance(edge.limiter, CountingLimiter)
    assert isinstance(edge.idempotency.store, OperatorIdempotencyStore)

    async def use() -> None:
        before = CountingLimiter.hits
        assert edge.limiter is not None
        result = await edge.limiter.hit("k", Tier("t", rate=1, period=1, burst=1, daily=0))
        assert result.allowed and CountingLimiter.hits == before + 1
        record = TokenRecord(id="tok_1", name="n", kind="live", stores=("acme",), permissions={})
        await keystore.create(record, "h" * 64)
        assert await edge.keystore.lookup("h" * 64) == record
        await edge.keystore.close()
        await edge.idempotency.close()

    asyncio.run(use())


def test_the_factories_take_a_class_path_too(tmp_path: Path) -> None:
    assert isinstance(open_limiter(f"{MOD}:CountingLimiter", None), CountingLimiter)
    store = open_idempotency_store(f"{MOD}:OperatorIdempotencyStore", None)
    assert isinstance(store, OperatorIdempotencyStore)


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        ("keystore", "tests.backends.no_such_module:X", "cannot import tests.backends.no_such"),
        ("keystore", f"{MOD}:Missing", f"module {MOD} has no Missing"),
        ("keystore", f"{MOD}:NOT_A_CLASS", "is not a class"),
        ("keystore", f"{MOD}:LookupOnly", "does not implement KeyStore: missing or not async: "
         "create, create_account, get, list, list_accounts, retire, revoke_jti, "
         "set_account_grants"),
        ("ratelimit", f"{MOD}:SyncLimiter", "does not implement RateLimiter: missing or not "
         "async: hit"),
        ("ratelimit", f"{MOD}:NeedsArguments", "must be constructible with no arguments"),
        ("idempotency", f"{MOD}:CountingLimiter", "does not implement IdempotencyStore"),
        ("idempotency", "tests.backends.broken_backend:X",
         "cannot import tests.backends.broken_backend (RuntimeError: operator module failed"),
        ("ratelimit", "not a path:X", "is not a class path (package.module:Class)"),
        ("ratelimit", f"{MOD}:", "is not a class path"),
    ],
)  # fmt: skip
def test_a_bad_class_is_refused_at_load_with_file_and_line(
    tmp_path: Path, where: str, value: str, message: str
) -> None:
    tables = {"keystore": 'backend = "sqlite"', "ratelimit": "", "idempotency": ""}
    tables[where] = f'backend = "{value}"'
    path = _config(tmp_path, tables["keystore"], tables["ratelimit"], tables["idempotency"])
    with pytest.raises(ConfigError) as info:
        _load(path)
    prefix = f"{path}:{_line(path, value)}: {where}.backend: "
    assert [p for p in info.value.problems if p.startswith(prefix)] == [
        p for p in info.value.problems if "backend" in p
    ]
    assert any(p.startswith(prefix) and message in p for p in info.value.problems), (
        info.value.problems
    )


def test_keys_an_operators_class_never_receives_are_refused(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        f'backend = "{MOD}:OperatorKeyStore"\npath = "edge.db"',
        f'backend = "{MOD}:CountingLimiter"\nurl = "redis://127.0.0.1:6379/0"',
        "",
    )
    with pytest.raises(ConfigError) as info:
        _load(path)
    text = "\n".join(info.value.problems)
    assert f"{path}:{_line(path, 'path = ')}: keystore.path: is only used with" in text
    assert f"{path}:{_line(path, 'url = ')}: ratelimit.url: is only used with" in text


def test_check_refuses_a_bad_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, f'backend = "{MOD}:LookupOnly"', "", "")
    code = main(["check", "--config", str(path)])
    err = capsys.readouterr().err
    assert code != 0
    assert f"{path}:{_line(path, 'LookupOnly')}: keystore.backend: " in err
    assert "Traceback" not in err
