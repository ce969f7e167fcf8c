"""The idempotency backends under test, for the store contract
(``tests/backends/test_idempotency.py``) and the step's tests (``tests/test_idempotency.py``):
the ``backend`` fixture gives the memory store on a fake clock and the Redis store on a
real redis-server whose expiries the tests move. Registered in ``tests/conftest.py``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from proxy.backends.idempotency.base import Answer, IdempotencyStore
from proxy.backends.idempotency.memory import MemoryIdempotencyStore
from proxy.backends.idempotency.redis import RedisIdempotencyStore

LEASE = 40.0
TTL = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Backend:
    """A store under test and how to make its time pass."""

    def __init__(self, store: IdempotencyStore, clock: Clock, advance: Any) -> None:
        self.store = store
        self.clock = clock
        self._advance = advance

    async def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        await self._advance(seconds)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    clock = Clock()
    if request.param == "memory":
        store = MemoryIdempotencyStore(clock=clock)

        async def nothing(_seconds: float) -> None:
            return None

        yield Backend(store, clock, nothing)
        await store.close()
        return
    import redis.asyncio as redis

    url = request.getfixturevalue("redis_url")
    prefix = f"edge:idem:test:{uuid.uuid4().hex}:"
    rstore = RedisIdempotencyStore(url, prefix=prefix)
    admin = redis.Redis.from_url(url)

    async def advance(seconds: float) -> None:
        # The server's clock cannot be moved: move every expiry of this test's keys instead.
        async for name in admin.scan_iter(match=prefix + "*"):
            left = await admin.pttl(name)
            if left - seconds * 1000 <= 0:
                await admin.delete(name)
            else:
                await admin.pexpire(name, int(left - seconds * 1000))

    yield Backend(rstore, clock, advance)
    await rstore.close()
    await admin.aclose()


def answer(fp: str = "f" * 64, status: int = 201, body: bytes | None = b'{"id":1}') -> Answer:
    return Answer(fp, status, ((b"content-type", b"application/json"),), body)
