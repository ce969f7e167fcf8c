"""Rate-limit backends (``[ratelimit] backend``): ``memory`` (:mod:`.memory`, per process,
the default), ``redis`` (:mod:`.redis`, shared by replicas), ``none`` (limits off), or
``"package.module:Class"`` (an operator's own :class:`RateLimiter`).
"""

from __future__ import annotations

from .._classpath import is_class_path, load_class
from .._redis import require_url
from .base import LimitResult, RateLimiter

__all__ = ["BACKENDS", "LimitResult", "RateLimiter", "open_limiter"]

BACKENDS = ("memory", "redis", "none")


def open_limiter(backend: str, url: str | None) -> RateLimiter | None:
    """The configured backend (``none``: limits off, no headers); Redis (or the operator's
    module) is imported only here."""
    limiter: RateLimiter | None = None
    if is_class_path(backend):
        limiter = load_class(backend, RateLimiter)()
    elif backend == "redis":
        from .redis import RedisRateLimiter

        limiter = RedisRateLimiter(require_url(url, "rate-limit"))
    elif backend != "none":
        from .memory import MemoryRateLimiter

        limiter = MemoryRateLimiter()
    return limiter
