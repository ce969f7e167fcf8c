"""Step 6a of the request path: the header rules of a gateway (RFC 9110 §7.6).

Request to the upstream: the client's ``Authorization``, cookies and every hop-by-hop
field (including those the client named in ``Connection``) are dropped, and so are
method-override, client-address and URL-rewrite headers (SPEC §8); a header value with
bytes outside ASCII is refused (400), never altered. ``X-Forwarded-For``,
``-Proto`` and ``-Host`` are set (extended only when the peer is a trusted proxy), ``Via``
is appended, ``X-Request-Id`` is propagated or created. Response to the client: hop-by-hop
fields and ``Set-Cookie`` are dropped, everything else passes verbatim.

Headers stay ASGI byte pairs until the last moment; the upstream client wants ``str``,
so :func:`upstream_request_headers` decodes as latin-1 once.
"""

from __future__ import annotations

import ipaddress
import itertools
import secrets
from collections.abc import Iterable, Sequence

from .errors import BadRequest

__all__ = [
    "CLIENT_ADDRESS",
    "METHOD_OVERRIDE",
    "URL_REWRITE",
    "ForwardingContext",
    "build_forwarding",
    "client_address",
    "request_id_from",
    "response_headers",
    "upstream_request_headers",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
RawHeaders = Sequence[tuple[bytes, bytes]]

# RFC 9110 §7.6.1 plus the de facto list (RFC 2616 §13.5.1, Go's ReverseProxy) and the
# httpoxy mitigation ("proxy").
HOP_BY_HOP = frozenset(
    {
        b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
        b"transfer-encoding", b"upgrade", b"proxy-authorization", b"proxy-authenticate",
        b"proxy",
    }
)  # fmt: skip
# Never forwarded upstream: the client's credential and cookies are replaced by the
# store's own credential; forwarding headers are rebuilt; Host is the upstream's; Expect is
# answered by our server.
_REQUEST_DROP = HOP_BY_HOP | {
    b"authorization", b"cookie", b"host", b"x-forwarded-for", b"x-forwarded-proto",
    b"x-forwarded-host", b"forwarded", b"via", b"x-request-id", b"expect",
}  # fmt: skip
# Issue #14, SPEC §8: headers by which a client could make the upstream act on another
# method, another path, or believe another client address than the edge decided on.
# Magento (Laminas, PHP frameworks, Varnish setups) honours some of these when configured
# to; the edge's decision was made on the request line and the peer's address.
METHOD_OVERRIDE = frozenset({b"x-http-method-override", b"x-http-method", b"x-method-override"})
CLIENT_ADDRESS = frozenset(
    {
        b"x-real-ip", b"true-client-ip", b"x-client-ip", b"forwarded", b"client-ip",
        b"x-cluster-client-ip", b"cf-connecting-ip", b"fastly-client-ip",
        b"x-forwarded-port", b"x-forwarded-server", b"x-forwarded-ssl", b"x-forwarded-prefix",
    }
)  # fmt: skip
URL_REWRITE = frozenset({b"x-original-url", b"x-rewrite-url"})
_REQUEST_DROP = _REQUEST_DROP | METHOD_OVERRIDE | CLIENT_ADDRESS | URL_REWRITE
# Dropped names that need upstream_request_headers' general rules (_upstream_request_headers).
_GENERAL = frozenset({b"connection", b"via"})
_RESPONSE_DROP = HOP_BY_HOP | {b"set-cookie", b"set-cookie2"}
_VIA = "1.1 magento-edge"
_NO_NAMES: dict[bytes, bytes] = {}
_ID_PREFIX = secrets.token_hex(8)
_ID_FORMAT = _ID_PREFIX + "%016x"  # one %-format: cheaper than an f-string with a spec
_ID_COUNTER = itertools.count(1)
_MAX_REQUEST_ID = 128
_new_object = object.__new__


class ForwardingContext:
    """What the forwarding headers are built from, computed once per request."""

    __slots__ = ("client", "host", "proto", "request_id", "xff")

    # Positional or keyword: build_forwarding passes them by position (five keywords cost
    # ~2k instructions more a call); its common case sets the slots without this frame.
    def __init__(self, client: str, xff: str, proto: str, host: str, request_id: str) -> None:
        self.client = client
        self.xff = xff
        self.proto = proto
        self.host = host
        self.request_id = request_id


def _connection_named(headers: RawHeaders) -> frozenset[bytes]:
    named: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            named.update(v.strip().lower() for v in value.split(b",") if v.strip())
    return frozenset(named)


def request_id_from(headers: RawHeaders) -> str:
    """The client's ``X-Request-Id`` if it is short visible ASCII, else a fresh one.

    Fresh ids are a random per-process prefix and a counter: unique across processes and
    replicas without a ``getrandom`` call per request (request ids need not be secret;
    measured at ~2.5% of the edge's CPU under load with ``secrets.token_hex``).
    """
    for name, value in headers:
        if name == b"x-request-id":
            if 0 < len(value) <= _MAX_REQUEST_ID and all(0x21 <= b <= 0x7E for b in value):
                return value.decode("ascii")
            break
    return _ID_FORMAT % next(_ID_COUNTER)


def _is_trusted(addr: str, trusted: Sequence[Network]) -> bool:
    if not trusted:
        return False
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(
    peer: str, headers: RawHeaders, trusted: Sequence[Network]
) -> tuple[str, list[str]]:
    """The client's address and the X-Forwarded-For chain to send on.

    ``X-Forwarded-For`` is believed only hop by hop from the right while each hop is a
    trusted proxy (werkzeug ``ProxyFix``); the first untrusted address is the client.
    """
    if not trusted:
        return peer, [peer]  # the common case: no proxy in front is believed
    chain: list[str] = []
    if _is_trusted(peer, trusted):
        for name, value in headers:
            if name == b"x-forwarded-for":
                chain.extend(p.strip() for p in value.decode("latin-1").split(",") if p.strip())
    hops = [*chain, peer]
    client = peer
    for hop in reversed(hops):
        if not _is_ip(hop):
            break  # garbage from the trusted proxy to its right: believe that proxy
        client = hop
        if not _is_trusted(hop, trusted):
            break
    return client, hops


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def build_forwarding(
    scope_client: tuple[str, int] | None,
    scheme: str,
    headers: RawHeaders,
    trusted: Sequence[Network],
    request_id: str,
) -> ForwardingContext:
    peer = scope_client[0] if scope_client else "unknown"
    if not trusted:  # the common case, in one pass: no proxy in front is believed
        host = ""
        for name, value in headers:
            if name == b"host":
                host = value.decode("latin-1")
        # Slots set here, without __init__'s frame (issue #14: every request, ~800
        # instructions).
        fwd = _new_object(ForwardingContext)
        fwd.client = fwd.xff = peer
        fwd.proto = scheme
        fwd.host = host
        fwd.request_id = request_id
        return fwd
    client, hops = client_address(peer, headers, trusted)
    host = ""
    proto = scheme
    peer_trusted = _is_trusted(peer, trusted)
    for name, value in headers:
        if name == b"host":
            host = value.decode("latin-1")
        elif peer_trusted and name == b"x-forwarded-proto":
            proto = value.decode("latin-1").split(",")[0].strip().lower() or scheme
    if peer_trusted:
        for name, value in headers:
            if name == b"x-forwarded-host":
                host = value.decode("latin-1").split(",")[0].strip() or host
    return ForwardingContext(client, ", ".join(hops), proto, host, request_id)


def upstream_request_headers(
    headers: RawHeaders,
    fwd: ForwardingContext,
    extra: Iterable[tuple[str, str]] = (),
    drop: frozenset[bytes] = frozenset(),
) -> list[tuple[str, str]]:
    """Headers for the upstream; ``drop`` names more client headers never to forward (a
    store's offloader header, which ``extra`` then sets)."""
    # One pass for the common request (no Connection, no Via, ASCII values); anything else
    # starts over on the general rules below (_upstream_request_headers). Issue #14: this
    # runs on every forwarded request, and each pass over the headers is a Python loop.
    out: list[tuple[str, str]] = []
    try:
        for name, value in headers:
            if name in _REQUEST_DROP:
                if name in _GENERAL:
                    return _upstream_request_headers(headers, fwd, extra, drop)
                continue
            if name in drop:
                continue
            # ASCII decoding is the check for bytes outside ASCII (one call, not two)
            out.append((name.decode("ascii"), value.decode("ascii")))
    except UnicodeDecodeError:
        return _upstream_request_headers(headers, fwd, extra, drop)
    if fwd.host:
        out += (
            ("x-forwarded-for", fwd.xff),
            ("x-forwarded-proto", fwd.proto),
            ("x-forwarded-host", fwd.host),
            ("via", _VIA),
            ("x-request-id", fwd.request_id),
        )
    else:
        out += (
            ("x-forwarded-for", fwd.xff),
            ("x-forwarded-proto", fwd.proto),
            ("via", _VIA),
            ("x-request-id", fwd.request_id),
        )
    out += extra
    return out


def _upstream_request_headers(
    headers: RawHeaders,
    fwd: ForwardingContext,
    extra: Iterable[tuple[str, str]],
    drop: frozenset[bytes],
) -> list[tuple[str, str]]:
    """upstream_request_headers' general rules: Connection-named fields, Via lines, and
    the refusal of a value outside ASCII."""
    named: frozenset[bytes] | None = None
    for name, _ in headers:  # a loop, not any() over a generator: no call per header
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
            # SPEC §8: forwarded exactly or refused, never altered. The transport would
            # carry them byte for byte (latin-1), but Magento (PHP) and any proxy in front
            # of it may each read such bytes differently: refused.
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


def response_headers(
    raw: Iterable[tuple[bytes, bytes]], extra: Sequence[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """Upstream response headers for the client: lower-cased names, hop-by-hop and
    cookies dropped, ``extra`` (request id, rate-limit fields) replacing same-named ones."""
    # One pass and no comprehension (each is a Python call): this runs on every answer.
    replaced = dict(extra) if extra else _NO_NAMES
    out: list[tuple[bytes, bytes]] = []
    connection: list[bytes] | None = None
    for name, value in raw:
        name = name.lower()
        if name in _RESPONSE_DROP or name in replaced:
            if name == b"connection":
                if connection is None:
                    connection = []
                connection.append(value)
            continue
        out.append((name, value))
    if connection is not None:
        # Fields the Connection header names are hop-by-hop too, wherever they stand;
        # names dropped already need no second pass (the usual "keep-alive", "close").
        named = set()
        for value in connection:
            for token in value.split(b","):
                token = token.strip().lower()
                if token and token not in _RESPONSE_DROP:
                    named.add(token)
        if named:
            out = [(n, v) for n, v in out if n not in named]
    out.extend(extra)
    return out
