"""proxy.frontdoor: the limits at the front door (issue #14 part 3, SPEC §8), through real
uvicorn servers built by ``proxy.server.uvicorn_config`` (as ``serve`` builds them) and
raw sockets: request heads bounded in bytes and fields (431), a header-read deadline
(408 / closed), malformed framing 400 never 500, WebSocket upgrades 403, trailers never
handed to the application, and no input ever a 5xx or a crash (hypothesis)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.frontdoor import DEFAULT_MAX_HEADER_BYTES, front_door
from tests.conftest import MAGENTO_TOKEN
from tests.panel_app import PanelApp
from tests.servers import ThreadServer, free_port, serving
from tests.test_lifecycle import edge_process, ops_config


class Echo:
    """An application that reads the whole body and answers with what it saw."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen = {"path": scope["path"], "headers": list(scope["headers"]), "body": body}
        self.seen.append(seen)
        answer = orjson.dumps({"n": len(body), "fields": len(scope["headers"])})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(answer)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer})


def _server(app: Any, **limits: Any) -> ThreadServer:
    server = ThreadServer(app)
    if limits:  # the same protocol serve uses, with the test's limits
        server.server.config.http = front_door(**limits)
    return server.start()


@pytest.fixture(scope="module")
def echo() -> Iterator[tuple[ThreadServer, Echo]]:
    app = Echo()
    server = _server(app, max_header_bytes=4096, max_header_fields=20, header_timeout=1.0)
    yield server, app
    server.stop()


