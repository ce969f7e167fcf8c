"""proxy.headers: what a gateway forwards and what it drops (SPEC §8, RFC 9110 §7.6)."""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.errors import BadRequest
from proxy.headers import (
    ForwardingContext,
    build_forwarding,
    client_address,
    request_id_from,
    response_headers,
    upstream_request_headers,
)

TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def _fwd(**kw: str) -> ForwardingContext:
    values = {
        "client": "203.0.113.7",
        "xff": "203.0.113.7",
        "proto": "https",
        "host": "edge.example",
        "request_id": "req-1",
    }
    values.update(kw)
    return ForwardingContext(**values)


def _names(headers: list[tuple[str, str]]) -> list[str]:
    return [n for n, _ in headers]


# -- upstream_request_headers -----------------------------------------------------------------

DROPPED = [
    b"authorization",
    b"cookie",
    b"connection",
    b"keep-alive",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"proxy-authorization",
    b"proxy-connection",
    b"proxy",
    b"host",
    b"expect",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"forwarded",
    b"x-request-id",
]


@pytest.mark.parametrize("name", DROPPED)
def test_request_drops_credentials_hop_by_hop_and_forwarding_headers(name: bytes) -> None:
    out = upstream_request_headers([(b"accept", b"*/*"), (name, b"v1"), (name, b"v2")], _fwd())
    # Only the edge's own forwarding headers may carry these names, with the edge's values.
    for n, v in out:
        if n == name.decode():
            assert n in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id")
            assert v not in ("v1", "v2")
    assert ("accept", "*/*") in out


def test_request_keeps_everything_else_verbatim_and_in_order() -> None:
    raw = [
        (b"accept", b"application/json"),
        (b"content-type", b"application/json; charset=utf-8"),
        (b"x-custom", b"  spaced  value "),
        (b"accept", b"text/plain"),
        (b"content-length", b"12"),
        (b"authorization", b"Bearer soc_pat_live_secret"),
        (b"user-agent", b"curl/8.0"),
        (b"x-printable", b"~!#$%&'*+-.^_`|\t ()<>@,;:\\\"/[]?={}"),
        (b"idempotency-key", b"k-1"),
    ]
    out = upstream_request_headers(raw, _fwd())
    kept = [
        ("accept", "application/json"),
        ("content-type", "application/json; charset=utf-8"),
        ("x-custom", "  spaced  value "),
        ("accept", "text/plain"),
        ("content-length", "12"),
        ("user-agent", "curl/8.0"),
        ("x-printable", "~!#$%&'*+-.^_`|\t ()<>@,;:\\\"/[]?={}"),
        ("idempotency-key", "k-1"),
    ]
    assert out[: len(kept)] == kept


def test_request_adds_forwarding_via_and_request_id_then_extra() -> None:
    fwd = _fwd(xff="198.51.100.1, 10.0.0.1", proto="http", host="shop.example", request_id="r-9")
    out = upstream_request_headers(
        [(b"accept", b"*/*")], fwd, extra=[("authorization", "Bearer store-credential")]
    )
    assert out == [
        ("accept", "*/*"),
        ("x-forwarded-for", "198.51.100.1, 10.0.0.1"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "shop.example"),
        ("via", "1.1 magento-edge"),
        ("x-request-id", "r-9"),
        ("authorization", "Bearer store-credential"),
    ]


def test_request_without_host_sends_no_forwarded_host() -> None:
    out = upstream_request_headers([], _fwd(host=""))
    assert "x-forwarded-host" not in _names(out)


def test_request_appends_to_the_clients_via() -> None:
    out = upstream_request_headers([(b"via", b"1.0 fred")], _fwd())
    assert [v for n, v in out if n == "via"] == ["1.0 fred, 1.1 magento-edge"]


def test_request_keeps_every_via_line() -> None:
    out = upstream_request_headers([(b"via", b"1.0 fred"), (b"via", b"1.1 p.example")], _fwd())
    assert [v for n, v in out if n == "via"] == ["1.0 fred, 1.1 p.example, 1.1 magento-edge"]


