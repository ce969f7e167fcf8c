"""Idempotency backends (``[idempotency] backend``): ``memory`` (:mod:`.memory`, per
process, the default), ``redis`` (:mod:`.redis`, shared by replicas, kept across restarts),
or ``"package.module:Class"`` (an operator's own :class:`IdempotencyStore`). The request
step that uses one is :mod:`proxy.idempotency`.
"""

from __future__ import annotations

from .._classpath import load_class
from .._redis import require_url
from .base import Answer, IdempotencyStore, Lease

__all__ = ["BACKENDS", "Answer", "IdempotencyStore", "Lease", "open_idempotency_store"]

BACKENDS = ("memory", "redis")


def open_idempotency_store(backend: str, url: str | None) -> IdempotencyStore:
    """The configured backend; Redis (or the operator's module) is imported only here."""
    if backend == "memory":
        from .memory import MemoryIdempotencyStore

        return MemoryIdempotencyStore()
    if backend == "redis":
        from .redis import RedisIdempotencyStore

        return RedisIdempotencyStore(require_url(url, "idempotency"))
    store: IdempotencyStore = load_class(backend, IdempotencyStore)()  # a class path
    return store
