"""The Redis rate-limit backend (``[ratelimit] backend = "redis"``): one Lua script per
decision, on the server's clock.

The script reads the bucket's ``tat`` and today's count, decides, and writes both only
when the request passes, atomically; every replica sharing the server therefore shares
exact limits. Decisions asked for in the same event-loop turn travel as one pipeline of
``EVALSHA`` calls; when the server answers ``NOSCRIPT`` (after a restart or ``SCRIPT
FLUSH``) the script is loaded again and the batch re-sent. The arithmetic of the reported
numbers is :func:`.base.decide`, the same as the memory backend's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ...errors import BackendUnavailable
from ...policy import Tier
from .._redis import connect
from .base import LimitResult, decide

__all__ = ["RedisRateLimiter"]

log = logging.getLogger("magento_edge.ratelimit")

# KEYS[1] bucket tat; KEYS[2] daily counter prefix (the UTC day number is appended here,
# from the server clock). ARGV: interval seconds, burst, daily quota (0 = none).
# Returns {allowed, tat before (string, full precision), now (string), used today before}.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local daily = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local day_key = KEYS[2] .. math.floor(now / 86400)
local used = 0
if daily > 0 then used = tonumber(redis.call('GET', day_key) or '0') end
local start = math.max(tat, now)
local new_tat = start + interval
local allowed = 0
if new_tat - burst * interval <= now and (daily == 0 or used < daily) then
  allowed = 1
  redis.call('SET', KEYS[1], string.format('%.17g', new_tat),
             'PX', math.ceil((new_tat - now) * 1000) + 1000)
  if daily > 0 then
    redis.call('INCR', day_key)
    redis.call('EXPIRE', day_key, 90000)
  end
end
return {allowed, string.format('%.17g', tat), string.format('%.17g', now), used}
"""


class RedisRateLimiter:
    """Trust model: the Redis server is the operator's; keys hold no secrets (token ids)."""

    def __init__(self, url: str, *, prefix: str = "edge:rl:", max_connections: int = 32) -> None:
        self._redis: Any = connect(url, max_connections=max_connections)
        self._sha: str | None = None
        self._prefix = prefix
        self._errors = _ErrorLog()
        self._batch: list[tuple[str, Tier, asyncio.Future[LimitResult]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def errors(self) -> int:
        return self._errors.count

    async def hit(self, key: str, tier: Tier) -> LimitResult:
        # Decisions asked for in the same event-loop turn go to Redis as one pipeline
        # (each script still runs atomically on its own): measured on this machine,
        # redis-py spends ~150 us of CPU per lone EVALSHA and ~33 us per EVALSHA in a
        # pipeline of 32.
        loop = asyncio.get_running_loop()
        future: asyncio.Future[LimitResult] = loop.create_future()
        self._batch.append((self._prefix + key, tier, future))
        if len(self._batch) == 1:
            loop.call_soon(self._dispatch)
        return await future

    def _dispatch(self) -> None:
        batch, self._batch = self._batch, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[tuple[str, Tier, asyncio.Future[LimitResult]]]) -> None:
        from redis.exceptions import NoScriptError, RedisError

        try:
            replies = await self._pipeline(batch)
            lost = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if lost:
                # The server lost its scripts (restart, SCRIPT FLUSH): load it again and
                # re-send only the decisions that did not run.
                self._sha = None
                again = await self._pipeline([batch[i] for i in lost])
                for i, reply in zip(lost, again, strict=True):
                    replies[i] = reply
        except (RedisError, OSError) as exc:
            replies = [exc] * len(batch)
        for (_, tier, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue  # the request went away meanwhile
            if isinstance(reply, BaseException):
                self._errors.note(reply)
                future.set_exception(BackendUnavailable(str(reply)))
            else:
                future.set_result(_result(reply, tier))

    async def _pipeline(
        self, batch: list[tuple[str, Tier, asyncio.Future[LimitResult]]]
    ) -> list[Any]:
        if self._sha is None:
            self._sha = await self._redis.script_load(_SCRIPT)
        pipe = self._redis.pipeline(transaction=False)
        for key, tier, _ in batch:
            interval = tier.period / tier.rate
            pipe.evalsha(self._sha, 2, key, key + ":d:", repr(interval), tier.burst, tier.daily)
        return list(await pipe.execute(raise_on_error=False))

    async def ping(self) -> None:
        """The readiness probe (issue #12): raises when Redis does not answer."""
        await self._redis.ping()

    async def close(self) -> None:
        for task in list(self._sending):
            task.cancel()
        await self._redis.aclose(close_connection_pool=True)


def _result(reply: Any, tier: Tier) -> LimitResult:
    allowed, tat, now, used = reply
    result, _, _ = decide(float(tat), int(used), float(now), tier)
    if result.allowed != bool(allowed):  # pragma: no cover - float rounding at a boundary
        # The script's word is final; the numbers around it are within a microsecond.
        retry = 0.0 if allowed else max(result.retry_after, 0.001)
        result = result._replace(allowed=bool(allowed), retry_after=retry)
    return result


class _ErrorLog:
    """Counts backend errors and logs them at most every 10 s, not once per request."""

    def __init__(self) -> None:
        self.count = 0
        self._last = 0.0

    def note(self, exc: BaseException) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._last >= 10.0:
            self._last = now
            log.error("rate-limit backend error (%d so far): %s", self.count, exc)
