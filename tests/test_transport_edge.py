"""Upstream faults through a real edge (uvicorn on 127.0.0.1) on its own transport, with a
scripted raw-socket upstream counting what reaches it (issues #13 and #14):

- at most once upstream for every write: an upstream that resets the first attempt, for
  every method, keyed (``Idempotency-Key``) and unkeyed: the client gets a 502 and the
  upstream saw the request exactly once;
- per-store isolation: a hung store with a small connection cap answers 503
  ``upstream_saturated`` with ``Retry-After`` when its pool is full, while a healthy
  store's requests all succeed;
- a client that goes away while the edge waits for response headers releases the
  upstream connection (the upstream sees the close) long before the read timeout;
- an upstream that closes idle keep-alive connections sooner than the edge does not make
  a POST fail.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.config import load_config
from proxy.edge import Edge
from tests.conftest import Harness, env, wait_for, write_config
from tests.scripted_upstream import Conn, Request, ScriptedUpstream, answer
from tests.servers import serving

SETTINGS = "/api/v1/stores/acme/settings/general"
PRODUCT = "/api/v1/stores/acme/commerce/products/SKU-1"


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Every test here runs its edge and upstreams in this process: when they have
    stopped, the file descriptors and threads are back where they were."""
    me = psutil.Process()
    fds, threads = me.num_fds(), threading.active_count()
    yield
    assert wait_for(lambda: me.num_fds() <= fds), (me.num_fds(), fds)
    assert wait_for(lambda: threading.active_count() <= threads)


@contextmanager
def edge_over(directory: Path, upstream: ScriptedUpstream, extra: str = "") -> Iterator[Harness]:
    """A real edge whose Magento (every store in the test config) and panel upstream is
    the scripted one."""
    path = write_config(directory, upstream.url, upstream.url, extra, panel_read=5.0)
    config = load_config(path, env=env())
    edge = Edge.from_config(config, SQLiteKeyStore(config.keystore_path or ""))
    with serving(edge) as server:
        yield Harness(server.url, path, config, None, None, edge)  # type: ignore[arg-type]


def _answer_to(req_method: str) -> bytes:
    if req_method == "HEAD":
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    return answer(body=b'{"ok":true}', headers=[("Content-Type", "application/json")])


def reset_first(prefix: str) -> tuple[ScriptedUpstream, dict[str, int]]:
    """An upstream that resets the connection of the first request to ``prefix`` after
    reading it (the write may or may not have run: the edge cannot know) and answers
    every other request."""
    state = {"resets": 0}

    async def script(conn: Conn) -> None:
        while (req := await conn.read_request()) is not None:
            if req.target.startswith(prefix) and state["resets"] == 0:
                state["resets"] += 1
                conn.reset()
                return
            conn.write(_answer_to(req.method))

    return ScriptedUpstream(script), state


METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


@pytest.mark.parametrize("keyed", [False, True], ids=["unkeyed", "keyed"])
@pytest.mark.parametrize("method", METHODS)
def test_a_reset_first_attempt_is_never_sent_again(
    tmp_path: Path, method: str, keyed: bool
) -> None:
    """Issue #13 part 1: no request is sent twice by the edge, whatever its method."""
    up, state = reset_first("/stores/acme/settings/general")
    with up, edge_over(tmp_path, up) as h:
        token = h.token("settings:write")
        headers = {"Idempotency-Key": uuid.uuid4().hex} if keyed else {}
        with h.client(token) as c:
            # Warm a pooled connection first: the reset then hits a reused connection,
            # the case aiohttp silently re-sent.
            assert c.get("/api/v1/stores/acme/settings/warm").status_code == 200
            body = b"{}" if method in ("POST", "PUT", "PATCH") else None
            r = c.request(method, SETTINGS, content=body, headers=headers)
        assert state["resets"] == 1
        assert r.status_code == 502
        assert up.calls(method, "/stores/acme/settings/general") == 1


def test_a_reset_put_to_magento_is_sent_once(tmp_path: Path) -> None:
    """The finding itself: Magento's PUTs are not idempotent; a reset first attempt of a
    keyed PUT reaches Magento once, and the client is told (502), not given a 200."""
    up, state = reset_first("/rest/default/V1/products/SKU-1")
    with up, edge_over(tmp_path, up) as h:
        token = h.token("products:write")
        with h.client(token) as c:
            assert c.get("/api/v1/stores/acme/commerce/products/SKU-0").status_code == 200
            r = c.put(
                PRODUCT, json={"product": {"sku": "SKU-1"}}, headers={"Idempotency-Key": "k-1"}
            )
        assert (r.status_code, state["resets"]) == (502, 1)
        assert r.headers["content-type"] == "application/problem+json"
        assert up.calls("PUT", "/rest/default/V1/products/SKU-1") == 1


