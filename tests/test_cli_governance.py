"""``magento-edge accounts ...`` and the governance side of ``tokens ...`` (create with an
account or an expiry date, rotate, revoke with a reason, show), run against both key stores
exactly as an operator runs them."""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.cli import parse_date, parse_grace
from proxy.tokens import parse_token
from tests.governance import (
    BACKENDS,
    epoch,
    governed_config,
    governed_edge,
    run_cli,
    wait_until,
)

TOKEN = re.compile(r"soc_pat_(live|test)_[0-9A-Za-z]{36}")


class Cli:
    def __init__(self, config: Path) -> None:
        self.config = config

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        return run_cli(self.config, *argv)

    def ok(self, *argv: str) -> str:
        code, out, err = self(*argv)
        assert code == 0, (argv, out, err)
        return out

    def json(self, *argv: str) -> object:
        return json.loads(self.ok(*argv))

    def refused(self, *argv: str) -> str:
        code, out, err = self(*argv)
        assert code == 2, (argv, out, err)
        assert not TOKEN.search(out)
        return err

    def missing(self, *argv: str) -> str:
        """A command on an id that does not exist: exit 3, a message, nothing on stdout."""
        code, out, err = self(*argv)
        assert code == 3, (argv, out, err)
        assert out == ""
        return err

    def account(self, *args: str) -> str:
        return self.ok("accounts", "create", "--name", "Partner", *args).strip().splitlines()[-1]

    def token(self, *args: str) -> tuple[str, str]:
        lines = self.ok("tokens", "create", *args).strip().splitlines()
        return lines[-1], lines[-2].split()[1]


@pytest.fixture(params=BACKENDS)
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    yield Cli(governed_config(tmp_path, "http://127.0.0.1:9", request.param, redis_url))


# -- accounts -------------------------------------------------------------------------------------


def test_accounts_create_list_show(cli: Cli) -> None:
    out = cli.ok(
        "accounts", "create", "--name", "Partner Ltd", "--store", "acme", "--store", "lab",
        "--permission", "orders:write", "--permission", "products:read",
    )  # fmt: skip
    account = out.strip().splitlines()[-1]
    assert re.fullmatch(r"acct_[0-9a-f]{12}", account)
    empty = cli.account()
    listed = cli.json("accounts", "list", "--json")
    assert [a["id"] for a in listed] == [account, empty]  # type: ignore[index]
    assert listed[0]["grants"] == {  # type: ignore[index]
        "acme": ["orders:write", "products:read"],
        "lab": ["orders:write", "products:read"],
    }
    header, *rows = cli.ok("accounts", "list").splitlines()
    assert header.split() == ["ID", "NAME", "STORES", "CREATED"]
    assert rows[0].startswith(f"{account}  Partner Ltd  acme,lab  20")
    assert rows[1].split()[:3] == [empty, "Partner", "-"]
    token, token_id = cli.token(
        "--store", "acme", "--permission", "orders:read", "--account", account
    )
    shown = cli.json("accounts", "show", account)
    assert shown["tokens"] == [{"id": token_id, "name": "", "state": "active"}]  # type: ignore[index]
    assert token not in json.dumps(shown)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "acme"], "--store and --permission go together"),
        (["--permission", "orders:read"], "--store and --permission go together"),
        (["--store", "nope", "--permission", "orders:read"], 'unknown store "nope"'),
        (["--store", "acme", "--permission", "order:read"], 'unknown resource "order"'),
        (["--store", "acme", "--permission", "orders:all"], "must be RESOURCE:read"),
    ],
)
def test_accounts_create_refuses_bad_input(cli: Cli, args: list[str], message: str) -> None:
    assert message in cli.refused("accounts", "create", "--name", "x", *args)
    assert cli.json("accounts", "list", "--json") == []


