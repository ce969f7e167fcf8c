"""Step 4 of the request path: the rate-limit headers a surface answers with.

The decision itself (GCRA bucket and daily quota) is a backend's
(:mod:`proxy.backends.ratelimit`); which key and tier it is asked for is :mod:`proxy.edge`'s.
"""

from __future__ import annotations

import math

from .backends.ratelimit.base import LimitResult
from .types import HeaderStyle

__all__ = ["rate_limit_headers"]


def rate_limit_headers(
    result: LimitResult, style: HeaderStyle, *, ietf: bool = False
) -> list[tuple[bytes, bytes]]:
    """The surface's headers for ``result``.

    They describe whichever limit is closer to running out: the bucket normally, the daily
    quota once fewer requests are left today than in the bucket (as Kong does). The IETF
    ``RateLimit-Policy``/``RateLimit`` pair, when enabled, lists both.
    """
    daily_tighter = bool(result.daily_limit) and result.daily_remaining < result.remaining
    if daily_tighter or (result.daily_limit and not result.allowed and result.daily_remaining == 0):
        limit, remaining, reset = result.daily_limit, result.daily_remaining, result.daily_reset
    else:
        limit, remaining, reset = result.limit, result.remaining, result.reset
    if style == "ratelimit":
        out = [
            (b"ratelimit-limit", str(limit).encode()),
            (b"ratelimit-remaining", str(remaining).encode()),
            (b"ratelimit-reset", str(math.ceil(reset)).encode()),
        ]
    else:
        # Seed 001 shows X-Rate-Limit-Reset as a Unix time.
        out = [
            (b"x-rate-limit-limit", str(limit).encode()),
            (b"x-rate-limit-remaining", str(remaining).encode()),
            (b"x-rate-limit-reset", str(math.ceil(result.now + reset)).encode()),
        ]
    if ietf:
        policy = f'"burst";q={result.limit};w={max(1, math.ceil(result.window))}'
        state = f'"burst";r={result.remaining};t={math.ceil(result.reset)}'
        if result.daily_limit:
            policy += f', "daily";q={result.daily_limit};w=86400'
            state += f', "daily";r={result.daily_remaining};t={math.ceil(result.daily_reset)}'
        out.append((b"ratelimit-policy", policy.encode()))
        out.append((b"ratelimit", state.encode()))
    if not result.allowed:
        out.append((b"retry-after", str(max(1, math.ceil(result.retry_after))).encode()))
    return out
