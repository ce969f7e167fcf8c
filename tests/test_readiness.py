"""Readiness verdicts: starting, failing checks with their reasons, bounded probes, drain;
and the JWKS key set's own probe (fetched, stale, never fetched)."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx

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


def test_an_admin_store_is_probed_with_the_edges_own_token(tmp_path: Path) -> None:
    """Readiness rounds reuse the edge's admin token: one login, however many rounds."""
    import asyncio

    from magento_standin import create_standin
    from proxy.backends.keystore.sqlite import SQLiteKeyStore
    from proxy.config import load_config
    from proxy.edge import Edge
    from tests.servers import serving

    standin = create_standin(admin_users={"ops": "pw-1234567890"})
    with serving(standin) as magento:
        (tmp_path / "config.toml").write_text(
            f"""[server]
policies = ["{Path(__file__).resolve().parent.parent / "policies" / "storeoncloud.toml"}"]
[keystore]
path = "edge.db"
[stores.acme]
magento_url = "{magento.url}"
credential = {{ kind = "admin", username_env = "U", password_env = "P" }}
"""
        )
        config = load_config(tmp_path / "config.toml", env={"U": "ops", "P": "pw-1234567890"})
        edge = Edge.from_config(config, SQLiteKeyStore(str(config.keystore_path)))
        auth = edge.upstream_auth("acme")
        assert auth is not None

        async def rounds() -> list[bool]:
            from proxy.probe import probe_store

            async with httpx.AsyncClient() as client:
                results = [
                    (await probe_store(config.stores["acme"], client=client, auth=auth)).ok
                    for _ in range(3)
                ]
            await auth.close()
            return results

        assert asyncio.run(rounds()) == [True, True, True]
    logins = [r for r in standin.requests if r["raw_path"].endswith(b"/integration/admin/token")]
    assert len(logins) == 1
