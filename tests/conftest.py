"""Shared fixtures: a real edge on loopback in front of the Magento stand-in and a
control-panel upstream, each a real uvicorn server in its own thread."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from proxy.backends.keystore.base import TokenRecord
from proxy.backends.keystore.cached import CachedKeyStore
from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.config import Config, load_config
from proxy.edge import Edge
from proxy.tokens import generate_token, hash_token
from tests.panel_app import PanelApp
from tests.servers import ThreadServer, free_port, serving

# The idempotency backends' `backend` fixture, shared by the store contract and the step's
# tests in two folders (a fixture a test module imports would look unused to ruff).
pytest_plugins = ["tests.idempotency_backends"]

REPO = Path(__file__).resolve().parent.parent
MAGENTO_TOKEN = "integration-" + "b" * 20
OAUTH = {
    "OAK_CK": "ck" + "1" * 30,
    "OAK_CS": "cs" + "2" * 30,
    "OAK_AT": "at" + "3" * 30,
    "OAK_ATS": "as" + "4" * 30,
}


class Harness:
    """A running edge and its upstreams (not a dataclass: hypothesis would print it all)."""

    def __init__(
        self, url: str, config_path: Path, config: Config, standin: Any, panel: PanelApp, edge: Edge
    ) -> None:
        self.url = url
        self.config_path = config_path
        self.config = config
        self.standin = standin
        self.panel = panel
        self.edge = edge
        self.last_token_id = ""

    def __repr__(self) -> str:
        return f"Harness({self.url})"

    def token(
        self,
        *permissions: str,
        stores: tuple[str, ...] = ("acme",),
        kind: Literal["live", "test"] = "live",
        expires_at: float | None = None,
        name: str = "test",
        tier: str | None = None,
    ) -> str:
        token = generate_token(kind)
        record = TokenRecord(
            id="tok_" + secrets.token_hex(8),
            name=name,
            kind=kind,
            stores=stores,
            permissions={p.split(":")[0]: p.split(":")[1] for p in permissions},  # type: ignore[misc]
            expires_at=expires_at,
            tier=tier,
        )
        store = SQLiteKeyStore(self.config.keystore_path or "")
        asyncio.run(store.create(record, hash_token(token)))
        asyncio.run(store.close())
        self.last_token_id = record.id
        return token

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)


def tiered_policy(directory: Path, tiers: str) -> Path:
    """The shipped v1 policy plus extra ``[ratelimit.tiers.*]`` tables (test tiers)."""
    text = (REPO / "policies" / "storeoncloud.toml").read_text() + "\n" + tiers
    path = directory / "policy.toml"
    path.write_text(text)
    return path


def write_config(
    directory: Path,
    magento: str,
    panel: str | None,
    extra: str = "",
    *,
    policy: Path | Sequence[Path] | None = None,
    ratelimit: str = "",
    panel_read: float = 0.5,
) -> Path:
    panel_block = (
        f'[upstreams.panel]\nurl = "{panel}"\ntimeouts = {{ connect = 1.0, read = {panel_read} }}\n'
        if panel
        else ""
    )
    dead = f"http://127.0.0.1:{free_port()}"
    paths = [policy] if isinstance(policy, Path) else list(policy or [])
    policies = ", ".join(f'"{p}"' for p in paths or [REPO / "policies" / "storeoncloud.toml"])
    text = f"""
[server]
host = "127.0.0.1"
port = 0
policies = [{policies}]

{ratelimit}

[keystore]
backend = "sqlite"
path = "edge.db"

[logging]
access_log = false

[stores.acme]
name = "Acme Outdoor"
environment = "live"
magento_url = "{magento}"
store_code = "default"
credential = {{ kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }}
timeouts = {{ connect = 1.0, read = 5.0 }}

[stores.lab]
name = "Acme Lab"
environment = "sandbox"
magento_url = "{magento}"
store_code = "default"
credential = {{ kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }}

[stores.oak]
name = "Oak (OAuth 1.0a)"
environment = "live"
magento_url = "{magento}"
store_code = "default"
credential = {{ kind = "oauth1", consumer_key_env = "OAK_CK", consumer_secret_env = "OAK_CS", access_token_env = "OAK_AT", access_token_secret_env = "OAK_ATS" }}

[stores.gone]
name = "Nothing listens here"
environment = "live"
magento_url = "{dead}"
credential = {{ kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }}
timeouts = {{ connect = 1.0, read = 1.0 }}

{panel_block}
{extra.replace("{MAGENTO_URL}", magento)}
"""
    path = directory / "config.toml"
    path.write_text(text)
    return path


def env() -> dict[str, str]:
    return {"ACME_MAGENTO_TOKEN": MAGENTO_TOKEN, **OAUTH}


@contextmanager
def running_edge(
    directory: Path,
    *,
    panel: bool = True,
    extra: str = "",
    policy: Path | Sequence[Path] | None = None,
    ratelimit: str = "",
    cache_clock: Callable[[], float] | None = None,
    clock: Callable[[], float] = time.time,
) -> Iterator[Harness]:
    """``cache_clock``: the clock of the edge's key-store lookup cache, for tests that
    drive its TTL (revocation seen after it) instead of sleeping through it. ``clock``:
    the edge's wall clock (version dates, token expiry)."""
    from magento_standin import create_standin

    standin = create_standin(
        bearer_tokens=[MAGENTO_TOKEN],
        oauth1=[(OAUTH["OAK_CK"], OAUTH["OAK_CS"], OAUTH["OAK_AT"], OAUTH["OAK_ATS"])],
    )
    panel_app = PanelApp()
    with ExitStack() as stack:
        magento = stack.enter_context(serving(standin))
        panel_srv = stack.enter_context(serving(panel_app)) if panel else None
        path = write_config(
            directory,
            magento.url,
            panel_srv.url if panel_srv else None,
            extra,
            policy=policy,
            ratelimit=ratelimit,
        )
        config = load_config(path, env=env())
        edge_app = Edge.from_config(config, SQLiteKeyStore(config.keystore_path or ""), clock=clock)
        if cache_clock is not None:
            # Edge wraps its store in a CachedKeyStore on the monotonic clock; swap in one on
            # the same store with the test's clock before the edge serves anything.
            edge_app.keystore = CachedKeyStore(edge_app.keystore.store, clock=cache_clock)
        server = stack.enter_context(serving(edge_app))
        yield Harness(server.url, path, config, standin, panel_app, edge_app)


@pytest.fixture(scope="session")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with running_edge(tmp_path_factory.mktemp("edge")) as h:
        yield h


class FakeClock:
    """A clock a test advances by hand (``clock.now += seconds``)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until true (bounded); for effects seen from another thread."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


__all__ = ["FakeClock", "Harness", "ThreadServer", "running_edge", "wait_for"]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server for the whole session; tests use distinct key prefixes or
    FLUSHDB as they need."""
    from tests.redis_server import redis_server

    with redis_server() as url:
        yield url
