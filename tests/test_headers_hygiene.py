"""Request hygiene (issue #14 part 4, SPEC §8), end to end through the real edge: what a
client may not tell the upstream (method overrides, its own address, URL rewrites,
trailers), header bytes forwarded exactly or refused, and read-only routes needing
``write`` under Magento's asynchronous mounts."""

from __future__ import annotations

import socket
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.decide import required_access, resolve
from proxy.headers import CLIENT_ADDRESS, METHOD_OVERRIDE, URL_REWRITE, upstream_request_headers
from proxy.paths import split_path
from tests.conftest import Harness
from tests.test_headers import _fwd

SMUGGLED = sorted(METHOD_OVERRIDE | CLIENT_ADDRESS | URL_REWRITE)


@pytest.mark.parametrize("name", SMUGGLED)
def test_override_address_and_rewrite_headers_are_dropped(name: bytes) -> None:
    out = upstream_request_headers([(b"accept", b"*/*"), (name, b"DELETE")], _fwd())
    assert name.decode() not in [n for n, _ in out]
    assert ("accept", "*/*") in out


def test_the_spec_names_are_all_dropped() -> None:
    spec = {
        b"x-http-method-override", b"x-http-method", b"x-method-override", b"x-real-ip",
        b"true-client-ip", b"x-client-ip", b"forwarded", b"x-original-url", b"x-rewrite-url",
    }  # fmt: skip
    assert spec <= set(SMUGGLED)


def test_a_non_ascii_value_is_refused_not_altered() -> None:
    from proxy.errors import BadRequest

    with pytest.raises(BadRequest, match="x-name"):
        upstream_request_headers([(b"x-name", b"caf\xc3\xa9")], _fwd())
    # dropped headers are not looked at: a client's non-ASCII cookie is no reason to refuse
    assert upstream_request_headers([(b"cookie", b"caf\xe9")], _fwd())[0][0] == "x-forwarded-for"


def test_through_the_edge_none_of_them_reaches_the_upstream(harness: Harness) -> None:
    token = harness.token("webhooks:read")
    sent = {name.decode(): "203.0.113.66" for name in SMUGGLED}
    with harness.client(token) as client:
        answer = client.get("/api/v1/stores/acme/webhooks", headers=sent)
    assert answer.status_code == 200
    seen = harness.panel.requests[-1]
    names = {n for n, _ in seen["headers"]}
    assert not names & set(sent)
    assert seen["method"] == "GET"
    assert all("203.0.113.66" not in v for _, v in seen["headers"])


def test_through_the_edge_non_ascii_header_bytes_are_400(harness: Harness) -> None:
    token = harness.token("webhooks:read")
    before = len(harness.panel.requests)
    with harness.client(token) as client:
        answer = client.get("/api/v1/stores/acme/webhooks", headers={"x-note": b"caf\xe9"})
    assert answer.status_code == 400
    assert "outside ASCII" in answer.json()["detail"]
    assert len(harness.panel.requests) == before


