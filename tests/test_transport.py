"""Conformance of the edge's own HTTP/1.1 transport (proxy.transport, SPEC §8) against a
scripted raw-socket upstream: RFC 9112 framing (Content-Length, chunked, close-delimited,
HEAD/204/304 without bodies, 1xx), keep-alive reuse only after a complete exchange, no
reuse after an error, a timeout, a cancellation or ``Connection: close``, faults (refuse,
hang, reset before headers and mid-body, idle keep-alive closed by the upstream), the pool
caps, a client gone while waiting for headers, bytes forwarded as received; hypothesis
over answer framing. Every test checks that no task or file descriptor leaked."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.body import ClientGone
from proxy.transport import (
    HIGH_WATER,
    ConnectFailed,
    ConnectionBroken,
    PoolTimeout,
    ReadTimeout,
    Response,
    Settings,
    Transport,
    WriteTimeout,
)
from tests.scripted_upstream import Conn, Request, ScriptedUpstream, answer, await_true
from tests.servers import free_port, self_signed_certificate, serving

FAST = Settings(connect=2.0, read=5.0, pool=2.0, write=5.0, keepalive=30.0)


@pytest.fixture
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as up:
        yield up


@pytest.fixture
async def transport(upstream: ScriptedUpstream) -> AsyncIterator[Transport]:
    """A transport, and the proof that a test leaves no task or descriptor behind."""
    me = psutil.Process()
    fds = me.num_fds()
    tasks = len(asyncio.all_tasks())
    t = Transport(max_connections=64)
    yield t
    await t.close()
    assert await await_true(lambda: len(asyncio.all_tasks()) <= tasks), asyncio.all_tasks()
    assert await await_true(lambda: upstream.open == 0)
    assert await await_true(lambda: me.num_fds() <= fds), (me.num_fds(), fds)


async def get(
    t: Transport,
    up: ScriptedUpstream,
    method: str = "GET",
    path: str = "/x",
    body: bytes | AsyncIterator[bytes] | None = None,
    s: Settings = FAST,
    pool: str = "",
    headers: list[tuple[str, str]] | None = None,
) -> tuple[Response, bytes]:
    r = await t.request(method, up.url + path, headers or [], body, s, pool=pool)
    try:
        data = await r.read_all()
    finally:
        r.finish()
    return r, data


# -- framing ---------------------------------------------------------------------------


async def test_content_length_answer_and_reuse(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    for i in range(3):
        r, body = await get(transport, upstream, path=f"/n{i}")
        assert (r.status, body) == (200, b"ok")
    assert upstream.connections == 1  # one keep-alive connection for all three
    assert [q.target for q in upstream.requests] == ["/n0", "/n1", "/n2"]


async def test_chunked_answer_with_extensions_and_trailers(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    async def script(conn: Conn) -> None:
        while await conn.read_request() is not None:
            conn.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n"
            )

    upstream.script = script
    for _ in range(2):
        r, body = await get(transport, upstream)
        assert (r.status, body) == (200, b"hello world")
        assert r.content_length is None
    assert upstream.connections == 1


async def test_close_delimited_answer_is_read_to_eof_and_not_reused(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    async def script(conn: Conn) -> None:
        await conn.read_request()
        conn.write(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 100_000)
        await conn.drain()
        conn.close()

    upstream.script = script
    for _ in range(2):
        r, body = await get(transport, upstream)
        assert (r.status, len(body)) == (200, 100_000)
    assert upstream.connections == 2


async def test_head_has_no_body(transport: Transport, upstream: ScriptedUpstream) -> None:
    async def script(conn: Conn) -> None:
        while await conn.read_request() is not None:
            conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")

    upstream.script = script
    r, body = await get(transport, upstream, "HEAD")
    assert (r.status, body) == (200, b"")
    assert (b"Content-Length", b"1234") in r.headers
    # The next request works (a HEAD's connection is not reused: its framing is unsure).
    r, body = await get(transport, upstream, "HEAD")
    assert (r.status, body) == (200, b"")


@pytest.mark.parametrize("status", [204, 304])
async def test_204_and_304_have_no_body_and_the_connection_is_reused(
    transport: Transport, upstream: ScriptedUpstream, status: int
) -> None:
    async def script(conn: Conn) -> None:
        await conn.read_request()
        conn.write(f'HTTP/1.1 {status} X\r\nETag: "e"\r\n\r\n'.encode())
        while await conn.read_request() is not None:
            conn.write(answer())

    upstream.script = script
    r, body = await get(transport, upstream)
    assert (r.status, body) == (status, b"")
    r, body = await get(transport, upstream)
    assert (r.status, body) == (200, b"ok")
    assert upstream.connections == 1


async def test_1xx_answers_before_the_answer_are_skipped(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    async def script(conn: Conn) -> None:
        while await conn.read_request() is not None:
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            conn.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
            conn.write(answer(201, b"made", [("X-Real", "1")]))

    upstream.script = script
    for _ in range(2):
        r, body = await get(transport, upstream, "POST", body=b"{}")
        assert (r.status, body) == (201, b"made")
        names = [n.lower() for n, _ in r.headers]
        assert b"x-real" in names and b"link" not in names
    assert upstream.connections == 1


async def test_header_bytes_go_out_exactly_as_received(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    raw = b"caf\xe9 \x80\xff"  # not ASCII, not UTF-8: forwarded byte for byte
    await get(transport, upstream, headers=[("X-Odd", raw.decode("latin-1"))])
    q = upstream.requests[0]
    assert q.header(b"x-odd") == raw
    assert q.header(b"host") == f"127.0.0.1:{upstream.port}".encode()


async def test_a_line_break_in_a_header_is_never_written(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    with pytest.raises(ConnectionBroken):
        await get(transport, upstream, headers=[("x-a", "1\r\nx-smuggled: 1")])
    assert upstream.requests == []


async def test_request_bodies_bytes_and_streams(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for i in range(5):
            yield b"part%d;" % i

    async def sized() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"def"

    await get(transport, upstream, "POST", body=b"plain")
    await get(transport, upstream, "PUT", body=parts())
    await get(transport, upstream, "PUT", body=sized(), headers=[("content-length", "6")])
    await get(transport, upstream, "DELETE")
    a, b, c, d = upstream.requests
    assert (a.body, a.header(b"content-length")) == (b"plain", b"5")
    assert (b.body, b.header(b"transfer-encoding")) == (
        b"part0;part1;part2;part3;part4;",
        b"chunked",
    )
    assert (c.body, c.header(b"content-length"), c.header(b"transfer-encoding")) == (
        b"abcdef", b"6", None,
    )  # fmt: skip
    assert d.header(b"content-length") == b"0"
    assert upstream.connections == 1


async def test_an_answer_before_the_whole_body_ends_the_upload(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    """An upstream that refuses an upload early (413 without reading it) is answered
    with its 413 as soon as its headers arrive, not after a write timeout; the rest of the
    body is not sent, the connection not reused."""
    got_head = threading.Event()

    async def refuses(conn: Conn) -> None:
        await conn.reader.readuntil(b"\r\n\r\n")  # the head only, never the body
        conn.writer.transport.pause_reading()  # type: ignore[attr-defined]
        upstream.requests.append(Request("PUT", "/", [], b"", conn.index))
        await asyncio.sleep(0.3)  # the edge is blocked on a full socket by now
        conn.write(b"HTTP/1.1 413 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntoo\r\n")
        await conn.drain()
        # The rest of the answer only once the edge has its head (a thread's event).
        while not got_head.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        conn.write(b"4\r\n big\r\n0\r\n\r\n")
        await conn.drain()
        conn.writer.transport.resume_reading()  # type: ignore[attr-defined]
        await conn.wait_peer_close()

    upstream.scripts.append(refuses)

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(100_000):
            yield b"u" * 65536

    try:
        r = await transport.request(
            "PUT", upstream.url + "/", [], endless(), Settings(write=3.0, read=5.0)
        )
    finally:
        got_head.set()
    try:
        assert (r.status, await r.read_all()) == (413, b"too big")
        assert not r.body_sent
    finally:
        r.finish()
    assert await await_true(lambda: upstream.peer_closed == [0])
    await get(transport, upstream)
    assert upstream.connections == 2


async def test_a_second_answer_to_one_request_is_never_reused(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    upstream.scripts.append(_reply(answer(body=b"one") + answer(body=b"two")))
    _r, body = await get(transport, upstream)
    assert body == b"one"
    _r, body = await get(transport, upstream)
    assert body == b"ok" and upstream.connections == 2


async def test_tls_upstream_verified(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)

    async def app(scope: dict[str, object], receive: object, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"secure"})

    with serving(app, tls=(cert, key)) as srv:
        trusted = ssl.create_default_context(cafile=cert)
        t = Transport(tls=trusted)
        try:
            r = await t.request("GET", srv.url + "/", [], None, FAST)
            try:
                assert (r.status, await r.read_all()) == (200, b"secure")
            finally:
                r.finish()
        finally:
            await t.close()
        t = Transport()  # the system's CA store: a self-signed certificate is refused
        try:
            with pytest.raises(ConnectFailed, match="CERTIFICATE_VERIFY_FAILED"):
                await t.request("GET", srv.url + "/", [], None, FAST)
        finally:
            await t.close()


# -- reuse only after a complete exchange ------------------------------------------------


async def test_connection_close_answer_is_not_reused(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    async def script(conn: Conn) -> None:
        while await conn.read_request() is not None:
            conn.write(answer(headers=[("Connection", "close")]))

    upstream.script = script
    await get(transport, upstream)
    await get(transport, upstream)
    assert upstream.connections == 2


async def test_a_partly_read_answer_is_not_reused(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    async def script(conn: Conn) -> None:
        while await conn.read_request() is not None:
            conn.write(answer(body=b"y" * 2_000_000))

    upstream.script = script
    r = await transport.request("GET", upstream.url + "/", [], None, FAST)
    assert await r.read()
    r.finish()  # abandoned mid-body: the connection is closed
    assert await await_true(lambda: upstream.peer_closed == [0])
    r, body = await get(transport, upstream)
    assert len(body) == 2_000_000
    assert upstream.connections == 2


async def test_malformed_answer_is_an_error_and_not_reused(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    upstream.scripts.append(_reply(b"HTTP/1.1 abc nonsense\r\n\r\n"))
    with pytest.raises(ConnectionBroken):
        await get(transport, upstream)
    r, body = await get(transport, upstream)
    assert (r.status, body) == (200, b"ok")
    assert upstream.connections == 2


async def test_read_timeout_before_headers_and_no_reuse(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    upstream.scripts.append(_hang)
    with pytest.raises(ReadTimeout):
        await get(transport, upstream, s=Settings(read=0.2, keepalive=30.0))
    assert await await_true(lambda: upstream.peer_closed == [0])  # the edge let it go
    _r, body = await get(transport, upstream)
    assert body == b"ok" and upstream.connections == 2


async def test_read_timeouts_share_one_timer_and_each_fires_on_time(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    """A pool's waits for headers share one timer: a shorter timeout arriving after a
    longer one still fires on time, the longer one too, and answers in between are not
    disturbed."""
    upstream.scripts.extend([_hang, _hang])
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def timed(read: float) -> float:
        with pytest.raises(ReadTimeout):
            await get(transport, upstream, s=Settings(read=read, keepalive=30.0))
        return loop.time() - started

    slow = asyncio.ensure_future(timed(1.0))
    assert await await_true(lambda: len(upstream.requests) == 1)
    fast = asyncio.ensure_future(timed(0.2))
    assert 0.15 <= await fast < 0.8
    assert not slow.done()
    _r, body = await get(transport, upstream)  # a third connection, answered at once
    assert body == b"ok"
    assert 0.95 <= await slow < 1.6


async def test_read_timeout_mid_body(transport: Transport, upstream: ScriptedUpstream) -> None:
    async def script(conn: Conn) -> None:
        await conn.read_request()
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await conn.wait_peer_close()

    upstream.scripts.append(script)
    r = await transport.request("GET", upstream.url + "/", [], None, Settings(read=0.2))
    try:
        assert await r.read() == b"abc"
        with pytest.raises(ReadTimeout):
            await r.read()
    finally:
        r.finish()
    assert await await_true(lambda: upstream.peer_closed == [0])


async def test_cancelled_request_closes_its_connection(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    upstream.scripts.append(_hang)
    task = asyncio.ensure_future(get(transport, upstream))
    assert await await_true(lambda: len(upstream.requests) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await await_true(lambda: upstream.peer_closed == [0])
    await get(transport, upstream)
    assert upstream.connections == 2


async def test_client_gone_while_waiting_for_headers_releases_the_connection(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    upstream.scripts.append(_hang)
    gone = asyncio.Event()

    async def disconnected() -> None:
        await gone.wait()

    task = asyncio.ensure_future(
        transport.request("GET", upstream.url + "/", [], None, FAST, disconnected=disconnected)
    )
    assert await await_true(lambda: len(upstream.requests) == 1)
    gone.set()
    with pytest.raises(ClientGone):
        await task
    assert await await_true(lambda: upstream.peer_closed == [0])


# -- faults ------------------------------------------------------------------------------


async def test_refused(transport: Transport) -> None:
    with pytest.raises(ConnectFailed):
        await transport.request("GET", f"http://127.0.0.1:{free_port()}/", [], None, FAST)


async def test_reset_before_headers(transport: Transport, upstream: ScriptedUpstream) -> None:
    async def script(conn: Conn) -> None:
        await conn.read_request()
        conn.reset()

    upstream.scripts.append(script)
    with pytest.raises(ConnectionBroken):
        await get(transport, upstream, "PUT", body=b"{}")
    assert upstream.calls("PUT") == 1  # never sent again


async def test_reset_mid_body_is_a_cut_answer_not_a_hang(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    async def script(conn: Conn) -> None:
        await conn.read_request()
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"z" * 5000)
        await conn.drain()
        await asyncio.sleep(0.05)
        conn.reset()

    upstream.scripts.append(script)
    r = await transport.request("GET", upstream.url + "/", [], None, FAST)
    got = 0
    try:
        with pytest.raises(ConnectionBroken):
            while chunk := await r.read():
                got += len(chunk)
    finally:
        r.finish()
    assert 0 < got < 1_000_000


async def test_upstream_closing_an_idle_connection_does_not_fail_a_post(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    async def closes_when_idle(conn: Conn) -> None:
        await conn.read_request()
        conn.write(answer())
        await conn.drain()
        await asyncio.sleep(0.1)  # the upstream's own (short) keep-alive
        conn.close()

    upstream.scripts.append(closes_when_idle)
    await get(transport, upstream)
    assert await await_true(lambda: upstream.open == 0)
    await asyncio.sleep(0.05)  # the close reaches the transport's loop
    r, body = await get(transport, upstream, "POST", body=b"{}")
    assert (r.status, body) == (200, b"ok")
    assert upstream.calls("POST") == 1 and upstream.connections == 2


async def test_idle_keepalive_closes_before_the_upstream_does(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    await get(transport, upstream, s=Settings(keepalive=0.1))
    assert await await_true(lambda: upstream.peer_closed == [0])  # the edge closed it
    await get(transport, upstream, s=Settings(keepalive=0.1))
    assert upstream.connections == 2


async def test_write_timeout_when_the_upstream_takes_no_body(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    async def never_reads(conn: Conn) -> None:
        conn.writer.transport.pause_reading()  # type: ignore[attr-defined]
        await asyncio.sleep(1.0)  # longer than the write timeout below
        conn.writer.transport.resume_reading()  # type: ignore[attr-defined]
        await conn.wait_peer_close()

    upstream.scripts.append(never_reads)

    async def big() -> AsyncIterator[bytes]:
        for _ in range(4096):
            yield b"w" * 65536

    with pytest.raises(WriteTimeout):
        await get(transport, upstream, "POST", body=big(), s=Settings(write=0.3))


async def test_answer_backpressure_keeps_the_buffer_bounded(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    size = 8 * 1024 * 1024  # 32 times the high-water mark

    async def script(conn: Conn) -> None:
        await conn.read_request()
        conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"b" * 65536
        for _ in range(size // 65536):
            conn.write(block)
            await conn.drain()

    upstream.scripts.append(script)
    # A generous read timeout: this reads slowly on purpose, on machines that may be busy.
    r = await transport.request("GET", upstream.url + "/", [], None, Settings(read=30.0))
    got = 0
    peak = 0
    try:
        while chunk := await r.read():
            got += len(chunk)
            peak = max(peak, len(chunk))
            await asyncio.sleep(0.002)  # a slow client: the upstream waits, memory does not grow
    finally:
        r.finish()
    assert got == size
    assert peak <= HIGH_WATER + 256 * 1024  # one read's worth over the mark at most


# -- pools ---------------------------------------------------------------------------------


async def test_pool_cap_and_pool_timeout(transport: Transport, upstream: ScriptedUpstream) -> None:
    upstream.script = _hang
    capped = Settings(read=30.0, pool=0.2, max_connections=2)
    hung = [
        asyncio.ensure_future(get(transport, upstream, s=capped, pool="hung")) for _ in range(2)
    ]
    assert await await_true(lambda: len(upstream.requests) == 2)
    with pytest.raises(PoolTimeout):
        await get(transport, upstream, s=capped, pool="hung")
    assert upstream.connections == 2  # the cap held
    # Another pool (another store) is not starved by the hung one.
    upstream.script = _answer_all
    _r, body = await get(transport, upstream, s=capped, pool="healthy")
    assert body == b"ok"
    for task in hung:
        task.cancel()
    for task in hung:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_freed_connection_goes_to_a_waiter(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    one = Settings(pool=5.0, max_connections=1)
    results = await asyncio.gather(*(get(transport, upstream, s=one) for _ in range(5)))
    assert [b for _, b in results] == [b"ok"] * 5
    assert upstream.connections == 1


async def test_many_requests_share_a_small_pool(
    transport: Transport, upstream: ScriptedUpstream
) -> None:
    four = Settings(pool=30.0, max_connections=4)
    results = await asyncio.gather(
        *(get(transport, upstream, path=f"/m{i}", s=four) for i in range(200))
    )
    assert [b for _, b in results] == [b"ok"] * 200
    assert upstream.connections <= 4
    assert sorted(q.target for q in upstream.requests) == sorted(f"/m{i}" for i in range(200))


async def test_the_global_cap_is_shared_by_every_pool(upstream: ScriptedUpstream) -> None:
    t = Transport(max_connections=2)
    try:
        s = Settings(pool=30.0, max_connections=10)
        results = await asyncio.gather(
            *(get(t, upstream, s=s, pool=f"store{i % 3}") for i in range(60))
        )
        assert [b for _, b in results] == [b"ok"] * 60
        assert t.open_connections() <= 2
    finally:
        await t.close()


async def test_global_cap_evicts_an_idle_connection_of_another_pool(
    upstream: ScriptedUpstream,
) -> None:
    t = Transport(max_connections=1)
    try:
        await get(t, upstream, pool="a")
        await get(t, upstream, pool="b")  # a's idle connection made room
        assert upstream.connections == 2
        assert await await_true(lambda: upstream.peer_closed == [0])
    finally:
        await t.close()


# -- hypothesis over answer framing -----------------------------------------------------


def _casing(draw: st.DrawFn, name: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c.lower() for c in name)


@st.composite
def framed_answers(draw: st.DrawFn) -> tuple[bytes, bytes, bool]:
    """(the bytes the upstream sends, the body, whether the bytes were broken: then an
    error is the right outcome, or the body if the junk happened to complete it)."""
    body = draw(st.binary(max_size=3000))
    framing = draw(st.sampled_from(["length", "chunked", "close", "broken"]))
    extra = draw(
        st.lists(
            st.tuples(
                st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12).filter(
                    lambda n: n.lower() not in ("content-length", "transfer-encoding", "connection")
                ),
                st.text("abc XYZ012;=/", max_size=20),
            ),
            max_size=5,
        )
    )
    head = "HTTP/1.1 200 OK\r\n" + "".join(f"{n}: {v.strip()}\r\n" for n, v in extra)
    if framing == "length":
        head += f"{_casing(draw, 'content-length')}: {len(body)}\r\n\r\n"
        return head.encode() + body, body, False
    if framing == "close":
        return head.encode() + b"\r\n" + body, body, False
    head += f"{_casing(draw, 'transfer-encoding')}: chunked\r\n\r\n"
    out = b""
    rest = body
    while rest:
        n = draw(st.integers(1, max(1, len(rest))))
        ext = draw(st.sampled_from(["", ";a=1", ";name", ';q="x y"']))
        out += f"{n:x}{ext}\r\n".encode() + rest[:n] + b"\r\n"
        rest = rest[n:]
    trailer = draw(st.sampled_from(["", "X-T: 1\r\n"]))
    out += f"0\r\n{trailer}\r\n".encode()
    if framing == "broken":
        cut = draw(st.integers(0, len(out) - 1))
        junk = draw(st.sampled_from([b"", b"zz\r\n", b"\r\n\r\n", b"-1\r\n"]))
        return head.encode() + out[:cut] + junk, body, True
    return head.encode() + out, body, False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=framed_answers())
def test_any_framing_is_parsed_or_refused_never_a_hang(case: tuple[bytes, bytes, bool]) -> None:
    wire, expected, broken = case

    async def script(conn: Conn) -> None:
        await conn.read_request()
        conn.write(wire)
        await conn.drain()
        conn.close()  # close-delimited answers end here; others must not need it

    async def run() -> None:
        t = Transport()
        try:
            r = await t.request("GET", up.url + "/", [], None, Settings(read=2.0))
            try:
                body = await r.read_all()
            finally:
                r.finish()
            assert body == expected
        except (ConnectionBroken, ReadTimeout):
            assert broken
        finally:
            await t.close()

    with ScriptedUpstream(script) as up:
        asyncio.run(asyncio.wait_for(run(), 10))


# -- helpers ---------------------------------------------------------------------------------


def _reply(data: bytes) -> Callable[[Conn], Awaitable[None]]:
    async def script(conn: Conn) -> None:
        await conn.read_request()
        conn.write(data)
        await conn.wait_peer_close()

    return script


async def _hang(conn: Conn) -> None:
    await conn.read_request()
    await conn.wait_peer_close()


async def _answer_all(conn: Conn) -> None:
    while await conn.read_request() is not None:
        conn.write(answer())
