"""The ``magento-edge`` command line: the SPEC §2 contract scripts rely on."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.cli import CONFIG_ENV, _parser, main, parse_duration
from proxy.tokens import generate_token, parse_token
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


# -- the command line itself: version, help, --config from the environment, exit codes -------


def test_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    code, out, _ = _run(capsys, "--version")
    assert (code, out) == (0, f"magento-edge {pyproject['project']['version']}\n")


def _parsers(
    parser: argparse.ArgumentParser,
) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _parsers(child)


def test_every_flag_has_help_and_says_its_default() -> None:
    flags = 0
    for parser in _parsers(_parser()):
        rendered = " ".join(parser.format_help().split())
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.dest in ("help", "version"):
                continue
            flags += 1
            text = formatter._get_help_string(action) % {**vars(action), "prog": parser.prog}
            assert action.help, f"{parser.prog} {action.option_strings[0]} has no help"
            assert action.required or "default" in text, (parser.prog, action.option_strings)
            assert " ".join(text.split()) in rendered, (parser.prog, text)
    assert flags >= 40  # every subcommand was walked, not just the top level
    create = " ".join(main_help("tokens", "create").split())
    assert "--expires-in DURATION 30d, 2w, 12h, 15m, 90s (default: never expires)" in create
    assert "--config PATH config.toml (default: $MAGENTO_EDGE_CONFIG)" in create
    rotate = " ".join(main_help("tokens", "rotate").split())
    assert "1h, 1w (default: 0)" in rotate
    assert "(default: 8080)" in main_help("demo")
    top = main_help()
    assert "3 not found" in top and "2 usage error" in top and "MAGENTO_EDGE_CONFIG" in top


def main_help(*command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*command, "--help"]) == 0
    return out.getvalue()


def test_config_comes_from_the_environment(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(config))
    code, out, _ = _run(
        capsys, "tokens", "create", "--store", "acme", "--permission", "orders:read"
    )
    assert code == 0 and TOKEN_LINE.fullmatch(out.strip().splitlines()[-1])
    code, out, _ = _run(capsys, "tokens", "list", "--json")
    assert code == 0 and len(json.loads(out)) == 1
    code, out, _ = _run(capsys, "check")
    assert code == 0 and out.startswith(f"{config}: valid")
    # An explicit --config wins over the environment.
    monkeypatch.setenv(CONFIG_ENV, str(config.parent / "missing.toml"))
    code, out, _ = _run(capsys, "accounts", "list", "--config", str(config))
    assert code == 0 and out.split() == ["ID", "NAME", "STORES", "CREATED"]
    code, _, err = _run(capsys, "accounts", "list")
    assert code == 1 and "missing.toml" in err and "Traceback" not in err


@pytest.mark.parametrize("value", [None, ""])
def test_no_config_anywhere_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv(CONFIG_ENV, raising=False)
    else:
        monkeypatch.setenv(CONFIG_ENV, value)
    for argv, prog in (
        (("tokens", "list"), "magento-edge tokens list"),
        (("accounts", "create", "--name", "x"), "magento-edge accounts create"),
        (("check",), "magento-edge check"),
    ):
        code, out, err = _run(capsys, *argv)
        assert (code, out) == (2, "")
        assert f"{prog}: error: --config is required (or set MAGENTO_EDGE_CONFIG)" in err


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--expires-in", "0d", '"0d" is not a usable duration: it must be more than zero'),
        ("--expires-in", "0w", '"0w" is not a usable duration'),
        ("--expires-in", "-1d", '"-1d" is negative'),
        ("--expires-in", "abc", '"abc" is not a duration like 30d, 2w, 12h, 15m or 90s'),
        ("--expires-in", "9999999w", '"9999999w" is longer than 100 years'),
        ("--expires-at", "next week", '"next week" is not a date like 2026-01-31'),
    ],
)
def test_bad_durations_are_clear_usage_errors(
    config: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    base = ("tokens", "create", "--config", str(config), "--store", "acme")
    for argv in ((*base, flag, value), (*base, f"{flag}={value}")):
        code, out, err = _run(capsys, *argv, "--permission", "orders:read")
        assert (code, out) == (2, "")
        assert f"error: argument {flag}: {message}" in err, err
    assert _run(capsys, "tokens", "list", "--config", str(config), "--json")[1] == "[]\n"


def test_rotate_grace_may_be_zero_never_negative(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = _run(
        capsys, "tokens", "create", "--config", str(config), "--store", "acme",
        "--permission", "orders:read",
    )  # fmt: skip
    token_id = out.split()[1]
    code, out, err = _run(capsys, "tokens", "rotate", "--config", str(config), token_id,
                          "--grace", "-1h")  # fmt: skip
    assert (code, out) == (2, "") and '"-1h" is negative: a grace period' in err
    code, out, _ = _run(capsys, "tokens", "rotate", "--config", str(config), token_id,
                        "--grace", "1w")  # fmt: skip
    assert code == 0 and "is accepted until 20" in out


def _cli(config: Path | None, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m proxy ...`` as its own process: real exit status, real stdin."""
    environ = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
    if config is not None:
        environ[CONFIG_ENV] = str(config)
    return subprocess.run(
        [sys.executable, "-m", "proxy", *argv],
        input=stdin,
        env={**environ, **env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_exit_codes_and_secret_stdin_as_a_process(config: Path, tmp_path: Path) -> None:
    created = _cli(config, "tokens", "create", "--store", "acme", "--permission", "orders:read",
                   "--json")  # fmt: skip
    assert created.returncode == 0, created.stderr
    token, token_id = json.loads(created.stdout)["secret"], json.loads(created.stdout)["id"]

    revoked = _cli(config, "tokens", "revoke", "--secret-stdin", stdin=token + "\n")
    assert (revoked.returncode, revoked.stdout) == (0, f"{token_id}\n"), revoked.stderr
    assert token not in revoked.stdout + revoked.stderr
    again = _cli(config, "tokens", "revoke", token_id)
    assert again.returncode == 0 and "already revoked" in again.stdout

    unknown = _cli(config, "tokens", "revoke", "--secret-stdin", stdin=generate_token())
    assert unknown.returncode == 3 and unknown.stdout == ""
    malformed = _cli(config, "tokens", "revoke", "--secret-stdin", stdin=token[:-1] + "x")
    assert malformed.returncode == 2 and token[:-1] not in malformed.stderr
    assert _cli(config, "tokens", "show", "tok_nope").returncode == 3
    assert _cli(config, "accounts", "show", "acct_nope").returncode == 3
    no_config = _cli(None, "tokens", "list")
    assert no_config.returncode == 2 and "MAGENTO_EDGE_CONFIG" in no_config.stderr
    assert _cli(config, "tokens", "create", "--expires-in", "0d").returncode == 2
    (tmp_path / "bad.toml").write_text("[surprise]\n")
    assert _cli(tmp_path / "bad.toml", "check").returncode == 1
    assert _cli(config, "check").returncode == 0
    version = _cli(None, "--version")
    assert version.returncode == 0 and version.stdout.startswith("magento-edge ")


# -- tokens revoke-jwt (SPEC §4.2) ------------------------------------------------------------


def _jti_revoked(config: Path, jti: str) -> bool:
    import asyncio

    from proxy.backends.keystore.sqlite import SQLiteKeyStore

    store = SQLiteKeyStore(config.parent / "edge.db")
    try:
        return asyncio.run(store.jti_revoked(jti))
    finally:
        asyncio.run(store.close())


def test_revoke_jwt_denies_the_jti_for_a_day_by_default(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = time.time()
    code, out, _ = _run(capsys, "tokens", "revoke-jwt", "--config", str(config), "--json", "j-1")
    assert code == 0
    doc = json.loads(out)
    assert (doc["jti"], doc["revoked"]) == ("j-1", True)
    assert before + 86400 <= doc["until"] <= time.time() + 86400
    assert doc["until_iso"].endswith("Z")
    assert _jti_revoked(config, "j-1") and not _jti_revoked(config, "j-2")


def test_revoke_jwt_until_an_epoch(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    until = int(time.time()) + 120
    code, out, _ = _run(
        capsys, "tokens", "revoke-jwt", "--config", str(config), "j-3", "--until", str(until)
    )
    assert code == 0
    assert out.startswith("revoked jti j-3 until ")
    assert _jti_revoked(config, "j-3")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["j", "--until", "yesterday"], "is not a time in epoch seconds"),
        (["j", "--until", "nan"], "is not a usable epoch time"),
        (["j", "--until", "1000"], "is already past"),
        (["  "], "JTI is empty"),
    ],
)
def test_revoke_jwt_usage_errors_exit_2_and_revoke_nothing(
    config: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = _run(capsys, "tokens", "revoke-jwt", "--config", str(config), *argv)
    assert code == 2
    assert message in err
    assert not _jti_revoked(config, "j")