def _raw(harness: Harness, request: bytes) -> bytes:
    port = int(harness.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(request)
        out = b""
        while b"\r\n\r\n" not in out:
            part = sock.recv(65536)
            if not part:
                break
            out += part
        return out


@pytest.mark.parametrize("keyed", [False, True], ids=["streamed", "idempotency-buffered"])
def test_request_trailers_never_reach_magento(harness: Harness, keyed: bool) -> None:
    """A chunked request with trailers: Magento (the stand-in) sees the body and no
    trailer, also when the edge buffers the body first (an Idempotency-Key), which is
    when uvicorn's own protocol would have added them to the request's headers."""
    token = harness.token("customers:write")
    body = b'{"customer":{"email":"t@example.com","firstname":"T","lastname":"R"}}'
    key = f"Idempotency-Key: {uuid.uuid4()}\r\n".encode() if keyed else b""
    request = (
        b"POST /api/v1/stores/acme/commerce/customers HTTP/1.1\r\nHost: edge.test\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\n" + key + b"Content-Type: "
        b"application/json\r\nTransfer-Encoding: chunked\r\nTrailer: X-Trailer\r\n\r\n"
        + b"%x\r\n" % len(body)
        + body
        + b"\r\n0\r\nX-Trailer: sneaky\r\nX-HTTP-Method-Override: DELETE\r\n\r\n"
    )
    answer = _raw(harness, request)
    assert answer.startswith(b"HTTP/1.1 ") and int(answer.split()[1]) < 500
    seen = harness.standin.requests[-1]
    assert seen["method"] == "POST" and seen["body"] == body
    names = {n for n, _ in seen["headers"]}
    assert "x-trailer" not in names and "x-http-method-override" not in names
    assert all("sneaky" not in v for _, v in seen["headers"])


# -- access = "read" under the async mounts ------------------------------------------------

READ_POST = "/products/base-prices-information"  # access = "read" in the shipped v1 policy


def test_a_read_route_needs_write_under_the_async_mounts(harness: Harness) -> None:
    surface = harness.config.surfaces[0]
    for mount, wanted in (("commerce", "read"), ("commerce/async", "write"),
                          ("commerce/async/bulk", "write")):  # fmt: skip
        path = f"/api/v1/stores/acme/{mount}{READ_POST}".encode()
        decision = resolve(surface, "POST", split_path(path))
        assert decision.route is not None and decision.route.access == "read"
        assert required_access(decision.mount, decision.route, "POST") == wanted, mount


def test_through_the_edge_a_read_token_cannot_queue_async_operations(harness: Harness) -> None:
    reader = harness.token("products:read")
    writer = harness.token("products:write")
    body = {"skus": ["24-MB01"]}
    with harness.client(reader) as client:
        plain = client.post(f"/api/v1/stores/acme/commerce{READ_POST}", json=body)
        queued = client.post(f"/api/v1/stores/acme/commerce/async{READ_POST}", json=body)
    assert plain.status_code != 403  # read-only POST: the read grant is enough
    assert queued.status_code == 403
    assert queued.json()["required"] == "products:write"
    with harness.client(writer) as client:
        allowed = client.post(f"/api/v1/stores/acme/commerce/async{READ_POST}", json=body)
    assert allowed.status_code != 403


# -- hostile header bytes through the whole edge: never a 5xx -----------------------------


def test_content_length_with_a_trailing_space_is_400_at_the_edge(harness: Harness) -> None:
    """Was a 500: llhttp lets ``7 `` through and the upstream client refused it."""
    token = harness.token("customers:write")
    answer = _raw(
        harness,
        b"POST /api/v1/stores/acme/commerce/customers HTTP/1.1\r\nHost: edge.test\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\nContent-Type: application/json\r\n"
        b'Content-Length: 7 \r\n\r\n{"a":1}',
    )
    assert answer.startswith(b"HTTP/1.1 400 ")


_header_name = st.one_of(
    st.sampled_from([b"X-A", b"Accept", b"Content-Type", b"X-HTTP-Method-Override", b"Via",
                     b"X-Request-Id", b"Connection", b"Forwarded", b"Idempotency-Key"]),
    st.binary(min_size=1, max_size=10),
)  # fmt: skip
_header_value = st.one_of(
    st.binary(max_size=30),
    st.sampled_from([b"close", b"keep-alive, x-a", b"caf\xe9", b"\xff\xfe", b"a\tb", b" "]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(fields=st.lists(st.tuples(_header_name, _header_value), max_size=5))
def test_hostile_header_bytes_through_the_edge_are_never_a_5xx(
    harness: Harness, fields: list[tuple[bytes, bytes]]
) -> None:
    token = harness.token("webhooks:read")
    head = b"GET /api/v1/stores/acme/webhooks HTTP/1.1\r\nHost: edge.test\r\n"
    head += b"Authorization: Bearer " + token.encode() + b"\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in fields)
    answer = _raw(harness, head + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    assert int(answer.split()[1]) < 500, answer[:400]
