"""A bare raw-ASGI reverse proxy: the ceiling for a Python proxy on this stack.

No framework, no routing, no policy: forward method, raw path, query, headers and body to
one upstream and stream the answer back. The upstream client is chosen by flag, which is
what the client comparison in ``run.py`` measures:

- ``aiohttp``: one ``aiohttp.ClientSession`` (keep-alive pool, no auto-decompression);
- ``httpx``: one ``httpx.AsyncClient`` with its default pool (httpcore);
- ``httpx-aiohttp``: ``httpx.AsyncClient`` on a small transport that sends through aiohttp;
- ``transport``: the edge's own upstream transport (``proxy/transport.py``: a keep-alive
  pool on asyncio protocols, httptools for answers), the hop the full edge runs on.

Run: ``python benchmarks/bare_proxy.py --port P --upstream http://127.0.0.1:U --client aiohttp``
(uvicorn, httptools, uvloop, one worker, no access log, no proxy headers, and no
``server``/``date`` headers of its own: the upstream's are forwarded).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import uvicorn
from yarl import URL

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Hop-by-hop headers (RFC 9110 7.6.1) plus Host, which the client sets for the upstream.
HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
    }
)
SMALL = 64 * 1024  # answers up to this size are read whole and sent in one message
BAD_GATEWAY = {"type": "http.response.start", "status": 502, "headers": [(b"content-length", b"0")]}
EMPTY_END = {"type": "http.response.body", "body": b"", "more_body": False}


async def _rest(first: bytes, receive: Receive) -> AsyncIterator[bytes]:
    """The request body as a stream: the first chunk already received, then the rest."""
    if first:
        yield first
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _body(receive: Receive) -> bytes | AsyncIterator[bytes] | None:
    message = await receive()
    first = message.get("body", b"")
    if message.get("more_body", False):
        return _rest(first, receive)
    return first or None


def _request_headers(scope: Scope) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"] if k not in HOP]


def _target(base: str, scope: Scope) -> str:
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    return base + (path + b"?" + query if query else path).decode("latin-1")


class AiohttpProxy:
    def __init__(self, upstream: str) -> None:
        self.base = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def startup(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60)
        self.session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60),
        )

    async def shutdown(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.session is not None
        data = await _body(receive)
        url = URL(_target(self.base, scope), encoded=True)
        try:
            resp = await self.session.request(
                scope["method"],
                url,
                headers=_request_headers(scope),
                data=data,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, TimeoutError):
            await send(BAD_GATEWAY)
            await send(EMPTY_END)
            return
        try:
            headers = [(k, v) for k, v in resp.raw_headers if k.lower() not in HOP]
            length = resp.content_length
            if length is not None and length <= SMALL:
                body = await resp.read()
                await send(
                    {"type": "http.response.start", "status": resp.status, "headers": headers}
                )
                await send({"type": "http.response.body", "body": body})
                return
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            async for chunk in resp.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send(EMPTY_END)
        finally:
            resp.release()


class _AiohttpStream(httpx.AsyncByteStream):
    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.resp.content.iter_any():
            yield chunk

    async def aclose(self) -> None:
        self.resp.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends through one aiohttp session (httpx API, aiohttp I/O)."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60),
            )
        content: Any = None
        if request.method not in ("GET", "HEAD"):
            content = request.stream  # an async byte stream; aiohttp sends it as it comes
        try:
            resp = await self.session.request(
                request.method,
                URL(str(request.url), encoded=True),
                headers=request.headers.multi_items(),
                data=content,
                allow_redirects=False,
            )
        except aiohttp.ClientError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        return httpx.Response(
            resp.status,
            headers=resp.raw_headers,
            stream=_AiohttpStream(resp),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()


class TransportProxy:
    """The same proxy on the edge's own transport (``proxy.transport``)."""

    def __init__(self, upstream: str) -> None:
        # This repository's proxy package (the script runs with benchmarks/ on the path).
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from proxy import transport

        self.mod = transport
        self.base = upstream.rstrip("/")
        # As unbounded as the aiohttp row (limit=0): the pool is measured, not its caps.
        self.settings = transport.Settings(
            connect=5.0, read=60.0, pool=60.0, write=60.0, keepalive=60.0, max_connections=100_000
        )
        self.client: Any = None

    async def startup(self) -> None:
        self.client = self.mod.Transport(max_connections=100_000)

    async def shutdown(self) -> None:
        if self.client is not None:
            await self.client.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.client is not None
        data = await _body(receive)
        try:
            resp = await self.client.request(
                scope["method"], _target(self.base, scope), _request_headers(scope), data,
                self.settings,
            )  # fmt: skip
        except self.mod.TransportError:
            await send(BAD_GATEWAY)
            await send(EMPTY_END)
            return
        try:
            headers = [(k, v) for k, v in resp.headers if k.lower() not in HOP]
            length = resp.content_length
            if length is not None and length <= SMALL:
                body = await resp.read_all()
                await send(
                    {"type": "http.response.start", "status": resp.status, "headers": headers}
                )
                await send({"type": "http.response.body", "body": body})
                return
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            while chunk := await resp.read():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send(EMPTY_END)
        finally:
            resp.finish()