def test_accounts_grant_and_revoke(cli: Cli) -> None:
    account = cli.account("--store", "acme", "--permission", "orders:read")

    def grants() -> object:
        return cli.json("accounts", "show", account)["grants"]  # type: ignore[index]

    cli.ok("accounts", "grant", account, "--store", "acme", "--store", "oak",
           "--permission", "orders:write", "--permission", "products:read")  # fmt: skip
    assert grants() == {
        "acme": ["orders:write", "products:read"],
        "oak": ["orders:write", "products:read"],
    }
    # Granting read where write is held keeps write.
    cli.ok("accounts", "grant", account, "--store", "acme", "--permission", "orders:read")
    assert grants()["acme"] == ["orders:write", "products:read"]  # type: ignore[index]
    # R:write leaves R:read; R:read takes R; on the listed stores only.
    cli.ok("accounts", "revoke", account, "--store", "oak", "--permission", "orders:write")
    assert grants()["oak"] == ["orders:read", "products:read"]  # type: ignore[index]
    cli.ok("accounts", "revoke", account, "--store", "oak", "--permission", "products:read")
    assert grants()["oak"] == ["orders:read"]  # type: ignore[index]
    # No --store: every store the account has.
    cli.ok("accounts", "revoke", account, "--permission", "orders:read")
    assert grants() == {"acme": ["products:read"]}  # oak became empty: gone
    cli.ok("accounts", "grant", account, "--store", "oak", "--permission", "orders:read")
    cli.ok("accounts", "revoke", account, "--store", "acme")
    assert grants() == {"oak": ["orders:read"]}
    cli.ok("accounts", "revoke", account)
    assert grants() == {}


def test_accounts_commands_on_unknown_accounts(cli: Cli) -> None:
    for argv in (
        ("accounts", "show", "acct_nope"),
        ("accounts", "grant", "acct_nope", "--store", "acme", "--permission", "orders:read"),
        ("accounts", "revoke", "acct_nope"),
    ):
        assert 'unknown account "acct_nope"' in cli.missing(*argv)
    account = cli.account()
    assert 'unknown store "nope"' in cli.refused("accounts", "revoke", account, "--store", "nope")


# -- tokens with an account -------------------------------------------------------------------------


def test_token_never_exceeds_its_account(cli: Cli) -> None:
    account = cli.account(
        "--store", "acme", "--store", "oak", "--permission", "orders:read",
        "--permission", "products:write",
    )  # fmt: skip
    assert 'unknown account "acct_nope"' in cli.missing(
        "tokens", "create", "--account", "acct_nope", "--store", "acme",
        "--permission", "orders:read",
    )  # fmt: skip
    refusals = [
        (["--account", account, "--store", "gone", "--permission", "orders:read"],
         f'account {account} has no grants on store "gone"'),
        (["--account", account, "--store", "acme", "--permission", "orders:write"],
         f'account {account} does not grant orders:write on store "acme" (it has orders:read)'),
        (["--account", account, "--store", "acme", "--permission", "customers:read"],
         f'account {account} does not grant customers:read on store "acme": a token never'),
    ]  # fmt: skip
    for args, message in refusals:
        assert message in cli.refused("tokens", "create", *args)
    assert cli.json("tokens", "list", "--json") == []
    token, token_id = cli.token(
        "--account", account, "--store", "acme", "--store", "oak",
        "--permission", "orders:read", "--permission", "products:write",
        "--permission", "products:read",
    )  # fmt: skip
    shown = cli.json("tokens", "show", token_id)
    assert shown["account"] == account  # type: ignore[index]
    assert shown["permissions"] == ["orders:read", "products:write"]  # type: ignore[index]
    assert parse_token(token) is not None


# -- expiry -------------------------------------------------------------------------------------------


