"""A naive Starlette + httpx reverse proxy: what a user would write from the docs.

One ``httpx.AsyncClient`` with its default pool, a catch-all route, the request body
streamed with ``request.stream()`` and the answer with ``StreamingResponse`` over
``aiter_raw()``, closed in a background task. Nothing tuned (only ``trust_env=False``, so
no proxy from the environment is ever used).

Run: ``python benchmarks/naive_proxy.py --port P --upstream http://127.0.0.1:U``
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from bare_proxy import serve
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def make_app(upstream: str) -> Starlette:
    client = httpx.AsyncClient(base_url=upstream, timeout=60.0, trust_env=False)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    async def proxy(request: Request) -> StreamingResponse:
        url = httpx.URL(path=request.url.path, query=request.url.query.encode("utf-8"))
        headers = [(k, v) for k, v in request.headers.raw if k != b"host"]
        upstream_request = client.build_request(
            request.method, url, headers=headers, content=request.stream()
        )
        upstream_response = await client.send(upstream_request, stream=True)
        return StreamingResponse(
            upstream_response.aiter_raw(),
            status_code=upstream_response.status_code,
            headers=upstream_response.headers,
            background=BackgroundTask(upstream_response.aclose),
        )

    return Starlette(routes=[Route("/{path:path}", proxy, methods=METHODS)], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    serve(make_app(args.upstream), args.port)


if __name__ == "__main__":
    main()
