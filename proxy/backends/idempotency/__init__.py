"""Idempotency backends (``[idempotency] backend``): ``memory`` (:mod:`.memory`, per
process, the default), ``redis`` (:mod:`.redis`, shared by replicas, kept across restarts),
or ``"package.module:Class"`` (an operator's own :class:`IdempotencyStore`). The request
step that uses one is :mod:`proxy.idempotency`.
"""

from __future__ import annotations

from .._classpath import is_class_path, load_class
from .base import Answer, IdempotencyStore, Lease

__all__ = ["BACKENDS", "Answer", "IdempotencyStore", "Lease", "open_idempotency_store"]

BACKENDS = ("memory", "redis")


def open_idempotency_store(backend: str, url: str | None) -> IdempotencyStore:
    """The configured backend; Redis (or the operator's module) is imported only here."""
    if is_class_path(backend):
        store: IdempotencyStore = load_class(backend, IdempotencyStore)()
        return store
    if backend == "redis":
        from .redis import RedisIdempotencyStore

        if not url:  # load_config refuses this; never fall back to a guessed server
            raise ValueError('the "redis" idempotency backend needs a url')
        return RedisIdempotencyStore(url)
    from .memory import MemoryIdempotencyStore

    return MemoryIdempotencyStore()