@pytest.mark.parametrize(
    "connection",
    [
        [b"X-Secret, keep-alive"],
        [b"x-secret"],
        [b"close,X-SECRET , , Upgrade"],
        [b"close", b"x-secret"],
    ],
)
def test_request_drops_headers_named_in_connection(connection: list[bytes]) -> None:
    raw = [(b"connection", v) for v in connection]
    raw += [(b"x-secret", b"hop"), (b"x-other", b"end-to-end"), (b"keep-alive", b"timeout=5")]
    out = upstream_request_headers(raw, _fwd())
    names = _names(out)
    assert "x-secret" not in names
    assert "connection" not in names
    assert "keep-alive" not in names
    assert ("x-other", "end-to-end") in out


def test_request_connection_option_naming_nothing_present_is_harmless() -> None:
    out = upstream_request_headers([(b"connection", b"close"), (b"accept", b"*/*")], _fwd())
    assert out[0] == ("accept", "*/*")


# -- build_forwarding -----------------------------------------------------------------------


def test_forwarding_from_an_untrusted_peer_ignores_its_claims() -> None:
    headers = [
        (b"host", b"edge.example"),
        (b"x-forwarded-for", b"1.1.1.1"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"evil.example"),
    ]
    fwd = build_forwarding(("203.0.113.5", 5555), "http", headers, TRUSTED, "r")
    assert fwd.client == "203.0.113.5"
    assert fwd.xff == "203.0.113.5"
    assert fwd.proto == "http"
    assert fwd.host == "edge.example"
    assert fwd.request_id == "r"


def test_forwarding_from_a_trusted_peer_extends_its_claims() -> None:
    headers = [
        (b"host", b"internal:8080"),
        (b"x-forwarded-for", b"198.51.100.9"),
        (b"x-forwarded-proto", b"HTTPS, http"),
        (b"x-forwarded-host", b"shop.example, other"),
    ]
    fwd = build_forwarding(("10.1.2.3", 5555), "http", headers, TRUSTED, "r")
    assert fwd.client == "198.51.100.9"
    assert fwd.xff == "198.51.100.9, 10.1.2.3"
    assert fwd.proto == "https"
    assert fwd.host == "shop.example"


def test_forwarding_without_a_peer() -> None:
    fwd = build_forwarding(None, "http", [], TRUSTED, "r")
    assert fwd.client == "unknown"
    assert fwd.xff == "unknown"


# -- client_address ---------------------------------------------------------------------------


def _xff(*values: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"x-forwarded-for", v) for v in values]


def test_untrusted_peer_xff_is_ignored() -> None:
    assert client_address("203.0.113.5", _xff(b"1.1.1.1, 10.0.0.1"), TRUSTED) == (
        "203.0.113.5",
        ["203.0.113.5"],
    )


def test_no_trusted_proxies_means_xff_is_never_believed() -> None:
    assert client_address("10.0.0.1", _xff(b"1.1.1.1"), []) == ("10.0.0.1", ["10.0.0.1"])


def test_trusted_chain_is_read_from_the_right() -> None:
    client, hops = client_address("10.0.0.1", _xff(b"6.6.6.6, 198.51.100.9, 10.0.0.2"), TRUSTED)
    # 6.6.6.6 was written by the client itself: the first untrusted hop from the right wins.
    assert client == "198.51.100.9"
    assert hops == ["6.6.6.6", "198.51.100.9", "10.0.0.2", "10.0.0.1"]


def test_several_xff_fields_are_one_list_in_order() -> None:
    client, hops = client_address("10.0.0.1", _xff(b"6.6.6.6", b"198.51.100.9"), TRUSTED)
    assert client == "198.51.100.9"
    assert hops == ["6.6.6.6", "198.51.100.9", "10.0.0.1"]


