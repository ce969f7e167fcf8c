"""Step 6 of the request path: stream the request to the upstream and its answer back.

One pooled ``aiohttp`` client per process, opened in the app lifespan. aiohttp was chosen
over httpx by measurement (``benchmarks/``, README "Performance"): httpx's pool checks
every pooled connection with ``poll()`` on every request, which capped a proxy on it at a
few hundred requests per second on this hardware.

Bodies stream both ways with bounded memory; bodies never get decoded (``auto_decompress``
off), so compressed answers pass through byte-for-byte. Failures before the answer starts
become edge errors (refused/reset → 502, too slow → 504); after it has started the
connection is cut, which is the only honest signal left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
from yarl import URL

from .body import ClientGone, declared_length, iter_body, read_body
from .config import Timeouts
from .envelope import MAX_BYTES as MAX_ERROR_BYTES
from .envelope import MagentoErrors
from .errors import UpstreamTimeout, UpstreamUnavailable
from .headers import response_headers
from .types import Receive, Send

__all__ = ["ClientGone", "UpstreamBroke", "UpstreamClient"]

log = logging.getLogger("magento_edge.upstream")

# Bodies up to this size are read whole (one ASGI message, one upstream write); larger or
# unknown-length ones stream in whatever chunks arrive.
_SMALL_BODY = 64 * 1024


class UpstreamBroke(Exception):
    """The upstream failed after the answer started; the connection must be cut."""


def _timeout(t: Timeouts) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=None, connect=t.pool + t.connect, sock_connect=t.connect, sock_read=t.read
    )


class UpstreamClient:
    """Trust model: the upstream is ours (a store's Magento); its answers pass verbatim."""

    def __init__(self, *, max_connections: int = 512) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[Timeouts, aiohttp.ClientTimeout] = {}

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=0, ttl_dns_cache=60, keepalive_timeout=30
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            # aiohttp adds these when absent; a proxy must not invent request headers.
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def forward(
        self,
        *,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        request_headers: Sequence[tuple[bytes, bytes]],
        receive: Receive,
        send: Send,
        timeouts: Timeouts,
        extra_response_headers: Sequence[tuple[bytes, bytes]],
        errors: MagentoErrors | None = None,
    ) -> int:
        """Forward one request; returns the upstream status (for logs and metrics).
        ``errors``: rewrite an error answer into the envelope (envelope surfaces only)."""
        session = self._session
        if session is None:
            raise RuntimeError("UpstreamClient.start() was not awaited")
        timeout = self._timeouts.get(timeouts)
        if timeout is None:
            timeout = self._timeouts.setdefault(timeouts, _timeout(timeouts))

        data: bytes | AsyncIterator[bytes] | None
        body_done = True
        length = declared_length(request_headers)
        chunked = any(n == b"transfer-encoding" for n, _ in request_headers)
        if length is None and not chunked:
            data = None
        else:
            first = await receive()
            if first["type"] == "http.disconnect":
                raise ClientGone
            body = first.get("body", b"")
            if not first.get("more_body", False):
                data = body
            elif length is not None and length <= _SMALL_BODY:
                data = await read_body(receive, first=body)
            else:
                data = iter_body(receive, body)
                body_done = False
            if chunked and isinstance(data, bytes):
                # The client sent chunked and it all came at once; say the length. (A
                # client Content-Length is forwarded as it is, so a stream keeps it.)
                headers.append(("content-length", str(len(data))))

        try:
            response = await session.request(
                method,
                URL(url, encoded=True),
                headers=headers,
                data=data,
                allow_redirects=False,
                timeout=timeout,
                compress=None,
                chunked=None,
            )
        except ClientGone:
            raise
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout("The store's upstream did not answer in time.") from exc
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamUnavailable("The store's upstream refused the connection.") from exc
        except (aiohttp.ClientError, OSError) as exc:
            if isinstance(exc.__cause__, ClientGone) or isinstance(exc.__context__, ClientGone):
                raise ClientGone from exc
            raise UpstreamUnavailable("The store's upstream closed the connection.") from exc

        async with response:
            out_headers = response_headers(response.raw_headers, extra_response_headers)
            status = response.status
            length = response.content_length
            if method == "HEAD" or status in (204, 304):
                await send(
                    {"type": "http.response.start", "status": status, "headers": out_headers}
                )
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return status
            if errors is not None and errors.wants(status, out_headers, length):
                await self._answer_error(response, out_headers, errors, receive, send, body_done)
                return status
            if length is not None and length <= _SMALL_BODY:
                try:
                    body = await response.read()
                except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
                    raise UpstreamTimeout("The store's upstream stopped answering.") from exc
                except aiohttp.ClientError as exc:
                    raise UpstreamUnavailable("The store's upstream broke off its answer.") from exc
                await send(
                    {"type": "http.response.start", "status": status, "headers": out_headers}
                )
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return status
            await send({"type": "http.response.start", "status": status, "headers": out_headers})
            await self._stream_response(response, receive, send, watch=body_done)
            return status

    async def _answer_error(
        self,
        response: aiohttp.ClientResponse,
        headers: list[tuple[bytes, bytes]],
        errors: MagentoErrors,
        receive: Receive,
        send: Send,
        watch: bool,
    ) -> None:
        """An error answer on an envelope surface: read up to the bound (whatever its
        framing: Magento behind nginx often answers chunked), rewrite it if it is a
        Magento error, else send it as it came; over the bound, stream the rest."""
        chunks: list[bytes] = []
        size = 0
        try:
            while size <= MAX_ERROR_BYTES:
                chunk = await response.content.readany()
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout("The store's upstream stopped answering.") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable("The store's upstream broke off its answer.") from exc
        status = response.status
        body = b"".join(chunks)
        if size > MAX_ERROR_BYTES:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": True})
            await self._stream_response(response, receive, send, watch=watch)
            return
        rewritten = errors.rewrite(status, body)
        if rewritten is not None:
            body = rewritten
            headers = [(n, v) for n, v in headers if n != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _stream_response(
        self, response: aiohttp.ClientResponse, receive: Receive, send: Send, *, watch: bool
    ) -> None:
        # A long download must stop when the client goes away; uvicorn's send() just
        # returns after a disconnect, so watch receive() for it (only for streamed bodies:
        # small answers never pay for the extra task).
        task = asyncio.current_task()
        gone = asyncio.Event()
        watcher: asyncio.Task[None] | None = None
        if watch and task is not None:
            watcher = asyncio.create_task(_watch_disconnect(receive, gone, task))
        try:
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if gone.is_set() and task is not None and task.uncancel() == 0:
                response.close()
                raise ClientGone from None
            raise
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The answer has started: cutting the connection is the only signal left.
            response.close()
            raise UpstreamBroke("the upstream broke off its answer mid-stream") from exc
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher


async def _watch_disconnect(receive: Receive, gone: asyncio.Event, task: asyncio.Task[Any]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            task.cancel()
            return
