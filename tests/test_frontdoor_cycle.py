"""proxy.frontdoor.FrontDoorCycle: uvicorn's request-response cycle with an answer's head
written together with its first body part (one system call for a small answer), header
checks of two searches in all, and idle keep-alive connections closed by the front door's
sweep instead of a timer per answer (issue #14).

The bytes on the wire must be exactly uvicorn's: a property test sends the same messages
through both cycles (fake transports recording every write) and compares what each wrote
and whether each refused."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from proxy.frontdoor import FrontDoorCycle, front_door
from tests.servers import ThreadServer


class Wire:
    """A transport that records each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _cycle(cls: type[RequestResponseCycle], method: str, *, keep_alive: bool = True) -> Any:
    wire = Wire()
    kwargs: dict[str, Any] = dict(
        scope={"type": "http", "method": method, "path": "/", "headers": []},
        transport=wire,
        flow=FlowControl(wire),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )
    if cls is FrontDoorCycle:
        kwargs["loop"] = asyncio.get_running_loop()
    cycle = cls(**kwargs)
    return cycle, wire


async def _play(
    cls: type[RequestResponseCycle],
    method: str,
    messages: list[dict[str, Any]],
    *,
    keep_alive: bool = True,
    pause_after_start: bool = False,
) -> tuple[Any, Wire, str | None]:
    cycle, wire = _cycle(cls, method, keep_alive=keep_alive)
    error = None
    try:
        for i, message in enumerate(messages):
            await cycle.send(message)
            if i == 0 and pause_after_start:
                await asyncio.sleep(0)  # a later turn of the loop: the head goes alone
    except (RuntimeError, ValueError) as exc:  # ValueError: a Content-Length not a number
        error = f"{type(exc).__name__}: {exc}"
    await asyncio.sleep(0)  # let a pending head flush
    return cycle, wire, error


def _start(status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status, "headers": headers or []}


