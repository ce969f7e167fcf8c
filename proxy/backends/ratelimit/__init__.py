"""Rate-limit backends (``[ratelimit] backend``): ``memory`` (:mod:`.memory`, per process,
the default), ``redis`` (:mod:`.redis`, shared by replicas), ``none`` (limits off), or
``"package.module:Class"`` (an operator's own :class:`RateLimiter`).
"""

from __future__ import annotations

from .._classpath import is_class_path, load_class
from .base import LimitResult, RateLimiter

__all__ = ["BACKENDS", "LimitResult", "RateLimiter", "open_limiter"]

BACKENDS = ("memory", "redis", "none")


def open_limiter(backend: str, url: str | None) -> RateLimiter | None:
    """The configured backend (``none``: limits off, no headers)."""
    if backend == "none":
        return None
    if is_class_path(backend):
        limiter: RateLimiter = load_class(backend, RateLimiter)()
        return limiter
    if backend == "redis":
        from .redis import RedisRateLimiter

        if not url:  # load_config refuses this; never fall back to a guessed server
            raise ValueError('the "redis" rate-limit backend needs a url')
        return RedisRateLimiter(url)
    from .memory import MemoryRateLimiter

    return MemoryRateLimiter()
