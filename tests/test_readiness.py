"""Readiness verdicts: starting, failing checks with their reasons, bounded probes, drain;
and the JWKS key set's own probe (fetched, stale, never fetched)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.config import load_config
from proxy.edge import Edge
from proxy.jwt_auth import KeySet
from proxy.readiness import Readiness
from tests.conftest import REPO, env
from tests.servers import serving
from tests.test_jwt_auth import RSA_KEY, Clock, JWKSApp, jwk


def _edge(tmp_path: Path, magento: str) -> Edge:
    path = tmp_path / "config.toml"
    path.write_text(f"""
[server]
policies = ["{REPO / "policies" / "storeoncloud.toml"}"]
[admin]
probe_timeout_seconds = 0.3
[stores.acme]
magento_url = "{magento}"
credential = {{ kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }}
""")
    config = load_config(path, env=env())
    return Edge.from_config(config, SQLiteKeyStore(tmp_path / "edge.db"))


def test_not_ready_until_probed_then_every_failing_check_says_why(tmp_path: Path) -> None:
    with socket.socket() as s:  # accepts connections (the kernel's backlog), never answers
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        edge = _edge(tmp_path, f"http://127.0.0.1:{s.getsockname()[1]}")
        readiness = edge.readiness
        ready, body = readiness.verdict()
        assert not ready
        assert body["reason"] == "starting: the first probe round has not finished"

        async def round_() -> None:
            try:
                await asyncio.wait_for(readiness.probe_once(), 5)  # bounded by 0.3 s each
            finally:
                await readiness.stop()

        asyncio.run(round_())
        ready, body = readiness.verdict()
        assert not ready
        assert body["checks"]["store:acme"] == "no answer within 0.3 s"
        assert body["checks"]["keystore"] == "ok"
        assert body["reason"] == "store:acme: no answer within 0.3 s"


def test_a_drain_wins_over_passing_checks(tmp_path: Path) -> None:
    edge = _edge(tmp_path, "http://127.0.0.1:9")
    readiness: Readiness = edge.readiness
    readiness.start_drain()
    ready, body = readiness.verdict()
    assert (ready, body["reason"]) == (False, "draining: the edge is shutting down")


def test_keyset_probe_fetched_stale_and_never_fetched() -> None:
    app = JWKSApp()
    app.keys = [jwk("rsa-1", RSA_KEY)]
    app.cache_control = "max-age=60"
    with serving(app) as server:
        clock = Clock(0.0)
        keys = KeySet(url=server.url, clock=clock, cooldown=1.0)

        async def scenario() -> list[str | None]:
            seen = [await keys.probe()]
            app.down = True
            clock.now = 120.0  # past max-age: the probe refreshes, the issuer fails
            seen.append(await keys.probe())
            never = KeySet(url=server.url, clock=clock)
            seen.append(await never.probe())
            await keys.close()
            await never.close()
            return seen

        fresh, stale, never = asyncio.run(scenario())
    assert fresh is None
    assert stale is not None and stale.startswith("serving stale keys")
    assert never is not None and never.startswith("no signing keys fetched")
