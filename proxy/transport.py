"""The upstream hop's own HTTP/1.1 client: a keep-alive pool per upstream origin.

Hand-written on purpose (SPEC §8, issue #14): the general-purpose clients spend most of a
proxied request's CPU (aiohttp's ``ClientSession`` ~3x a minimal keep-alive pool, httpx's
default pool far more; here the bare proxy on this module used 0.49x the CPU per request
of the same proxy on aiohttp, ``benchmarks/transport_quick.py``), and neither lets the
edge promise what a proxy in front of Magento must: a request is never sent twice (aiohttp
re-sends GET/PUT/DELETE after a connection drops), a connection is reused only after a
complete exchange, one store cannot take another's connections.

Shape: one :class:`Transport` per process; one :class:`_Pool` per (pool name, origin)
with its own connection cap and idle keep-alive; one :class:`_Conn` (an
``asyncio.Protocol``, no streams) per TCP/TLS connection, parsing answers with
``httptools.HttpResponseParser`` (llhttp, the parser uvicorn uses). Requests are written
as raw bytes: the header bytes the edge received (decoded latin-1 on the way in) go out
byte for byte. Bodies stream both ways with backpressure: the request body waits for the
socket to drain (``pause_writing``), the answer stops being read (``pause_reading``) while
more than :data:`HIGH_WATER` bytes wait for the client.

Reuse rules: a connection goes back to its pool only after a complete exchange (request
fully written, answer fully read, keep-alive on both sides); after an error, a timeout, a
cancellation, ``Connection: close``, a close-delimited answer or a HEAD (llhttp cannot be
told an answer is to HEAD, so its framing would be misread) it is closed. A pooled
connection found closed when it is taken is dropped and another taken: the request was
never written, so nothing is sent twice. Nothing is ever retried after it was written.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import httptools

from .body import ClientGone

__all__ = [
    "HIGH_WATER",
    "ConnectFailed",
    "ConnectTimeout",
    "ConnectionBroken",
    "PoolTimeout",
    "ReadTimeout",
    "Response",
    "Settings",
    "Transport",
    "TransportError",
    "WriteTimeout",
]

# Bytes of an answer buffered for a slow client before the upstream socket stops being read.
HIGH_WATER = 256 * 1024
# A wait for response headers longer than this starts watching the client for a
# disconnect (a task per request would cost more than the rest of the hop; under load the
# edge's own queueing can take tens of ms, so the mark is well above that).
WATCH_AFTER = 0.1
# A pool's timer may fire this much before the time it was armed for (uvloop keeps time
# in whole milliseconds): a deadline that close is due.
_EARLY = 0.001
_NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class TransportError(Exception):
    """The upstream hop failed; subclasses say how."""


class ConnectFailed(TransportError):
    """The connection could not be made (refused, unreachable, DNS, TLS)."""


class ConnectTimeout(TransportError):
    """The connection was not made in time."""


class PoolTimeout(TransportError):
    """No pooled connection became free in time: the store is saturated."""


class ReadTimeout(TransportError):
    """The upstream was silent for longer than the read timeout."""


class WriteTimeout(TransportError):
    """The upstream did not take the request body for longer than the write timeout."""


class ConnectionBroken(TransportError):
    """The connection closed or broke mid-exchange, or the answer was malformed."""


class Settings:
    """What one call needs from the config: timeouts (seconds) and pool limits."""

    __slots__ = ("connect", "keepalive", "max_connections", "pool", "read", "write")

    def __init__(
        self,
        *,
        connect: float = 2.0,
        read: float = 30.0,
        pool: float = 5.0,
        write: float = 30.0,
        keepalive: float = 4.0,
        max_connections: int = 64,
    ) -> None:
        self.connect = connect
        self.read = read
        self.pool = pool
        self.write = write
        self.keepalive = keepalive
        self.max_connections = max_connections


class _Conn(asyncio.Protocol):
    """One upstream connection and the exchange on it (never more than one at a time)."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self.write_paused = False
        self.drain: asyncio.Future[None] | None = None
        self.watcher: asyncio.Task[None] | None = None
        # While waiting for an answer's head (in its pool's ``waiting``): when the read
        # timeout ends the wait, and when the client starts being watched.
        self.deadline = math.inf
        self.watch_at = math.inf
        self.disconnected: Callable[[], Awaitable[object]] | None = None
        self._reset()

    def _reset(self) -> None:
        self.active = False
        self.head_only = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.content_length: int | None = None
        self.chunked = False
        self.informational = False
        self.keep_alive = False
        self.close_delimited = False
        self.head: asyncio.Future[None] | None = None
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.error: TransportError | None = None
        self.reader: asyncio.Future[None] | None = None
        self.read_paused = False

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.active:
            # Bytes nobody asked for: the stream is out of step; never reuse it.
            self.abort()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ConnectionBroken("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(ConnectionBroken(f"malformed answer from the upstream: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost says what it meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.active and not self.complete and self.error is None:
            head = self.head
            if head is not None and not head.done():
                self.error = ConnectionBroken("the upstream closed the connection")
                head.set_exception(self.error)
            elif self.close_delimited:
                self.complete = True  # the end of a close-delimited answer
            else:
                self.error = ConnectionBroken("the upstream broke off its answer")
        self._wake()
        self.pool.lost(self)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drain = self.drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- httptools callbacks ------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.informational or self.complete:
            return
        self.headers.append((name, value))
        if len(name) == 14 and name.lower() == b"content-length":
            try:
                self.content_length = int(value)
            except ValueError:
                self.content_length = None
        elif len(name) == 17 and name.lower() == b"transfer-encoding":
            self.chunked = True

    def on_headers_complete(self) -> None:
        if self.complete:
            # A second answer to one request: the stream is out of step; never reuse it.
            self.keep_alive = False
            return
        status = self.parser.get_status_code()
        if status < 200:
            # 1xx (100, 103): informational, dropped; the real answer follows.
            self.informational = True
            self.headers.clear()
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        if self.head_only:
            self.complete = True
            self.keep_alive = False
            self.content_length = None  # HEAD: the length of the body a GET would get
        elif not self.chunked and self.content_length is None and status not in (204, 304):
            self.close_delimited = True
            self.keep_alive = False
        head = self.head
        if head is not None and not head.done():
            head.set_result(None)
        drain = self.drain
        if drain is not None and not drain.done():
            drain.set_result(None)  # answered before the body was all sent: stop sending

    def on_body(self, body: bytes) -> None:
        if self.head_only or self.complete:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > HIGH_WATER and not self.read_paused and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()
        reader = self.reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if self.informational:
            self.informational = False
            self.headers.clear()
            self.content_length = None
            self.chunked = False
            return
        self.complete = True
        self._wake()

    # -- the exchange -------------------------------------------------------------------

    def _wake(self) -> None:
        for fut in (self.reader, self.drain):
            if fut is not None and not fut.done():
                fut.set_result(None)

    def _fail(self, error: TransportError) -> None:
        if self.error is None:
            self.error = error
        head = self.head
        if head is not None and not head.done():
            head.set_exception(error)
        self.abort()
        self._wake()

    def abort(self) -> None:
        """Close now: never reused."""
        self.keep_alive = False
        head = self.head
        if head is not None and not head.done():
            head.cancel()  # nobody waits for this answer any more
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()
        self.pool.lost(self)

    def reusable(self) -> bool:
        return (
            self.complete
            and self.keep_alive
            and self.error is None
            and not self.closed
            and not self.chunks
        )

    async def wait_drain(self, seconds: float) -> None:
        """Wait until the socket takes more (or the answer started, or the connection
        broke)."""
        loop = self.loop
        self.drain = drain = loop.create_future()
        timer = loop.call_later(seconds, _timeout, drain, WriteTimeout)
        try:
            await drain
        finally:
            timer.cancel()
            self.drain = None

    async def read(self, seconds: float) -> bytes:
        """The next part of the answer's body; ``b""`` at its end."""
        while True:
            chunks = self.chunks
            if chunks:
                data = chunks.popleft() if len(chunks) == 1 else b"".join(_drain(chunks))
                self.buffered -= len(data)
                if self.read_paused and self.buffered <= HIGH_WATER // 2:
                    self.read_paused = False
                    if self.transport is not None and not self.closed:
                        self.transport.resume_reading()
                return data
            if self.error is not None:
                raise self.error
            if self.complete:
                return b""
            loop = self.loop
            self.reader = reader = loop.create_future()
            timer = loop.call_later(seconds, _timeout, reader, ReadTimeout)
            try:
                await reader
            finally:
                timer.cancel()
                self.reader = None


def _drain(chunks: deque[bytes]) -> list[bytes]:
    out = list(chunks)
    chunks.clear()
    return out


def _timeout(fut: asyncio.Future[None], kind: type[TransportError]) -> None:
    if not fut.done():
        fut.set_exception(kind("the upstream did not answer in time"))


class _Pool:
    """Connections to one origin for one pool name (a store or an upstream)."""

    def __init__(
        self,
        transport: Transport,
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
        settings: Settings,
    ) -> None:
        self.owner = transport
        self.loop = asyncio.get_running_loop()
        self.host = host
        self.port = port
        self.tls = tls
        self.cap = settings.max_connections
        self.keepalive = settings.keepalive
        self.idle: deque[_Conn] = deque()
        self.conns: set[_Conn] = set()  # every open (or opening) connection
        self.opening = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.sweeper: asyncio.TimerHandle | None = None
        # Exchanges waiting for an answer's head, and one loop timer for all of them that
        # ends their read timeouts and starts their client watches (issue #14: two
        # call_later and two cancel per request cost ~13k instructions under uvloop;
        # while requests keep coming, each new deadline is later than the armed one and
        # a request costs a set add and discard).
        self.waiting: set[_Conn] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

    def size(self) -> int:
        return len(self.conns) + self.opening

    async def acquire(self, settings: Settings) -> _Conn:
        self.cap = settings.max_connections
        self.keepalive = settings.keepalive
        if not self.waiters:  # (with waiters queued, a newcomer goes behind them)
            conn = self._take_idle()
            if conn is not None:
                return conn
            if self.size() < self.cap and self.owner.has_room():
                return await self._open(settings)
        try:
            async with asyncio.timeout(settings.pool):
                while True:
                    conn = self._take_idle()
                    if conn is not None:
                        return conn
                    if self.size() < self.cap and (
                        self.owner.has_room() or self.owner.evict_idle()
                    ):
                        break
                    waiter = self.loop.create_future()
                    self.waiters.append(waiter)
                    self.owner.waiters.append(waiter)
                    try:
                        await waiter
                    except BaseException:
                        if waiter.done() and not waiter.cancelled():
                            self._notify()  # woken as the wait ended: pass the turn on
                        raise
                    finally:
                        _discard(self.waiters, waiter)
                        _discard(self.owner.waiters, waiter)
        except TimeoutError:
            raise PoolTimeout("no upstream connection became free in time") from None
        return await self._open(settings)

    def take_idle(self, settings: Settings) -> _Conn | None:
        """A pooled connection ready for a request, when one is and nobody waits for one
        (``acquire()`` without its coroutine, for the common case); else None."""
        self.cap = settings.max_connections
        self.keepalive = settings.keepalive
        return None if self.waiters else self._take_idle()

    def _take_idle(self) -> _Conn | None:
        idle = self.idle
        now = self.loop.time()
        while idle:
            conn = idle.pop()  # the most recently used: the one least likely closed
            if conn.closed:
                continue  # found dead before anything was written: drop it
            if now - conn.idle_since >= self.keepalive:
                conn.abort()
                continue
            return conn
        return None

    async def _open(self, settings: Settings) -> _Conn:
        self.opening += 1
        conn = _Conn(self)
        try:
            async with asyncio.timeout(settings.connect):
                await self.loop.create_connection(
                    lambda: conn,
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls is not None else None,
                )
        except TimeoutError:
            conn.closed = True
            raise ConnectTimeout("the upstream did not accept a connection in time") from None
        except OSError as exc:
            conn.closed = True
            raise ConnectFailed(f"the upstream refused the connection: {exc}") from None
        except BaseException:
            conn.abort()
            raise
        finally:
            self.opening -= 1
            if conn.closed:
                self._notify()
        if conn.closed:  # closed by the upstream as soon as it opened
            raise ConnectionBroken("the upstream closed the connection")
        self.conns.add(conn)
        return conn

    def release(self, conn: _Conn) -> None:
        """After an exchange: back to the idle list if it is reusable, else closed."""
        if not conn.reusable() or self.owner.closed:
            conn.abort()
            return
        conn._reset()
        conn.idle_since = self.loop.time()
        self.idle.append(conn)
        if self.sweeper is None:
            self.sweeper = self.loop.call_later(self.keepalive, self._sweep)
        self._notify()

    def lost(self, conn: _Conn) -> None:
        if conn in self.conns:
            self.conns.discard(conn)
            self._notify()

    def _notify(self) -> None:
        """Wake one waiter of this pool, or else one of any pool (a global slot is free)."""
        for waiters in (self.waiters, self.owner.waiters):
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return

    def _sweep(self) -> None:
        """Close connections idle for longer than the keep-alive (the upstream's own is
        usually 5 s: closing first means a request never meets a connection it closed)."""
        self.sweeper = None
        now = self.loop.time()
        idle = self.idle
        while idle and (idle[0].closed or now - idle[0].idle_since >= self.keepalive):
            idle.popleft().abort()
        if idle:
            wait = self.keepalive - (now - idle[0].idle_since)
            self.sweeper = self.loop.call_later(max(wait, 0.05), self._sweep)

    def wait_head(self, conn: _Conn, read: float, watch: bool) -> None:
        """``conn`` waits for its answer's head: time it out after ``read`` seconds, and
        (``watch``) watch its client after :data:`WATCH_AFTER`."""
        now = self.loop.time()
        conn.deadline = due = now + read
        if watch:
            conn.watch_at = watch_at = now + WATCH_AFTER
            if watch_at < due:
                due = watch_at
        self.waiting.add(conn)
        if self.timer is None or due < self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer_at = due
            self.timer = self.loop.call_at(due, self._expire)

    def _expire(self) -> None:
        """The timer: end the waits past their deadline, watch the clients due for it,
        arm again for the next time one is due."""
        self.timer = None
        now = self.loop.time() + _EARLY
        due = math.inf
        for conn in self.waiting:
            answer = conn.head
            if answer is None or answer.done():
                continue  # answered: its exchange takes it out of the set
            if conn.deadline <= now:
                _timeout(answer, ReadTimeout)
                continue
            if conn.watch_at <= now:
                conn.watch_at = math.inf
                if conn.disconnected is not None:
                    _watch(conn, answer, conn.disconnected)
            due = min(due, conn.deadline, conn.watch_at)
        if due != math.inf:
            self.timer_at = due
            self.timer = self.loop.call_at(due, self._expire)

    def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
            self.sweeper = None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for conn in list(self.conns):
            conn.abort()
        self.idle.clear()
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionBroken("the upstream client is closed"))
        self.waiters.clear()


