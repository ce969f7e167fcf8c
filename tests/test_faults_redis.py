"""Fault injection, Redis (issue #13 part 5, backend half): a real redis-server behind rate
limits and idempotency (and, in a real ``serve`` process, the key store), killed by its
PID under load and started again on the same port. Each test asserts what clients get,
that the edge recovers without a restart, how often Magento was called (never twice for
one write), that no 503 names an internal address, and that no files or tasks leak."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from proxy.backends.keystore.base import TokenRecord
from proxy.backends.keystore.redis import RedisKeyStore
from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.config import load_config
from proxy.edge import Edge
from proxy.tokens import generate_token, hash_token
from tests.conftest import Harness, env, write_config
from tests.fault_tools import (
    KillableRedis,
    ServeProcess,
    names_no_address,
    open_fds,
    serve_config,
    settle,
    tasks_on,
)
from tests.panel_app import PanelApp
from tests.servers import ThreadServer, free_port, serving
from tests.test_edge_idempotency import PRODUCTS, REPLAYED, GatedMagento, key, product

pytestmark = pytest.mark.redis


def _posts(magento: GatedMagento) -> int:
    """Writes that reached Magento (its readiness probe and reads not counted)."""
    return sum(n for (method, _), n in magento.standin.hits.items() if method == "POST")


@contextmanager
def redis_edge(
    directory: Path, redis: KillableRedis
) -> Iterator[tuple[Harness, GatedMagento, ThreadServer]]:
    """An in-process edge (its loop reachable for task counts): SQLite key store, rate
    limits and idempotency on ``redis``, rate limits failing open."""
    magento = GatedMagento()
    extra = (
        f'[ratelimit]\nbackend = "redis"\nurl = "{redis.url}"\non_backend_error = "allow"\n'
        f'[idempotency]\nbackend = "redis"\nurl = "{redis.url}"\n'
    )
    with ExitStack() as stack:
        upstream = stack.enter_context(serving(magento))
        path = write_config(directory, upstream.url, None, extra)
        config = load_config(path, env=env())
        edge = Edge.from_config(config, SQLiteKeyStore(config.keystore_path or ""))
        server = stack.enter_context(serving(edge))
        harness = Harness(server.url, path, config, magento.standin, PanelApp(), edge)
        try:
            yield harness, magento, server
        finally:
            magento.gate.set()


def test_a_keyed_write_in_flight_when_redis_dies_is_never_run_twice(tmp_path: Path) -> None:
    """The finding: the client got 200, the record was never saved, and once the lease ran
    out the same key ran a second time. Now the answer is kept and replayed, then saved."""
    redis = KillableRedis().start()
    try:
        with redis_edge(tmp_path, redis) as (h, magento, _server):
            token = h.token("products:write", tier="internal")
            k = key()
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": k}
            body = product("FAULT-INFLIGHT")
            result: dict[str, httpx.Response] = {}
            magento.gate.clear()

            def first() -> None:
                result["first"] = httpx.post(
                    h.url + PRODUCTS, json=body, headers={**headers, "X-Test-Hold": "1"}, timeout=20
                )

            t = threading.Thread(target=first)
            t.start()
            assert settle(lambda: magento.held == 1)
            redis.kill()  # the claim is in Redis; the record will find nobody
            magento.gate.set()
            t.join(timeout=20)
            assert result["first"].status_code == 200
            assert _posts(magento) == 1

            # Redis still down: the retry is the same write, answered from the edge's copy.
            again = httpx.post(h.url + PRODUCTS, json=body, headers=headers, timeout=10)
            assert again.status_code == 200 and again.headers[REPLAYED] == "true"
            assert again.content == result["first"].content
            # A new key meanwhile cannot be guarded: 503, nothing forwarded, no address.
            other = httpx.post(
                h.url + PRODUCTS,
                json=product("FAULT-OTHER"),
                headers={**headers, "Idempotency-Key": key()},
                timeout=10,
            )
            assert other.status_code == 503 and names_no_address(other.content)
            assert _posts(magento) == 1

            redis.start()  # same port, same AOF
            assert settle(lambda: not h.edge.idempotency.unsaved, timeout=10)
            assert h.edge.idempotency.unsaved.saved_late == 1
            later = httpx.post(h.url + PRODUCTS, json=body, headers=headers, timeout=10)
            assert later.status_code == 200 and later.headers[REPLAYED] == "true"
            assert _posts(magento) == 1
    finally:
        redis.stop()


@pytest.mark.timeout(90)
def test_redis_killed_and_restarted_under_load(tmp_path: Path) -> None:
    redis = KillableRedis().start()
    try:
        with redis_edge(tmp_path, redis) as (h, magento, server):
            assert server.loop is not None
            token = h.token("products:write", tier="internal")
            auth = {"Authorization": f"Bearer {token}"}
            answered: list[tuple[str, int, str, bytes]] = []  # (kind, status, key, body)
            lock = threading.Lock()
            phase = {"stop": False}

            def worker(n: int) -> None:
                with httpx.Client(base_url=h.url, headers=auth, timeout=15) as c:
                    i = 0
                    while not phase["stop"] and i < 2000:  # bounded either way
                        i += 1
                        if i % 2:
                            r = c.get(PRODUCTS, params={"searchCriteria[pageSize]": 1})
                            entry = ("read", r.status_code, "", r.content)
                        else:
                            k = f"{n}-{i}-{key()}"
                            r = c.post(
                                PRODUCTS,
                                json=product(f"LOAD-{n}-{i}"),
                                headers={"Idempotency-Key": k},
                            )
                            entry = ("write", r.status_code, k, r.content)
                        with lock:
                            answered.append(entry)

            # Warm up, then count files and tasks at rest as the baseline.
            with httpx.Client(base_url=h.url, headers=auth, timeout=15) as c:
                for i in range(5):
                    c.post(PRODUCTS, json=product(f"WARM-{i}"), headers={"Idempotency-Key": key()})
            fds_before = open_fds()
            tasks_before = tasks_on(server.loop)
            warm_posts = _posts(magento)

            with ThreadPoolExecutor(4) as pool:
                futures = [pool.submit(worker, n) for n in range(4)]
                assert settle(lambda: len(answered) >= 40, timeout=20)
                redis.kill()
                killed_at = len(answered)
                assert settle(lambda: len(answered) >= killed_at + 40, timeout=20)
                down = answered[killed_at:]
                redis.start()
                restarted_at = len(answered)
                # Recovery without a restart: keyed writes succeed again.
                assert settle(
                    lambda: any(
                        e[0] == "write" and e[1] == 200 for e in answered[restarted_at + 8 :]
                    ),
                    timeout=20,
                )
                recovered_at = len(answered)
                assert settle(lambda: len(answered) >= recovered_at + 40, timeout=20)
                phase["stop"] = True
                for f in futures:
                    f.result(timeout=30)

            statuses = Counter((kind, status) for kind, status, _, _ in answered)
            print(f"\nunder load: {dict(statuses)}")
            # Reads never depend on Redis (rate limits fail open as configured).
            assert {s for (kind, s) in statuses if kind == "read"} == {200}
            # Writes: 200, or 503 while Redis was down; nothing else, never a 5xx of ours.
            assert {s for (kind, s) in statuses if kind == "write"} <= {200, 503}
            assert any(e[1] == 503 for e in down), "the outage was never seen"
            for _, status, _, content in answered:
                if status == 503:
                    assert b"idempotency-unavailable" in content
                    assert names_no_address(content), content
            # Every write Magento ran was answered 200 to exactly one client: none ran twice,
            # none ran unanswered.
            ok_writes = [e for e in answered if e[0] == "write" and e[1] == 200]
            assert _posts(magento) - warm_posts == len(ok_writes)
            # After the restart every answered write is replayed, never run again.
            assert settle(lambda: not h.edge.idempotency.unsaved, timeout=10)
            before_replays = _posts(magento)
            with httpx.Client(base_url=h.url, headers=auth, timeout=15) as c:
                for _, _, k, content in ok_writes[:: max(1, len(ok_writes) // 30)]:
                    n, i = k.split("-")[:2]
                    r = c.post(
                        PRODUCTS, json=product(f"LOAD-{n}-{i}"), headers={"Idempotency-Key": k}
                    )
                    assert r.status_code == 200 and r.headers[REPLAYED] == "true"
                    assert r.content == content
            assert _posts(magento) == before_replays
            # Nothing leaked: files and tasks back to their resting counts.
            assert settle(lambda: tasks_on(server.loop) <= tasks_before, timeout=10)
            assert settle(lambda: open_fds() <= fds_before + 4, timeout=10), (
                open_fds(),
                fds_before,
            )
    finally:
        redis.stop()


# -- the key store on Redis, in a real serve process ---------------------------------------


def test_redis_key_store_down_at_start_then_up_without_a_restart(tmp_path: Path) -> None:
    redis = KillableRedis(persistent=False)  # not started yet: the port is free
    magento = GatedMagento()
    try:
        with serving(magento) as upstream:
            ks = f'[keystore]\nbackend = "redis"\nurl = "{redis.url}"\n'
            config = serve_config(tmp_path, upstream.url, ks)
            edge = ServeProcess(config, free_port(), free_port())
            try:
                # Not ready, and says why, once the first probe round is done.
                assert settle(lambda: "KeyStoreUnavailable" in edge.check("keystore"))
                status, body = edge.ready()
                assert status == 503 and "keystore: failed (KeyStoreUnavailable" in str(
                    body["reason"]
                )
                token = generate_token("live")
                auth = {"Authorization": f"Bearer {token}"}
                answers = [
                    httpx.get(edge.url + PRODUCTS, headers=auth, timeout=5) for _ in range(40)
                ]
                assert {r.status_code for r in answers} == {503}
                for r in answers:
                    assert b"keystore-unavailable" in r.content and names_no_address(r.content)
                    assert r.headers["retry-after"] == "1"
                # Logged, with counts, once per interval: not 40 lines, not none.
                lines = [
                    ln for ln in edge.log.read_text().splitlines() if "key store unavailable" in ln
                ]
                assert 1 <= len(lines) <= 3, lines

                redis.start()
                record = TokenRecord(
                    id="tok_fault", name="f", kind="live", stores=("acme",),
                    permissions={"products": "read"},
                )  # fmt: skip

                async def create() -> None:
                    store = RedisKeyStore(redis.url)
                    await store.create(record, hash_token(token))
                    await store.close()

                asyncio.run(create())
                assert settle(lambda: edge.check("keystore") == "ok", timeout=10), edge.ready()
                ok = httpx.get(edge.url + PRODUCTS, headers=auth, timeout=5)
                assert ok.status_code == 200
                assert "key store reachable again" in edge.log.read_text()
                fds_up = open_fds(edge.proc.pid)
                redis.kill()  # and at run time: not ready again, 503 again, then back
                assert settle(lambda: edge.check("keystore") != "ok", timeout=10)
                cut = httpx.get(
                    edge.url + PRODUCTS,
                    headers={"Authorization": "Bearer " + generate_token("live")},
                    timeout=5,
                )
                assert cut.status_code == 503 and names_no_address(cut.content)
                redis.start()  # no persistence: the token is gone, so create it again
                asyncio.run(create())
                assert settle(lambda: edge.check("keystore") == "ok", timeout=10)
                assert httpx.get(edge.url + PRODUCTS, headers=auth, timeout=5).status_code == 200
                assert settle(lambda: open_fds(edge.proc.pid) <= fds_up + 2, timeout=10)
            finally:
                edge.stop()
            assert edge.proc.returncode == 0
    finally:
        redis.stop()