def _body(body: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.response.body", "body": body, "more_body": more}


async def test_the_cycle_has_every_attribute_of_uvicorns_with_the_same_values() -> None:
    # FrontDoorCycle sets RequestResponseCycle's attributes itself (no super().__init__):
    # uvicorn's own methods (run_asgi, receive) must find every one of them.
    for keep_alive in (True, False):
        theirs, _ = _cycle(RequestResponseCycle, "GET", keep_alive=keep_alive)
        ours, _ = _cycle(FrontDoorCycle, "GET", keep_alive=keep_alive)
        mine = vars(ours)
        for name, value in vars(theirs).items():
            assert name in mine, name
            if name not in ("transport", "flow", "message_event", "on_response", "scope"):
                assert mine[name] == value, name


async def test_a_small_answer_is_one_write() -> None:
    cycle, wire, error = await _play(
        FrontDoorCycle,
        "GET",
        [_start(200, [(b"Content-Length", b"2"), (b"X-A", b"1")]), _body(b"{}")],
    )
    assert error is None
    assert wire.writes == [
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: 1\r\n\r\n{}",
    ]
    assert cycle.response_complete


async def test_a_body_that_comes_later_finds_the_head_already_sent() -> None:
    # A streamed answer waiting on Magento: the client gets the head at once.
    cycle, wire = _cycle(FrontDoorCycle, "GET")
    await cycle.send(_start(200, [(b"transfer-encoding", b"chunked")]))
    assert wire.writes == []  # not yet: a body part may still come in this turn
    await asyncio.sleep(0)
    assert wire.writes == [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]
    await cycle.send(_body(b"abc", more=True))
    await cycle.send(_body(b""))
    assert wire.writes[1:] == [b"3\r\nabc\r\n", b"0\r\n\r\n"]


async def test_a_large_first_body_part_is_not_copied_into_the_head() -> None:
    body = b"x" * (64 * 1024 + 1)
    _, wire, error = await _play(
        FrontDoorCycle,
        "GET",
        [_start(200, [(b"content-length", str(len(body)).encode())]), _body(body)],
    )
    assert error is None
    assert len(wire.writes) == 2 and wire.writes[1] == body


async def test_a_head_that_never_gets_its_body_is_not_written_after_a_close() -> None:
    cycle, wire = _cycle(FrontDoorCycle, "GET")
    await cycle.send(_start(200, [(b"content-length", b"5")]))
    wire.close()  # the app failed after starting: uvicorn closes the connection
    await asyncio.sleep(0)
    assert wire.writes == []


_NAME = st.sampled_from(
    [b"content-type", b"Content-Length", b"x-request-id", b"Connection", b"transfer-encoding",
     b"ratelimit-limit", b"bad name", b"bad:name", b"", b"x\x01"]
)  # fmt: skip
_VALUE = st.sampled_from(
    [b"1", b"2", b"0", b"close", b"keep-alive", b"chunked", b"gzip, chunked", b"text/plain",
     b"a\tb", b"bad\r\nvalue", b"x\x00", b"\x7f", b"caf\xc3\xa9", b""]
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    method=st.sampled_from(["GET", "HEAD", "POST"]),
    status=st.sampled_from([200, 201, 204, 304, 404, 500, 599]),
    headers=st.lists(st.tuples(_NAME, _VALUE), max_size=6),
    parts=st.lists(st.binary(max_size=5), min_size=1, max_size=3),
    keep_alive=st.booleans(),
    pause=st.booleans(),
)
def test_the_bytes_on_the_wire_are_uvicorns(
    method: str,
    status: int,
    headers: list[tuple[bytes, bytes]],
    parts: list[bytes],
    keep_alive: bool,
    pause: bool,
) -> None:
    messages = [_start(status, headers)]
    messages += [_body(p, more=i < len(parts) - 1) for i, p in enumerate(parts)]

    async def both() -> tuple[Any, Any]:
        ours = await _play(
            FrontDoorCycle, method, messages, keep_alive=keep_alive, pause_after_start=pause
        )
        theirs = await _play(RequestResponseCycle, method, messages, keep_alive=keep_alive)
        return ours, theirs

    _assert_alike(*asyncio.run(both()))


def _assert_alike(ours: tuple[Any, Wire, str | None], theirs: tuple[Any, Wire, str | None]) -> None:
    """Our cycle and uvicorn's ended alike: the same bytes, state and refusals."""
    (cycle, wire, error), (ref_cycle, ref_wire, ref_error) = ours, theirs
    # Refused alike: a bad header or a Content-Length not a number before anything is
    # written (which of two faults is named may differ: all names are checked first), a
    # body longer or shorter than its Content-Length after the head.
    assert (error is None) == (ref_error is None)
    if ref_error is not None and "Response content" in ref_error:
        assert error == ref_error
    if error is None or "Response content" in error:
        assert b"".join(wire.writes) == b"".join(ref_wire.writes)
    else:  # a refused header: nothing of that answer was written by either
        assert wire.writes == ref_wire.writes == []
    assert cycle.response_complete == ref_cycle.response_complete
    if error is None:  # (after an error the server closes the connection either way)
        assert cycle.keep_alive == ref_cycle.keep_alive
        assert wire.closed == ref_wire.closed


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "HEAD", "POST"]),
    status=st.sampled_from([200, 201, 204, 304, 404, 500, 599]),
    headers=st.lists(st.tuples(_NAME, _VALUE), max_size=6),
    body=st.binary(max_size=5),
    keep_alive=st.booleans(),
)
def test_a_whole_answer_in_one_call_writes_what_its_two_messages_do(
    method: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool
) -> None:
    # FrontDoorCycle.answer: the upstream step's small answers, start and body at once.
    async def both() -> tuple[Any, Any]:
        cycle, wire = _cycle(FrontDoorCycle, method, keep_alive=keep_alive)
        error = None
        try:
            assert cycle.answer(status, headers, body)
        except (RuntimeError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        await asyncio.sleep(0)
        theirs = await _play(
            RequestResponseCycle, method, [_start(status, headers), _body(body)],
            keep_alive=keep_alive,
        )  # fmt: skip
        return (cycle, wire, error), theirs

    ours, theirs = asyncio.run(both())
    _assert_alike(ours, theirs)
    wire, error = ours[1], ours[2]
    if error is None or "Response content" in error:  # a small body joins its head
        assert len(wire.writes) <= 1


async def test_a_whole_answer_is_declined_where_send_would_wait_or_has_begun() -> None:
    headers = [(b"content-length", b"2")]
    cycle, wire = _cycle(FrontDoorCycle, "GET")
    await cycle.send(_start(200, headers))
    assert not cycle.answer(200, headers, b"{}")  # an answer has begun
    cycle, wire = _cycle(FrontDoorCycle, "GET")
    cycle.disconnected = True
    assert not cycle.answer(200, headers, b"{}")  # the client is gone
    cycle, wire = _cycle(FrontDoorCycle, "GET")
    cycle.flow.pause_writing()
    assert not cycle.answer(200, headers, b"{}")  # send() would wait for the drain
    assert wire.writes == [] and not cycle.response_started


class Hello:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send(_start(200, [(b"content-length", b"2")]))
        await send(_body(b"ok"))


def _get(sock: socket.socket) -> bytes:
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while not answer.endswith(b"ok"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        answer += chunk
    return answer


def test_an_idle_keep_alive_connection_is_closed_by_the_sweep() -> None:
    keep_alive = 1
    server = ThreadServer(Hello())
    server.server.config.http = front_door(header_timeout=1.0)  # a sweep every 0.25 s
    server.server.config.timeout_keep_alive = keep_alive
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            # In use, it stays open past the keep-alive time.
            for _ in range(6):
                assert _get(sock).startswith(b"HTTP/1.1 200 ")
                time.sleep(keep_alive / 3)
            assert _get(sock).startswith(b"HTTP/1.1 200 ")
            idle_from = time.monotonic()
            # Closed by the server (the socket's 10 s timeout fails the test otherwise),
            # and not before the keep-alive time.
            assert sock.recv(1) == b""
            assert time.monotonic() - idle_from >= keep_alive - 0.1
    finally:
        server.stop()
