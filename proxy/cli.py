"""``magento-edge``: serve, check, tokens, accounts, demo. The commands and flags in SPEC §2
are a public contract (operators' scripts rely on them): add, never rename.

Every command that creates something prints the new thing's identifier alone on the last
line of stdout, so scripts can take it with ``tail -n 1``; with ``--json`` it prints one JSON
document instead. Exit status: 0 ok, 1 invalid config or a failed backend, 2 usage error,
3 not found. This module is the parser; the key-store commands are in :mod:`proxy.admin`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import __version__
from ._toml import ConfigError
from .admin import (
    REVOKE_JWT_DEFAULT_SECONDS,
    NotFound,
    UsageError,
    accounts_command,
    tokens_command,
)
from .config import load_config, unresolved_hosts
from .errors import KeyStoreUnavailable

__all__ = ["CONFIG_ENV", "main"]

CONFIG_ENV = "MAGENTO_EDGE_CONFIG"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND = 0, 1, 2, 3

_DURATION = re.compile(r"(-?\d+)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LIKE = "like 30d, 2w, 12h, 15m or 90s"
# Beyond this an expiry is no expiry (and epoch arithmetic stops being a date): omit the flag.
_MAX_SECONDS = 100 * 365 * 86400
# Flags whose value may look like a negative number: argparse would take "-1d" for a flag
# and say only "expected one argument", so main() glues them into "--flag=-1d" and the
# parser below can say what is wrong with the value.
_SIGNED_FLAGS = ("--expires-in", "--grace")

_EPILOG = f"""\
--config defaults to ${CONFIG_ENV} on every command that takes it.
exit status: 0 ok; 1 invalid config or a failed backend (key store unreachable);
2 usage error (bad flag or value, or a change the token's state does not allow);
3 not found (unknown token id, unknown account, no token matches the secret)."""


def _seconds(text: str, what: str) -> int:
    m = _DURATION.fullmatch(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f'"{text}" is not a {what} {_LIKE}')
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds < 0:
        raise argparse.ArgumentTypeError(
            f'"{text}" is negative: a {what} is a number and a unit, {_LIKE}'
        )
    if seconds > _MAX_SECONDS:
        raise argparse.ArgumentTypeError(f'"{text}" is longer than 100 years')
    return seconds


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f'"{text}" is not a whole number of at least 1')
    return value


def parse_duration(text: str) -> int:
    """``30d``, ``2w``, ``12h``, ``15m``, ``90s`` → seconds (more than zero)."""
    seconds = _seconds(text, "duration")
    if seconds == 0:
        raise argparse.ArgumentTypeError(
            f'"{text}" is not a usable duration: it must be more than zero, {_LIKE} '
            "(to stop a token now, use tokens revoke)"
        )
    return seconds


def parse_epoch(text: str) -> float:
    """``1767225600`` (or with a fraction) → epoch seconds."""
    try:
        when = float(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'"{text}" is not a time in epoch seconds like 1767225600'
        ) from None
    if not 0 < when < 2**40:  # NaN and inf fail this too
        raise argparse.ArgumentTypeError(f'"{text}" is not a usable epoch time')
    return when


def parse_grace(text: str) -> int:
    """A duration that may be zero: ``0`` (the old token stops at once), ``90s``, ``1h``."""
    if text.strip() == "0":
        return 0
    return _seconds(text, "grace period")


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


class _Help(argparse.HelpFormatter):
    """Shows each flag's default after its help where there is a value to show (a switch:
    off); a flag without one says in its own help what leaving it out means."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or not action.option_strings:
            return text
        if action.nargs == 0 and action.default is False:  # store_true
            return f"{text} (default: off)"
        if action.default in (None, [], argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """Every subcommand's parser: its flags' help shows their defaults."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(**kwargs)


def _command(
    sub: argparse._SubParsersAction[_Parser], name: str, text: str
) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=text, description=text)


def _config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH", help=f"config.toml (default: ${CONFIG_ENV})")
    p.set_defaults(usage=p)  # the parser that reports a missing --config


def _expiry_flags(p: argparse.ArgumentParser, expires_in: str, expires_at: str) -> None:
    """``--expires-in DURATION`` or ``--expires-at DATE``, not both."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--expires-in", type=parse_duration, metavar="DURATION", help=expires_in)
    group.add_argument("--expires-at", type=parse_date, metavar="DATE", help=expires_at)


def _grant_flags(
    p: argparse.ArgumentParser, *, stores: str | None = None, permissions: str | None = None
) -> None:
    """``--store ID`` and ``--permission R:A``, both repeatable; required unless the
    command says what leaving them out means."""
    p.add_argument(
        "--store", action="append", required=stores is None, default=[], metavar="ID",
        help=f"store id (repeat{'; ' + stores if stores else ''})",
    )  # fmt: skip
    p.add_argument(
        "--permission", action="append", required=permissions is None, default=[],
        metavar="R:A",
        help=f"RESOURCE:read|write (repeat{'; ' + permissions if permissions else ''})",
    )  # fmt: skip


