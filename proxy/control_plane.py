"""Off the request path: the edge's own HTTP calls (Magento admin logins, JWKS fetches).

Both follow one discipline, kept here once: a call runs in the background, at most one at a
time and no more often than an interval, and every request that needs its outcome waits on
that one call (shielded: a client that goes away does not cancel it for the others). The
httpx client is created on first use and closed with its owner.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import httpx

__all__ = ["ControlPlaneClient", "SharedFetch"]


class SharedFetch:
    """One background run of ``run`` at a time, started at most once per interval."""

    __slots__ = ("_run", "_task", "last_start")

    def __init__(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._run = run
        self._task: asyncio.Task[None] | None = None
        self.last_start = float("-inf")

    def start(self, now: float, interval: float) -> bool:
        """Start a run unless one is going or the last started under ``interval`` ago;
        whether one was started (it runs from the next turn of the event loop)."""
        if self._task is not None or now - self.last_start < interval:
            return False
        self.last_start = now
        self._task = asyncio.get_running_loop().create_task(self._guarded())
        return True

    async def join(self) -> None:
        """Wait for the run in flight, if any."""
        task = self._task
        if task is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        task = self._task
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _guarded(self) -> None:
        try:
            await self._run()
        finally:
            self._task = None


class ControlPlaneClient:
    """An httpx client made on first use (or the caller's, which the caller closes)."""

    __slots__ = ("_client", "_own", "_timeout")

    def __init__(self, timeout: httpx.Timeout, client: httpx.AsyncClient | None = None) -> None:
        self._timeout = timeout
        self._client = client
        self._own = client is None

    def get(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, trust_env=False)
        return self._client

    async def close(self) -> None:
        if self._client is not None and self._own:
            await self._client.aclose()
            self._client = None