def _discard(waiters: deque[asyncio.Future[None]], waiter: asyncio.Future[None]) -> None:
    with contextlib.suppress(ValueError):
        waiters.remove(waiter)


class Response:
    """An answer whose headers arrived; its body is read with :meth:`read`. Call
    :meth:`finish` when done with it (in a ``finally``): the connection goes back to the
    pool only if the exchange completed."""

    __slots__ = ("_conn", "_pool", "_read_timeout", "body_sent", "headers", "status")

    def __init__(self, conn: _Conn, read_timeout: float, body_sent: bool) -> None:
        self._conn: _Conn | None = conn
        self._pool = conn.pool
        self._read_timeout = read_timeout
        self.status = conn.status
        self.headers = conn.headers
        self.body_sent = body_sent

    @property
    def content_length(self) -> int | None:
        conn = self._conn
        return conn.content_length if conn is not None else None

    async def read(self) -> bytes:
        """The next part of the body, ``b""`` at the end (the connection is released
        then). Raises :class:`ReadTimeout` or :class:`ConnectionBroken`."""
        conn = self._conn
        if conn is None:
            return b""
        try:
            data = await conn.read(self._read_timeout)
        except BaseException:
            self._conn = None
            conn.abort()
            raise
        if not data:
            self.finish()
        return data

    def read_now(self) -> bytes | None:
        """The whole body when all of it is here already (a small answer comes with its
        head), taken in one piece and the connection released; else None (nothing read)."""
        conn = self._conn
        if conn is None or not conn.complete or conn.error is not None or conn.read_paused:
            return None
        chunks = conn.chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(_drain(chunks))
        conn.buffered = 0
        self.finish()
        return data

    async def read_all(self) -> bytes:
        data = self.read_now()
        if data is not None:
            return data
        parts: list[bytes] = []
        while chunk := await self.read():
            parts.append(chunk)
        return b"".join(parts)

    def finish(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            if self.body_sent:
                self._pool.release(conn)
            else:
                conn.abort()


class Transport:
    """Keep-alive pools, one per (pool name, origin); ``max_connections`` bounds the
    connections of all pools together (``[server] max_connections``), each pool's own cap
    comes with each call (a store's ``max_connections``)."""

    def __init__(self, *, max_connections: int = 512, tls: ssl.SSLContext | None = None) -> None:
        """``tls``: the context for ``https://`` upstreams (default: the system's CA
        store, host names checked)."""
        self.max_connections = max_connections
        self.pools: dict[tuple[str, str], _Pool] = {}
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.closed = False
        self._origins: dict[str, tuple[str, int, ssl.SSLContext | None, str]] = {}
        self._tls = tls

    def open_connections(self) -> int:
        return sum(p.size() for p in self.pools.values())

    def has_room(self) -> bool:
        return self.open_connections() < self.max_connections

    def evict_idle(self) -> bool:
        """Close the longest-idle connection of any pool to make room; False if none."""
        oldest: _Pool | None = None
        for pool in self.pools.values():
            if not pool.idle:
                continue
            if oldest is None or pool.idle[0].idle_since < oldest.idle[0].idle_since:
                oldest = pool
        if oldest is None:
            return False
        oldest.idle.popleft().abort()
        return True

    def _origin(self, origin: str) -> tuple[str, int, ssl.SSLContext | None, str]:
        found = self._origins.get(origin)
        if found is not None:
            return found
        scheme, _, authority = origin.partition("://")
        if scheme not in ("http", "https") or not authority:
            raise ConnectFailed(f"not an http(s) origin: {origin!r}")
        host, port_s = authority, ""
        if authority.startswith("["):
            end = authority.find("]")
            host, port_s = authority[1:end], authority[end + 2 :]
        elif ":" in authority:
            host, _, port_s = authority.rpartition(":")
        port = int(port_s) if port_s else (443 if scheme == "https" else 80)
        tls: ssl.SSLContext | None = None
        if scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        found = (host, port, tls, authority)
        self._origins[origin] = found
        return found

    async def request(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterator[bytes] | None,
        settings: Settings,
        pool: str = "",
        disconnected: Callable[[], Awaitable[object]] | None = None,
    ) -> Response:
        """Send one request and wait for its answer's headers.

        ``url`` is ``scheme://authority/target`` with the target as it goes on the wire.
        ``headers`` are sent as given (latin-1: the bytes the edge received); ``Host`` is
        added when absent, the body's framing when the headers do not say it (a byte body
        gets ``Content-Length``, a stream is sent chunked). ``disconnected`` returns when
        the client goes away: the wait for headers then ends with :class:`ClientGone` and
        the connection is closed."""
        if self.closed:
            raise ConnectionBroken("the upstream client is closed")
        scheme_end = url.find("://") + 3
        slash = url.find("/", scheme_end)
        if slash < 0:
            origin, target = url, "/"
        else:
            origin, target = url[:slash], url[slash:]
        host, port, tls, authority = self._origin(origin)
        key = (pool, origin)
        upool = self.pools.get(key)
        if upool is None:
            upool = self.pools[key] = _Pool(self, host, port, tls, settings)

        head = _head(method, target, headers, body, authority)
        # A pooled connection at hand is taken without a coroutine (the common case)
        conn = upool.take_idle(settings) or await upool.acquire(settings)
        # The exchange, in this frame: every coroutine frame between the request's task
        # and the wait for the answer's head is paid again on the wait's resume (issue #14).
        try:
            loop = conn.loop
            conn.active = True
            conn.head_only = method == "HEAD"
            conn.head = answer = loop.create_future()
            transport = conn.transport
            assert transport is not None
            body_sent = True
            if body is None:
                transport.write(head)
            elif isinstance(body, bytes):
                transport.write(head + body if len(body) <= 65536 else head)
                if len(body) > 65536:
                    transport.write(body)
            else:
                transport.write(head)
                body_sent = await _send_stream(conn, body, head, settings.write)
            if conn.write_paused and not answer.done():
                await conn.wait_drain(settings.write)
            if not answer.done():
                conn.disconnected = disconnected
                upool.wait_head(conn, settings.read, disconnected is not None)
                try:
                    await answer
                finally:
                    upool.waiting.discard(conn)
                    conn.watch_at = math.inf
                    conn.disconnected = None
                    watcher = conn.watcher
                    if watcher is not None:
                        conn.watcher = None
                        watcher.cancel()
            elif answer.exception() is not None:
                raise answer.exception()  # type: ignore[misc]
            return Response(conn, settings.read, body_sent)
        except BaseException:
            conn.abort()
            raise

    async def close(self) -> None:
        self.closed = True
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionBroken("the upstream client is closed"))
        self.waiters.clear()
        await asyncio.sleep(0)  # let the transports' connection_lost run


