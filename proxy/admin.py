"""What ``magento-edge tokens ...`` and ``magento-edge accounts ...`` do to the key store
(:mod:`proxy.cli` parses the flags). Every rule a token must obey is checked here, before
anything is written: known stores and resources, live tokens on live stores only, and never
more than the token's account has (per store, ``write`` ⊇ ``read``).

Output: anything created is printed alone on the last line of stdout (a token, an account
id), or as one JSON document with ``--json`` (a new token's ``secret`` is the only secret
ever printed, and only there). Lists are tables with a header row, or JSON with ``--json``;
single records are JSON. Times are ISO 8601 UTC (``2026-01-31T18:00:00Z``; ``null`` or
``never`` when unset). Views never hold a hash, and revoking never prints a secret.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import json
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from .backends.keystore.base import AccountRecord, Grants, KeyStore, TokenRecord
from .config import Config
from .grants import parse_permission
from .tokens import generate_token, hash_token, parse_token
from .types import Access, TokenKind

__all__ = [
    "REVOKE_JWT_DEFAULT_SECONDS",
    "NotFound",
    "UsageError",
    "accounts_command",
    "tokens_command",
]

# A token is 49 characters; reading more than this from stdin only finds garbage.
_STDIN_LIMIT = 4096
# revoke-jwt without --until: longer than an access token lives (RFC 9068 tokens are
# minutes to hours), so the jti is denied until the token has expired anyway.
REVOKE_JWT_DEFAULT_SECONDS = 24 * 3600


class UsageError(Exception):
    """A refused command: printed as ``magento-edge: ...``, exit status 2."""


class NotFound(Exception):
    """A token or account that does not exist: printed as ``magento-edge: ...``, exit 3."""


def _iso(when: float | None) -> str:
    if when is None:
        return "never"
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _iso_or_null(when: float | None) -> str | None:
    return None if when is None else _iso(when)


def _state(record: TokenRecord, now: float) -> str:
    if record.revoked:
        return "revoked"
    if record.expires_at is not None and record.expires_at <= now:
        return "rotated" if record.replaced_by else "expired"
    if record.replaced_by:
        return "grace"  # rotated; still accepted until its grace period ends
    return "active"


def _token_view(record: TokenRecord, now: float) -> dict[str, object]:
    return {
        **record.public(),
        "state": _state(record, now),
        "expires_at": _iso_or_null(record.expires_at),
        "created_at": _iso(record.created_at),
        "last_used_at": _iso_or_null(record.last_used_at),
    }


def _account_view(account: AccountRecord) -> dict[str, object]:
    return {**account.public(), "created_at": _iso(account.created_at)}


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2))


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns padded to their widest cell; an empty cell is ``-`` so every column stays."""
    cells = [list(headers), *[[c or "-" for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _permissions(config: Config, texts: list[str]) -> dict[str, Access]:
    resources = set().union(*(s.resources for s in config.surfaces)) if config.surfaces else set()
    permissions: dict[str, Access] = {}
    for text in texts:
        try:
            resource, access = parse_permission(text)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if resource not in resources:
            known = ", ".join(sorted(resources))
            raise UsageError(f'unknown resource "{resource}" (known: {known})')
        if permissions.get(resource) != "write":
            permissions[resource] = access
    return permissions


def _known_store(config: Config, store_id: str) -> None:
    if store_id not in config.stores:
        raise UsageError(f'unknown store "{store_id}" (known: {", ".join(config.stores)})')


def _future(when: float | None, now: float) -> float | None:
    if when is not None and when <= now:
        raise UsageError(f"the expiry {_iso(when)} is not in the future")
    return when


async def _token(store: KeyStore, token_id: str) -> TokenRecord:
    record = await store.get(token_id)
    if record is None:
        raise NotFound(f"no token with id {token_id}")
    return record


async def _account(store: KeyStore, account_id: str) -> AccountRecord:
    account = await store.get_account(account_id)
    if account is None:
        raise NotFound(f'unknown account "{account_id}"')
    return account


# -- tokens -----------------------------------------------------------------------------------


async def tokens_command(config: Config, store: KeyStore, args: argparse.Namespace) -> int:
    command = args.tokens_command
    if command == "create":
        return await _create(config, store, args)
    if command == "rotate":
        return await _rotate(store, args)
    if command == "revoke":
        return await _revoke(store, args)
    if command == "revoke-jwt":
        return await _revoke_jwt(store, args)
    now = time.time()
    if command == "list":
        records = await store.list()
        if args.json:
            _print_json([_token_view(r, now) for r in records])
        else:
            _print_table(
                ("ID", "STATE", "NAME", "STORES", "PERMISSIONS", "ACCOUNT", "EXPIRES"),
                [
                    (
                        r.id,
                        _state(r, now),
                        r.name,
                        ",".join(r.stores),
                        ",".join(f"{k}:{v}" for k, v in sorted(r.permissions.items())),
                        r.account_id or "",
                        _iso(r.expires_at),
                    )
                    for r in records
                ],
            )
        return 0
    if command == "show":
        _print_json(_token_view(await _token(store, args.token_id), now))
        return 0
    raise UsageError(f"unknown command tokens {command}")  # pragma: no cover - argparse


async def _revoke_jwt(store: KeyStore, args: argparse.Namespace) -> int:
    jti: str = args.jti
    if not jti.strip():
        raise UsageError("JTI is empty: give the token's jti claim")
    now = time.time()
    until: float = args.until if args.until is not None else now + REVOKE_JWT_DEFAULT_SECONDS
    if until <= now:
        raise UsageError(
            f"--until {until:g} is already past: a token with that expiry is refused anyway; "
            "nothing was revoked"
        )
    await store.revoke_jti(jti, until)
    if args.json:
        _print_json({"jti": jti, "revoked": True, "until": until, "until_iso": _iso(until)})
    else:
        print(f"revoked jti {jti} until {_iso(until)} (every replica within 1 s)")
    return 0


def _read_secret() -> str:
    """The token to revoke, from stdin: never from argv (it would sit in shell history and
    in ``ps``), and never echoed, not even in an error."""
    if sys.stdin is None:
        raise UsageError("--secret-stdin: there is no stdin to read the token from")
    if sys.stdin.isatty():
        return getpass.getpass("token to revoke (not echoed): ").strip()
    return sys.stdin.read(_STDIN_LIMIT).strip()


async def _revoke(store: KeyStore, args: argparse.Namespace) -> int:
    if args.secret_stdin:
        secret = _read_secret()
        if not secret:
            raise UsageError("--secret-stdin: stdin is empty; pipe the token in")
        parsed = parse_token(secret)
        if parsed is None:
            raise UsageError(
                "--secret-stdin: stdin does not hold one magento-edge token (soc_pat_live_ "
                "or soc_pat_test_ with a valid checksum); nothing was revoked"
            )
        found = await store.lookup(parsed.hash)
        if found is None:
            raise NotFound("no token in this key store matches the secret on stdin")
        record = found
    else:
        record = await _token(store, args.token_id)
    already = record.revoked
    if not already and not await store.revoke(record.id, reason=args.reason or None):
        raise NotFound(f"no token with id {record.id}")  # deleted in between
    if already:
        kept = f" (reason kept: {record.revoked_reason})" if record.revoked_reason else ""
        message = f"{record.id} was already revoked; nothing changed{kept}"
    else:
        message = f"revoked {record.id}"
    if args.json:
        after = await store.get(record.id) or record.revoked_copy(args.reason or None)
        _print_json({**_token_view(after, time.time()), "already_revoked": already})
    elif args.secret_stdin:
        # stdout: the public id alone (what a script holding a leaked token needs to log).
        print(message, file=sys.stderr)
        print(record.id)
    else:
        print(message)
    return 0


def _print_new(record: TokenRecord, token: str, args: argparse.Namespace, **extra: object) -> None:
    """A new token: JSON with its ``secret``, or a note and the token alone on the last line."""
    note = f"created {record.id} ({record.kind}) for {', '.join(record.stores)}: shown once"
    if args.json:
        print(f"{note}: the secret is in the JSON on stdout", file=sys.stderr)
        view = {"id": record.id, "secret": token, **_token_view(record, time.time()), **extra}
        _print_json(view)
    else:
        print(f"{note}, store it now")
        print(token)


async def _create(config: Config, store: KeyStore, args: argparse.Namespace) -> int:
    permissions = _permissions(config, args.permission)
    kind: TokenKind = "test" if args.sandbox else "live"
    for store_id in args.store:
        _known_store(config, store_id)
        s = config.stores[store_id]
        if (s.environment == "sandbox") != (kind == "test"):
            hint = (
                "--sandbox tokens reach only sandbox stores"
                if kind == "test"
                else "live tokens reach only live stores; use --sandbox for a sandbox store"
            )
            raise UsageError(f'store "{store_id}" is {s.environment}: {hint}')
    stores = tuple(dict.fromkeys(args.store))
    tiers = set().union(*(s.tiers for s in config.surfaces)) if config.surfaces else set()
    if args.tier is not None and args.tier not in tiers:
        raise UsageError(f'unknown tier "{args.tier}" (known: {", ".join(sorted(tiers))})')
    for cidr in args.allow_ip:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise UsageError(f'--allow-ip "{cidr}" is not an IP network (CIDR)') from None
    if args.account is not None:
        _within(await _account(store, args.account), stores, permissions)
    now = time.time()
    expires_at = now + args.expires_in if args.expires_in else _future(args.expires_at, now)
    token = generate_token(kind)
    record = TokenRecord(
        id="tok_" + secrets.token_hex(8),
        name=args.name,
        kind=kind,
        stores=stores,
        permissions=permissions,
        account_id=args.account,
        tier=args.tier,
        expires_at=expires_at,
        allow_ips=tuple(args.allow_ip),
        created_at=now,
    )
    await store.create(record, hash_token(token))
    _print_new(record, token, args)
    return 0


def _within(
    account: AccountRecord, stores: tuple[str, ...], permissions: dict[str, Access]
) -> None:
    """Refuse a token that would hold more than ``account`` has on any of its stores."""
    for store_id in stores:
        ceiling = account.grants.get(store_id)
        if not ceiling:
            raise UsageError(f'account {account.id} has no grants on store "{store_id}"')
        for resource, access in permissions.items():
            cap = ceiling.get(resource)
            if cap is None or (access == "write" and cap == "read"):
                held = f" (it has {resource}:{cap})" if cap else ""
                raise UsageError(
                    f"account {account.id} does not grant {resource}:{access} on store "
                    f'"{store_id}"{held}: a token never holds more than its account'
                )


async def _rotate(store: KeyStore, args: argparse.Namespace) -> int:
    old = await _token(store, args.token_id)
    now = time.time()
    state = _state(old, now)
    if state in ("revoked", "expired", "rotated"):
        raise UsageError(f"token {old.id} is {state}: create a new token instead")
    if old.replaced_by:
        raise UsageError(f"token {old.id} was already rotated into {old.replaced_by}")
    if args.expires_in:
        expires_at: float | None = now + args.expires_in
    elif args.expires_at is not None:
        expires_at = _future(args.expires_at, now)
    else:
        expires_at = old.expires_at
    token = generate_token(old.kind)
    new = replace(
        old,
        id="tok_" + secrets.token_hex(8),
        expires_at=expires_at,
        created_at=now,
        last_used_at=None,
        revoked=False,
        revoked_reason=None,
        replaced_by=None,
    )
    # The new token exists before the old one is cut short: a failure in between leaves
    # two working tokens, never none.
    await store.create(new, hash_token(token))
    await store.retire(old.id, expires_at=now + args.grace, replaced_by=new.id)
    until = "now" if args.grace == 0 else f"until {_iso(now + args.grace)}"
    note = sys.stderr if args.json else sys.stdout  # with --json, stdout is the JSON alone
    print(f"rotated {old.id} into {new.id}; {old.id} is accepted {until}", file=note)
    _print_new(new, token, args, replaces=old.id, replaced_until=_iso(now + args.grace))
    return 0


# -- accounts ---------------------------------------------------------------------------------


async def accounts_command(config: Config, store: KeyStore, args: argparse.Namespace) -> int:
    command = args.accounts_command
    if command == "create":
        if bool(args.store) != bool(args.permission):
            raise UsageError("--store and --permission go together (each store, each permission)")
        grants = _add({}, config, args.store, args.permission)
        new = AccountRecord(
            id="acct_" + secrets.token_hex(6), name=args.name, grants=grants, created_at=time.time()
        )
        await store.create_account(new)
        if args.json:
            _print_json(_account_view(new))
        else:
            print(f"created account {new.id} ({new.name})")
            print(new.id)
        return 0
    if command == "list":
        accounts = await store.list_accounts()
        if args.json:
            _print_json([_account_view(a) for a in accounts])
        else:
            _print_table(
                ("ID", "NAME", "STORES", "CREATED"),
                [(a.id, a.name, ",".join(sorted(a.grants)), _iso(a.created_at)) for a in accounts],
            )
        return 0
    account = await _account(store, args.account_id)
    if command == "show":
        tokens = [t for t in await store.list() if t.account_id == account.id]
        now = time.time()
        view = {
            **_account_view(account),
            "tokens": [{"id": t.id, "name": t.name, "state": _state(t, now)} for t in tokens],
        }
        _print_json(view)
        return 0
    if command == "grant":
        grants = _add(account.grants, config, args.store, args.permission)
    else:  # revoke
        grants = _remove(account.grants, config, args.store, args.permission)
    await store.set_account_grants(account.id, grants)
    _print_json(_account_view(replace(account, grants=grants)))
    return 0


def _add(
    grants: Grants, config: Config, stores: list[str], texts: list[str]
) -> dict[str, dict[str, Access]]:
    out = {s: dict(p) for s, p in grants.items()}
    permissions = _permissions(config, texts)
    for store_id in stores:
        _known_store(config, store_id)
        held = out.setdefault(store_id, {})
        for resource, access in permissions.items():
            if held.get(resource) != "write":
                held[resource] = access
    return out


def _remove(
    grants: Grants, config: Config, stores: list[str], texts: list[str]
) -> dict[str, dict[str, Access]]:
    """Take back ``texts`` on ``stores``: ``R:write`` leaves ``R:read``, ``R:read`` takes
    ``R`` entirely (write implies read). No permissions: the whole store; no stores: every
    store the account has."""
    for store_id in stores:
        _known_store(config, store_id)
    targets = stores or list(grants)
    if not texts:
        return {s: dict(p) for s, p in grants.items() if s not in targets}
    permissions = _permissions(config, texts)
    out: dict[str, dict[str, Access]] = {}
    for store_id, held in grants.items():
        kept = dict(held)
        if store_id in targets:
            for resource, access in permissions.items():
                if access == "read":
                    kept.pop(resource, None)
                elif kept.get(resource) == "write":
                    kept[resource] = "read"
        if kept:
            out[store_id] = kept
    return out
