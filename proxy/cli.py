"""``magento-edge``: serve, check, tokens, accounts, demo. The commands and flags in SPEC §2
are a public contract (operators' scripts rely on them): add, never rename.

Every command that creates something prints the new thing's identifier alone on the last
line of stdout, so scripts can take it with ``tail -n 1``. This module is the parser; the
key-store commands themselves are in :mod:`proxy.admin`.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from ._toml import ConfigError
from .admin import UsageError, accounts_command, tokens_command
from .config import load_config, unresolved_hosts
from .errors import KeyStoreUnavailable

__all__ = ["main"]

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(f'"{text}" is not a duration like 30d, 12h, 15m or 90s')
    return int(m.group(1)) * _UNITS[m.group(2)]


def parse_grace(text: str) -> int:
    """A duration that may be zero: ``0`` (the old token stops at once), ``90s``, ``1h``."""
    if text.strip() == "0":
        return 0
    m = _DURATION.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f'"{text}" is not a grace period like 0, 15m or 1h')
    return int(m.group(1)) * _UNITS[m.group(2)]


def parse_date(text: str) -> float:
    """``2026-01-31`` (00:00 UTC that day) or an ISO 8601 time (``2026-01-31T18:00:00Z``,
    an offset, or no zone for UTC) → epoch seconds."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'"{text}" is not a date like 2026-01-31 or 2026-01-31T18:00:00Z'
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


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

    tokens = sub.add_parser("tokens", help="create, list, show, rotate and revoke tokens")
    tsub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tsub.add_parser("create", help="create a token; prints it alone on the last line")
    create.add_argument("--config", required=True)
    create.add_argument("--store", action="append", required=True, help="store id (repeat)")
    create.add_argument(
        "--permission", action="append", required=True, help="RESOURCE:read|write (repeat)"
    )
    create.add_argument("--name", default="")
    create.add_argument("--sandbox", action="store_true", help="a soc_pat_test_ token")
    create.add_argument("--account", help="owner account id (its grants cap the token)")
    create.add_argument("--tier")
    expiry = create.add_mutually_exclusive_group()
    expiry.add_argument("--expires-in", type=parse_duration, help="30d, 12h, 15m, 90s")
    expiry.add_argument("--expires-at", type=parse_date, help="2026-01-31[T18:00:00Z]")
    create.add_argument("--allow-ip", action="append", default=[], help="CIDR (repeat)")
    lst = tsub.add_parser("list", help="list tokens (never secrets)")
    lst.add_argument("--config", required=True)
    lst.add_argument("--json", action="store_true")
    show = tsub.add_parser("show", help="one token (never its secret)")
    show.add_argument("--config", required=True)
    show.add_argument("token_id")
    revoke = tsub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("--config", required=True)
    revoke.add_argument("token_id")
    revoke.add_argument("--reason", help="recorded and shown by tokens show")
    rotate = tsub.add_parser(
        "rotate", help="a new secret, same grants; prints the new token alone on the last line"
    )
    rotate.add_argument("--config", required=True)
    rotate.add_argument("token_id")
    rotate.add_argument(
        "--grace", type=parse_grace, default=0, help="how long the old token keeps working (0)"
    )
    rexpiry = rotate.add_mutually_exclusive_group()
    rexpiry.add_argument("--expires-in", type=parse_duration, help="default: the old expiry")
    rexpiry.add_argument("--expires-at", type=parse_date)

    accounts = sub.add_parser("accounts", help="accounts: owners of tokens and their ceilings")
    asub = accounts.add_subparsers(dest="accounts_command", required=True)
    acreate = asub.add_parser("create", help="create an account; prints its id on the last line")
    acreate.add_argument("--config", required=True)
    acreate.add_argument("--name", required=True)
    acreate.add_argument("--store", action="append", default=[], help="store id (repeat)")
    acreate.add_argument(
        "--permission", action="append", default=[], help="RESOURCE:read|write (repeat)"
    )
    grant = asub.add_parser("grant", help="add permissions on stores to an account")
    grant.add_argument("--config", required=True)
    grant.add_argument("account_id")
    grant.add_argument("--store", action="append", required=True)
    grant.add_argument("--permission", action="append", required=True)
    arevoke = asub.add_parser(
        "revoke", help="take permissions back (all of them, without --store/--permission)"
    )
    arevoke.add_argument("--config", required=True)
    arevoke.add_argument("account_id")
    arevoke.add_argument("--store", action="append", default=[])
    arevoke.add_argument("--permission", action="append", default=[])
    alist = asub.add_parser("list", help="list accounts")
    alist.add_argument("--config", required=True)
    alist.add_argument("--json", action="store_true")
    ashow = asub.add_parser("show", help="one account, its grants and its tokens")
    ashow.add_argument("--config", required=True)
    ashow.add_argument("account_id")
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
        if args.command in ("tokens", "accounts"):
            return asyncio.run(_keystore_command(args))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"magento-edge: {exc}", file=sys.stderr)
        return 2
    except KeyStoreUnavailable as exc:
        print(f"magento-edge: {exc.detail}", file=sys.stderr)
        return 1
    return 2


async def _keystore_command(args: argparse.Namespace) -> int:
    from .server import open_keystore

    # Managing tokens never talks to Magento: its credentials need not be in this shell.
    config = load_config(args.config, secrets=False)
    store = open_keystore(config)
    try:
        if args.command == "tokens":
            return await tokens_command(config, store, args)
        return await accounts_command(config, store, args)
    finally:
        await store.close()


def _check(path: str) -> int:
    config = load_config(path)
    if unresolved := unresolved_hosts(config):
        raise ConfigError(unresolved)
    routes = sum(len(t) for s in config.surfaces for t in s.tables.values())
    print(
        f"{path}: valid ({len(config.surfaces)} policies, {routes} routes, "
        f"{len(config.stores)} stores)"
    )
    return 0
