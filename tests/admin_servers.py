"""An edge served as ``magento-edge serve`` serves it: the API server and the admin listener
in one event loop (:class:`proxy.admin_listener.ServerWithAdmin`), in a test thread."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from proxy.admin_listener import ServerWithAdmin, admin_app
from proxy.backends.keystore.base import TokenRecord
from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.config import load_config
from proxy.edge import Edge
from proxy.server import uvicorn_config
from proxy.tokens import generate_token, hash_token
from tests.conftest import MAGENTO_TOKEN, REPO, wait_for
from tests.servers import ThreadServer, free_port, serving

__all__ = ["AdminEdge", "admin_edge"]


class AdminEdge:
    def __init__(self, server: ThreadServer, admin_port: int, edge: Edge, path: Path) -> None:
        self.url = server.url
        self.admin_url = f"http://127.0.0.1:{admin_port}"
        self.edge = edge
        self.path = path
        self.server = server

    def token(self, *permissions: str) -> str:
        token = generate_token("live")
        record = TokenRecord(
            id="tok_" + secrets.token_hex(8), name="t", kind="live", stores=("acme",),
            permissions={p.split(":")[0]: p.split(":")[1] for p in permissions},  # type: ignore[misc]
        )  # fmt: skip
        store = SQLiteKeyStore(self.path.parent / "edge.db")
        asyncio.run(store.create(record, hash_token(token)))
        asyncio.run(store.close())
        return token


@contextmanager
def admin_edge(
    directory: Path,
    *,
    magento_token: str = MAGENTO_TOKEN,
    backends: str = "",
    interval: float = 0.2,
) -> Iterator[AdminEdge]:
    """One store (``acme``) in front of the Magento stand-in, which accepts only
    :data:`MAGENTO_TOKEN`; ``backends``: extra TOML (e.g. Redis rate limits)."""
    from magento_standin import create_standin

    standin = create_standin(bearer_tokens=[MAGENTO_TOKEN])
    with ExitStack() as stack:
        magento = stack.enter_context(serving(standin))
        admin_port = free_port()
        path = directory / "config.toml"
        path.write_text(f"""
[server]
port = 0
policies = ["{REPO / "policies" / "storeoncloud.toml"}"]
[keystore]
backend = "sqlite"
path = "edge.db"
[logging]
access_log = false
[admin]
port = {admin_port}
probe_interval_seconds = {interval}
probe_timeout_seconds = 2
{backends}
[stores.acme]
magento_url = "{magento.url}"
credential = {{ kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }}
""")
        config = load_config(path, env={"ACME_MAGENTO_TOKEN": magento_token})
        edge = Edge.from_config(config, SQLiteKeyStore(config.keystore_path or ""))
        thread = ThreadServer(edge)
        admin: Any = uvicorn_config(
            admin_app(edge, edge.readiness), "127.0.0.1", admin_port, log_level="warning"
        )
        thread.server = ServerWithAdmin(thread.server.config, admin)
        thread.start()
        stack.callback(thread.stop)
        # The admin listener starts beside the API server: wait for it too.
        assert isinstance(thread.server, ServerWithAdmin)
        follower: uvicorn.Server = thread.server.admin
        assert wait_for(lambda: follower.started, 10), "the admin listener did not start"
        yield AdminEdge(thread, admin_port, edge, path)
