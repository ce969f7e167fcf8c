"""Step -1 of the request path: the front door, before any work (SPEC §8).

uvicorn's httptools protocol reads a request head without bound: httptools joins a header
value's pieces in memory until its end arrives (a 48 MiB header is 48 MiB, copied again
for every read), takes any number of fields, waits for slow heads for ever, and hands a
WebSocket upgrade to the app. :class:`FrontDoorProtocol` is that protocol with limits,
enforced on the bytes as they arrive, so a refused request costs a few reads:

* request line + header fields at most ``max_header_bytes`` (counted on the raw bytes
  fed to the parser: a read that would pass the limit is cut at it, so no more than the
  limit is ever handed to httptools for one head) and at most ``max_header_fields``
  fields: 431 and the connection closed;
* a head must be complete within ``header_timeout`` seconds of its first byte (or of the
  connection opening): 408 and closed; a connection that never sent a byte is closed;
* malformed framing is 400, never 500: whatever llhttp refuses (``CL`` + ``TE``, two
  different ``Content-Length`` s, a sign, a bad chunk) and a ``Content-Length`` that is
  not plain digits (``"7 "``: llhttp lets the space through, the upstream client then
  fails on it);
* a WebSocket upgrade is 403 (the edge serves none); another protocol upgrade (``h2c``)
  is served as plain HTTP/1.1, as RFC 9110 §7.8 allows, unless it has a body (llhttp
  would read that body as the next request): 400;
* request trailers never reach the application (uvicorn appends them to the request's
  header list while the app runs), and the bytes between body pieces (chunk sizes,
  extensions, trailers) are bounded by ``max_header_bytes`` too: beyond, the connection
  is cut.

Answers go out through :class:`FrontDoorCycle`, uvicorn's request-response cycle with the
same checks at a lower cost (issue #14, measured with ``benchmarks/instructions.py``): an
answer's head is written together with its first body part (one system call and one TCP
segment for a small answer, where uvicorn makes two), and its header names and values are
checked with one search each instead of two per header. Idle keep-alive connections are
closed by the same sweep as slow heads, not by a timer armed after every answer.

Refusals are small ``application/problem+json`` answers (the surface is not known yet,
so ``about:blank`` types, as :mod:`proxy.endpoints` uses without a surface).
Trust model: everything arriving here is hostile until the head is complete.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import urllib.parse
import weakref
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any, ClassVar

import httptools
import orjson
from uvicorn._types import ASGISendEvent, HTTPScope
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, FlowControl, service_unavailable
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

__all__ = [
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_HEADER_FIELDS",
    "LINGER_SECONDS",
    "FrontDoorCycle",
    "FrontDoorProtocol",
    "front_door",
    "refusal",
]

log = logging.getLogger("magento_edge.frontdoor")

DEFAULT_MAX_HEADER_BYTES = 16384
DEFAULT_MAX_HEADER_FIELDS = 100
DEFAULT_HEADER_TIMEOUT = 10.0
# How long a refused connection stays half-open (its answer sent, nothing more read).
LINGER_SECONDS = 1.0
# A first body part up to this size goes out in one write with the answer's head (copied
# once); a larger one is written on its own after the head.
_JOIN_BODY_BYTES = 64 * 1024
# The bytes uvicorn's HEADER_RE and HEADER_VALUE_RE accept in a name and in a value:
# ``joined.translate(None, ok)`` deletes them, so what is left is what they would refuse
# (a table lookup per byte; the regular expressions cost several times more per byte).
_NAME_OK = bytes(b for b in range(256) if not HEADER_RE.match(bytes([b])))
_VALUE_OK = bytes(b for b in range(256) if not HEADER_VALUE_RE.match(bytes([b])))
_NAME = operator.itemgetter(0)
_VALUE = operator.itemgetter(1)


class _Refused(Exception):
    """Raised inside a parser callback to stop llhttp at once; the answer is on the
    protocol (``_refusal``)."""


def refusal(status: int, code: str, detail: str) -> bytes:
    """A whole ``Connection: close`` answer: status line, headers and a problem body."""
    phrase = HTTPStatus(status).phrase
    body = orjson.dumps(
        {"type": f"about:blank#{code}", "title": phrase, "status": status, "detail": detail}
    )
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class FrontDoorProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the front door's limits (the class attributes;
    :func:`front_door` makes a subclass with configured ones)."""

    max_header_bytes: ClassVar[int] = DEFAULT_MAX_HEADER_BYTES
    max_header_fields: ClassVar[int] = DEFAULT_MAX_HEADER_FIELDS
    header_timeout: ClassVar[float] = DEFAULT_HEADER_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # reading a request head (or waiting for the next one)
        self._head_bytes = 0  # raw bytes fed to the parser for this head
        self._seen = 0  # bytes of URL, names and values the parser handed over
        self._fields = 0
        self._heads = 0  # heads completed on this connection
        self._gap = 0  # raw bytes fed since the last piece of body (framing, trailers)
        self._has_body = False
        self._refusal: tuple[int, str, str] | None = None
        self._closed = False  # refused or cut: every later byte is ignored
        # Loop time the head being read began (0: none is). Read by the server's sweep
        # (_sweep), not a timer per request: that cost ~2 us a request, this a float.
        self._head_started = 0.0
        # Loop time the connection went idle after an answer (0: it is not idle); the
        # sweep closes it after uvicorn's timeout_keep_alive, as uvicorn's own timer did.
        self._idle_since = 0.0
        self._linger: asyncio.TimerHandle | None = None

    # -- connection -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_started = self.loop.time()  # a connection that never sends one is cut too
        if self.server_state not in _SWEEPS:
            _sweep(self.server_state, self.loop, min(1.0, self.header_timeout / 4))

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_started = 0.0
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._idle_since = 0.0
        while self._in_head:
            if not self._head_started:
                self._head_started = self.loop.time()
            room = self.max_header_bytes - self._head_bytes
            if len(data) <= room:
                self._head_bytes += len(data)
                # _feed, inlined: a whole small request comes in one read, on every request
                try:
                    self.parser.feed_data(data)
                except (httptools.HttpParserUpgrade, httptools.HttpParserError) as exc:
                    self._parse_failed(exc, data)
                return
            # Feed only what fits: either the head ends inside it (go on with the rest:
            # body, or the next request's head) or it is too large, and no more of it is
            # ever handed to httptools.
            heads = self._heads
            self._head_bytes += room
            if room:
                self._feed(data[:room])
            if self._closed:
                return
            if self._heads == heads:
                self._refuse(431, "header_too_large", self._too_large())
                return
            data = data[room:]
        self._gap += len(data)
        self._feed(data)
        if self._gap > self.max_header_bytes and not self._closed:
            # Chunk sizes, extensions or trailers without end: no answer can be framed
            # into a request the app is already handling; the connection is cut.
            log.info("front door: request framing beyond %d bytes, cut", self.max_header_bytes)
            self._cut()

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserUpgrade, httptools.HttpParserError) as exc:
            self._parse_failed(exc, data)

    def _parse_failed(self, exc: Exception, data: bytes) -> None:
        """llhttp stopped on ``data``: an upgrade (go on after the head) or an error."""
        if isinstance(exc, httptools.HttpParserUpgrade):
            if self._closed:
                return
            # Not a WebSocket (refused in on_headers_complete): served as HTTP/1.1, the
            # Upgrade ignored; llhttp stopped at the end of the head, so go on after it.
            rest = data[exc.args[0] :] if exc.args else b""
            if rest:
                self.data_received(rest)
            return
        if self._closed:
            return
        if self._refusal is not None:
            self._refuse(*self._refusal)
        else:
            # llhttp's own reasons are fixed strings naming the rule (never input)
            why = str(exc) if not isinstance(exc, httptools.HttpParserCallbackError) else ""
            detail = "The request is not valid HTTP/1.1" + (f": {why}." if why else ".")
            self._refuse(400, "bad_request", detail)

    # -- parser callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        # uvicorn's own on_message_begin, inlined (it runs on every request)
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }
        self._in_head = True
        self._seen = self._fields = 0
        self._has_body = False

    def on_url(self, url: bytes) -> None:
        self._seen += len(url)
        if self._seen > self.max_header_bytes:
            self._stop(431, "header_too_large", self._too_large())
        self.url += url  # uvicorn's own on_url (inlined: it runs on every request)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a trailer: never handed to the application (SPEC §8)
        self._fields += 1
        self._seen += len(name) + len(value) + 3  # at least ":" and CRLF: never above raw
        if self._fields > self.max_header_fields:
            self._stop(
                431,
                "too_many_header_fields",
                f"A request may have at most {self.max_header_fields} header fields.",
            )
        if self._seen > self.max_header_bytes:
            self._stop(431, "header_too_large", self._too_large())
        lname = name.lower()
        if lname == b"content-length":
            if not value.isdigit():  # bytes.isdigit: ASCII digits only, no sign or space
                self._stop(400, "bad_request", "Content-Length must be decimal digits only.")
            self._has_body = self._has_body or value.strip(b"0") != b""
        elif lname == b"transfer-encoding":
            self._has_body = True
        elif lname == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((lname, value))  # the rest of uvicorn's own on_header (inlined)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads += 1
        self._gap = 0
        self._head_started = 0.0
        if self.parser.should_upgrade():
            if self._upgrade_to(b"websocket"):
                self._stop(403, "forbidden", "WebSocket connections are not served here.")
            if self._has_body:
                self._stop(
                    400,
                    "bad_request",
                    "A request asking for a protocol upgrade cannot have a body.",
                )
        # What uvicorn's on_headers_complete does (the scope's method, version and path;
        # limit_concurrency; pipelining), with FrontDoorCycle for the answer. WebSocket
        # upgrades never get here (refused above), other upgrades are plain HTTP/1.1.
        parser = self.parser
        scope = self.scope
        scope["method"] = parser.get_method().decode("ascii")
        version = parser.get_http_version()
        if version != "1.1":
            scope["http_version"] = version
        url = httptools.parse_url(self.url)
        raw_path = url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        scope["path"] = self.root_path + path
        scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        scope["query_string"] = url.query or b""
        app = self.app
        limit = self.limit_concurrency
        if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
            app = service_unavailable
            self.logger.warning("Exceeded concurrency limit.")
        previous = self.cycle
        self.cycle = cycle = FrontDoorCycle(  # positional: cheaper than keywords
            scope,
            self.transport,
            self.flow,
            self.logger,
            self.access_logger,
            self.access_log,
            self.server_state.default_headers,
            asyncio.Event(),
            self.expect_100_continue,
            version != "1.0" and parser.should_keep_alive(),
            self.on_response_complete,
            self.loop,
        )
        if previous is None or previous.response_complete:
            self._start_asgi_task(cycle, app)
        else:  # pipelined: after the answer in progress
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, app))

    # on_body and on_message_complete: uvicorn's, inlined, without its check for a
    # WebSocket upgrade (refused in on_headers_complete: such a request never gets here).

    def on_body(self, body: bytes) -> None:
        self._gap = 0
        cycle = self.cycle
        if cycle.response_complete:
            return
        cycle.body += body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if not cycle.response_complete:
            cycle.more_body = False
            cycle.message_event.set()
        self._in_head = True  # whatever follows is the next request's head
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        # uvicorn's, with the idle time noted for the sweep instead of a timer armed
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle_since = self.loop.time()

    # -- refusing -------------------------------------------------------------------------

    def _too_large(self) -> str:
        return f"The request line and header fields may have at most {self.max_header_bytes} bytes."

    def _upgrade_to(self, token: bytes) -> bool:
        return any(name == b"upgrade" and token in value.lower() for name, value in self.headers)

    def _stop(self, status: int, code: str, detail: str) -> None:
        self._refusal = (status, code, detail)
        raise _Refused(code)

    def _refuse(self, status: int, code: str, detail: str) -> None:
        """Answer ``status`` and close; after an answer still being sent for an earlier
        (pipelined) request, close once that one is done instead of writing into it."""
        self._closed = True
        self._head_started = 0.0
        log.info("front door: %d %s", status, code)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if self._in_head:  # a later request's head: end the answer in progress, close
                cycle.keep_alive = False
                return
            # This request's body is broken while the app handles it: refuse if nothing
            # was answered yet, and tell the app its client is gone (as connection_lost).
            if not cycle.response_started and not self.transport.is_closing():
                self.transport.write(refusal(status, code, detail))
            cycle.disconnected = True
            cycle.message_event.set()
            self.transport.close()
            return
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(refusal(status, code, detail))
        if transport.can_write_eof():
            # Half-close and stop reading, then close a moment later: closing with unread
            # input at once makes the kernel answer with a reset, which destroys the answer
            # before a client that is still sending has read it. Paused, the rest of what
            # it sends stays in the kernel's buffers (bounded) and its sends stall.
            transport.write_eof()
            transport.pause_reading()
            self._linger = self.loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()

    def _cut(self) -> None:
        self._closed = True
        self._head_started = 0.0
        if not self.transport.is_closing():
            self.transport.close()

    # -- the header-read deadline ----------------------------------------------------------

    def _expired(self) -> None:
        self._head_started = 0.0
        if self._closed or not self._in_head or self.transport.is_closing():
            return
        if self._head_bytes == 0 and (self.cycle is None or self.cycle.response_complete):
            self._cut()  # nothing was asked: close like an idle keep-alive connection
            return
        self._refuse(
            408,
            "request_timeout",
            f"The request head was not complete within {self.header_timeout:g} seconds.",
        )


