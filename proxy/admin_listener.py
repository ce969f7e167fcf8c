"""The admin listener (``[admin] host/port``, default 127.0.0.1:9901): a small Starlette
application served by its own uvicorn server in the API server's process and event loop,
never on the API port.

    GET /healthz   200 while the process runs
    GET /readyz    200 when the last probe round passed (proxy.readiness), else 503 + why
    GET /metrics   Prometheus text format (proxy.metrics)

Its lifespan runs the readiness probes, so they run exactly as long as it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import TYPE_CHECKING

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .metrics import CONTENT_TYPE
from .readiness import Readiness

if TYPE_CHECKING:
    from .edge import Edge

__all__ = ["ServerWithAdmin", "admin_app"]


def admin_app(edge: Edge, readiness: Readiness) -> Starlette:
    """The admin application for ``edge``; ``readiness`` probes in its lifespan."""

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        ready, body = readiness.verdict()
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        if edge.metrics is None:
            return PlainTextResponse("metrics are off\n", status_code=404)
        return Response(edge.metrics.render(), media_type=CONTENT_TYPE)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        readiness.start()
        try:
            yield
        finally:
            await readiness.stop()

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.readiness = readiness
    return app


class _Follower(uvicorn.Server):
    """The admin server: leaves signals to the API server (two handlers cannot share a
    signal; the API server's decides) and stops when the API server has stopped."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def follower(admin: uvicorn.Config) -> uvicorn.Server:
    """The admin listener's server, for :func:`serve_beside`."""
    return _Follower(admin)


async def serve_beside(follower: uvicorn.Server, api: Awaitable[None]) -> None:
    """Serve the admin listener (``follower``) while ``api`` (the API server's ``serve()``)
    runs, in the same event loop, and stop it once the API server has finished (drain
    included)."""
    task = asyncio.get_running_loop().create_task(follower.serve())
    try:
        await api
    finally:
        follower.should_exit = True
        await task


class ServerWithAdmin(uvicorn.Server):
    """A plain uvicorn server with the admin listener (``admin``) beside it."""

    def __init__(self, config: uvicorn.Config, admin: uvicorn.Config) -> None:
        super().__init__(config)
        self.admin = _Follower(admin)

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        await serve_beside(self.admin, super().serve(sockets))