def test_expires_at(cli: Cli) -> None:
    _, token_id = cli.token(
        "--store", "acme", "--permission", "orders:read", "--expires-at", "2099-01-31T18:00:00Z"
    )
    shown = cli.json("tokens", "show", token_id)
    assert shown["expires_at"] == "2099-01-31T18:00:00Z"  # type: ignore[index]
    assert shown["state"] == "active"  # type: ignore[index]
    _, day = cli.token(
        "--store", "acme", "--permission", "orders:read", "--expires-at", "2099-02-01"
    )
    assert cli.json("tokens", "show", day)["expires_at"] == "2099-02-01T00:00:00Z"  # type: ignore[index]
    assert "is not in the future" in cli.refused(
        "tokens", "create", "--store", "acme", "--permission", "orders:read",
        "--expires-at", "2001-01-01",
    )  # fmt: skip
    both = cli.refused(
        "tokens", "create", "--store", "acme", "--permission", "orders:read",
        "--expires-at", "2099-01-01", "--expires-in", "1d",
    )  # fmt: skip
    assert "not allowed with argument" in both


def test_parse_date_and_grace() -> None:
    assert parse_date("2099-01-31T18:00:00Z") == 4073565600.0
    assert parse_date("2099-01-31T20:00:00+02:00") == 4073565600.0
    assert parse_date("2099-01-31T18:00:00") == 4073565600.0  # no zone: UTC
    assert parse_date("2099-01-31") == 4073500800.0
    for bad in ("tomorrow", "31/01/2099", "", "2099-13-01"):
        with pytest.raises(argparse.ArgumentTypeError, match="is not a date"):
            parse_date(bad)
    assert parse_grace("0") == 0
    assert parse_grace("0s") == 0
    assert parse_grace("90s") == 90
    assert parse_grace("1h") == 3600
    assert parse_grace("1w") == 7 * 86400
    for bad in ("", "-1h", "1.5h", "h", "1y"):
        with pytest.raises(argparse.ArgumentTypeError, match="grace period"):
            parse_grace(bad)


# -- rotation and revocation --------------------------------------------------------------------------


def test_rotate_keeps_grants_and_gives_the_old_token_a_grace(cli: Cli) -> None:
    account = cli.account("--store", "acme", "--permission", "orders:write")
    old_token, old_id = cli.token(
        "--store", "acme", "--permission", "orders:write", "--account", account,
        "--tier", "internal", "--allow-ip", "10.0.0.0/8", "--name", "erp",
        "--expires-in", "30d",
    )  # fmt: skip
    old_before = cli.json("tokens", "show", old_id)
    started = time.time()
    out = cli.ok("tokens", "rotate", old_id, "--grace", "1h")
    lines = out.strip().splitlines()
    new_token = lines[-1]
    assert TOKEN.fullmatch(new_token) and new_token != old_token
    assert old_token not in out
    new_id = re.search(r"into (tok_[0-9a-f]+)", out).group(1)  # type: ignore[union-attr]
    assert new_id != old_id  # a new id: logs tell which secret was used during the grace
    old, new = cli.json("tokens", "show", old_id), cli.json("tokens", "show", new_id)
    same = ("name", "kind", "stores", "permissions", "account", "tier", "allow_ips")
    assert {k: new[k] for k in same} == {k: old_before[k] for k in same}  # type: ignore[index]
    assert new["expires_at"] == old_before["expires_at"]  # type: ignore[index]  # not extended
    assert old["replaced_by"] == new_id and old["state"] == "grace"  # type: ignore[index]
    # ISO 8601 to the second: the grace ends within the second of the rotation.
    assert int(started) + 3600 <= epoch(old["expires_at"]) <= time.time() + 3600  # type: ignore[index]
    assert new["state"] == "active" and new["replaced_by"] is None  # type: ignore[index]
    # Once rotated, rotate the new one instead.
    assert f"already rotated into {new_id}" in cli.refused("tokens", "rotate", old_id)
    # --expires-in sets the new token's lifetime; --grace 0 ends the old one now.
    out = cli.ok("tokens", "rotate", new_id, "--grace", "0", "--expires-in", "1d")
    newer = re.search(r"into (tok_[0-9a-f]+)", out).group(1)  # type: ignore[union-attr]
    assert "is accepted now" in out
    assert cli.json("tokens", "show", new_id)["state"] == "rotated"  # type: ignore[index]
    newer_expiry = epoch(cli.json("tokens", "show", newer)["expires_at"])  # type: ignore[index]
    assert int(started) + 86400 <= newer_expiry <= time.time() + 86400
    assert "is rotated: create a new token" in cli.refused("tokens", "rotate", new_id)
    assert "no token with id tok_nope" in cli.missing("tokens", "rotate", "tok_nope")


