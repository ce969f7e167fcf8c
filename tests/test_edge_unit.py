"""The Edge app in process (no sockets): what no real upstream can provoke easily."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.config import load_config
from proxy.edge import Edge
from tests.conftest import REPO, env, write_config


@pytest.fixture
def edge(tmp_path: Path) -> Edge:
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9", None), env=env())
    return Edge.from_config(config, SQLiteKeyStore(tmp_path / "edge.db"))


async def test_an_unexpected_error_is_a_logged_500_problem(
    edge: Edge, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from proxy import endpoints

    def failing(*args: Any, **kwargs: Any) -> bytes:
        raise KeyError("boom")

    monkeypatch.setattr(endpoints, "openapi_document", failing)
    transport = httpx.ASGITransport(app=edge)
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
        r = await client.get("/api/v1/openapi.json", headers={"X-Request-Id": "bug-1"})
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["request_id"] == "bug-1"
    assert "boom" not in r.text  # no internals in the answer
    assert any("bug-1 unexpected error" in rec.getMessage() for rec in caplog.records)


async def test_websocket_scopes_are_not_served(edge: Edge) -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await edge({"type": "websocket", "path": "/", "headers": []}, receive, send)
    assert sent == []  # nothing accepted; the server closes it


async def test_lifespan_opens_and_closes_the_upstream_pool(edge: Edge) -> None:
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message["type"])
        if message["type"] == "lifespan.startup.complete":
            assert edge.upstream._session is not None

    await edge({"type": "lifespan"}, receive, send)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert edge.upstream._session is None


_SERVE_STUBBED = """
import gc, json, sys
import uvicorn
from proxy.server import serve

ran = []
uvicorn.Server.run = lambda self: ran.append(
    {"port": self.config.port, "proxy_headers": self.config.proxy_headers}
)
serve(sys.argv[1], port=int(sys.argv[2]))
print(json.dumps({"ran": ran, "frozen": gc.get_freeze_count()}))
"""


def test_serve_says_when_limits_are_per_process(tmp_path: Path) -> None:
    """``serve()`` configures logging for the whole process and ``gc.freeze()``s its heap:
    run it in its own interpreter (uvicorn's loop stubbed), never inside pytest's."""
    config = write_config(tmp_path, "http://127.0.0.1:9", None)
    done = subprocess.run(
        [sys.executable, "-c", _SERVE_STUBBED, str(config), "8123"],
        cwd=REPO,  # this checkout's proxy/, whatever the venv has installed
        env={**os.environ, **env(), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ran"] == [{"port": 8123, "proxy_headers": False}]
    assert result["frozen"] > 0  # the long-lived heap was moved out of the collector's way
    # [logging] format defaults to JSON: one object per line (proxy.logs)
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    warnings = [line["message"] for line in lines if line["level"] == "warning"]
    assert any("rate limits are kept in this process" in line for line in warnings)
    assert any("idempotency records are kept in this process" in line for line in warnings)


def test_the_request_path_imports_no_control_plane_http_client() -> None:
    # httpx is for control-plane HTTP (admin-token logins, check --probe), imported only
    # when such a credential or command is used; serving requests never loads it.
    code = (
        "import sys, proxy.server, proxy.edge, proxy.endpoints, proxy.upstream\n"
        "print('httpx' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