def _watch(
    conn: _Conn, answer: asyncio.Future[None], disconnected: Callable[[], Awaitable[object]]
) -> None:
    """Still no headers: watch the client; when it goes away, give up the connection."""

    async def watch() -> None:
        await disconnected()
        if not answer.done():
            answer.set_exception(ClientGone())
            conn.abort()

    conn.watcher = asyncio.get_running_loop().create_task(watch())


async def _send_stream(
    conn: _Conn, body: AsyncIterator[bytes], head: bytes, write_timeout: float
) -> bool:
    """Stream a body (chunked unless the head says its length); False when the upstream
    answered before it was all sent (the rest is not sent and the connection not reused)."""
    transport = conn.transport
    assert transport is not None
    chunked = head.endswith(b"transfer-encoding: chunked\r\n\r\n")
    answer = conn.head
    assert answer is not None
    async for chunk in body:
        if answer.done():
            return False
        if conn.closed:
            raise conn.error or ConnectionBroken("the upstream closed the connection")
        if not chunk:
            continue
        if chunked:
            transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            transport.write(chunk)
        if conn.write_paused:
            await conn.wait_drain(write_timeout)
    if answer.done():
        return False
    if chunked:
        transport.write(b"0\r\n\r\n")
    return True


def _head(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes | AsyncIterator[bytes] | None,
    authority: str,
) -> bytes:
    """The request line and fields; names are HTTP tokens (the edge's own, or a client's
    as httptools parsed them), values anything but CR and LF (refused)."""
    # Built with C-level joins (no Python frame or f-string per header): this runs on
    # every request, and a loop of f-strings over its ~10 fields cost ~2 us.
    fields = list(map(": ".join, headers))
    block = "\r\n".join(fields)
    # Which framing fields the caller set, by name: every field starts a line (CR and LF
    # inside a field are refused below). The edge's own names are lower-case, so its Host
    # is found without a lower-cased copy, and a GET without a body needs no more (issue
    # #14: lower-casing and searching the block for all three cost ~3.5k instructions).
    lines = "\r\n" + block
    if "\r\nhost:" in lines or "\r\nhost:" in lines.lower():
        host = ""
        probe = method + target  # every text in the head but its own line breaks
    else:
        host = "host: " + authority + "\r\n"
        probe = method + target + authority
    framing = ""
    if body is None:
        if method not in _NO_BODY_METHODS:
            lowered = lines.lower()
            if "\r\ncontent-length:" not in lowered and "\r\ntransfer-encoding:" not in lowered:
                framing = "content-length: 0\r\n"
    elif isinstance(body, bytes):
        if body or method not in _NO_BODY_METHODS:
            lowered = lines.lower()
            if "\r\ncontent-length:" not in lowered and "\r\ntransfer-encoding:" not in lowered:
                framing = f"content-length: {len(body)}\r\n"
    elif "\r\ncontent-length:" not in lines.lower():
        framing = "transfer-encoding: chunked\r\n"
    # A CR or LF inside a name or value would smuggle a header or a request: looked for
    # in the fields without their separators (memchr; counting them in the whole head
    # cost ~3.7k instructions, this ~3k less).
    probe += "".join(fields)
    if "\n" in probe or "\r" in probe:
        raise ConnectionBroken("a request header holds a line break")
    if fields:
        text = f"{method} {target} HTTP/1.1\r\n{host}{block}\r\n{framing}\r\n"
    else:
        text = f"{method} {target} HTTP/1.1\r\n{host}{framing}\r\n"
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        # A value the edge made (a credential from the environment) outside latin-1.
        return text.encode("utf-8")
