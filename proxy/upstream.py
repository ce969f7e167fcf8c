"""Step 6 of the request path: stream the request to the upstream and its answer back.

The hop runs on the edge's own HTTP/1.1 transport (:mod:`proxy.transport`: a keep-alive
pool per store and origin on asyncio protocols, answers parsed by httptools), opened in
the app lifespan. aiohttp served here before; its ``ClientSession`` cost ~3x the CPU of a
minimal pool per request and silently re-sent PUT/DELETE after a dropped connection
(SPEC §8, issues #13 and #14).

Bodies stream both ways with bounded memory; bodies are never decoded, so compressed
answers pass through byte-for-byte. Failures before the answer starts become edge errors
(refused/reset → 502, no free connection → 503 ``upstream_saturated``, too slow → 504, a
client that stalls its upload → 408); after it has started the connection is cut, which
is the only honest signal left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from .body import BodyReplay, ClientGone, declared_length, read_body
from .config import Timeouts
from .envelope import MAX_BYTES as MAX_ERROR_BYTES
from .envelope import MagentoErrors
from .errors import (
    RequestBodyTimeout,
    UpstreamSaturated,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from .frontdoor import FrontDoorCycle
from .headers import response_headers
from .transport import (
    ConnectFailed,
    ConnectTimeout,
    PoolTimeout,
    ReadTimeout,
    Response,
    Settings,
    Transport,
    TransportError,
    WriteTimeout,
)
from .types import Message, Receive, Send

__all__ = ["ClientGone", "UpstreamBroke", "UpstreamClient"]

log = logging.getLogger("magento_edge.upstream")

# Bodies up to this size are read whole (one ASGI message, one upstream write); larger or
# unknown-length ones stream in whatever chunks arrive.
_SMALL_BODY = 64 * 1024
# Entries of the settings cache (each a store's or upstream's timeouts and cap).
_MAX_SETTINGS = 256
# Seconds a client is told to wait before retrying a saturated store.
SATURATED_RETRY_AFTER = 1


class UpstreamBroke(Exception):
    """The upstream failed after the answer started; the connection must be cut."""


class _BodyStalled(Exception):
    """The client sent no part of its body for longer than the body-idle timeout."""


def _settings(t: Timeouts, max_connections: int) -> Settings:
    return Settings(
        connect=t.connect,
        read=t.read,
        pool=t.pool,
        write=t.write,
        keepalive=t.keepalive,
        max_connections=max_connections,
    )


def _before_answer(exc: TransportError) -> Exception:
    """A transport failure before the answer started, as the edge error the client gets."""
    if isinstance(exc, PoolTimeout):
        return UpstreamSaturated(
            "Every connection to the store's upstream is busy; retry shortly.",
            headers={"Retry-After": str(SATURATED_RETRY_AFTER)},
        )
    if isinstance(exc, ConnectTimeout | ReadTimeout | WriteTimeout):
        return UpstreamTimeout("The store's upstream did not answer in time.")
    if isinstance(exc, ConnectFailed):
        return UpstreamUnavailable("The store's upstream refused the connection.")
    return UpstreamUnavailable("The store's upstream closed the connection.")


class UpstreamClient:
    """Trust model: the upstream is ours (a store's Magento); its answers pass verbatim."""

    def __init__(self, *, max_connections: int = 512) -> None:
        self._max_connections = max_connections
        self._session: Transport | None = None
        # (id(timeouts), cap) -> (timeouts, settings). By identity: a Timeouts hashes
        # through a Python-level __hash__ (~2k instructions a request); the entry holds
        # its Timeouts, so no other object can have that id while it is there. Bounded:
        # a reload's new config brings new objects, the old entries are dropped.
        self._settings: dict[tuple[int, int], tuple[Timeouts, Settings]] = {}

    async def start(self) -> None:
        self._session = Transport(max_connections=self._max_connections)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def transport(self) -> Transport | None:
        return self._session

    async def forward(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        request_headers: Sequence[tuple[bytes, bytes]],
        receive: Receive,
        send: Send,
        timeouts: Timeouts,
        extra_response_headers: Sequence[tuple[bytes, bytes]],
        errors: MagentoErrors | None = None,
        pool: str = "",
        max_connections: int = 64,
    ) -> int:
        """Forward one request; returns the upstream status (for logs and metrics). (The
        edge passes the arguments by position: a call with eleven keywords costs ~2k
        instructions more on every request.)
        ``errors``: rewrite an error answer into the envelope (envelope surfaces only).
        ``pool`` names the connection pool (a store or an upstream: each has its own, of at
        most ``max_connections``, so one cannot starve another)."""
        session = self._session
        if session is None:
            raise RuntimeError("UpstreamClient.start() was not awaited")
        key = (id(timeouts), max_connections)
        entry = self._settings.get(key)
        if entry is None:
            if len(self._settings) >= _MAX_SETTINGS:
                self._settings.clear()
            entry = self._settings[key] = (timeouts, _settings(timeouts, max_connections))
        settings = entry[1]

        data: bytes | AsyncIterator[bytes] | None
        # declared_length() and a scan for Transfer-Encoding, in one pass without calls
        length: int | None = None
        chunked = counted = False
        for name, value in request_headers:
            if name == b"content-length":
                if not counted:
                    counted = True
                    length = declared_length(((name, value),))
            elif name == b"transfer-encoding":
                chunked = True
        if length is None and not chunked:
            data = None
        else:
            first = await _receive_within(receive, timeouts.body)
            if first["type"] == "http.disconnect":
                raise ClientGone
            body = first.get("body", b"")
            if not first.get("more_body", False):
                data = body
            elif length is not None and length <= _SMALL_BODY:
                try:
                    data = await asyncio.wait_for(read_body(receive, first=body), timeouts.body)
                except TimeoutError:
                    raise _stalled() from None
            else:
                data = _iter_body(receive, body, timeouts.body)
            if chunked and isinstance(data, bytes):
                # The client sent chunked and it all came at once; say the length. (A
                # client Content-Length is forwarded as it is, so a stream keeps it.)
                headers.append(("content-length", str(len(data))))

        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        try:
            response = await session.request(
                method, url, headers, data, settings, pool, disconnected
            )
        except TransportError as exc:
            raise _before_answer(exc) from exc
        except _BodyStalled:
            raise _stalled() from None

        try:
            return await self._answer(
                response, method, errors, receive, send, extra_response_headers
            )
        finally:
            response.finish()

    async def _answer(
        self,
        response: Response,
        method: str,
        errors: MagentoErrors | None,
        receive: Receive,
        send: Send,
        extra: Sequence[tuple[bytes, bytes]],
    ) -> int:
        out_headers = response_headers(response.headers, extra)
        status = response.status
        length = response.content_length
        watch = response.body_sent
        if method == "HEAD" or status in (204, 304):
            await send({"type": "http.response.start", "status": status, "headers": out_headers})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return status
        if errors is not None and errors.wants(status, out_headers, length):
            await self._answer_error(response, out_headers, errors, receive, send, watch)
            return status
        if length is not None and length <= _SMALL_BODY:
            try:
                body = response.read_now()
                if body is None:
                    body = await response.read_all()
            except (ReadTimeout, WriteTimeout) as exc:
                raise UpstreamTimeout("The store's upstream stopped answering.") from exc
            except TransportError as exc:
                raise UpstreamUnavailable("The store's upstream broke off its answer.") from exc
            # The edge's own front door takes a whole answer in one call (proxy.frontdoor);
            # any other server, or a send the edge wraps, gets the two ASGI messages.
            owner = getattr(send, "__self__", None)
            if not (isinstance(owner, FrontDoorCycle) and owner.answer(status, out_headers, body)):
                start = {"type": "http.response.start", "status": status, "headers": out_headers}
                await send(start)
                await send({"type": "http.response.body", "body": body, "more_body": False})
            return status
        await send({"type": "http.response.start", "status": status, "headers": out_headers})
        await self._stream_response(response, receive, send, watch=watch)
        return status

    async def _answer_error(
        self,
        response: Response,
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
                chunk = await response.read()
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except ReadTimeout as exc:
            raise UpstreamTimeout("The store's upstream stopped answering.") from exc
        except TransportError as exc:
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
        self, response: Response, receive: Receive, send: Send, *, watch: bool
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
            while chunk := await response.read():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if gone.is_set() and task is not None and task.uncancel() == 0:
                raise ClientGone from None
            raise
        except TransportError as exc:
            # The answer has started: cutting the connection is the only signal left.
            raise UpstreamBroke("the upstream broke off its answer mid-stream") from exc
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher


def _stalled() -> RequestBodyTimeout:
    return RequestBodyTimeout("The request body stalled; send it without pauses.")


async def _receive_within(receive: Receive, seconds: float) -> Message:
    # A body part that is here already (the front door has received some or all of it:
    # its message event is set; or the idempotency step replays the body it read) is
    # taken without the timeout's timer and task lookup (~5 % of a POST's CPU under
    # load): receive() returns it without waiting.
    if type(receive) is BodyReplay and not receive.delivered:
        return await receive()
    owner = getattr(receive, "__self__", None)
    if isinstance(owner, FrontDoorCycle) and owner.message_event.is_set():
        return await receive()
    try:
        async with asyncio.timeout(seconds):
            return await receive()
    except TimeoutError:
        raise _stalled() from None


async def _iter_body(receive: Receive, first: bytes, idle: float) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive; a pause longer than ``idle`` seconds ends the
    request (:class:`_BodyStalled`)."""
    if first:
        yield first
    while True:
        try:
            async with asyncio.timeout(idle):
                message = await receive()
        except TimeoutError:
            raise _BodyStalled from None
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _watch_disconnect(receive: Receive, gone: asyncio.Event, task: asyncio.Task[Any]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            task.cancel()
            return