def test_a_hung_store_does_not_starve_a_healthy_one(tmp_path: Path) -> None:
    """Issue #13 part 3: per-store pools. The hung store's requests beyond its cap wait
    ``timeouts.pool`` and get 503 upstream_saturated + Retry-After; the healthy store,
    with the default cap, answers every request meanwhile."""

    async def hang(conn: Conn) -> None:
        while (req := await conn.read_request()) is not None:
            if req.target.startswith("/rest/default/V1/products"):
                await conn.wait_peer_close()
                return
            conn.write(_answer_to(req.method))  # readiness probes and the like

    with ScriptedUpstream(hang) as hung, ScriptedUpstream() as healthy:
        extra = f"""
[stores.hung]
name = "Hung"
environment = "live"
magento_url = "{hung.url}"
credential = {{ kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }}
timeouts = {{ connect = 1.0, read = 4.0, pool = 0.3 }}
max_connections = 2
"""
        with edge_over(tmp_path, healthy, extra) as h:
            token = h.token("products:read", stores=("acme", "hung"))

            def call(store: str) -> httpx.Response:
                with h.client(token) as c:
                    return c.get(f"/api/v1/stores/{store}/commerce/products/SKU-{store}")

            with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
                flood = [pool.submit(call, "hung") for _ in range(8)]
                assert hung.wait(lambda: hung.calls("GET", "/rest/default/V1/products") >= 2)
                healthy_answers = [pool.submit(call, "acme") for _ in range(20)]
                ok = [f.result() for f in healthy_answers]
                flooded = [f.result() for f in flood]
            assert [r.status_code for r in ok] == [200] * 20
            statuses = sorted(r.status_code for r in flooded)
            assert statuses == [503] * 6 + [504] * 2  # 2 held (then too slow), 6 refused
            saturated = next(r for r in flooded if r.status_code == 503)
            assert saturated.headers["retry-after"] == "1"
            assert saturated.json()["type"].endswith("/upstream-saturated")
            assert hung.calls("GET", "/rest/default/V1/products") == 2  # the cap held


def test_a_client_gone_while_waiting_for_headers_releases_the_upstream(tmp_path: Path) -> None:
    async def hang(conn: Conn) -> None:
        while (req := await conn.read_request()) is not None:
            if req.target.startswith("/stores/acme/settings/slow"):
                await conn.wait_peer_close()
                return
            conn.write(_answer_to(req.method))

    with ScriptedUpstream(hang) as up, edge_over(tmp_path, up) as h:
        token = h.token("settings:read")
        host, port = h.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(
                f"GET /api/v1/stores/acme/settings/slow HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {token}\r\n\r\n".encode()
            )
            assert up.wait(lambda: up.calls("GET", "/stores/acme/settings/slow") == 1)
            held = next(r.conn for r in up.requests if r.target.endswith("/slow"))
        # The client is gone: the edge closes that upstream connection at once (not
        # after its 5 s read timeout: 3 s is the bound here, generous for a busy box).
        assert up.wait(lambda: held in up.peer_closed, 3.0)


def test_an_upstream_closing_idle_connections_early_does_not_fail_a_post(
    tmp_path: Path,
) -> None:
    async def short_keepalive(conn: Conn) -> None:
        while (req := await conn.read_request()) is not None:
            conn.write(_answer_to(req.method))
            await conn.drain()
            if req.target.startswith("/stores/acme/settings"):
                await asyncio.sleep(0.05)  # an upstream keep-alive far below the edge's
                return

    with ScriptedUpstream(short_keepalive) as up, edge_over(tmp_path, up) as h:
        token = h.token("settings:write")
        with h.client(token) as c:

            def idle_closed() -> None:
                last = up.requests[-1].conn
                assert up.wait(lambda: last in up.closed)  # closed by the upstream
                time.sleep(0.1)  # idle a moment, as between two real requests

            for i in range(5):
                assert c.get(SETTINGS).status_code == 200
                idle_closed()
                r = c.post(SETTINGS, json={"i": i})
                assert r.status_code == 200, r.text
                idle_closed()
        assert up.calls("POST", "/stores/acme/settings/general") == 5