def test_revoke_with_a_reason_and_states_in_list(cli: Cli) -> None:
    _, a = cli.token("--store", "acme", "--permission", "orders:read")
    _, b = cli.token("--store", "acme", "--permission", "orders:read")
    assert cli.ok("tokens", "revoke", a, "--reason", "contractor left").strip() == f"revoked {a}"
    shown = cli.json("tokens", "show", a)
    assert shown["revoked"] is True and shown["revoked_reason"] == "contractor left"  # type: ignore[index]
    assert shown["state"] == "revoked"  # type: ignore[index]
    assert "is revoked: create a new token" in cli.refused("tokens", "rotate", a)
    listed = {t["id"]: t["state"] for t in cli.json("tokens", "list", "--json")}  # type: ignore[attr-defined]
    assert listed == {a: "revoked", b: "active"}
    header, *rows = cli.ok("tokens", "list").splitlines()
    assert header.split() == ["ID", "STATE", "NAME", "STORES", "PERMISSIONS", "ACCOUNT", "EXPIRES"]
    assert [row.split()[:2] for row in rows] == [[a, "revoked"], [b, "active"]]
    assert "no token with id tok_nope" in cli.missing("tokens", "revoke", "tok_nope")


def test_unreachable_redis_is_exit_1_with_a_message(tmp_path: Path) -> None:
    from tests.servers import free_port

    config = governed_config(
        tmp_path, "http://127.0.0.1:9", "redis", f"redis://127.0.0.1:{free_port()}/0"
    )
    code, _, err = run_cli(config, "tokens", "list")
    assert code == 1
    assert "key store cannot be reached" in err and "Traceback" not in err


# -- rotation over HTTP -------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_rotation_over_http(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
    with governed_edge(tmp_path, backend, redis_url) as edge:
        old, old_id = edge.token("products:read")
        assert edge.get("/api/v1/stores", old).status_code == 200
        out = edge.ok("tokens", "rotate", old_id, "--grace", "1h")
        new, new_id = out.strip().splitlines()[-1], re.search(r"into (tok_\w+)", out).group(1)  # type: ignore[union-attr]
        # During the grace both work (the old one through the cache and after it).
        time.sleep(0.1)  # past the cache TTL: the old record now carries its grace expiry
        assert edge.get("/api/v1/stores", old).status_code == 200
        assert edge.get("/api/v1/stores", new).status_code == 200
        edge.ok("tokens", "rotate", new_id, "--grace", "0")
        assert wait_until(lambda: edge.get("/api/v1/stores", new).status_code == 401)
        r = edge.get("/api/v1/stores", new)
        assert "rotated and its grace period has ended" in r.json()["detail"]
        assert edge.get("/api/v1/stores", old).status_code == 200  # its own grace still runs


@pytest.mark.parametrize("backend", BACKENDS)
def test_last_used_is_tracked_without_a_write_per_request(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    redis_url = request.getfixturevalue("redis_url") if backend == "redis" else None
    with governed_edge(tmp_path, backend, redis_url) as edge:
        token, token_id = edge.token("products:read")
        before = time.time()
        for _ in range(5):
            assert edge.get("/api/v1/stores", token).status_code == 200
        after = time.time()
        shown = json.loads(edge.ok("tokens", "show", token_id))
        assert shown["last_used_at"] is None  # kept in memory, not written per request
        edge.flush()  # what the background task does every 60 s (and at shutdown)
        shown = json.loads(edge.ok("tokens", "show", token_id))
        assert int(before) <= epoch(shown["last_used_at"]) <= after