class FrontDoorCycle(RequestResponseCycle):
    """uvicorn's request-response cycle; :meth:`send` writes an answer's head with its
    first body part and checks its headers with two searches in all."""

    _head: bytes = b""  # the answer's head, until the first body part takes it along

    def __init__(
        self,
        scope: HTTPScope,
        transport: asyncio.Transport,
        flow: FlowControl,
        logger: logging.Logger,
        access_logger: logging.Logger,
        access_log: bool,
        default_headers: list[tuple[bytes, bytes]],
        message_event: asyncio.Event,
        expect_100_continue: bool,
        keep_alive: bool,
        on_response: Callable[..., None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        # RequestResponseCycle.__init__'s attributes, set here: one call instead of two,
        # and no keyword dictionary (a property test holds the two to the same set)
        self.scope = scope
        self.transport = transport
        self.flow = flow
        self.logger = logger
        self.access_logger = access_logger
        self.access_log = access_log
        self.default_headers = default_headers
        self.message_event = message_event
        self.on_response = on_response
        self.disconnected = False
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = expect_100_continue
        self.body = bytearray()
        self.more_body = True
        self.response_started = False
        self.response_complete = False
        self.chunked_encoding: bool | None = None
        self.expected_content_length = 0
        # The protocol's loop: asyncio.get_running_loop() costs a getpid() system call.
        self.loop = loop

    async def send(self, message: ASGISendEvent) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        if not self.response_started:
            if message["type"] != "http.response.start":
                raise RuntimeError(
                    f"Expected ASGI message 'http.response.start', but got '{message['type']}'."
                )
            self.response_started = True
            self.waiting_for_100_continue = False
            self._head = self._start(message["status"], message.get("headers", ()))
            # A body part sent in this same turn of the loop takes the head along; an
            # answer whose body comes later (a stream waiting on Magento) gets its head now.
            self.loop.call_soon(self._flush)
            return
        if self.response_complete:
            raise RuntimeError(
                f"Unexpected ASGI message '{message['type']}' sent, "
                "after response already completed."
            )
        if message["type"] != "http.response.body":
            raise RuntimeError(
                f"Expected ASGI message 'http.response.body', but got '{message['type']}'."
            )
        self._body_part(message.get("body", b""), message.get("more_body", False))

    def answer(self, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> bool:
        """What ``send()`` of a start message and then of its one whole body does, in one
        call without awaiting (the upstream step's small answers: two coroutine frames,
        two message dicts and a loop callback fewer per request). False, with nothing done,
        where ``send()`` would first wait for the socket to drain, had begun an answer, or
        the client is gone: the caller then sends the two messages."""
        if self.response_started or self.disconnected or self.flow.write_paused:
            return False
        self.response_started = True
        self.waiting_for_100_continue = False
        self._head = self._start(status, headers)
        self._body_part(body, False)
        return True

    def _body_part(self, body: bytes, more_body: bool) -> None:
        """One body part on the wire, with the head when it is still waiting."""
        head, self._head = self._head, b""
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
            out = head
        elif self.chunked_encoding:
            out = head + (b"%x\r\n%b\r\n" % (len(body), body) if body else b"")
            if not more_body:
                out += b"0\r\n\r\n"
        else:
            if len(body) > self.expected_content_length:
                if head:  # as uvicorn: the head was out before the app's mistake
                    self.transport.write(head)
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= len(body)
            if head and len(body) > _JOIN_BODY_BYTES:
                self.transport.write(head)
                out = body
            else:
                out = head + body if head else body
        if out:
            self.transport.write(out)
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()

    def _flush(self) -> None:
        head, self._head = self._head, b""
        if head and not self.disconnected and not self.transport.is_closing():
            self.transport.write(head)

    def _start(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
        """The answer's status line and header fields, as uvicorn writes them (names in
        lower case; ``connection: close`` or chunked framing added where needed)."""
        fields = [*self.default_headers, *headers]
        # One check over all names and one over all values: uvicorn's patterns match
        # single bytes, so joining the parts finds exactly what a search per part would.
        # (map and itemgetter: no Python frame, where a list comprehension is a call)
        names = b"".join(map(_NAME, fields))
        if names.translate(None, _NAME_OK):
            raise RuntimeError("Invalid HTTP header name.")
        if names != names.lower():  # (the edge's own and its upstream's: lower case already)
            fields = [(name.lower(), value) for name, value in fields]
        if b"".join(map(_VALUE, fields)).translate(None, _VALUE_OK):
            raise RuntimeError("Invalid HTTP header value.")
        content = [STATUS_LINE[status]]
        closing = False
        for name, value in fields:
            if name == b"content-length" and self.chunked_encoding is None:
                self.expected_content_length = int(value)
                self.chunked_encoding = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.expected_content_length = 0
                self.chunked_encoding = True
            elif name == b"connection" and b"close" in [
                token.lower().strip() for token in value.split(b",")
            ]:
                self.keep_alive = False
                closing = True
            content += (name, b": ", value, b"\r\n")
        if not self.keep_alive and not closing:
            content.append(b"connection: close\r\n")
        if (
            self.chunked_encoding is None
            and self.scope["method"] != "HEAD"
            and status not in (204, 304)
        ):
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        return b"".join(content)


# server (uvicorn's ServerState) -> its sweep's next run; one sweep per server and loop
_SWEEPS: weakref.WeakKeyDictionary[Any, asyncio.TimerHandle] = weakref.WeakKeyDictionary()


def _sweep(state: Any, loop: asyncio.AbstractEventLoop, period: float) -> None:
    """Every ``period`` seconds: end the heads that have taken longer than the deadline.
    A deadline is so kept to within ``period`` (a quarter of it, at most a second)."""
    now = loop.time()
    for connection in list(state.connections):
        started = getattr(connection, "_head_started", 0.0)
        if started and now - started >= connection.header_timeout:
            connection._expired()
        idle = getattr(connection, "_idle_since", 0.0)
        if idle and now - idle >= connection.timeout_keep_alive:
            connection._idle_since = 0.0
            if not connection.transport.is_closing():
                connection.transport.close()
    _SWEEPS[state] = loop.call_later(period, _sweep, state, loop, period)


def front_door(
    *,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_header_fields: int = DEFAULT_MAX_HEADER_FIELDS,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
) -> type[FrontDoorProtocol]:
    """The protocol class for uvicorn's ``http=`` with these limits."""
    return type(
        "FrontDoorProtocol",
        (FrontDoorProtocol,),
        {
            "max_header_bytes": max_header_bytes,
            "max_header_fields": max_header_fields,
            "header_timeout": header_timeout,
        },
    )