def _connect(server: ThreadServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _read_all(sock: socket.socket, idle: float | None = None) -> bytes:
    """Everything until the server closes (or resets) the connection, or, with ``idle``,
    until it has said nothing for ``idle`` seconds after its first bytes (a kept-alive
    connection); without, a server that keeps it open makes this time out (the test
    fails)."""
    out = b""
    try:
        while True:
            if out and idle is not None:
                sock.settimeout(idle)
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        if not out or idle is None:
            raise
    return out


def _exchange(
    server: ThreadServer, data: bytes, pieces: int = 1, *, half_close: bool = False
) -> bytes:
    """Send ``data`` (in ``pieces`` writes), read the server's answers. ``half_close``:
    then shut the sending side, as a client gone: a request not answered yet is not
    answered (the edge takes end of input as the client gone, so the upstream call it
    waits for is released), an unfinished head is closed at once."""
    with _connect(server) as sock:
        step = max(1, -(-len(data) // pieces))
        for i in range(0, len(data), step):
            sock.sendall(data[i : i + step])
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return _read_all(sock, idle=0.3)


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def _head_of(size: int, *, body: bytes = b"") -> bytes:
    """A request whose request line and header fields are exactly ``size`` bytes."""
    start = b"POST /x HTTP/1.1\r\nHost: a\r\n"
    start += b"Content-Length: %d\r\n" % len(body)
    pad = size - len(start) - len(b"X-Pad: \r\n\r\n")
    return start + b"X-Pad: " + b"p" * pad + b"\r\n\r\n" + body


# -- bytes and fields ------------------------------------------------------------------------


@pytest.mark.parametrize("pieces", [1, 3, 4000])
def test_a_head_at_the_limit_passes_and_one_byte_more_is_431(
    echo: tuple[ThreadServer, Echo], pieces: int
) -> None:
    server, _ = echo
    ok = _exchange(server, _head_of(4096, body=b"hello"), pieces)
    assert _status(ok) == 200 and ok.endswith(b'{"n":5,"fields":3}')
    refused = _exchange(server, _head_of(4097, body=b"hello"), pieces)
    assert _status(refused) == 431
    head, _, body = refused.partition(b"\r\n\r\n")
    assert b"connection: close" in head and b"application/problem+json" in head
    problem = orjson.loads(body)
    assert problem["status"] == 431 and "4096 bytes" in problem["detail"]


def test_a_head_at_the_limit_with_its_body_in_the_same_read_keeps_the_body(
    echo: tuple[ThreadServer, Echo],
) -> None:
    server, _ = echo
    body = b"b" * 20000  # far past the head limit, and not head
    answer = _exchange(server, _head_of(4096, body=body))
    assert _status(answer) == 200 and b'"n":20000' in answer


def test_fields_beyond_the_count_are_431(echo: tuple[ThreadServer, Echo]) -> None:
    server, _ = echo
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(19))
    ok = _exchange(server, b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n")  # 20 fields
    assert _status(ok) == 200
    fields += b"X-Last: v\r\n"
    refused = _exchange(server, b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n")
    assert _status(refused) == 431 and b"at most 20 header fields" in refused


def test_default_limits_16_kib_and_100_fields() -> None:
    server = _server(Echo())
    try:
        fields = b"".join(b"X-F%d: v\r\n" % i for i in range(99))
        assert (
            _status(_exchange(server, b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n")) == 200
        )
        fields += b"X-F100: v\r\n"  # the 101st field
        assert (
            _status(_exchange(server, b"GET / HTTP/1.1\r\nHost: a\r\n" + fields + b"\r\n")) == 431
        )
        assert _status(_exchange(server, _head_of(DEFAULT_MAX_HEADER_BYTES))) == 200
        assert _status(_exchange(server, _head_of(DEFAULT_MAX_HEADER_BYTES + 1))) == 431
    finally:
        server.stop()


def test_a_long_request_line_is_431(echo: tuple[ThreadServer, Echo]) -> None:
    server, _ = echo
    answer = _exchange(server, b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert _status(answer) == 431


def test_a_pipelined_request_with_a_large_head_after_a_good_one(
    echo: tuple[ThreadServer, Echo],
) -> None:
    """The first request is answered; the second is refused and the connection closed,
    never a second 200."""
    server, _ = echo
    good = b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
    answer = _exchange(server, good + _head_of(5000))
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.count(b"HTTP/1.1 200 ") == 1


def test_trailers_never_reach_the_application(echo: tuple[ThreadServer, Echo]) -> None:
    """uvicorn's own protocol appends a chunked request's trailers to the header list the
    application is already holding; the front door drops them (SPEC §8)."""
    server, app = echo
    request = (
        b"POST /trailers HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
        b"3\r\nabc\r\n0\r\nX-T: sneaky\r\nX-U: two\r\n\r\n"
        b"GET /after HTTP/1.1\r\nHost: b\r\n\r\n"
    )
    answer = _exchange(server, request)
    assert answer.count(b"HTTP/1.1 200 ") == 2
    seen = {s["path"]: s for s in app.seen[-2:]}
    names = [n for n, _ in seen["/trailers"]["headers"]]
    assert seen["/trailers"]["body"] == b"abc"
    assert b"x-t" not in names and b"x-u" not in names
    assert [n for n, _ in seen["/after"]["headers"]] == [b"host"]


def test_endless_trailers_are_cut(echo: tuple[ThreadServer, Echo]) -> None:
    server, _ = echo
    with _connect(server) as sock:
        sock.sendall(b"POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n")
        closed = False
        try:
            for _ in range(2000):  # up to 2 MiB of one trailer; cut after ~4 KiB
                sock.sendall(b"X-T: " + b"t" * 1024)
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        if not closed:
            sock.settimeout(5)  # a server still reading it would time this out: a failure
            try:
                closed = sock.recv(1) == b""
            except ConnectionResetError:
                closed = True
        assert closed


# -- the 48 MiB header against `magento-edge serve` -----------------------------------------


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_48_mib_header_is_refused_after_its_first_16_kib(tmp_path: Path) -> None:
    """Against a real ``magento-edge serve`` process: the 431 arrives while the client
    is still sending, the edge stops reading (the client's sends stall, then fail), and
    the process does not grow by the header's size."""
    from magento_standin import create_standin

    port = free_port()
    with (
        serving(create_standin(bearer_tokens=[MAGENTO_TOKEN])) as magento,
        serving(PanelApp()) as panel,
        edge_process(ops_config(tmp_path, magento.url, panel.url, port), port) as edge,
    ):
        before = _rss_kib(edge.proc.pid)
        sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        sent = [0]
        total = 48 * 1024 * 1024
        chunk = b"h" * 65536

        def send() -> None:
            try:
                sock.sendall(b"GET /api/v1/stores HTTP/1.1\r\nHost: a\r\nX-Big: ")
                while sent[0] < total:
                    sock.sendall(chunk)
                    sent[0] += len(chunk)
            except OSError:
                pass  # reset once the edge closes: expected

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                part = sock.recv(65536)
                if not part:
                    break
                answer += part
        finally:
            sender.join(timeout=20)
            sock.close()
        assert _status(answer) == 431
        assert sent[0] < total // 3  # closed early: the client could not send it all
        assert _rss_kib(edge.proc.pid) - before < 16 * 1024  # not tens of MiB
        assert edge.proc.poll() is None


# -- the header-read deadline ---------------------------------------------------------------


def test_a_slow_head_is_cut_with_408(echo: tuple[ThreadServer, Echo]) -> None:
    server, _ = echo
    with _connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        answer = _read_all(sock)  # the server ends it (header_timeout = 1 s)
    assert _status(answer) == 408 and b"not complete within 1 seconds" in answer


def test_a_slow_drip_is_cut_too(echo: tuple[ThreadServer, Echo]) -> None:
    """A byte now and then does not extend the deadline: it runs from the head's start."""
    server, _ = echo
    with _connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")
        closed = False
        for _ in range(100):  # bounded: at most ~10 s of drip
            try:
                sock.sendall(b"X-D: d\r\n")
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            sock.setblocking(False)
            try:
                if sock.recv(65536, socket.MSG_PEEK):
                    closed = True
                    break
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
        assert closed


def test_a_silent_connection_is_closed(echo: tuple[ThreadServer, Echo]) -> None:
    server, _ = echo
    with _connect(server) as sock:
        assert _read_all(sock) == b""  # closed by the server, without an answer


# -- framing ----------------------------------------------------------------------------------

FRAMING = {
    "trailing space": b"Content-Length: 7 \r\n",
    "plus sign": b"Content-Length: +7\r\n",
    "minus sign": b"Content-Length: -7\r\n",
    "hex": b"Content-Length: 0x7\r\n",
    "empty": b"Content-Length: \r\n",
    "CL and TE": b"Content-Length: 7\r\nTransfer-Encoding: chunked\r\n",
    "two different lengths": b"Content-Length: 7\r\nContent-Length: 8\r\n",
    "TE not chunked last": b"Transfer-Encoding: chunked, gzip\r\n",
    "obs-fold": b"X-A: a\r\n  folded\r\nContent-Length: 7\r\n",
}


@pytest.mark.parametrize("fields", FRAMING.values(), ids=FRAMING.keys())
def test_malformed_framing_is_400(echo: tuple[ThreadServer, Echo], fields: bytes) -> None:
    server, _ = echo
    answer = _exchange(server, b"POST /x HTTP/1.1\r\nHost: a\r\n" + fields + b'\r\n{"a":1}')
    assert _status(answer) == 400
    assert orjson.loads(answer.partition(b"\r\n\r\n")[2])["status"] == 400


def test_websocket_upgrade_is_403(echo: tuple[ThreadServer, Echo]) -> None:
    server, app = echo
    before = len(app.seen)
    answer = _exchange(
        server,
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    assert _status(answer) == 403 and b"WebSocket" in answer
    assert len(app.seen) == before  # never handed to the application


def test_other_upgrades_are_served_as_http_1_1_unless_they_have_a_body(
    echo: tuple[ThreadServer, Echo],
) -> None:
    server, _ = echo
    h2c = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"
    plain = _exchange(
        server,
        b"GET /h2c HTTP/1.1\r\nHost: a\r\n" + h2c + b"\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    assert plain.count(b"HTTP/1.1 200 ") == 2  # answered, and the next request too
    body = _exchange(
        server, b"POST /h2c HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n" + h2c + b"\r\nabc"
    )
    assert _status(body) == 400


# -- hostile bytes: never a 5xx, never a crash ----------------------------------------------

_token = st.binary(min_size=0, max_size=12)
_NAMES = [b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Upgrade", b"Expect"]
_line = st.one_of(
    st.tuples(
        st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"CONNECT", b"OPTIONS", b"G\x00T"]),
        st.one_of(st.sampled_from([b"/", b"*", b"/a?b", b"http://h/p", b"h:443"]), _token),
        st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 ", b""]),
    ).map(lambda t: b" ".join(t)),
    _token,
)
_field = st.tuples(
    st.one_of(
        st.sampled_from(_NAMES),
        _token,
    ),
    st.one_of(
        st.sampled_from([b"0", b"7", b" 7", b"chunked", b"close", b"websocket", b"100-continue"]),
        _token,
    ),
    st.sampled_from([b": ", b":", b" : ", b"\t:"]),
).map(lambda f: f[0] + f[2] + f[1])
_request = st.tuples(
    _line,
    st.lists(_field, max_size=8),
    st.sampled_from([b"\r\n", b"\n", b"\r"]),
    st.binary(max_size=40),
).map(lambda r: r[0] + r[2] + r[2].join(r[1]) + r[2] + r[2] + r[3])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(_request, st.binary(max_size=200)))
def test_hostile_heads_are_never_a_5xx(echo: tuple[ThreadServer, Echo], data: bytes) -> None:
    server, _ = echo
    answer = _exchange(server, data, half_close=True)
    for line in answer.split(b"\r\n"):
        if line.startswith(b"HTTP/1.1 "):
            assert _status(line + b" ") < 500, answer[:300]
    # and the server still answers
    again = _exchange(server, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert _status(again) == 200
