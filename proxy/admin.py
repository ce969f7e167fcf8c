"""What ``magento-edge tokens ...`` and ``magento-edge accounts ...`` do to the key store
(:mod:`proxy.cli` parses the flags). Every rule a token must obey is checked here, before
anything is written: known stores and resources, live tokens on live stores only, and never
more than the token's account has (per store, ``write`` ⊇ ``read``).

Output: anything created is printed alone on the last line of stdout (a token, an account
id); JSON views never hold a secret or a hash.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import secrets
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Literal

from .config import Config
from .keystore import AccountRecord, Grants, KeyStore, TokenRecord, parse_permission
from .policy import Access
from .tokens import generate_token, hash_token

__all__ = ["UsageError", "accounts_command", "tokens_command"]


class UsageError(Exception):
    """A refused command: printed as ``magento-edge: ...``, exit status 2."""


def _iso(when: float | None) -> str:
    if when is None:
        return "never"
    return datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _state(record: TokenRecord, now: float) -> str:
    if record.revoked:
        return "revoked"
    if record.expires_at is not None and record.expires_at <= now:
        return "rotated" if record.replaced_by else "expired"
    if record.replaced_by:
        return "grace"  # rotated; still accepted until its grace period ends
    return "active"


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


# -- tokens -----------------------------------------------------------------------------------


async def tokens_command(config: Config, store: KeyStore, args: argparse.Namespace) -> int:
    command = args.tokens_command
    if command == "create":
        return await _create(config, store, args)
    if command == "rotate":
        return await _rotate(store, args)
    if command == "list":
        now = time.time()
        records = await store.list()
        if args.json:
            print(json.dumps([{**r.public(), "state": _state(r, now)} for r in records], indent=2))
        else:
            for r in records:
                perms = ",".join(f"{k}:{v}" for k, v in sorted(r.permissions.items()))
                print(
                    f"{r.id}\t{_state(r, now)}\t{r.name or '-'}\t{','.join(r.stores)}\t{perms}"
                    f"\t{r.account_id or '-'}"
                )
        return 0
    if command == "show":
        record = await store.get(args.token_id)
        if record is None:
            raise UsageError(f"no token with id {args.token_id}")
        print(json.dumps({**record.public(), "state": _state(record, time.time())}, indent=2))
        return 0
    if command == "revoke":
        if not await store.revoke(args.token_id, reason=args.reason or None):
            raise UsageError(f"no token with id {args.token_id}")
        print(f"revoked {args.token_id}")
        return 0
    raise UsageError(f"unknown command tokens {command}")  # pragma: no cover - argparse


async def _create(config: Config, store: KeyStore, args: argparse.Namespace) -> int:
    permissions = _permissions(config, args.permission)
    kind: Literal["live", "test"] = "test" if args.sandbox else "live"
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
    if args.account is not None:
        account = await store.get_account(args.account)
        if account is None:
            raise UsageError(f'unknown account "{args.account}"')
        _within(account, stores, permissions)
    tiers = set().union(*(s.tiers for s in config.surfaces)) if config.surfaces else set()
    if args.tier is not None and args.tier not in tiers:
        raise UsageError(f'unknown tier "{args.tier}" (known: {", ".join(sorted(tiers))})')
    for cidr in args.allow_ip:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise UsageError(f'--allow-ip "{cidr}" is not an IP network (CIDR)') from None
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
    print(f"created {record.id} ({kind}) for {', '.join(record.stores)}: shown once, store it now")
    print(token)
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
    old = await store.get(args.token_id)
    if old is None:
        raise UsageError(f"no token with id {args.token_id}")
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
    print(f"rotated {old.id} into {new.id}; {old.id} is accepted {until}")
    print(f"created {new.id} ({new.kind}) for {', '.join(new.stores)}: shown once, store it now")
    print(token)
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
        print(f"created account {new.id} ({new.name})")
        print(new.id)
        return 0
    if command == "list":
        accounts = await store.list_accounts()
        if args.json:
            print(json.dumps([a.public() for a in accounts], indent=2))
        else:
            for a in accounts:
                stores = ",".join(sorted(a.grants)) or "-"
                print(f"{a.id}\t{a.name}\t{stores}")
        return 0
    account = await store.get_account(args.account_id)
    if account is None:
        raise UsageError(f'unknown account "{args.account_id}"')
    if command == "show":
        tokens = [t for t in await store.list() if t.account_id == account.id]
        now = time.time()
        view = {
            **account.public(),
            "tokens": [{"id": t.id, "name": t.name, "state": _state(t, now)} for t in tokens],
        }
        print(json.dumps(view, indent=2))
        return 0
    if command == "grant":
        grants = _add(account.grants, config, args.store, args.permission)
    else:  # revoke
        grants = _remove(account.grants, config, args.store, args.permission)
    await store.set_account_grants(account.id, grants)
    print(json.dumps(replace(account, grants=grants).public(), indent=2))
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
