"""``magento-edge``: serve, check, tokens, demo. The commands and flags in SPEC §2 are a
public contract (operators' scripts rely on them): add, never rename.

Every command that creates something prints the new thing's identifier alone on the last
line of stdout, so scripts can take it with ``tail -n 1``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import re
import secrets
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from ._toml import ConfigError
from .config import Config, load_config
from .keystore import KeyStore, TokenRecord, parse_permission
from .tokens import generate_token, hash_token

__all__ = ["main"]

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(f'"{text}" is not a duration like 30d, 12h, 15m or 90s')
    return int(m.group(1)) * _UNITS[m.group(2)]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="magento-edge", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the edge")
    serve.add_argument("--config", required=True)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)

    check = sub.add_parser("check", help="validate config and policies; exit 1 if invalid")
    check.add_argument("--config", required=True)

    demo = sub.add_parser("demo", help="the edge on embedded defaults before a Magento stand-in")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--data-dir", default=".edge-demo")

    tokens = sub.add_parser("tokens", help="create, list and revoke personal access tokens")
    tsub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tsub.add_parser("create", help="create a token; prints it alone on the last line")
    create.add_argument("--config", required=True)
    create.add_argument("--store", action="append", required=True, help="store id (repeat)")
    create.add_argument(
        "--permission", action="append", required=True, help="RESOURCE:read|write (repeat)"
    )
    create.add_argument("--name", default="")
    create.add_argument("--sandbox", action="store_true", help="a soc_pat_test_ token")
    create.add_argument("--account")
    create.add_argument("--tier")
    create.add_argument("--expires-in", type=parse_duration)
    create.add_argument("--allow-ip", action="append", default=[])
    lst = tsub.add_parser("list", help="list tokens (never secrets)")
    lst.add_argument("--config", required=True)
    lst.add_argument("--json", action="store_true")
    show = tsub.add_parser("show", help="one token (never its secret)")
    show.add_argument("--config", required=True)
    show.add_argument("token_id")
    revoke = tsub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("--config", required=True)
    revoke.add_argument("token_id")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            return _check(args.config)
        if args.command == "serve":
            from .server import serve

            serve(args.config, host=args.host, port=args.port)
            return 0
        if args.command == "demo":
            from .demo import run_demo

            run_demo(port=args.port, data_dir=Path(args.data_dir))
            return 0
        if args.command == "tokens":
            return asyncio.run(_tokens(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except _UsageError as exc:
        print(f"magento-edge: {exc}", file=sys.stderr)
        return 2
    return 2


class _UsageError(Exception):
    pass


def _check(path: str) -> int:
    config = load_config(path)
    routes = sum(len(t) for s in config.surfaces for t in s.tables.values())
    print(
        f"{path}: valid ({len(config.surfaces)} policies, {routes} routes, "
        f"{len(config.stores)} stores)"
    )
    return 0


async def _tokens(args: argparse.Namespace) -> int:
    from .server import open_keystore

    config = load_config(args.config)
    store = open_keystore(config)
    try:
        if args.tokens_command == "create":
            return await _create(config, store, args)
        if args.tokens_command == "list":
            records = await store.list()
            if args.json:
                print(json.dumps([r.public() for r in records], indent=2))
            else:
                for r in records:
                    state = "revoked" if r.revoked else "active"
                    perms = ",".join(f"{k}:{v}" for k, v in sorted(r.permissions.items()))
                    print(f"{r.id}\t{state}\t{r.name or '-'}\t{','.join(r.stores)}\t{perms}")
            return 0
        if args.tokens_command == "show":
            record = await store.get(args.token_id)
            if record is None:
                raise _UsageError(f"no token with id {args.token_id}")
            print(json.dumps(record.public(), indent=2))
            return 0
        if args.tokens_command == "revoke":
            if not await store.revoke(args.token_id):
                raise _UsageError(f"no token with id {args.token_id}")
            print(f"revoked {args.token_id}")
            return 0
    finally:
        await store.close()
    return 2


async def _create(config: Config, keystore: KeyStore, args: argparse.Namespace) -> int:
    resources = set().union(*(s.resources for s in config.surfaces)) if config.surfaces else set()
    permissions: dict[str, str] = {}
    for text in args.permission:
        try:
            resource, access = parse_permission(text)
        except ValueError as exc:
            raise _UsageError(str(exc)) from None
        if resource not in resources:
            known = ", ".join(sorted(resources))
            raise _UsageError(f'unknown resource "{resource}" (known: {known})')
        if permissions.get(resource) != "write":
            permissions[resource] = access
    kind: Literal["live", "test"] = "test" if args.sandbox else "live"
    for store_id in args.store:
        s = config.stores.get(store_id)
        if s is None:
            raise _UsageError(f'unknown store "{store_id}" (known: {", ".join(config.stores)})')
        if (s.environment == "sandbox") != (kind == "test"):
            hint = (
                "--sandbox tokens reach only sandbox stores"
                if kind == "test"
                else ("live tokens reach only live stores; use --sandbox for a sandbox store")
            )
            raise _UsageError(f'store "{store_id}" is {s.environment}: {hint}')
    tiers = set().union(*(s.tiers for s in config.surfaces)) if config.surfaces else set()
    if args.tier is not None and args.tier not in tiers:
        raise _UsageError(f'unknown tier "{args.tier}" (known: {", ".join(sorted(tiers))})')
    for cidr in args.allow_ip:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise _UsageError(f'--allow-ip "{cidr}" is not an IP network (CIDR)') from None
    token = generate_token(kind)
    now = time.time()
    record = TokenRecord(
        id="tok_" + secrets.token_hex(8),
        name=args.name,
        kind=kind,
        stores=tuple(dict.fromkeys(args.store)),
        permissions=permissions,  # type: ignore[arg-type]
        account_id=args.account,
        tier=args.tier,
        expires_at=now + args.expires_in if args.expires_in else None,
        allow_ips=tuple(args.allow_ip),
        created_at=now,
    )
    await keystore.create(record, hash_token(token))
    print(f"created {record.id} ({kind}) for {', '.join(record.stores)}: shown once, store it now")
    print(token)
    return 0
