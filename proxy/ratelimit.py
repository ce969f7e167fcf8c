"""Step 4 of the request path: the rate-limit headers a surface answers with.

The decision itself (GCRA bucket and daily quota) is a backend's
(:mod:`proxy.backends.ratelimit`); which key and tier it is asked for is :mod:`proxy.edge`'s.
"""

from __future__ import annotations

import math

from .backends.ratelimit.base import LimitResult
from .types import HeaderStyle

__all__ = ["rate_limit_headers"]

_TABLE = 4096
_DIGITS = [b"%d" % n for n in range(_TABLE)]  # n -> its decimal digits (0 <= n < _TABLE)


def rate_limit_headers(
    result: LimitResult, style: HeaderStyle, *, ietf: bool = False
) -> list[tuple[bytes, bytes]]:
    """The surface's headers for ``result``.

    They describe whichever limit is closer to running out: the bucket normally, the daily
    quota once fewer requests are left today than in the bucket (as Kong does). The IETF
    ``RateLimit-Policy``/``RateLimit`` pair, when enabled, lists both.
    """
    # Shaped for speed (once per request): the fields unpacked once, the numbers written
    # with b"%d" (one C call each; the same digits as str(n).encode() for the ints a
    # LimitResult holds).
    allowed, limit, remaining, reset, retry_after, daily_limit, daily_left, daily_reset, now, _ = (
        result
    )
    if daily_limit and (daily_left < remaining or (not allowed and daily_left == 0)):
        limit, remaining, reset = daily_limit, daily_left, daily_reset
    # The usual numbers (a bucket's size and what is left of it, seconds to its reset) are
    # read from a table of their digits: a third of the cost of b"%d" each.
    limit_b = _DIGITS[limit] if 0 <= limit < _TABLE else b"%d" % limit
    remaining_b = _DIGITS[remaining] if 0 <= remaining < _TABLE else b"%d" % remaining
    if style == "ratelimit":
        seconds = math.ceil(reset)
        out = [
            (b"ratelimit-limit", limit_b),
            (b"ratelimit-remaining", remaining_b),
            (b"ratelimit-reset", _DIGITS[seconds] if 0 <= seconds < _TABLE else b"%d" % seconds),
        ]
    else:
        # Seed 001 shows X-Rate-Limit-Reset as a Unix time.
        out = [
            (b"x-rate-limit-limit", limit_b),
            (b"x-rate-limit-remaining", remaining_b),
            (b"x-rate-limit-reset", b"%d" % math.ceil(now + reset)),
        ]
    if ietf:
        policy = f'"burst";q={result.limit};w={max(1, math.ceil(result.window))}'
        state = f'"burst";r={result.remaining};t={math.ceil(result.reset)}'
        if result.daily_limit:
            policy += f', "daily";q={result.daily_limit};w=86400'
            state += f', "daily";r={result.daily_remaining};t={math.ceil(result.daily_reset)}'
        out.append((b"ratelimit-policy", policy.encode()))
        out.append((b"ratelimit", state.encode()))
    if not allowed:
        out.append((b"retry-after", b"%d" % max(1, math.ceil(retry_after))))
    return out