def test_all_trusted_chain_gives_the_leftmost_address() -> None:
    client, hops = client_address("10.0.0.1", _xff(b"10.0.0.3, 10.0.0.2"), TRUSTED)
    assert client == "10.0.0.3"
    assert hops == ["10.0.0.3", "10.0.0.2", "10.0.0.1"]


def test_ipv6_peer() -> None:
    client, _ = client_address("fd00::1", _xff(b"2001:db8::7"), TRUSTED)
    assert client == "2001:db8::7"


@pytest.mark.parametrize(
    "value",
    [
        b"garbage, 198.51.100.9",
        b", ,198.51.100.9,,",
        b"[::1]:80, unknown, 198.51.100.9",
        b"999.1.1.1,198.51.100.9",
        b"\xff\xfe, 198.51.100.9",
        b"1.2.3.4/8, 198.51.100.9",
    ],
)
def test_garbage_left_of_the_client_is_ignored(value: bytes) -> None:
    client, hops = client_address("10.0.0.1", _xff(value), TRUSTED)
    assert client == "198.51.100.9"
    assert hops[-2:] == ["198.51.100.9", "10.0.0.1"]
    assert "" not in hops


def test_garbage_is_never_trusted() -> None:
    client, _ = client_address("10.0.0.1", _xff(b"198.51.100.9, not-an-ip"), TRUSTED)
    # Not an address: the chain stops, and the trusted proxy that sent it is the client
    # (never the garbage itself, which would key rate limits on attacker-chosen text).
    assert client == "10.0.0.1"
    client, hops = client_address("not-an-ip", _xff(b"198.51.100.9"), TRUSTED)
    assert (client, hops) == ("not-an-ip", ["not-an-ip"])


# -- request_id_from --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [b"abc-123", b"0" * 128, b"!~", b"req:42/a=b", b"550e8400-e29b-41d4-a716-446655440000"]
)
def test_valid_request_id_is_propagated(value: bytes) -> None:
    assert request_id_from([(b"accept", b"x"), (b"x-request-id", value)]) == value.decode()


@pytest.mark.parametrize(
    "value",
    [b"", b"a" * 129, b"has space", b"tab\there", b"caf\xe9", b"nul\x00", b"del\x7f", b"\n"],
)
def test_bad_request_id_is_replaced(value: bytes) -> None:
    rid = request_id_from([(b"x-request-id", value)])
    assert HEX32.match(rid)
    assert rid != value.decode("latin-1")


def test_missing_request_id_is_created_fresh_each_time() -> None:
    ids = {request_id_from([]) for _ in range(50)}
    assert len(ids) == 50
    assert all(HEX32.match(i) for i in ids)


# -- response_headers -------------------------------------------------------------------------


