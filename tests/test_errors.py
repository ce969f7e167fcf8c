"""proxy.errors.render: the edge's own answers in the surface's error style (SPEC §4)."""

from __future__ import annotations

import json
import re

import pytest

from proxy.errors import (
    AnswerNotRecorded,
    BadRequest,
    Conflict,
    EdgeError,
    Forbidden,
    Gone,
    IdempotencyUnavailable,
    InsufficientScope,
    KeyStoreUnavailable,
    LimiterUnavailable,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestBodyTimeout,
    RouteNotImplemented,
    TokenIssuerUnavailable,
    TooManyRequests,
    Unauthorized,
    UnprocessableContent,
    UpstreamCredentialUnavailable,
    UpstreamNotConfigured,
    UpstreamSaturated,
    UpstreamTimeout,
    UpstreamUnavailable,
    envelope_code_for_status,
    render,
)

TYPE_BASE = "https://developer.storeoncloud.com/errors/"

ALL = [
    (BadRequest, 400, "bad_request", "Bad Request"),
    (Unauthorized, 401, "unauthorized", "Unauthorized"),
    (Forbidden, 403, "forbidden", "Forbidden"),
    (NotFound, 404, "not_found", "Not Found"),
    (MethodNotAllowed, 405, "method_not_allowed", "Method Not Allowed"),
    (PayloadTooLarge, 413, "payload_too_large", "Content Too Large"),
    (TooManyRequests, 429, "rate_limited", "Too Many Requests"),
    (UpstreamUnavailable, 502, "upstream_unavailable", "Bad Gateway"),
    (UpstreamNotConfigured, 503, "upstream_not_configured", "Service Unavailable"),
    (UpstreamTimeout, 504, "upstream_timeout", "Gateway Timeout"),
    (RequestBodyTimeout, 408, "request_timeout", "Request Timeout"),
    (UpstreamSaturated, 503, "upstream_saturated", "Service Unavailable"),
]

# The envelope's codes (SPEC §4.2, the partner API's names; UPPER_SNAKE), for every edge error.
ENVELOPE = [
    (EdgeError, 500, "INTERNAL_ERROR"),
    (BadRequest, 400, "BAD_REQUEST"),
    (Unauthorized, 401, "UNAUTHORIZED"),
    (Forbidden, 403, "FORBIDDEN"),
    (InsufficientScope, 403, "INSUFFICIENT_SCOPE"),
    (NotFound, 404, "RESOURCE_NOT_FOUND"),
    (MethodNotAllowed, 405, "METHOD_NOT_ALLOWED"),
    (Conflict, 409, "IDEMPOTENCY_CONFLICT"),
    (AnswerNotRecorded, 409, "IDEMPOTENCY_ANSWER_NOT_RECORDED"),
    (Gone, 410, "VERSION_RETIRED"),
    (PayloadTooLarge, 413, "PAYLOAD_TOO_LARGE"),
    (UnprocessableContent, 422, "IDEMPOTENCY_MISMATCH"),
    (TooManyRequests, 429, "RATE_LIMITED"),
    (RouteNotImplemented, 501, "NOT_IMPLEMENTED"),
    (UpstreamUnavailable, 502, "UPSTREAM_UNAVAILABLE"),
    (UpstreamNotConfigured, 503, "UPSTREAM_UNAVAILABLE"),
    (UpstreamCredentialUnavailable, 503, "UPSTREAM_UNAVAILABLE"),
    (LimiterUnavailable, 503, "SERVICE_UNAVAILABLE"),
    (KeyStoreUnavailable, 503, "SERVICE_UNAVAILABLE"),
    (IdempotencyUnavailable, 503, "SERVICE_UNAVAILABLE"),
    (TokenIssuerUnavailable, 503, "TOKEN_ISSUER_UNAVAILABLE"),
    (UpstreamTimeout, 504, "UPSTREAM_TIMEOUT"),
    (RequestBodyTimeout, 408, "REQUEST_TIMEOUT"),
    (UpstreamSaturated, 503, "UPSTREAM_SATURATED"),
]


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for n, v in headers if n == name]


@pytest.mark.parametrize(("cls", "status", "code", "title"), ALL)
def test_problem_json(cls: type[EdgeError], status: int, code: str, title: str) -> None:
    err = cls("Something specific happened.")
    got_status, headers, body = render(
        err, style="problem", request_id="rid-1", type_base=TYPE_BASE
    )
    assert got_status == status
    assert json.loads(body) == {
        "type": TYPE_BASE + code.replace("_", "-"),
        "title": title,
        "status": status,
        "detail": "Something specific happened.",
        "request_id": "rid-1",
    }
    assert _header(headers, b"content-type") == [b"application/problem+json"]
    assert _header(headers, b"content-length") == [str(len(body)).encode()]
    assert _header(headers, b"cache-control") == [b"no-store"]


@pytest.mark.parametrize(("cls", "status", "code"), ENVELOPE)
def test_envelope(cls: type[EdgeError], status: int, code: str) -> None:
    err = cls("Something specific happened.")
    got_status, headers, body = render(err, style="envelope", request_id="rid-2", type_base="")
    assert got_status == status
    assert json.loads(body) == {
        "error": {
            "code": code,
            "message": "Something specific happened.",
            "details": {},
            "request_id": "rid-2",
        }
    }
    assert _header(headers, b"content-type") == [b"application/json"]
    assert _header(headers, b"content-length") == [str(len(body)).encode()]


def test_every_edge_error_has_an_envelope_code() -> None:
    import proxy.errors as errors

    classes = {
        obj for obj in vars(errors).values() if isinstance(obj, type) and issubclass(obj, EdgeError)
    }
    assert classes == {cls for cls, _, _ in ENVELOPE}
    for cls in classes:
        assert re.fullmatch(r"[A-Z]+(_[A-Z]+)*", cls("x").envelope_code()), cls


