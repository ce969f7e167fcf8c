"""The Redis idempotency backend (``[idempotency] backend = "redis"``): one key per
(caller, Idempotency-Key), shared by every replica and kept across restarts.

    edge:idem:{sha256}   string   b"L" owner fingerprint          a lease, PX = lease seconds
                                  b"R" fingerprint status ...      an answer, PX = ttl

Recording is idempotent itself: a record Redis ran but whose reply was lost (Redis killed
right after) is retried by :mod:`.unsaved` and finds its own answer there: taken.

Each operation is one Lua script (``EVALSHA``, reloaded on ``NOSCRIPT``), atomic on the
server: a claim is "return what is there, or set my lease with an expiry"; renew, record
and release act only while the key holds this request's lease (or, for record, nothing:
a lapsed lease nobody took). A replica that dies mid-request leaves a lease that expires.
Redis errors become :class:`proxy.errors.IdempotencyUnavailable` (503).
"""

from __future__ import annotations

from typing import Any

from ...errors import IdempotencyUnavailable
from .._redis import connect
from .base import Answer, Lease, decode, encode_answer, encode_lease

__all__ = ["RedisIdempotencyStore"]

_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RECORD = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[2] then return 1 end
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisIdempotencyStore:
    """Trust model: the Redis server is the operator's; it holds recorded answers (what
    the callers were sent), so it is as sensitive as the API's own data."""

    def __init__(self, url: str, *, prefix: str = "edge:idem:", max_connections: int = 32) -> None:
        self._redis: Any = connect(url, max_connections=max_connections, socket_timeout=2.0)
        self._claim = self._redis.register_script(_CLAIM)
        self._renew = self._redis.register_script(_RENEW)
        self._record = self._redis.register_script(_RECORD)
        self._release = self._redis.register_script(_RELEASE)
        self.prefix = prefix

    async def _run(self, script: Any, key: str, *args: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return await script(keys=[self.prefix + key], args=list(args))
        except (RedisError, OSError) as exc:
            raise IdempotencyUnavailable(
                "Idempotency keys cannot be checked right now; retry shortly.",
                headers={"Retry-After": "1"},
            ) from exc

    async def claim(self, key: str, lease: Lease, seconds: float) -> Lease | Answer | None:
        found = await self._run(self._claim, key, encode_lease(lease), _ms(seconds))
        return None if found is None else decode(found)

    async def renew(self, key: str, lease: Lease, seconds: float) -> bool:
        return bool(await self._run(self._renew, key, encode_lease(lease), _ms(seconds)))

    async def record(self, key: str, lease: Lease, answer: Answer, ttl: float) -> bool:
        value = encode_answer(answer)
        return bool(await self._run(self._record, key, encode_lease(lease), value, _ms(ttl)))

    async def release(self, key: str, lease: Lease) -> None:
        await self._run(self._release, key, encode_lease(lease))

    async def ping(self) -> None:
        """The readiness probe (issue #12): raises when Redis does not answer."""
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose(close_connection_pool=True)
