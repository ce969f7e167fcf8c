"""The idempotency store contract over every backend (memory with a fake clock, Redis
against a real redis-server whose expiries the tests advance), and each backend's own
behaviour: the memory store's byte bound, the Redis encoding and expiries."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.backends.idempotency.base import Answer, Lease, decode, encode_answer, encode_lease
from proxy.backends.idempotency.memory import MemoryIdempotencyStore
from proxy.backends.idempotency.redis import RedisIdempotencyStore
from tests.idempotency_backends import LEASE, TTL, Backend, Clock, answer

# -- the store contract (both backends) ---------------------------------------------------


async def test_first_claim_wins_and_others_see_the_lease(backend: Backend) -> None:
    s = backend.store
    a, b = Lease("a" * 16, "1" * 64), Lease("b" * 16, "2" * 64)
    assert await s.claim("k", a, LEASE) is None
    assert await s.claim("k", b, LEASE) == a
    assert await s.claim("other", b, LEASE) is None


async def test_record_then_every_claim_gets_the_answer(backend: Backend) -> None:
    s = backend.store
    lease = Lease("a" * 16, "f" * 64)
    assert await s.claim("k", lease, LEASE) is None
    kept = Answer("f" * 64, 200, ((b"x-h", b"\xe9 v"), (b"x-h", b"2")), bytes(range(256)) * 4)
    assert await s.record("k", lease, kept, TTL) is True
    for owner in ("b", "c"):
        assert await s.claim("k", Lease(owner * 16, "0" * 64), LEASE) == kept


async def test_recording_the_same_answer_again_is_taken_not_refused(backend: Backend) -> None:
    """A save retried after a lost reply (issue #13): the store already holds exactly this
    answer, so it is taken; a different answer is still refused."""
    s = backend.store
    lease = Lease("a" * 16, "f" * 64)
    assert await s.claim("k", lease, LEASE) is None
    assert await s.record("k", lease, answer(), TTL) is True
    assert await s.record("k", lease, answer(), TTL) is True
    assert await s.record("k", lease, answer(status=202), TTL) is False
    assert await s.claim("k", Lease("b" * 16, "f" * 64), LEASE) == answer()


async def test_an_answer_over_the_cap_keeps_its_status_only(backend: Backend) -> None:
    s = backend.store
    lease = Lease("a" * 16, "f" * 64)
    await s.claim("k", lease, LEASE)
    assert await s.record("k", lease, answer(body=None), TTL)
    assert await s.claim("k", Lease("b" * 16, "f" * 64), LEASE) == answer(body=None)


async def test_release_frees_the_key_only_for_its_owner(backend: Backend) -> None:
    s = backend.store
    a, b = Lease("a" * 16, "f" * 64), Lease("b" * 16, "f" * 64)
    await s.claim("k", a, LEASE)
    await s.release("k", b)
    assert await s.claim("k", b, LEASE) == a
    await s.release("k", a)
    assert await s.claim("k", b, LEASE) is None


async def test_a_lease_expires_so_a_dead_process_frees_the_key(backend: Backend) -> None:
    s = backend.store
    a, b = Lease("a" * 16, "f" * 64), Lease("b" * 16, "f" * 64)
    await s.claim("k", a, LEASE)
    await backend.advance(LEASE - 1)
    assert await s.claim("k", b, LEASE) == a
    await backend.advance(2)
    assert await s.claim("k", b, LEASE) is None
    # The first request, alive after all, no longer owns the key: its writes are ignored.
    assert await s.renew("k", a, LEASE) is False
    assert await s.record("k", a, answer(), TTL) is False
    await s.release("k", a)
    assert await s.claim("k", Lease("c" * 16, "f" * 64), LEASE) == b


async def test_renewal_extends_a_lease(backend: Backend) -> None:
    s = backend.store
    a, b = Lease("a" * 16, "f" * 64), Lease("b" * 16, "f" * 64)
    await s.claim("k", a, LEASE)
    await backend.advance(LEASE - 5)
    assert await s.renew("k", a, LEASE) is True
    await backend.advance(LEASE - 5)
    assert await s.claim("k", b, LEASE) == a
    assert await s.renew("k", b, LEASE) is False


async def test_a_lapsed_lease_nobody_took_still_records(backend: Backend) -> None:
    s = backend.store
    a = Lease("a" * 16, "f" * 64)
    await s.claim("k", a, LEASE)
    await backend.advance(LEASE + 1)
    assert await s.record("k", a, answer(), TTL) is True
    assert await s.claim("k", Lease("b" * 16, "f" * 64), LEASE) == answer()


async def test_answers_expire_after_the_ttl(backend: Backend) -> None:
    s = backend.store
    a = Lease("a" * 16, "f" * 64)
    await s.claim("k", a, LEASE)
    await s.record("k", a, answer(), TTL)
    await backend.advance(TTL - 1)
    assert await s.claim("k", Lease("b" * 16, "f" * 64), LEASE) == answer()
    await backend.advance(2)
    assert await s.claim("k", Lease("c" * 16, "f" * 64), LEASE) is None


async def test_one_of_many_concurrent_claims_wins(backend: Backend) -> None:
    leases = [Lease(f"{i:016x}", "f" * 64) for i in range(50)]
    results = await asyncio.gather(*(backend.store.claim("k", x, LEASE) for x in leases))
    winners = [x for x, r in zip(leases, results, strict=True) if r is None]
    assert len(winners) == 1
    assert all(r == winners[0] for r in results if r is not None)


# -- backend specifics ------------------------------------------------------------------


async def test_memory_answers_are_bounded_in_bytes_and_never_evict_leases() -> None:
    clock = Clock()
    s = MemoryIdempotencyStore(max_bytes=10_000, clock=clock)
    held = Lease("h" * 16, "f" * 64)
    await s.claim("held", held, LEASE)
    for i in range(20):
        lease = Lease(f"{i:016x}", "f" * 64)
        await s.claim(f"k{i}", lease, LEASE)
        assert await s.record(f"k{i}", lease, answer(body=b"x" * 1000), TTL)
    kept = [i for i in range(20) if await s.claim(f"k{i}", held, LEASE) is not None]
    assert 5 <= len(kept) < 10 and kept == list(range(20 - len(kept), 20))  # newest kept
    assert await s.claim("held", Lease("o" * 16, "f" * 64), LEASE) == held
    # Larger than the whole cache: not kept, and the key is free again.
    big = Lease("b" * 16, "f" * 64)
    await s.claim("big", big, LEASE)
    assert await s.record("big", big, answer(body=b"x" * 20_000), TTL) is False
    assert await s.claim("big", held, LEASE) is None


@given(
    status=st.integers(100, 599),
    headers=st.lists(st.tuples(st.binary(min_size=1, max_size=20), st.binary(max_size=40))),
    body=st.one_of(st.none(), st.binary(max_size=2000)),
)
def test_redis_encoding_round_trips(
    status: int, headers: list[tuple[bytes, bytes]], body: bytes | None
) -> None:
    kept = Answer("e" * 64, status, tuple(headers), body)
    assert decode(encode_answer(kept)) == kept
    lease = Lease("0123456789abcdef", "d" * 64)
    assert decode(encode_lease(lease)) == lease


@pytest.mark.redis
async def test_redis_keys_carry_their_expiry(redis_url: str) -> None:
    import redis.asyncio as redis

    prefix = f"edge:idem:test:{uuid.uuid4().hex}:"
    s = RedisIdempotencyStore(redis_url, prefix=prefix)
    admin = redis.Redis.from_url(redis_url)
    try:
        lease = Lease("a" * 16, "f" * 64)
        await s.claim("k", lease, 12.5)
        assert 11_000 < await admin.pttl(prefix + "k") <= 12_500
        await s.record("k", lease, answer(), 86400)
        assert 86_000_000 < await admin.pttl(prefix + "k") <= 86_400_000
    finally:
        await s.close()
        await admin.aclose()