def test_a_missing_permission_is_insufficient_scope_in_the_envelope() -> None:
    lacking = Forbidden("This token lacks the permission orders:write.", extra={"required": "x"})
    denied = Forbidden("This route is not available through the edge: admin only")
    for err, code in ((lacking, "INSUFFICIENT_SCOPE"), (denied, "FORBIDDEN")):
        _, _, body = render(err, style="envelope", request_id="r", type_base="")
        assert json.loads(body)["error"]["code"] == code
    # problem+json keeps its one type for both
    _, _, body = render(lacking, style="problem", request_id="r", type_base="t/")
    assert json.loads(body)["type"] == "t/forbidden"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "BAD_REQUEST"), (401, "UNAUTHORIZED"), (403, "FORBIDDEN"),
        (404, "RESOURCE_NOT_FOUND"), (405, "METHOD_NOT_ALLOWED"), (429, "RATE_LIMITED"),
        (500, "INTERNAL_ERROR"), (501, "NOT_IMPLEMENTED"), (502, "UPSTREAM_UNAVAILABLE"),
        (503, "SERVICE_UNAVAILABLE"), (418, "BAD_REQUEST"), (599, "INTERNAL_ERROR"),
    ],
)  # fmt: skip
def test_envelope_code_for_an_upstream_status(status: int, code: str) -> None:
    assert envelope_code_for_status(status) == code


# The v1 surface's problem+json, byte for byte as the edge rendered it before the envelope
# codes existed (captured from the previous revision's render()).
BEFORE = [
    (
        NotFound("No route matches GET /x on this API."),
        b'{"type":"https://developer.storeoncloud.com/errors/not-found","title":"Not Found",'
        b'"status":404,"detail":"No route matches GET /x on this API.","request_id":"rid-7"}',
    ),
    (
        Forbidden(
            "This token lacks the permission orders:write.", extra={"required": "orders:write"}
        ),
        b'{"type":"https://developer.storeoncloud.com/errors/forbidden","title":"Forbidden",'
        b'"status":403,"detail":"This token lacks the permission orders:write.",'
        b'"request_id":"rid-7","required":"orders:write"}',
    ),
    (
        Unauthorized("No token.", headers={"WWW-Authenticate": 'Bearer realm="magento-edge"'}),
        b'{"type":"https://developer.storeoncloud.com/errors/unauthorized",'
        b'"title":"Unauthorized","status":401,"detail":"No token.","request_id":"rid-7"}',
    ),
    (
        TooManyRequests("Rate limit exceeded for this token; retry after 3 s."),
        b'{"type":"https://developer.storeoncloud.com/errors/rate-limited",'
        b'"title":"Too Many Requests","status":429,'
        b'"detail":"Rate limit exceeded for this token; retry after 3 s.","request_id":"rid-7"}',
    ),
]


@pytest.mark.parametrize(("err", "body"), BEFORE)
def test_problem_json_is_byte_identical_to_before(err: EdgeError, body: bytes) -> None:
    _, headers, got = render(err, style="problem", request_id="rid-7", type_base=TYPE_BASE)
    assert got == body
    assert headers[:3] == [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]


def test_problem_default_type_base() -> None:
    _, _, body = render(NotFound("x"), style="problem", request_id="r", type_base="about:blank#")
    assert json.loads(body)["type"] == "about:blank#not-found"


def test_extra_members() -> None:
    err = Forbidden(
        "This token lacks the permission orders:write.", extra={"required": "orders:write"}
    )
    _, _, body = render(err, style="problem", request_id="r", type_base=TYPE_BASE)
    doc = json.loads(body)
    assert doc["required"] == "orders:write"
    assert doc["status"] == 403
    _, _, body = render(err, style="envelope", request_id="r", type_base=TYPE_BASE)
    assert json.loads(body)["error"]["details"] == {"required": "orders:write"}
    assert json.loads(body)["error"]["code"] == "INSUFFICIENT_SCOPE"


def test_extra_headers_are_carried_lower_cased() -> None:
    err = Unauthorized(
        "No token.",
        headers={"WWW-Authenticate": 'Bearer realm="magento-edge"', "Retry-After": "3"},
    )
    for style in ("problem", "envelope"):
        status, headers, _ = render(err, style=style, request_id="r", type_base=TYPE_BASE)
        assert status == 401
        assert _header(headers, b"www-authenticate") == [b'Bearer realm="magento-edge"']
        assert _header(headers, b"retry-after") == [b"3"]
        assert all(n == n.lower() for n, _ in headers)


def test_allow_header_on_405() -> None:
    err = MethodNotAllowed("use GET", headers={"Allow": "GET"})
    status, headers, _ = render(err, style="problem", request_id="r", type_base=TYPE_BASE)
    assert status == 405
    assert _header(headers, b"allow") == [b"GET"]


def test_detail_is_json_escaped() -> None:
    detail = 'quote " backslash \\ newline \n unicode é </script>'
    _, _, body = render(BadRequest(detail), style="problem", request_id="r", type_base=TYPE_BASE)
    assert json.loads(body)["detail"] == detail
    assert b"\n" not in body


def test_edge_error_carries_detail_and_copies_mappings() -> None:
    headers = {"Allow": "GET"}
    err = MethodNotAllowed("detail", headers=headers)
    headers["Allow"] = "PUT"
    assert err.headers == {"Allow": "GET"}
    assert str(err) == "detail"
    assert err.detail == "detail"
    assert EdgeError("x").status == 500
