"""One way to open Redis for every Redis backend (key store, rate limits, idempotency).

A bounded pool that waits (up to 1 s) for a free connection, so a burst of requests never
opens a connection each, with short connect and socket timeouts so an unreachable Redis
turns into the backend's own error quickly. ``redis`` is imported only when a Redis
backend is selected.
"""

from __future__ import annotations

from typing import Any

__all__ = ["connect", "require_url"]


def connect(
    url: str, *, max_connections: int = 32, socket_timeout: float = 1.0, decode: bool = False
) -> Any:
    """A ``redis.asyncio.Redis`` on its own pool; close it with
    ``aclose(close_connection_pool=True)``."""
    import redis.asyncio as redis

    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=1.0,
        socket_connect_timeout=1.0,
        socket_timeout=socket_timeout,
        health_check_interval=30,
        decode_responses=decode,
    )
    return redis.Redis(connection_pool=pool)


def require_url(url: str | None, kind: str) -> str:
    """The Redis URL a backend was configured with; ``load_config`` refuses a Redis backend
    without one, so this only guards a hand-built config: never a guessed server."""
    if not url:
        raise ValueError(f'the "redis" {kind} backend needs a url')
    return url
