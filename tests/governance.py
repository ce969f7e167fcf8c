"""Helpers for the token-governance tests: a real edge on either key store (SQLite file or
the session's redis-server) in front of the Magento stand-in, driven through the real CLI
(``proxy.cli.main``, in process) exactly as an operator drives it."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest

from proxy.backends.keystore import open_keystore
from proxy.backends.keystore.cached import CachedKeyStore
from proxy.cli import main
from proxy.config import Config, load_config
from proxy.edge import Edge
from tests.conftest import MAGENTO_TOKEN, OAUTH, env, write_config
from tests.servers import ThreadServer, serving

BACKENDS = ["sqlite", pytest.param("redis", marks=pytest.mark.redis)]
SQLITE_KEYSTORE = '[keystore]\nbackend = "sqlite"\npath = "edge.db"\n'


def keystore_block(backend: str, redis_url: str | None) -> str:
    if backend == "sqlite":
        return SQLITE_KEYSTORE
    # A fresh prefix per edge: the session's redis-server is shared, never flushed.
    return (
        f'[keystore]\nbackend = "redis"\nurl = "{redis_url}"\n'
        f'prefix = "test:{secrets.token_hex(6)}:"\n'
    )


def governed_config(
    directory: Path,
    magento: str,
    backend: str,
    redis_url: str | None = None,
    *,
    server: str = "",
    extra: str = "",
) -> Path:
    """``tests.conftest.write_config`` with the chosen key store and ``server`` keys added."""
    path = write_config(directory, magento, None, extra)
    text = path.read_text()
    assert SQLITE_KEYSTORE in text
    text = text.replace(SQLITE_KEYSTORE, keystore_block(backend, redis_url))
    if server:
        text = text.replace("port = 0\n", f"port = 0\n{server}\n", 1)
    path.write_text(text)
    return path


def epoch(iso: str) -> float:
    """A time the CLI printed (ISO 8601, ``Z``) as epoch seconds."""
    return datetime.fromisoformat(iso).timestamp()


def run_cli(config: Path, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    """``magento-edge GROUP COMMAND --config CONFIG ARGS...`` in process, ``stdin`` piped in."""
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.dict(os.environ, env()),
        mock.patch("sys.stdin", io.StringIO(stdin)),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = main([*argv[:2], "--config", str(config), *argv[2:]])
    return code, out.getvalue(), err.getvalue()


class GovernedEdge:
    """A running edge, its config, and the CLI against its key store."""

    def __init__(self, server: ThreadServer, config_path: Path, config: Config, edge: Edge) -> None:
        self.server = server
        self.url = server.url
        self.config_path = config_path
        self.config = config
        self.edge = edge

    def __repr__(self) -> str:
        return f"GovernedEdge({self.url})"

    def cli(self, *argv: str) -> tuple[int, str, str]:
        return run_cli(self.config_path, *argv)

    def flush(self) -> None:
        """Run the edge's last-used flush now, on the server's own loop."""
        import asyncio

        assert self.server.loop is not None
        asyncio.run_coroutine_threadsafe(self.edge.keystore.flush(), self.server.loop).result(10)

    def ok(self, *argv: str) -> str:
        code, out, err = self.cli(*argv)
        assert code == 0, (argv, out, err)
        return out

    def account(self, *grants: str, stores: tuple[str, ...] = ("acme",)) -> str:
        args = [a for s in stores for a in ("--store", s)]
        args += [a for g in grants for a in ("--permission", g)]
        return self.ok("accounts", "create", "--name", "Partner", *args).strip().splitlines()[-1]

    def token(
        self, *permissions: str, stores: tuple[str, ...] = ("acme",), extra: tuple[str, ...] = ()
    ) -> tuple[str, str]:
        """(token, token id) made by ``tokens create`` (tier internal: never rate limited)."""
        args = [a for s in stores for a in ("--store", s)]
        args += [a for p in permissions for a in ("--permission", p)]
        out = self.ok("tokens", "create", "--tier", "internal", *args, *extra)
        lines = out.strip().splitlines()
        return lines[-1], lines[-2].split()[1]

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.get(self.url + path, headers=headers, timeout=10, **kwargs)


@contextlib.contextmanager
def governed_edge(
    directory: Path,
    backend: str,
    redis_url: str | None = None,
    *,
    server: str = "",
    extra: str = "",
    cache_ttl: float = 0.05,
) -> Iterator[GovernedEdge]:
    """``cache_ttl``: the lookup cache's TTL. Short by default so functional tests do not
    wait out the production 1 s bound; tests/test_revocation_bound.py measures that bound on
    real ``serve`` processes with the shipped TTL."""
    from magento_standin import create_standin

    standin = create_standin(
        bearer_tokens=[MAGENTO_TOKEN],
        oauth1=[(OAUTH["OAK_CK"], OAUTH["OAK_CS"], OAUTH["OAK_AT"], OAUTH["OAK_ATS"])],
    )
    with serving(standin) as magento:
        path = governed_config(
            directory, magento.url, backend, redis_url, server=server, extra=extra
        )
        config = load_config(path, env=env())
        edge = Edge.from_config(config, open_keystore(config))
        edge.keystore = CachedKeyStore(edge.keystore.store, ttl=cache_ttl)
        with serving(edge) as srv:
            yield GovernedEdge(srv, path, config, edge)


def wait_until(predicate: Any, timeout: float = 3.0) -> bool:
    """Poll (bounded) for an effect that the 1 s cache bound lets through eventually."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())
