"""A scripted raw-socket HTTP/1.1 upstream on 127.0.0.1 for the transport's conformance
and fault tests: each connection runs a script (a coroutine) that reads requests and
writes exactly the bytes the test wants, resets, hangs or closes. It runs in its own
thread and event loop, so the code under test (in a test's loop, or an edge served in
another thread) talks to it over a real socket.

Everything it sees is recorded: connections accepted, requests (method, target, raw
header lines, body), and connections the client closed (EOF seen by a waiting script).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Request:
    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    conn: int  # which connection (0-based, in accept order)

    def header(self, name: bytes) -> bytes | None:
        for n, v in self.headers:
            if n.lower() == name:
                return v
        return None


@dataclass
class Conn:
    """One accepted connection, handed to the script."""

    index: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    server: ScriptedUpstream
    requests: list[Request] = field(default_factory=list)

    async def read_request(self) -> Request | None:
        """The next request on this connection; None when the client closed it."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.server.peer_closed.append(self.index)
            return None
        lines = head[:-4].split(b"\r\n")
        method, target, _version = lines[0].decode("latin-1").split(" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name, value.strip()))
        req = Request(method, target, headers, b"", self.index)
        length = req.header(b"content-length")
        if req.header(b"transfer-encoding") == b"chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            req.body = b"".join(parts)
        elif length is not None:
            req.body = await self.reader.readexactly(int(length))
        self.requests.append(req)
        self.server.requests.append(req)
        return req

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0), as a crashed upstream does."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def close(self) -> None:
        self.writer.close()

    async def wait_peer_close(self) -> None:
        """Hang (send nothing) until the client closes its side; recorded."""
        try:
            while await self.reader.read(65536):
                pass
        except ConnectionError:
            pass
        self.server.peer_closed.append(self.index)


Script = Callable[[Conn], Awaitable[None]]


def answer(
    status: int = 200,
    body: bytes = b"ok",
    headers: list[tuple[str, str]] | None = None,
) -> bytes:
    """An answer with a Content-Length."""
    lines = [f"HTTP/1.1 {status} X"]
    lines += [f"{n}: {v}" for n, v in headers or []]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def keep_alive(conn: Conn) -> None:
    """The default script: answer every request with 200 ``ok`` on one connection."""
    while await conn.read_request() is not None:
        conn.write(answer())


class ScriptedUpstream:
    """``script(conn)`` runs for every accepted connection (``scripts`` first, in order,
    for the first connections; then ``script``)."""

    def __init__(self, script: Script = keep_alive) -> None:
        self.script = script
        self.scripts: list[Script] = []
        self.requests: list[Request] = []
        self.peer_closed: list[int] = []
        self.closed: list[int] = []  # connections whose script ended (closed by us)
        self.connections = 0
        self.open = 0
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._server = self.loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self.loop.run_forever()
        self.loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.connections
        self.connections += 1
        self.open += 1
        script = self.scripts.pop(0) if self.scripts else self.script
        conn = Conn(index, reader, writer, self)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await script(conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed.append(index)
            self.open -= 1
            self._tasks.discard(task)
            writer.transport.abort()

    def start(self) -> ScriptedUpstream:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("scripted upstream did not start")
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def __enter__(self) -> ScriptedUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def calls(self, method: str | None = None, target_prefix: str = "") -> int:
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method) and r.target.startswith(target_prefix)
        )

    def wait(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Poll until ``predicate`` holds (bounded): effects seen from another thread."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()


async def await_true(predicate: Callable[[], bool], seconds: float = 5.0) -> bool:
    """``wait`` for async tests: poll without blocking the test's loop (bounded)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()