def test_an_upstream_reset_mid_answer_is_a_cut_answer_not_a_hang(tmp_path: Path) -> None:
    async def cuts(conn: Conn) -> None:
        while (req := await conn.read_request()) is not None:
            if not req.target.startswith("/stores/acme/backups"):
                conn.write(_answer_to(req.method))
                continue
            conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"d" * 200_000)
            await conn.drain()
            await asyncio.sleep(0.1)
            conn.reset()
            return

    with ScriptedUpstream(cuts) as up, edge_over(tmp_path, up) as h:
        token = h.token("backups:read")
        got = 0
        with h.client(token) as c, c.stream("GET", "/api/v1/stores/acme/backups/big") as r:
            assert r.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                for chunk in r.iter_raw():
                    got += len(chunk)
        assert 0 < got < 1_000_000
        assert up.calls("GET", "/stores/acme/backups") == 1


@pytest.mark.parametrize("declared", [20_000, 200_000], ids=["small", "streamed"])
def test_a_stalled_upload_is_408_and_the_upstream_request_is_cut(
    tmp_path: Path, declared: int
) -> None:
    async def reads_slowly(conn: Conn) -> None:
        # Takes whatever comes and never answers a body that does not arrive.
        try:
            head = await conn.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return
        conn.server.requests.append(
            Request(head.split(b" ")[0].decode(), head.split(b" ")[1].decode(), [], b"", conn.index)
        )
        await conn.wait_peer_close()

    with ScriptedUpstream(reads_slowly) as up:
        extra = f"""
[stores.slow]
name = "Slow uploads"
environment = "live"
magento_url = "{up.url}"
credential = {{ kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }}
timeouts = {{ connect = 1.0, read = 30.0, body = 0.3 }}
"""
        with edge_over(tmp_path, up, extra) as h:
            token = h.token("products:write", stores=("slow",))
            host, port = h.url.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port)), timeout=10) as s:
                s.sendall(
                    f"POST /api/v1/stores/slow/commerce/products HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {declared}\r\n\r\n".encode()
                    + b"x" * (declared // 2)
                )
                answer_head = s.recv(65536)  # then nothing more: the body stalls
            assert answer_head.startswith(b"HTTP/1.1 408 "), answer_head[:200]
            assert b"request_timeout" in answer_head or b"request-timeout" in answer_head
            if declared > 65536:  # streamed: the upstream request had begun, and is cut
                (held,) = [r.conn for r in up.requests if r.target.endswith("/V1/products")]
                assert up.wait(lambda: held in up.peer_closed)


def test_a_small_answer_goes_to_the_front_door_in_one_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #14: a small, whole upstream answer is handed to the front door at once
    (FrontDoorCycle.answer), not as two ASGI messages, and arrives whole with the edge's
    headers; a streamed one still goes message by message."""
    from proxy.frontdoor import FrontDoorCycle

    taken: list[int] = []
    original = FrontDoorCycle.answer

    def counting(self: FrontDoorCycle, status: int, headers: Any, body: bytes) -> bool:
        # Noted before the call: the answer is written inside it, and the client (another
        # thread) may read it before this thread runs on.
        taken.append(status)
        done = original(self, status, headers, body)
        if not done:
            taken[-1] = -1
        return done

    monkeypatch.setattr(FrontDoorCycle, "answer", counting)

    async def script(conn: Conn) -> None:
        while (req := await conn.read_request()) is not None:
            if req.target.startswith("/stores/acme/backups"):
                big = b"b" * 200_000
                conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: 200000\r\n\r\n" + big)
            else:
                conn.write(_answer_to(req.method))
            await conn.drain()

    with (
        ScriptedUpstream(script) as up,
        edge_over(tmp_path, up) as h,
        h.client(h.token("settings:read", "backups:read")) as c,
    ):
        r = c.get(SETTINGS)
        assert (r.status_code, r.json()) == (200, {"ok": True})
        assert r.headers["x-request-id"] and r.headers["ratelimit-remaining"] == "119"
        assert taken == [200]
        big = c.get("/api/v1/stores/acme/backups/big")
        assert big.status_code == 200 and big.content == b"b" * 200_000
        assert taken == [200]  # streamed: not through answer()
