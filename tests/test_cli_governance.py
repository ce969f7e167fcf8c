"""``magento-edge accounts ...`` and the governance side of ``tokens ...`` (create with an
account or an expiry date, rotate, revoke with a reason, show), run against both key stores
exactly as an operator runs them."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.cli import main, parse_date, parse_grace
from proxy.tokens import generate_token, parse_token
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

    def __call__(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        return run_cli(self.config, *argv, stdin=stdin)

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


def test_revoking_twice_says_so_and_keeps_the_first_reason(cli: Cli) -> None:
    _, token_id = cli.token("--store", "acme", "--permission", "orders:read")
    assert cli.ok("tokens", "revoke", token_id, "--reason", "leaked") == f"revoked {token_id}\n"
    again = cli.ok("tokens", "revoke", token_id, "--reason", "other")
    assert again == f"{token_id} was already revoked; nothing changed (reason kept: leaked)\n"
    shown = cli.json("tokens", "show", token_id)
    assert shown["state"] == "revoked" and shown["revoked_reason"] == "leaked"  # type: ignore[index]
    third = cli.json("tokens", "revoke", token_id, "--json")
    assert third["already_revoked"] is True and third["state"] == "revoked"  # type: ignore[index]
    _, other = cli.token("--store", "acme", "--permission", "orders:read")
    first = cli.json("tokens", "revoke", other, "--json", "--reason", "rotated out")
    assert first["id"] == other and first["already_revoked"] is False  # type: ignore[index]
    assert first["revoked"] is True and first["revoked_reason"] == "rotated out"  # type: ignore[index]


def test_revoke_by_the_secret_on_stdin(cli: Cli) -> None:
    token, token_id = cli.token("--store", "acme", "--permission", "orders:read")
    _, bystander = cli.token("--store", "acme", "--permission", "orders:read")
    code, out, err = cli("tokens", "revoke", "--secret-stdin", stdin=f"{token}\n")
    assert (code, out) == (0, f"{token_id}\n")  # the public id alone, never the secret
    assert err == f"revoked {token_id}\n"
    assert token not in out + err
    states = {t["id"]: t["state"] for t in cli.json("tokens", "list", "--json")}  # type: ignore[attr-defined]
    assert states == {token_id: "revoked", bystander: "active"}
    # The same secret again: already revoked, said on stderr, still exit 0 and the id.
    code, out, err = cli("tokens", "revoke", "--secret-stdin", stdin=token)
    assert (code, out) == (0, f"{token_id}\n") and "already revoked" in err
    # A well-formed token this key store never issued: not found, exit 3.
    stranger = generate_token()
    code, out, err = cli("tokens", "revoke", "--secret-stdin", stdin=stranger)
    assert (code, out) == (3, "") and "no token in this key store matches" in err
    assert stranger not in err


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        ("", "stdin is empty"),
        ("  \n", "stdin is empty"),
        ("soc_pat_live_" + "A" * 36, "does not hold one magento-edge token"),  # bad checksum
        ("hunter2-not-a-token", "does not hold one magento-edge token"),
    ],
)
def test_revoke_secret_stdin_refuses_what_is_not_a_token(
    cli: Cli, stdin: str, message: str
) -> None:
    code, out, err = cli("tokens", "revoke", "--secret-stdin", stdin=stdin)
    assert (code, out) == (2, "")
    assert message in err
    if stdin.strip():
        assert stdin.strip() not in err  # a near-miss secret is still never echoed


def test_revoke_takes_an_id_or_the_secret_not_both(cli: Cli) -> None:
    token, token_id = cli.token("--store", "acme", "--permission", "orders:read")
    for argv in (("tokens", "revoke"), ("tokens", "revoke", token_id, "--secret-stdin")):
        code, out, err = cli(*argv, stdin=token)
        assert (code, out) == (2, "") and "give either TOKEN_ID or --secret-stdin" in err
    assert cli.json("tokens", "show", token_id)["state"] == "active"  # type: ignore[index]


def test_secret_from_a_terminal_is_read_without_echo(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, token_id = cli.token("--store", "acme", "--permission", "orders:read")
    prompts: list[str] = []

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    def getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return token

    monkeypatch.setattr("proxy.admin.getpass.getpass", getpass)
    monkeypatch.setattr("proxy.admin.sys.stdin", Terminal("typed input is not read from here"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(["tokens", "revoke", "--config", str(cli.config), "--secret-stdin"])
    assert (code, out.getvalue()) == (0, f"{token_id}\n")
    assert prompts == ["token to revoke (not echoed): "]


def test_json_output_of_every_data_command(cli: Cli) -> None:
    iso = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
    code, out, err = cli(
        "accounts", "create", "--name", "Partner", "--store", "acme",
        "--permission", "orders:write", "--json",
    )  # fmt: skip
    assert code == 0
    account = json.loads(out)  # stdout is the JSON document alone
    assert re.fullmatch(r"acct_[0-9a-f]{12}", account["id"]) and iso.fullmatch(
        account["created_at"]
    )
    assert account["grants"] == {"acme": ["orders:write"]}
    assert cli.json("accounts", "list", "--json") == [account]
    assert cli.json("accounts", "show", account["id"], "--json")["name"] == "Partner"  # type: ignore[index]
    assert cli.json("accounts", "grant", account["id"], "--store", "oak",
                    "--permission", "orders:read", "--json")["grants"] == {  # type: ignore[index]
        "acme": ["orders:write"], "oak": ["orders:read"],
    }  # fmt: skip

    code, out, err = cli(
        "tokens", "create", "--store", "acme", "--permission", "orders:read",
        "--account", account["id"], "--expires-in", "1w", "--json",
    )  # fmt: skip
    assert code == 0
    created = json.loads(out)
    secret = created["secret"]
    assert parse_token(secret) is not None and TOKEN.fullmatch(secret)
    assert re.fullmatch(r"tok_[0-9a-f]{16}", created["id"])
    assert "shown once" in err and secret not in err
    assert iso.fullmatch(created["created_at"]) and created["last_used_at"] is None
    week = epoch(created["expires_at"]) - epoch(created["created_at"])
    assert 7 * 86400 - 1 <= week <= 7 * 86400 + 1
    shown = cli.json("tokens", "show", created["id"], "--json")
    assert shown == {k: v for k, v in created.items() if k != "secret"}  # the same fields
    assert cli.json("tokens", "list", "--json") == [shown]
    assert cli.ok("tokens", "show", created["id"]) == cli.ok(
        "tokens", "show", created["id"], "--json"
    )

    code, out, err = cli("tokens", "rotate", created["id"], "--grace", "1h", "--json")
    assert code == 0
    rotated = json.loads(out)
    assert rotated["replaces"] == created["id"] and rotated["id"] != created["id"]
    assert TOKEN.fullmatch(rotated["secret"]) and rotated["secret"] != secret
    assert iso.fullmatch(rotated["replaced_until"]) and f"rotated {created['id']}" in err
    old = cli.json("tokens", "show", created["id"])
    assert old["expires_at"] == rotated["replaced_until"]  # type: ignore[index]


def test_tables_have_headers_and_iso_times(cli: Cli) -> None:
    assert cli.ok("tokens", "list").splitlines() == [
        "ID  STATE  NAME  STORES  PERMISSIONS  ACCOUNT  EXPIRES"
    ]
    _, forever = cli.token("--store", "acme", "--store", "oak", "--permission", "orders:read")
    _, dated = cli.token(
        "--store", "acme", "--permission", "orders:write", "--name", "ERP sync",
        "--expires-at", "2099-01-31T18:00:00Z",
    )  # fmt: skip
    header, *rows = cli.ok("tokens", "list").splitlines()
    starts = [header.index(h) for h in ("STATE", "NAME", "STORES", "EXPIRES")]
    for row in rows:  # columns line up under their headers
        assert all(row[i - 2 : i] == "  " and row[i] != " " for i in starts)
    assert rows[0].split() == [forever, "active", "-", "acme,oak", "orders:read", "-", "never"]
    assert rows[1].split("  ")[0] == dated and "ERP sync" in rows[1]
    assert rows[1].endswith("2099-01-31T18:00:00Z")
    account = cli.account()
    assert re.search(rf"^{account}  Partner  -\s+\d{{4}}-\d\d-\d\dT[\d:]+Z$",
                     cli.ok("accounts", "list"), re.M)  # fmt: skip


def test_not_found_is_exit_3(cli: Cli) -> None:
    assert "no token with id tok_nope" in cli.missing("tokens", "show", "tok_nope")
    assert "no token with id tok_nope" in cli.missing("tokens", "revoke", "tok_nope", "--json")


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