def _json(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--json", action="store_true", help=what)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="magento-edge",
        description="An API edge in front of Magento 2: serve, check, tokens, accounts, demo.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    serve = _command(sub, "serve", "run the edge")
    _config(serve)
    serve.add_argument("--host", help="listen address (default: [server] host)")
    serve.add_argument("--port", type=int, help="listen port (default: [server] port)")
    serve.add_argument(  # issue #12
        "--admin-port", type=int, help="admin listener port (default: [admin] port)"
    )
    # issue #12: workers (proxy.workers) and reload (proxy.lifecycle)
    serve.add_argument(
        "--workers", type=_positive, help="processes on the port (default: [server] workers)"
    )
    serve.add_argument(
        "--fd",
        type=int,
        help="serve on this inherited listening socket (the workers' supervisor passes it; "
        "default: bind [server] host and port)",
    )
    serve.add_argument(
        "--admin-fd",
        type=int,
        help="serve the admin listener on this inherited socket (the workers' supervisor "
        "passes it; default: bind [admin] host and port)",
    )
    reload = _command(sub, "reload", "make the running edge reload config and policies")
    _config(reload)

    check = sub.add_parser("check", help="validate config and policies; exit 1 if invalid")
    _config(check)
    check.add_argument(
        "--probe",
        action="store_true",
        help="also send one signed read to each store's Magento and report whether it "
        "accepts the credential (exit 1 if any store does not)",
    )
    _json(check, "print the result (and each store's probe) as one JSON document")

    demo = _command(sub, "demo", "the edge on embedded defaults before a Magento stand-in")
    demo.add_argument("--port", type=int, default=8080, help="the edge's port")
    demo.add_argument("--data-dir", default=".edge-demo", help="where the demo keeps its files")

    tokens = _command(sub, "tokens", "create, list, show, rotate and revoke tokens")
    tsub = tokens.add_subparsers(
        dest="tokens_command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    create = _command(tsub, "create", "create a token; prints it alone on the last line")
    _config(create)
    _grant_flags(create)
    create.add_argument("--name", default="", help="a label for people (default: none)")
    create.add_argument(
        "--sandbox", action="store_true", help="a soc_pat_test_ token (default: live)"
    )
    create.add_argument(
        "--account", metavar="ID",
        help="owner account id; its grants cap the token (default: none, the operator's own)",
    )  # fmt: skip
    create.add_argument("--tier", help="rate-limit tier of the policy (default: its default)")
    _expiry_flags(
        create,
        "30d, 2w, 12h, 15m, 90s (default: never expires)",
        "2026-01-31[T18:00:00Z] (default: never expires)",
    )
    create.add_argument(
        "--allow-ip", action="append", default=[], metavar="CIDR",
        help="only from these networks (repeat; default: any address)",
    )  # fmt: skip
    _json(create, "print the new token's id, secret and fields as JSON")
    lst = _command(tsub, "list", "list tokens (never secrets)")
    _config(lst)
    _json(lst, "JSON instead of a table")
    show = _command(tsub, "show", "one token as JSON (never its secret)")
    _config(show)
    show.add_argument("token_id", metavar="TOKEN_ID")
    _json(show, "accepted for symmetry: show always prints JSON")
    revoke = _command(
        tsub, "revoke", "revoke a token by id, or by its secret on stdin (never echoed)"
    )
    _config(revoke)
    revoke.add_argument("token_id", metavar="TOKEN_ID", nargs="?", help="the token's public id")
    revoke.add_argument(
        "--secret-stdin", action="store_true",
        help="read the token itself from stdin instead of TOKEN_ID",
    )  # fmt: skip
    revoke.add_argument("--reason", help="recorded and shown by tokens show (default: none)")
    _json(revoke, "print the outcome as JSON")
    rotate = _command(
        tsub, "rotate", "a new secret, same grants; prints the new token alone on the last line"
    )
    _config(rotate)
    rotate.add_argument("token_id", metavar="TOKEN_ID")
    rotate.add_argument(
        "--grace", type=parse_grace, default=0, metavar="DURATION",
        help="how long the old token keeps working: 0, 90s, 1h, 1w",
    )  # fmt: skip
    _expiry_flags(
        rotate,
        "the new token's lifetime (default: the old token's expiry)",
        "the new token's expiry (default: the old token's expiry)",
    )
    _json(rotate, "print the new token's id, secret and fields as JSON")
    revoke_jwt = _command(
        tsub, "revoke-jwt", "deny a JWT access token by its jti claim, on every replica within 1 s"
    )
    _config(revoke_jwt)
    revoke_jwt.add_argument("jti", metavar="JTI", help="the token's jti claim")
    revoke_jwt.add_argument(
        "--until", type=parse_epoch, metavar="EPOCH",
        help="deny until this time (epoch seconds), when the token expires anyway "
        f"(default: now + {REVOKE_JWT_DEFAULT_SECONDS // 3600} h, longer than any access "
        "token the issuer should mint)",
    )  # fmt: skip
    _json(revoke_jwt, "print the outcome as JSON")

    # explain (#12): the edge's decision for one request, nothing sent (proxy.explain)
    explain = _command(
        sub, "explain", "how the edge would decide a request (surface, route, target, token, "
        "limits), without sending it",
    )  # fmt: skip
    _config(explain)
    explain.add_argument("method", metavar="METHOD", help="GET, POST, ...")
    explain.add_argument(
        "url", metavar="URL",
        help="the request's URL (its host picks the surface, as Host does) or a path",
    )  # fmt: skip
    explain.add_argument(
        "--token", help="the bearer token to judge; never printed (default: none sent)"
    )
    explain.add_argument(
        "--client", default="127.0.0.1", metavar="ADDR",
        help="the client address a token's --allow-ip is judged against",
    )  # fmt: skip
    _json(explain, "print the explanation as one JSON document")

    accounts = _command(sub, "accounts", "accounts: owners of tokens and their ceilings")
    asub = accounts.add_subparsers(
        dest="accounts_command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    acreate = _command(asub, "create", "create an account; prints its id on the last line")
    _config(acreate)
    acreate.add_argument("--name", required=True, help="a label for people")
    _grant_flags(
        acreate,
        stores="default: none, no grants yet",
        permissions="on each --store; default: none",
    )
    _json(acreate, "print the new account as JSON")
    grant = _command(asub, "grant", "add permissions on stores to an account")
    _config(grant)
    grant.add_argument("account_id", metavar="ACCOUNT_ID")
    _grant_flags(grant)
    _json(grant, "accepted for symmetry: grant always prints the account as JSON")
    arevoke = _command(
        asub, "revoke", "take permissions back (all of them, without --store/--permission)"
    )
    _config(arevoke)
    arevoke.add_argument("account_id", metavar="ACCOUNT_ID")
    _grant_flags(
        arevoke,
        stores="default: every store the account has",
        permissions="default: every permission on those stores",
    )
    _json(arevoke, "accepted for symmetry: revoke always prints the account as JSON")
    alist = _command(asub, "list", "list accounts")
    _config(alist)
    _json(alist, "JSON instead of a table")
    ashow = _command(asub, "show", "one account as JSON: its grants and its tokens")
    _config(ashow)
    ashow.add_argument("account_id", metavar="ACCOUNT_ID")
    _json(ashow, "accepted for symmetry: show always prints JSON")
    # routes scan (issue #16): a Magento install's routes no policy covers (proxy.routes_scan)
    routes = _command(sub, "routes", "a Magento install's REST routes against the policies")
    rsub = routes.add_subparsers(
        dest="routes_command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    rscan = _command(
        rsub,
        "scan",
        "list the routes of MAGENTO_ROOT's etc/webapi.xml files (app/code, vendor) that no "
        "loaded policy maps or denies, and print a policy fragment for them (deny by default)",
    )
    _config(rscan)
    rscan.add_argument("magento_root", metavar="MAGENTO_ROOT", help="the Magento install")
    return p


def _glue_signed(argv: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _SIGNED_FLAGS and i + 1 < len(argv) and re.match(r"-\d", argv[i + 1]):
            out.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        if arg == "--":
            return out + argv[i:]
        out.append(arg)
        i += 1
    return out


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, and take ``--config`` from ``$MAGENTO_EDGE_CONFIG`` when it is not given.
    Usage errors print the command's usage and raise ``SystemExit(2)``."""
    args = _parser().parse_args(_glue_signed(list(sys.argv[1:] if argv is None else argv)))
    if hasattr(args, "config") and not args.config:
        args.config = os.environ.get(CONFIG_ENV) or None
        if args.config is None:
            args.usage.error(f"--config is required (or set {CONFIG_ENV})")
    revoke = args.command == "tokens" and args.tokens_command == "revoke"
    if revoke and (args.token_id is None) == (not args.secret_stdin):
        args.usage.error("give either TOKEN_ID or --secret-stdin (the token on stdin)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parse(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        if args.command == "check":
            return _check(args.config, probe=args.probe, as_json=args.json)
        if args.command == "serve":
            from .server import serve

            return serve(
                args.config,
                host=args.host,
                port=args.port,
                workers=args.workers,
                fd=args.fd,
                admin_port=args.admin_port,
                admin_fd=args.admin_fd,
            )
        if args.command == "reload":  # issue #12: SIGHUP to the running edge
            from .lifecycle import signal_reload

            try:
                pid = signal_reload(args.config)
            except LookupError as exc:
                print(f"magento-edge: {exc}", file=sys.stderr)
                return EXIT_FAILED
            print(f"sent SIGHUP to pid {pid}: its log says whether the reload was applied")
            return EXIT_OK
        if args.command == "demo":
            from .demo import run_demo

            run_demo(port=args.port, data_dir=Path(args.data_dir))
            return EXIT_OK
        if args.command in ("tokens", "accounts"):
            return asyncio.run(_keystore_command(args))
        if args.command == "explain":
            return asyncio.run(_explain(args))
        if args.command == "routes":  # issue #16
            return _routes_scan(args.config, Path(args.magento_root))
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_FAILED
    except UsageError as exc:
        print(f"magento-edge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NotFound as exc:
        print(f"magento-edge: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except KeyStoreUnavailable as exc:
        # The operator's own terminal: the cause (address, file) is theirs to see.
        cause = f" ({exc.__cause__})" if exc.__cause__ is not None else ""
        print(f"magento-edge: {exc.detail}{cause}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_USAGE  # pragma: no cover - argparse requires a known command


async def _keystore_command(args: argparse.Namespace) -> int:
    from .backends.keystore import open_keystore

    # Managing tokens never talks to Magento: its credentials need not be in this shell.
    config = load_config(args.config, secrets=False)
    store = open_keystore(config)
    try:
        if args.command == "tokens":
            return await tokens_command(config, store, args)
        return await accounts_command(config, store, args)
    finally:
        await store.close()


async def _explain(args: argparse.Namespace) -> int:
    """Exit 0 when the request is explained, whatever the verdict (the verdict is the
    output); 1 on a bad config or an unreachable key store."""
    from .backends.keystore import open_keystore
    from .explain import explain

    # Nothing is sent to Magento: its credentials need not be in this shell.
    config = load_config(args.config, secrets=False)
    store = open_keystore(config) if args.token is not None else None
    try:
        result = await explain(
            config, args.method, args.url, args.token, keystore=store, client=args.client
        )
    finally:
        if store is not None:
            await store.close()
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print("\n".join(result.lines()))
    return EXIT_OK


def _routes_scan(path: str, root: Path) -> int:
    """Exit 0 when scanned (the fragment is the output, whatever it says); 1 on a bad
    config, a root without app/code or vendor, or a webapi.xml that cannot be read."""
    from .routes_scan import render, scan

    config = load_config(path, secrets=False)  # nothing is sent anywhere
    if not (root / "app" / "code").is_dir() and not (root / "vendor").is_dir():
        print(f"magento-edge: {root} has neither app/code nor vendor", file=sys.stderr)
        return EXIT_FAILED
    result = scan(config, root)
    print(render(result, root), end="")
    return EXIT_FAILED if result.problems else EXIT_OK


def _check(path: str, *, probe: bool = False, as_json: bool = False) -> int:
    config = load_config(path)
    if unresolved := unresolved_hosts(config):
        raise ConfigError(unresolved)
    routes = sum(len(t) for s in config.surfaces for t in s.tables.values())
    summary: dict[str, object] = {
        "config": path,
        "valid": True,
        "policies": len(config.surfaces),
        "routes": routes,
        "stores": len(config.stores),
    }
    if not as_json:
        print(
            f"{path}: valid ({len(config.surfaces)} policies, {routes} routes, "
            f"{len(config.stores)} stores)"
        )
    ok = True
    if probe:
        from .probe import probe_config

        results = asyncio.run(probe_config(config))
        ok = all(r.ok for r in results.values())
        summary["probe"] = [r.as_dict() for r in results.values()]
        if not as_json:
            for result in results.values():
                verdict = "ok" if result.ok else "FAILED"
                print(f"store {result.store}: {verdict}: {result.verdict}")
                for warning in result.warnings:
                    print(f"store {result.store}: warning: {warning}")
        # issue #13: the key store and the Redis backends too
        from .probe import probe_backends

        backends = asyncio.run(probe_backends(config))
        ok = ok and all(b.ok for b in backends)
        summary["backends"] = [b.as_dict() for b in backends]
        if not as_json:
            for b in backends:
                print(f"{b.backend} ({b.kind}): {'ok' if b.ok else 'FAILED'}: {b.verdict}")
                for warning in b.warnings:
                    print(f"{b.backend} ({b.kind}): warning: {warning}")
    if as_json:
        print(json.dumps(summary, indent=2))
    return EXIT_OK if ok else EXIT_FAILED
