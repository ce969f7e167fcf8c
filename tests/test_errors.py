"""proxy.errors.render: the edge's own answers in the surface's error style (SPEC §4)."""

from __future__ import annotations

import json

import pytest

from proxy.errors import (
    BadRequest,
    EdgeError,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    UpstreamNotConfigured,
    UpstreamTimeout,
    UpstreamUnavailable,
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


@pytest.mark.parametrize(("cls", "status", "code", "title"), ALL)
def test_envelope(cls: type[EdgeError], status: int, code: str, title: str) -> None:
    err = cls("Something specific happened.")
    got_status, headers, body = render(err, style="envelope", request_id="rid-2", type_base="")
    assert got_status == status
    assert json.loads(body) == {
        "error": {
            "code": code.upper(),
            "message": "Something specific happened.",
            "details": {},
            "request_id": "rid-2",
        }
    }
    assert _header(headers, b"content-type") == [b"application/json"]
    assert _header(headers, b"content-length") == [str(len(body)).encode()]


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