def test_response_drops_cookies_and_hop_by_hop_and_lowercases() -> None:
    raw = [
        (b"Content-Type", b"application/json"),
        (b"Set-Cookie", b"PHPSESSID=abc"),
        (b"set-cookie2", b"x=y"),
        (b"Connection", b"keep-alive, X-Internal"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Transfer-Encoding", b"chunked"),
        (b"X-Internal", b"secret"),
        (b"Proxy-Authenticate", b"Basic"),
        (b"Upgrade", b"h2c"),
        (b"Trailer", b"x"),
        (b"Cache-Control", b"no-cache"),
        (b"X-Magento-Tags", b"a,b"),
        (b"Vary", b"Accept"),
        (b"Vary", b"Origin"),
    ]
    assert response_headers(raw, []) == [
        (b"content-type", b"application/json"),
        (b"cache-control", b"no-cache"),
        (b"x-magento-tags", b"a,b"),
        (b"vary", b"Accept"),
        (b"vary", b"Origin"),
    ]


def test_response_extra_replaces_same_named_upstream_headers() -> None:
    raw = [
        (b"X-Request-Id", b"magento-id"),
        (b"content-type", b"text/plain"),
        (b"RateLimit-Limit", b"999"),
    ]
    extra = [(b"x-request-id", b"edge-id"), (b"ratelimit-limit", b"120")]
    assert response_headers(raw, extra) == [
        (b"content-type", b"text/plain"),
        (b"x-request-id", b"edge-id"),
        (b"ratelimit-limit", b"120"),
    ]


# -- properties ---------------------------------------------------------------------------

_name = st.one_of(
    st.sampled_from(
        [
            b"authorization", b"cookie", b"connection", b"x-forwarded-for", b"via",
            b"x-request-id", b"host", b"accept", b"x-a", b"set-cookie", b"forwarded",
        ]
    ),
    st.binary(min_size=0, max_size=12),
)  # fmt: skip
_value = st.one_of(
    st.binary(max_size=40),
    st.lists(st.sampled_from([b"authorization", b"cookie", b"x-a", b"close", b" ", b"Cookie"])).map(
        b",".join
    ),
)
# ASGI hands us lower-case header names.
_asgi_headers = st.lists(st.tuples(_name.map(bytes.lower), _value), max_size=12)
_any_case_headers = st.lists(st.tuples(_name, _value), max_size=12)


@given(_asgi_headers, st.sampled_from(["10.0.0.1", "203.0.113.1", "::1", "x", ""]))
def test_request_header_functions_never_raise_nor_leak_credentials(
    headers: list[tuple[bytes, bytes]], peer: str
) -> None:
    rid = request_id_from(headers)
    fwd = build_forwarding((peer, 1), "http", headers, TRUSTED, rid)
    client, hops = client_address(peer, headers, TRUSTED)
    assert hops[-1] == peer
    assert client in hops
    try:
        out = upstream_request_headers(headers, fwd)
    except BadRequest:
        # Refused only for a value it would forward with bytes outside ASCII (SPEC §8)
        assert any(not v.isascii() for _, v in headers)
        return
    lowered = [n.lower() for n, _ in out]
    assert "authorization" not in lowered
    assert "cookie" not in lowered
    assert "proxy-authorization" not in lowered
    assert lowered.count("x-request-id") == 1
    assert lowered.count("via") == 1


_edge_extra = st.lists(
    st.tuples(
        st.sampled_from([b"x-request-id", b"ratelimit-limit", b"retry-after", b"vary"]), _value
    ),
    max_size=3,
)


@given(_any_case_headers, _edge_extra)
def test_response_headers_never_raise_nor_pass_cookies(
    raw: list[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]]
) -> None:
    out = response_headers(raw, extra)
    names = [n for n, _ in out]
    assert b"set-cookie" not in names
    assert b"set-cookie2" not in names
    assert b"connection" not in names
    assert all(n == n.lower() for n in names)
    assert out[len(out) - len(extra) :] == extra
    # Nothing upstream shares a name with what the edge adds.
    upstream_part = names[: len(out) - len(extra)]
    assert not {n for n, _ in extra} & set(upstream_part)


def _response_headers_reference(
    raw: list[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """response_headers as it was written before its one-pass form (issue #14)."""
    lowered = [(n.lower(), v) for n, v in raw]
    named: set[bytes] = set()
    for name, value in lowered:
        if name == b"connection":
            named.update(v.strip().lower() for v in value.split(b",") if v.strip())
    drop = {
        b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"proxy-authorization", b"proxy-authenticate",
        b"proxy", b"set-cookie", b"set-cookie2",
    }  # fmt: skip
    replaced = {n for n, _ in extra}
    out = [(n, v) for n, v in lowered if n not in drop and n not in named and n not in replaced]
    return out + list(extra)


_connection_value = st.lists(
    st.sampled_from([b"close", b"X-A", b"vary", b" accept ", b"", b"Keep-Alive", b"x-request-id"])
).map(b",".join)


@given(
    st.lists(
        st.tuples(
            st.one_of(_name, st.sampled_from([b"Connection", b"X-A", b"Vary"])),
            st.one_of(_value, _connection_value),
        ),
        max_size=12,
    ),
    _edge_extra,
)
def test_response_headers_are_the_reference_ones(
    raw: list[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]]
) -> None:
    assert response_headers(raw, extra) == _response_headers_reference(raw, extra)
