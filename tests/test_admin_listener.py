"""The admin listener against a real uvicorn: health, readiness flipping (a wrong Magento
credential, a stopped Redis, a drain) and never on the API port."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from proxy._toml import ConfigError
from proxy.config import load_config
from tests.admin_servers import admin_edge
from tests.conftest import REPO, wait_for
from tests.redis_server import redis_server


def _ready(url: str) -> httpx.Response:
    return httpx.get(f"{url}/readyz", timeout=5)


def test_healthz_readyz_and_a_drain(tmp_path: Path) -> None:
    with admin_edge(tmp_path) as e:
        assert httpx.get(f"{e.admin_url}/healthz").status_code == 200
        assert wait_for(lambda: _ready(e.admin_url).status_code == 200)
        body = _ready(e.admin_url).json()
        assert body["ready"] is True
        assert body["checks"] == {"keystore": "ok", "store:acme": "ok"}
        # The API port serves none of it; the admin port serves no API.
        assert httpx.get(f"{e.url}/healthz").status_code == 404
        assert httpx.get(f"{e.admin_url}/api/v1/stores").status_code == 404
        e.edge.readiness.start_drain()
        r = _ready(e.admin_url)  # at once: no probe round in between
        assert r.status_code == 503
        assert r.json()["reason"] == "draining: the edge is shutting down"
        assert httpx.get(f"{e.admin_url}/healthz").status_code == 200  # still alive


def test_a_wrong_magento_credential_is_not_ready_with_magentos_reason(tmp_path: Path) -> None:
    with admin_edge(tmp_path, magento_token="integration-" + "x" * 20) as e:
        assert wait_for(lambda: _ready(e.admin_url).status_code == 503 and "store:acme" in
                        _ready(e.admin_url).json()["reason"])  # fmt: skip
        body = _ready(e.admin_url).json()
        assert body["ready"] is False
        assert "Magento treated the request as a guest" in body["checks"]["store:acme"]
        assert body["checks"]["keystore"] == "ok"
        assert "x" * 20 not in _ready(e.admin_url).text  # never the credential


@pytest.mark.redis
def test_a_stopped_redis_makes_the_edge_not_ready(tmp_path: Path) -> None:
    redis = redis_server()
    url = redis.__enter__()
    stopped = False
    try:
        backends = f'[ratelimit]\nbackend = "redis"\nurl = "{url}"\n'
        backends += f'[idempotency]\nbackend = "redis"\nurl = "{url}"\n'
        with admin_edge(tmp_path, backends=backends) as e:
            assert wait_for(lambda: _ready(e.admin_url).status_code == 200)
            assert set(_ready(e.admin_url).json()["checks"]) == {
                "keystore", "ratelimit", "idempotency", "store:acme"
            }  # fmt: skip
            redis.__exit__(None, None, None)
            stopped = True
            assert wait_for(lambda: _ready(e.admin_url).status_code == 503, 10)
            checks = _ready(e.admin_url).json()["checks"]
            assert checks["ratelimit"].startswith("failed (")
            assert checks["idempotency"].startswith("failed (")
            assert checks["store:acme"] == "ok"
    finally:
        if not stopped:
            redis.__exit__(None, None, None)


def test_admin_settings_load_and_are_checked(tmp_path: Path) -> None:
    base = f"""
[server]
port = 8080
policies = ["{REPO / "policies" / "storeoncloud.toml"}"]
[stores.acme]
magento_url = "http://127.0.0.1:9000"
credential = {{ kind = "bearer", token_env = "T" }}
"""
    path = tmp_path / "config.toml"
    path.write_text(base)
    admin = load_config(path, env={"T": "x"}).admin
    assert (admin.host, admin.port, admin.probe_interval) == ("127.0.0.1", 9901, 10.0)
    path.write_text(base + '[admin]\nhost = "0.0.0.0"\nport = 9999\nprobe_interval_seconds = 3\n')
    admin = load_config(path, env={"T": "x"}).admin
    assert (admin.host, admin.port, admin.probe_interval) == ("0.0.0.0", 9999, 3.0)
    for bad, says in (
        ("port = 8080", "admin.port: is the API port (8080)"),
        ("port = 70000", "admin.port: must be at most 65535"),
        ("probe_interval_seconds = 0", "admin.probe_interval_seconds"),
        ("path = '/x'", "admin.path: unknown key"),
    ):
        path.write_text(base + f"[admin]\n{bad}\n")
        with pytest.raises(ConfigError) as info:
            load_config(path, env={"T": "x"})
        assert any(says in p for p in info.value.problems), info.value.problems


def test_magento_edge_serve_runs_the_admin_listener_beside_the_api(tmp_path: Path) -> None:
    from tests.conftest import write_config
    from tests.servers import free_port
    from tests.test_edge_streaming import EdgeProcess

    config = write_config(tmp_path, "http://127.0.0.1:9", None)
    edge = EdgeProcess(config, free_port())
    try:
        assert wait_for(lambda: _get(f"{edge.admin_url}/healthz") == 200, 10)
        assert _get(f"{edge.url}/healthz") == 404  # the API port serves no admin path
        assert httpx.get(f"{edge.admin_url}/readyz").status_code == 503  # dead stores
        assert "magento_edge_in_flight_requests 0.0" in httpx.get(f"{edge.admin_url}/metrics").text
    finally:
        edge.stop()
    assert edge.proc.returncode is not None
    assert _get(f"{edge.admin_url}/healthz") is None  # stopped with the API server


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None
