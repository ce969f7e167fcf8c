"""The rate-limit step's headers (:mod:`proxy.ratelimit`): which limit they describe, in
each surface's style, with the IETF pair when enabled."""

from __future__ import annotations

import math

from proxy.backends.ratelimit.base import decide
from proxy.policy import Tier
from proxy.ratelimit import rate_limit_headers

STANDARD = Tier("standard", rate=60, period=60, burst=120, daily=20000)
SMALL = Tier("small", rate=2, period=1, burst=5, daily=0)  # T = 500 ms


def test_headers_describe_the_bucket_then_the_tighter_daily_quota() -> None:
    tier = Tier("d", rate=60, period=60, burst=120, daily=50)
    result, _, _ = decide(0.0, 0, 1000.0, tier)
    h = dict(rate_limit_headers(result, "ratelimit"))
    # 49 left today < 119 in the bucket: the daily quota is what the client will hit.
    assert h[b"ratelimit-limit"] == b"50" and h[b"ratelimit-remaining"] == b"49"
    loose = Tier("l", rate=60, period=60, burst=120, daily=20000)
    result, _, _ = decide(0.0, 0, 1000.0, loose)
    h = dict(rate_limit_headers(result, "ratelimit"))
    assert (h[b"ratelimit-limit"], h[b"ratelimit-remaining"], h[b"ratelimit-reset"]) == (
        b"120",
        b"119",
        b"1",
    )
    assert b"retry-after" not in h


def test_x_rate_limit_style_uses_unix_reset_and_retry_after_whole_seconds() -> None:
    tat, used, now = 0.0, 0, 1_700_000_000.25
    for _ in range(5):
        _, tat, used = decide(tat, used, now, SMALL)
    refused, _, _ = decide(tat, used, now, SMALL)
    h = dict(rate_limit_headers(refused, "x-rate-limit"))
    assert h[b"x-rate-limit-limit"] == b"5"
    assert h[b"x-rate-limit-remaining"] == b"0"
    assert int(h[b"x-rate-limit-reset"]) == math.ceil(now + refused.reset)
    assert h[b"retry-after"] == b"1"  # 0.5 s rounded up: never earlier than the bucket allows


def test_ietf_fields_list_both_policies() -> None:
    result, _, _ = decide(0.0, 0, 100.0, STANDARD)
    h = dict(rate_limit_headers(result, "ratelimit", ietf=True))
    assert h[b"ratelimit-policy"] == b'"burst";q=120;w=120, "daily";q=20000;w=86400'
    assert h[b"ratelimit"].startswith(b'"burst";r=119;t=1, "daily";r=19999;t=')
