"""Answers the idempotency store could not take when they completed (its backend was down),
kept in this process and saved again until the store takes them or their TTL ends.

While an answer waits here its key is still locked for this process: a retry that reaches
it is answered from the local copy (:meth:`UnsavedAnswers.get`), never forwarded again.
Other replicas ask the store, which (while it is down) answers nobody and (once it is
back) holds this request's lease until the next save attempt records the answer, a
fraction of a second later. The one hole is this process dying in that window: the local
copy dies with it, and once the lease expires a retry runs again.

Bounded in bytes, like the memory store (each kept answer is counted with its measured
overhead); an answer that does not fit is kept as its status only (a retry gets 409
``idempotency_answer_not_recorded``: never a second run), and only when even that does not
fit is the oldest dropped (logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace

from ...errors import IdempotencyUnavailable
from .base import Answer, IdempotencyStore, Lease
from .memory import OVERHEAD

__all__ = ["DEFAULT_MAX_UNSAVED_BYTES", "RETRY_SECONDS", "UnsavedAnswers"]

log = logging.getLogger("magento_edge.idempotency")

DEFAULT_MAX_UNSAVED_BYTES = 16 * 1024 * 1024
RETRY_SECONDS = 0.2  # between save attempts: how long a recovered backend waits for them


class UnsavedAnswers:
    """Answers not yet in the store, oldest first; a background task saves them.
    Trust model: process memory, like the memory store; keyed by the store's hashed names."""

    def __init__(
        self,
        store: IdempotencyStore,
        *,
        max_bytes: int = DEFAULT_MAX_UNSAVED_BYTES,
        retry_seconds: float = RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._max_bytes = max_bytes
        self._retry = retry_seconds
        self._clock = clock
        # name -> (the request's lease, its answer, when the answer's TTL ends)
        self._kept: OrderedDict[str, tuple[Lease, Answer, float]] = OrderedDict()
        self._bytes = 0
        self._task: asyncio.Task[None] | None = None
        self.saved_late = 0  # answers the store took on a later attempt
        self.dropped = 0  # answers given up on (TTL over, no room, another answer won)

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, name: str) -> Answer | None:
        kept = self._kept.get(name)
        if kept is None:
            return None
        if kept[2] <= self._clock():
            self._drop(name, "its TTL ended before the store took it")
            return None
        return kept[1]

    def keep(self, name: str, lease: Lease, answer: Answer, ttl: float) -> None:
        """Hold ``answer`` until the store takes it; starts the saver if needed."""
        size = _size(answer)
        if size > self._max_bytes - self._bytes and answer.body is not None:
            answer = replace(answer, body=None)  # its status is enough to refuse a rerun
            size = _size(answer)
        while self._kept and size > self._max_bytes - self._bytes:
            oldest = next(iter(self._kept))
            self._drop(oldest, "no room for newer unsaved answers (a retry may run again)")
        if size > self._max_bytes:
            self.dropped += 1
            log.error("idempotency answer not kept: larger than max unsaved bytes")
            return
        self._kept[name] = (lease, answer, self._clock() + ttl)
        self._bytes += size
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._save_forever())

    def _drop(self, name: str, why: str) -> None:
        kept = self._kept.pop(name, None)
        if kept is not None:
            self._bytes -= _size(kept[1])
            self.dropped += 1
            log.error("unsaved idempotency answer dropped: %s", why)

    async def save_once(self) -> bool:
        """One pass, oldest first; ``False`` if the store is still down (stop there)."""
        for name in list(self._kept):
            kept = self._kept.get(name)
            if kept is None:
                continue
            lease, answer, expires = kept
            left = expires - self._clock()
            if left <= 0:
                self._drop(name, "its TTL ended before the store took it")
                continue
            try:
                taken = await self._store.record(name, lease, answer, left)
            except IdempotencyUnavailable:
                return False
            if name in self._kept:
                if taken:
                    self._bytes -= _size(answer)
                    del self._kept[name]
                    self.saved_late += 1
                    log.warning("idempotency answer saved after a backend outage")
                else:
                    # The lease lapsed in the store and another request holds the key (its
                    # own lease or answer): the store's word wins from here on.
                    self._drop(name, "another request holds its key in the store")
        return True

    async def _save_forever(self) -> None:
        while self._kept:
            await asyncio.sleep(self._retry)
            try:
                await self.save_once()
            except Exception:  # a bug here must not leave answers unsaved for good
                log.exception("saving unsaved idempotency answers failed")

    async def close(self, *, seconds: float = 2.0) -> None:
        """Stop the saver and try once more (bounded): a shutdown saves what it can."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._kept:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.save_once(), seconds)
        if self._kept:
            log.error(
                "%d idempotency answers were never saved (backend down at shutdown): "
                "retries of those keys may run again",
                len(self._kept),
            )
        self._kept.clear()
        self._bytes = 0


def _size(answer: Answer) -> int:
    body = len(answer.body) if answer.body is not None else 0
    return OVERHEAD + body + sum(len(n) + len(v) + 64 for n, v in answer.headers)
