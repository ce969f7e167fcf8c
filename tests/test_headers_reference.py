"""The per-request header steps shaped for speed (issue #14) against the plain code they
replaced: upstream_request_headers' one-pass common case, request_id_from's C-level scan,
MagentoOrigin.target's preformatted bases. Same output, same refusals."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.credentials import MagentoOrigin, MagentoTarget
from proxy.errors import BadRequest
from proxy.headers import (
    _REQUEST_DROP,
    _VIA,
    ForwardingContext,
    _connection_named,
    request_id_from,
    upstream_request_headers,
)


def _reference_upstream(
    headers: list[tuple[bytes, bytes]],
    fwd: ForwardingContext,
    extra: Iterable[tuple[str, str]] = (),
    drop: frozenset[bytes] = frozenset(),
) -> list[tuple[str, str]]:
    """upstream_request_headers before its one-pass common case."""
    named: frozenset[bytes] | None = None
    for name, _ in headers:
        if name == b"connection":
            named = _connection_named(headers)
            break
    out: list[tuple[str, str]] = []
    vias: list[str] = []
    for name, value in headers:
        if name in _REQUEST_DROP or name in drop or (named and name in named):
            if name == b"via":
                vias.append(value.decode("latin-1"))
            continue
        if not value.isascii():
            raise BadRequest(
                f"The header {name[:64].decode('latin-1')} has bytes outside ASCII; send them "
                "percent-encoded or as ASCII text."
            )
        out.append((name.decode("latin-1"), value.decode("latin-1")))
    out.append(("x-forwarded-for", fwd.xff))
    out.append(("x-forwarded-proto", fwd.proto))
    if fwd.host:
        out.append(("x-forwarded-host", fwd.host))
    out.append(("via", ", ".join([*vias, _VIA])))
    out.append(("x-request-id", fwd.request_id))
    out.extend(extra)
    return out


_names = st.sampled_from(
    [b"host", b"authorization", b"cookie", b"connection", b"via", b"x-request-id", b"accept",
     b"user-agent", b"x-a", b"x-b", b"keep-alive", b"x-offloader", b"x-real-ip", b"Via", b""]
)  # fmt: skip
_values = st.one_of(
    st.binary(max_size=10),
    st.lists(st.sampled_from([b"x-a", b"via", b"close", b"X-B", b" ", b"x-offloader"])).map(
        b",".join
    ),
)


@given(
    headers=st.lists(st.tuples(_names, _values), max_size=8),
    host=st.sampled_from(["", "edge.example"]),
    extra=st.sampled_from([[], [("authorization", "Bearer m"), ("host", "m:1")]]),
    drop=st.sampled_from([frozenset(), frozenset({b"x-offloader"}), frozenset({b"via"})]),
)
def test_upstream_headers_are_the_reference_ones(
    headers: list[tuple[bytes, bytes]],
    host: str,
    extra: list[tuple[str, str]],
    drop: frozenset[bytes],
) -> None:
    fwd = ForwardingContext("203.0.113.7", "203.0.113.7", "https", host, "req-1")
    try:
        expected: list[tuple[str, str]] | str = _reference_upstream(headers, fwd, extra, drop)
    except BadRequest as e:
        expected = str(e)
    if isinstance(expected, str):
        with pytest.raises(BadRequest) as info:
            upstream_request_headers(headers, fwd, extra, drop)
        assert str(info.value) == expected
    else:
        assert upstream_request_headers(headers, fwd, extra, drop) == expected
        assert upstream_request_headers(headers, fwd, extra, drop=drop) == expected


@given(
    st.lists(
        st.tuples(
            st.sampled_from([b"x-request-id", b"host", b"x-a", b"X-Request-Id"]),
            st.binary(max_size=6) | st.sampled_from([b"abc-1", b"a" * 128, b"a" * 129]),
        ),
        max_size=5,
    )
)
def test_request_id_is_the_loops(headers: list[tuple[bytes, bytes]]) -> None:
    expected = None
    for name, value in headers:  # the loop before the C-level scan
        if name == b"x-request-id":
            if 0 < len(value) <= 128 and all(0x21 <= b <= 0x7E for b in value):
                expected = value.decode("ascii")
            break
    got = request_id_from(headers)
    if expected is None:
        assert len(got) == 32 and int(got, 16) >= 0  # a fresh one
        assert request_id_from(headers) != got
    else:
        assert got == expected


@given(
    base=st.sampled_from(
        ["http://m.example", "https://m.example:8443/", "http://127.0.0.1:9000/shop/"]
    ),
    proto=st.sampled_from(["http", "https", ""]),
    path=st.sampled_from(["/rest/default/V1/products", "/p%E9", "/"]),
    query=st.sampled_from(["", "a=1&b=%20", "x"]),
    offloader=st.sampled_from(["X-Forwarded-Proto", "X-Offloader"]),
    credential=st.sampled_from([None, "Bearer t"]),
)
def test_magento_target_and_headers_are_the_formatted_ones(
    base: str, proto: str, path: str, query: str, offloader: str, credential: str | None
) -> None:
    origin = MagentoOrigin(base, offloader)
    tail = path + "?" + query if query else path
    scheme = "https" if origin.tls or proto == "https" else "http"
    expected = MagentoTarget(
        origin.base + tail, f"{scheme}://{origin.host}{origin.base_path}{tail}", origin.host, proto
    )
    target = origin.target(proto, path, query)
    assert target == expected
    headers = [("authorization", credential)] if credential is not None else []
    headers.append(("host", target.host))
    if offloader != "X-Forwarded-Proto":
        headers.append(("x-offloader", proto))
    assert origin.headers(target, credential) == headers