class HttpxProxy:
    def __init__(self, upstream: str, *, aiohttp_transport: bool = False) -> None:
        self.base = upstream.rstrip("/")
        self.aiohttp_transport = aiohttp_transport
        self.client: httpx.AsyncClient | None = None

    async def startup(self) -> None:
        transport = AiohttpTransport() if self.aiohttp_transport else None
        # trust_env=False: never pick up an HTTP(S)_PROXY from the environment.
        self.client = httpx.AsyncClient(timeout=60.0, trust_env=False, transport=transport)

    async def shutdown(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.client is not None
        data = await _body(receive)
        request = self.client.build_request(
            scope["method"],
            _target(self.base, scope),
            headers=_request_headers(scope),
            content=data,
        )
        try:
            resp = await self.client.send(request, stream=True)
        except httpx.HTTPError:
            await send(BAD_GATEWAY)
            await send(EMPTY_END)
            return
        try:
            headers = [(k, v) for k, v in resp.headers.raw if k.lower() not in HOP]
            length = resp.headers.get("content-length")
            if length is not None and int(length) <= SMALL:
                body = await resp.aread()
                await send(
                    {"type": "http.response.start", "status": resp.status_code, "headers": headers}
                )
                await send({"type": "http.response.body", "body": body})
                return
            await send(
                {"type": "http.response.start", "status": resp.status_code, "headers": headers}
            )
            async for chunk in resp.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send(EMPTY_END)
        finally:
            await resp.aclose()


def make_app(upstream: str, client: str) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    if client == "aiohttp":
        proxy: AiohttpProxy | HttpxProxy | TransportProxy = AiohttpProxy(upstream)
    elif client == "httpx":
        proxy = HttpxProxy(upstream)
    elif client == "httpx-aiohttp":
        proxy = HttpxProxy(upstream, aiohttp_transport=True)
    elif client == "transport":
        proxy = TransportProxy(upstream)
    else:
        raise ValueError(f"unknown client {client!r}")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await proxy(scope, receive, send)
        elif scope["type"] == "lifespan":
            await lifespan(receive, send, proxy.startup, proxy.shutdown)

    return app


async def lifespan(
    receive: Receive,
    send: Send,
    startup: Callable[[], Awaitable[None]],
    shutdown: Callable[[], Awaitable[None]],
) -> None:
    """The ASGI lifespan protocol around a proxy's start-up and shut-down."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await startup()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return


def serve(app: Any, port: int) -> None:
    """Run an ASGI app the way every Python proxy in the benchmark runs."""
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        http="httptools",
        loop="uvloop",
        workers=1,
        lifespan="on",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        log_level="warning",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument(
        "--client", choices=("aiohttp", "httpx", "httpx-aiohttp", "transport"), default="aiohttp"
    )
    args = parser.parse_args()
    serve(make_app(args.upstream, args.client), args.port)


if __name__ == "__main__":
    main()
