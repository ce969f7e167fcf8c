"""The edge's own answers as a Starlette application, and an operator's middleware around
every request (forwarded and answered), through a real uvicorn server."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.middleware import Middleware
from starlette.routing import Route

from proxy.backends.keystore.base import TokenRecord
from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.config import load_config
from proxy.context import SCOPE_KEY
from proxy.edge import Edge
from proxy.endpoints import error_response
from proxy.errors import NotFound
from proxy.tokens import generate_token, hash_token
from tests.conftest import env, write_config
from tests.panel_app import PanelApp
from tests.servers import serving


class Stamp:
    """An operator's pure ASGI middleware: stamps every answer, counts what passes."""

    def __init__(self, app: Any, *, name: str, seen: list[tuple[str, Any]]) -> None:
        self.app = app
        self.name = name.encode()
        self.seen = seen

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            self.seen.append(("other", scope["type"]))
            await self.app(scope, receive, send)
            return
        self.seen.append(("path", scope["path"]))

        async def stamped(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.seen.append(("start", message["status"]))
                message["headers"] = [*message["headers"], (b"x-operator", self.name)]
            elif message["type"] == "http.response.body":
                self.seen.append(("body", len(message.get("body", b""))))
            await send(message)

        await self.app(scope, receive, stamped)


def _token(config_path: Path, keystore_path: str, *permissions: str) -> str:
    token = generate_token("live")
    record = TokenRecord(
        id="tok_" + secrets.token_hex(8),
        name="mw",
        kind="live",
        stores=("acme",),
        permissions={p.split(":")[0]: p.split(":")[1] for p in permissions},  # type: ignore[misc]
    )
    store = SQLiteKeyStore(keystore_path)
    asyncio.run(store.create(record, hash_token(token)))
    asyncio.run(store.close())
    return token


def test_operator_middleware_wraps_forwarded_and_own_answers(tmp_path: Path) -> None:
    seen: list[tuple[str, Any]] = []
    panel = PanelApp()
    with serving(panel) as panel_srv:
        path = write_config(tmp_path, "http://127.0.0.1:9", panel_srv.url)
        config = load_config(path, env=env())
        edge = Edge.from_config(
            config,
            SQLiteKeyStore(config.keystore_path or ""),
            middleware=[
                Middleware(Stamp, name="outer", seen=seen),
                Middleware(Stamp, name="inner", seen=[]),
            ],
        )
        token = _token(path, str(config.keystore_path), "backups:write")
        with serving(edge) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
            auth = {"Authorization": f"Bearer {token}"}
            # A forwarded answer in many chunks: every chunk passes, the start once.
            r = client.get(
                "/api/v1/stores/acme/backups/big", params={"bytes": 300_000}, headers=auth
            )
            assert r.status_code == 200 and len(r.content) == 300_000
            assert r.headers.get_list("x-operator") == ["inner", "outer"]  # outermost last
            assert "ratelimit-limit" in r.headers and "x-request-id" in r.headers
            starts = [e for e in seen if e[0] == "start"]
            bodies = [n for kind, n in seen if kind == "body"]
            assert starts == [("start", 200)]
            assert sum(bodies) == 300_000 and len(bodies) > 2
            assert ("other", "lifespan") in seen  # uvicorn's startup passed through it too

            # The edge's own answers and its errors pass through it too.
            seen.clear()
            r = client.get("/api/v1/stores", headers=auth)
            assert r.status_code == 200 and r.headers["x-operator"] == "inner, outer"
            assert [s["id"] for s in r.json()["stores"]] == ["acme"]
            r = client.get("/api/v1/nowhere", headers=auth)
            assert r.status_code == 404 and r.headers["x-operator"] == "inner, outer"
            assert r.headers["content-type"] == "application/problem+json"
            assert [e for e in seen if e[0] == "start"] == [("start", 200), ("start", 404)]


def test_own_answers_are_starlette_routes_named_by_surface_and_handler(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9", None), env=env())
    edge = Edge.from_config(config, SQLiteKeyStore(tmp_path / "edge.db"))
    routes = [r for r in edge.app.routes if isinstance(r, Route)]
    endpoints = [e for s in config.surfaces for e in s.endpoints]
    assert len(routes) == len(endpoints)
    by_name = {r.name: r for r in routes}
    surface = config.surfaces[0].name
    assert by_name[f"{surface}:openapi"].path == "/api/v1/openapi.json"
    assert by_name[f"{surface}:stores"].methods == {"GET", "HEAD"}
    assert by_name[f"{surface}:leaked_tokens"].methods == {"POST"}
    assert edge.app.url_path_for(f"{surface}:stores") == "/api/v1/stores"


async def test_a_route_matches_the_edges_decision_not_the_path_again(tmp_path: Path) -> None:
    # The same path with a trailing slash is the same endpoint to the edge's router;
    # Starlette's path matching alone would redirect it.
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9", None), env=env())
    edge = Edge.from_config(config, SQLiteKeyStore(tmp_path / "edge.db"))
    transport = httpx.ASGITransport(app=edge)
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
        plain = await client.get("/api/v1/openapi.json")
        slash = await client.get("/api/v1/openapi.json/")
        head = await client.head("/api/v1/openapi.json")
    assert plain.status_code == slash.status_code == head.status_code == 200
    assert plain.content == slash.content and plain.json()["openapi"].startswith("3.1")
    assert plain.headers["cache-control"] == "max-age=300"
    assert plain.headers["x-request-id"]


async def test_errors_inside_a_route_keep_the_answer_headers(tmp_path: Path) -> None:
    # A leak report with no keys configured: 404 from inside the route, in the surface's
    # style, with the request id and rate-limit headers gathered before it.
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9", None), env=env())
    edge = Edge.from_config(config, SQLiteKeyStore(tmp_path / "edge.db"))
    transport = httpx.ASGITransport(app=edge)
    async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:
        r = await client.post(
            "/api/v1/secret-scanning/leaks", content=b"[]", headers={"X-Request-Id": "leak-1"}
        )
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["request_id"] == "leak-1" and r.headers["x-request-id"] == "leak-1"
    assert "ratelimit-limit" in r.headers


def test_error_response_adds_the_answer_headers_after_the_errors_own() -> None:
    from proxy.context import RequestContext

    async def nothing(*_: Any) -> Any:
        return None

    ctx = RequestContext({"headers": []}, nothing, nothing, request_id="r-1")
    ctx.answer_headers.append((b"ratelimit-limit", b"10"))
    status, headers, body = error_response(ctx, NotFound("gone"))
    assert status == 404
    assert headers[-2:] == [(b"x-request-id", b"r-1"), (b"ratelimit-limit", b"10")]
    assert b'"request_id":"r-1"' in body
    assert SCOPE_KEY == "magento_edge"  # the one key the edge adds to a scope


@pytest.mark.parametrize("middleware", [[], [Middleware(Stamp, name="m", seen=[])]])
async def test_websocket_scopes_are_still_not_served(tmp_path: Path, middleware: Any) -> None:
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9", None), env=env())
    edge = Edge.from_config(config, SQLiteKeyStore(tmp_path / "edge.db"), middleware=middleware)
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await edge({"type": "websocket", "path": "/", "headers": []}, receive, send)
    assert sent == []
