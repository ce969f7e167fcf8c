"""The ``magento-edge`` command line: the SPEC §2 contract scripts rely on."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx
import pytest

from proxy.cli import main, parse_duration
from proxy.tokens import parse_token
from tests.conftest import Harness, env, write_config
from tests.governance import epoch

TOKEN_LINE = re.compile(r"soc_pat_(live|test)_[0-9A-Za-z]{36}")


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in env().items():
        monkeypatch.setenv(name, value)
    return write_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_valid_exits_0(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "check", "--config", str(config))
    assert code == 0
    assert "valid" in out


def test_check_invalid_exits_1_with_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    bad = tmp_path / "config.toml"
    bad.write_text(
        '[server]\nport = "eighty"\ntrusted_proxies = ["not-a-net"]\n'
        '[stores.x]\nmagento_url = "ftp://x"\n'
        'credential = { kind = "bearer", token_env = "NOPE_TOKEN" }\n'
        "[surprise]\n"
    )
    code, _, err = _run(capsys, "check", "--config", str(bad))
    assert code == 1
    lines = err.strip().splitlines()
    assert any("server.port: must be an integer" in line for line in lines)
    assert any("server.trusted_proxies[0]" in line for line in lines)
    assert any("stores.x.magento_url" in line for line in lines)
    assert any("NOPE_TOKEN is not set" in line for line in lines)
    assert any("surprise: unknown key" in line for line in lines)
    # every line names its file: the config, or the (missing) default policy it points at
    assert all(line.startswith((str(bad), "policies/storeoncloud.toml:")) for line in lines)
    assert "policies/storeoncloud.toml: cannot read" in err


def test_check_reports_bad_policy_with_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = (Path(__file__).parent.parent / "policies" / "storeoncloud.toml").read_text()
    broken = policy.replace(
        '{ method = "GET", path = "/orders/{id}", resource = "orders"',
        '{ method = "GET", path = "/orders/{id}", resource = "order"',
    )
    assert broken != policy
    (tmp_path / "p.toml").write_text(broken)
    cfg = tmp_path / "config.toml"
    cfg.write_text('[server]\npolicies = ["p.toml"]\n')
    code, _, err = _run(capsys, "check", "--config", str(cfg))
    assert code == 1
    assert re.search(
        r'^p\.toml:\d+: routes\.magento\[\d+\]\.resource: unknown resource "order" \(known: backups,',
        err,
        re.M,
    ), err


def test_tokens_create_prints_token_alone_on_last_line(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(
        capsys, "tokens", "create", "--config", str(config), "--store", "acme", "--store", "oak",
        "--permission", "orders:read", "--permission", "products:write", "--name", "erp",
    )  # fmt: skip
    assert code == 0
    last = out.strip().splitlines()[-1]
    assert TOKEN_LINE.fullmatch(last)
    assert parse_token(last) is not None and parse_token(last).kind == "live"  # type: ignore[union-attr]

    code, out, _ = _run(capsys, "tokens", "list", "--config", str(config), "--json")
    assert code == 0
    listed = json.loads(out)
    assert len(listed) == 1
    entry = listed[0]
    assert entry["name"] == "erp"
    assert entry["stores"] == ["acme", "oak"]
    assert entry["permissions"] == ["orders:read", "products:write"]
    assert last not in out  # never the secret
    assert parse_token(last).hash not in out  # type: ignore[union-attr]  # nor its hash

    code, out, _ = _run(capsys, "tokens", "show", "--config", str(config), entry["id"])
    assert code == 0 and json.loads(out)["id"] == entry["id"] and last not in out


def test_tokens_create_sandbox_and_options(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --account names an existing account whose grants cover the token's (since accounts).
    code, out, _ = _run(
        capsys, "accounts", "create", "--config", str(config), "--name", "Partner",
        "--store", "lab", "--permission", "products:read",
    )  # fmt: skip
    assert code == 0
    account = out.strip().splitlines()[-1]
    code, out, _ = _run(
        capsys, "tokens", "create", "--config", str(config), "--store", "lab",
        "--permission", "products:read", "--sandbox", "--expires-in", "30d",
        "--allow-ip", "10.0.0.0/8", "--allow-ip", "192.0.2.1", "--tier", "internal",
        "--account", account,
    )  # fmt: skip
    assert code == 0
    token = out.strip().splitlines()[-1]
    assert token.startswith("soc_pat_test_")
    _, out, _ = _run(capsys, "tokens", "list", "--config", str(config), "--json")
    entry = json.loads(out)[0]
    assert entry["kind"] == "test"
    assert entry["allow_ips"] == ["10.0.0.0/8", "192.0.2.1"]
    assert entry["tier"] == "internal" and entry["account"] == account
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["expires_at"])
    assert 29 * 86400 < epoch(entry["expires_at"]) - time.time() <= 30 * 86400


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "nope", "--permission", "orders:read"], 'unknown store "nope"'),
        (["--store", "acme", "--permission", "order:read"], 'unknown resource "order"'),
        (["--store", "acme", "--permission", "orders"], "must be RESOURCE:read or RESOURCE:write"),
        (["--store", "acme", "--permission", "orders:admin"], "must be RESOURCE:read"),
        (["--store", "lab", "--permission", "orders:read"], "is sandbox"),
        (["--store", "acme", "--permission", "orders:read", "--sandbox"], "is live"),
        (
            ["--store", "acme", "--permission", "orders:read", "--tier", "diamond"],
            'unknown tier "diamond"',
        ),
        (
            ["--store", "acme", "--permission", "orders:read", "--allow-ip", "x"],
            "not an IP network",
        ),
    ],
)
def test_tokens_create_refuses_bad_input(
    config: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = _run(capsys, "tokens", "create", "--config", str(config), *args)
    assert code == 2
    assert message in err
    assert not TOKEN_LINE.search(out)


def test_expires_in_syntax() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("12h") == 43200
    assert parse_duration("15m") == 900
    assert parse_duration("90s") == 90
    assert parse_duration("1w") == 7 * 86400
    for bad in ("30", "d", "0d", "-1d", "1.5h", "abc", "1y", ""):
        with pytest.raises(Exception, match="duration"):
            parse_duration(bad)


def test_revoke_through_cli_stops_the_token_at_the_edge(
    harness: Harness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env().items():
        monkeypatch.setenv(name, value)
    cfg = str(harness.config_path)
    code, out, _ = _run(
        capsys,
        "tokens",
        "create",
        "--config",
        cfg,
        "--store",
        "acme",
        "--permission",
        "products:read",
    )
    token = out.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{harness.url}/api/v1/stores/acme/commerce/products/MB-01"
    assert httpx.get(url, headers=headers).status_code == 200
    token_id = out.split()[1]
    code, out, _ = _run(capsys, "tokens", "revoke", "--config", cfg, token_id)
    assert code == 0
    deadline = time.monotonic() + 3
    status = 200
    while time.monotonic() < deadline and status == 200:
        status = httpx.get(url, headers=headers).status_code
        time.sleep(0.05)
    assert status == 401
    assert _run(capsys, "tokens", "revoke", "--config", cfg, "tok_nope")[0] == 3


def test_token_commands_need_no_upstream_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in env():
        monkeypatch.delenv(name, raising=False)
    config = write_config(tmp_path, "http://127.0.0.1:9", None)
    code, out, _ = _run(
        capsys, "tokens", "create", "--config", str(config), "--store", "acme",
        "--permission", "products:read",
    )  # fmt: skip
    assert code == 0 and TOKEN_LINE.fullmatch(out.strip().splitlines()[-1])
    code, _, err = _run(capsys, "check", "--config", str(config))
    assert code == 1 and "ACME_MAGENTO_TOKEN is not set" in err  # serving still needs them
