"""Idempotency across backend faults (issue #13 part 2): an answer the backend cannot take
when it completes is kept in the process and saved later, a retry meanwhile replays the
local copy (never a second forward), and the local copy is bounded. The memory store's
byte bound counts what its answers really cost (tracemalloc)."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import tracemalloc

import pytest

from proxy.backends.idempotency.base import Answer, Lease, encode_answer
from proxy.backends.idempotency.memory import OVERHEAD, MemoryIdempotencyStore
from proxy.backends.idempotency.unsaved import UnsavedAnswers
from proxy.errors import IdempotencyUnavailable
from proxy.idempotency import REPLAYED, Idempotency
from tests.test_idempotency import Client, Upstream, call


class Switchable(MemoryIdempotencyStore):
    """A memory store whose backend can be "down" (every operation raises) or whose
    ``record`` alone fails, as Redis dying between the claim and the record does."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.record_down = False
        self.records = 0

    def _check(self) -> None:
        if self.down:
            raise IdempotencyUnavailable("down")

    async def claim(self, key: str, lease: Lease, seconds: float) -> Lease | Answer | None:
        self._check()
        return await super().claim(key, lease, seconds)

    async def renew(self, key: str, lease: Lease, seconds: float) -> bool:
        self._check()
        return await super().renew(key, lease, seconds)

    async def record(self, key: str, lease: Lease, answer: Answer, ttl: float) -> bool:
        self._check()
        if self.record_down:
            raise IdempotencyUnavailable("down")
        self.records += 1
        return await super().record(key, lease, answer, ttl)

    async def release(self, key: str, lease: Lease) -> None:
        self._check()
        await super().release(key, lease)


async def test_an_unsaved_answer_is_replayed_locally_then_saved_when_the_backend_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = Switchable()
    idem = Idempotency(store, retry_seconds=0.01)
    up = Upstream()
    store.record_down = True  # the claim worked; the backend died before the record
    first = await call(idem, up)
    assert first.status == 201 and up.calls == 1
    assert len(idem.unsaved) == 1 and idem.backend_errors == 1

    store.down = True  # fully down: the retry is answered from the local copy
    again = await call(idem, Upstream())
    assert again.status == 201 and again.body == first.body
    assert REPLAYED in again.headers
    assert up.calls == 1

    store.down = store.record_down = False  # back: the saver lands it within a few tries
    for _ in range(200):
        if not idem.unsaved:
            break
        await asyncio.sleep(0.01)
    assert not idem.unsaved and idem.unsaved.saved_late == 1 and store.records == 1
    # Now the store itself replays it (the local copy is gone).
    up2 = Upstream()
    replay = await call(idem, up2)
    assert replay.status == 201 and up2.calls == 0 and replay.body == first.body
    assert "idempotency answer saved after a backend outage" in caplog.text
    await idem.close()


async def test_a_different_request_with_an_unsaved_key_is_422_and_runs_nothing() -> None:
    store = Switchable()
    idem = Idempotency(store, retry_seconds=60)
    store.record_down = True
    await call(idem, Upstream())
    up = Upstream()

    with pytest.raises(Exception) as info:
        await call(idem, up, Client(body=b'{"a":2}'))
    assert getattr(info.value, "status", None) == 422 and up.calls == 0
    await idem.close()


async def test_an_unsaved_answer_ends_with_its_ttl() -> None:
    now = [100.0]
    store = Switchable()
    idem = Idempotency(store, ttl=10, retry_seconds=60, clock=lambda: now[0])
    store.record_down = True
    await call(idem, Upstream())
    assert len(idem.unsaved) == 1
    now[0] += 11
    store.down = True
    with pytest.raises(IdempotencyUnavailable):  # nothing local any more: the store decides
        await call(idem, Upstream())
    assert not idem.unsaved and idem.unsaved.dropped == 1
    await idem.close()


async def test_close_saves_what_it_can_and_logs_what_it_cannot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = Switchable()
    idem = Idempotency(store, retry_seconds=60)
    store.record_down = True
    await call(idem, Upstream(), key="a")
    store.record_down = False
    await idem.unsaved.close()  # the backend is back at shutdown: saved
    assert store.records == 1

    idem = Idempotency(Switchable(), retry_seconds=60)
    idem.store.record_down = True  # type: ignore[attr-defined]
    await call(idem, Upstream(), key="b")
    with caplog.at_level(logging.ERROR):
        await idem.close()
    assert "1 idempotency answers were never saved" in caplog.text


def _answer(i: int, body: bytes | None) -> Answer:
    return Answer(f"{i:064x}", 200, ((b"content-type", b"application/json"),), body)


async def test_unsaved_answers_are_bounded_in_bytes_status_kept_before_anything_is_dropped() -> (
    None
):
    store = Switchable()
    store.down = True
    kept = UnsavedAnswers(store, max_bytes=20_000, retry_seconds=60)
    big = b"x" * 7000
    for i in range(3):
        kept.keep(f"k{i}", Lease("o", f"{i:064x}"), _answer(i, big), 3600)
    assert kept.bytes <= 20_000 and len(kept) == 3
    # The third did not fit whole: its status is kept, its body not (409, never a rerun).
    bodies = [kept.get(f"k{i}") for i in range(3)]
    assert [b is not None and b.body is not None for b in bodies] == [True, True, False]
    for i in range(3, 200):  # status-only answers: the oldest go only when even those do not fit
        kept.keep(f"k{i}", Lease("o", f"{i:064x}"), _answer(i, big), 3600)
        assert kept.bytes <= 20_000
    assert kept.get("k199") is not None and kept.get("k0") is None and kept.dropped > 0
    await kept.close(seconds=0.1)


async def test_the_memory_stores_byte_bound_counts_at_least_what_answers_really_cost() -> None:
    store = MemoryIdempotencyStore(max_bytes=1 << 40)
    n = 5000
    answers = [_answer(i, b"y" * 300) for i in range(n)]
    leases = [Lease(f"{i:016x}", a.fingerprint) for i, a in enumerate(answers)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i, (lease, answer) in enumerate(zip(leases, answers, strict=True)):
            name = hashlib.sha256(str(i).encode()).hexdigest()  # as store_key makes them
            await store.claim(name, lease, 30)
            assert await store.record(name, lease, answer, 86400)
        gc.collect()
        real = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    counted = store._bytes
    blob = len(encode_answer(answers[0]))
    assert counted == n * (OVERHEAD + blob)
    # The count covers the real cost, and does not overstate it by more than a third.
    assert real <= counted < real * 1.34
    await store.close()
