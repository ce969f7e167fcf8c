"""The rate-limit step's headers (:mod:`proxy.ratelimit`): which limit they describe, in
each surface's style, with the IETF pair when enabled."""

from __future__ import annotations

import math

from hypothesis import example, given
from hypothesis import strategies as st

from proxy.backends.ratelimit.base import LimitResult, decide
from proxy.policy import Tier
from proxy.ratelimit import rate_limit_headers
from proxy.types import HeaderStyle

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


def _reference_headers(
    result: LimitResult, style: HeaderStyle, *, ietf: bool = False
) -> list[tuple[bytes, bytes]]:
    """rate_limit_headers as first written (str(n).encode(), fields read by name): what
    the hot-path version must answer byte for byte."""
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


_TIERS = st.builds(
    Tier,
    name=st.just("p"),
    rate=st.integers(1, 10**9),
    period=st.one_of(st.integers(1, 86400 * 7), st.floats(0.001, 86400 * 7)),
    burst=st.one_of(st.integers(1, 20), st.integers(1, 10**9)),
    daily=st.one_of(st.just(0), st.integers(1, 30), st.integers(1, 10**6)),
)


@given(
    tier=_TIERS,
    now=st.floats(0, 4e9),
    spent=st.integers(0, 25),  # requests already decided at the same instant
    used=st.integers(0, 10**6 + 5),
    style=st.sampled_from(["ratelimit", "x-rate-limit"]),
    ietf=st.booleans(),
)
def test_headers_match_the_reference(
    tier: Tier, now: float, spent: int, used: int, style: HeaderStyle, ietf: bool
) -> None:
    tat = 0.0
    for _ in range(spent):
        _, tat, used = decide(tat, used, now, tier)
    result, _, _ = decide(tat, used, now, tier)
    got = rate_limit_headers(result, style, ietf=ietf)
    assert got == _reference_headers(result, style, ietf=ietf)
    assert all(type(v) is bytes for _, v in got)


@given(
    fields=st.tuples(
        st.booleans(),
        st.integers(0, 10**12),
        st.integers(0, 10**12),
        st.floats(0, 1e7),
        st.floats(0, 1e7),
        st.integers(0, 10**12),
        st.integers(0, 10**12),
        st.floats(0, 86400),
        st.floats(0, 4e9),
        st.floats(0, 1e7),
    ),
    style=st.sampled_from(["ratelimit", "x-rate-limit"]),
    ietf=st.booleans(),
)
# the last request of the bucket and of the day, allowed: the bucket's numbers
@example(fields=(True, 5, 0, 2.5, 0.0, 3, 0, 100.0, 1e9, 2.5), style="ratelimit", ietf=False)
def test_headers_match_the_reference_for_any_result(
    fields: tuple[bool, int, int, float, float, int, int, float, float, float],
    style: HeaderStyle,
    ietf: bool,
) -> None:
    """Any backend's result (Redis, an operator's), not only decide()'s."""
    result = LimitResult(*fields)
    assert rate_limit_headers(result, style, ietf=ietf) == _reference_headers(
        result, style, ietf=ietf
    )
