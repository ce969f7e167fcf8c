"""Step 0 of the request path: the one error tree, and how edge errors are rendered.

Every answer the edge gives itself (as opposed to Magento's answers, which pass through
verbatim) is an :class:`EdgeError`. Each knows its HTTP status, a stable ``code`` (the
problem type), its ``envelope`` code (UPPER_SNAKE, SPEC §4.2) and a human ``detail``;
:func:`render` turns it into the surface's error style, only ever before the response has
started.

    EdgeError
    ├── BadRequest            400  bad_request        (malformed path, header, body)
    ├── Unauthorized          401  unauthorized       (missing / invalid / revoked token)
    ├── Forbidden             403  forbidden          (token lacks the permission; route denied)
    │   └── InsufficientScope 403  insufficient_scope (a JWT's scopes do not grant it)
    ├── NotFound              404  not_found          (no such route, or store hidden)
    ├── MethodNotAllowed      405  method_not_allowed
    ├── Conflict              409  idempotency_conflict (same key still in flight)
    │   └── AnswerNotRecorded 409  idempotency_answer_not_recorded
    ├── Gone                  410  version_retired
    ├── RequestBodyTimeout    408  request_timeout    (the request body stalled)
    ├── PayloadTooLarge       413  payload_too_large
    ├── UnprocessableContent  422  idempotency_mismatch (same key, different request)
    ├── TooManyRequests       429  rate_limited
    ├── RouteNotImplemented   501  not_implemented (a public route with no upstream equivalent)
    ├── UpstreamUnavailable   502  upstream_unavailable (refused, reset)
    ├── UpstreamNotConfigured 503  upstream_not_configured
    ├── UpstreamCredentialUnavailable 503  upstream_credential_unavailable (no admin token)
    ├── LimiterUnavailable    503  rate_limiter_unavailable (on_backend_error = "deny")
    ├── KeyStoreUnavailable   503  keystore_unavailable (token store unreachable)
    ├── TokenIssuerUnavailable 503 token_issuer_unavailable (no usable JWKS, issuer down)
    ├── IdempotencyUnavailable 503  idempotency_unavailable (idempotency backend unreachable)
    ├── UpstreamSaturated     503  upstream_saturated (no free connection to the store's upstream)
    └── UpstreamTimeout       504  upstream_timeout

Raised by a backend to the code that called it, never answered as they are:

    BackendUnavailable        the rate-limit backend could not be asked; the edge applies
                              ``on_backend_error`` (allow, or ``LimiterUnavailable``)
    DuplicateError            a key store already holds that token id, hash or account id
                              (the CLI says so)

Backends translate their library's exceptions (``sqlite3.Error``, ``redis.RedisError``,
``OSError``) into these where they enter, with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import orjson

ErrorStyle = Literal["problem", "envelope", "magento"]  # magento: the native mount's

__all__ = [
    "AnswerNotRecorded",
    "BackendUnavailable",
    "BadRequest",
    "Conflict",
    "DuplicateError",
    "EdgeError",
    "ErrorStyle",
    "Forbidden",
    "Gone",
    "IdempotencyUnavailable",
    "InsufficientScope",
    "KeyStoreUnavailable",
    "LimiterUnavailable",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "RequestBodyTimeout",
    "RouteNotImplemented",
    "TokenIssuerUnavailable",
    "TooManyRequests",
    "Unauthorized",
    "UnprocessableContent",
    "UpstreamCredentialUnavailable",
    "UpstreamNotConfigured",
    "UpstreamSaturated",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "envelope_code_for_status",
    "render",
]


class EdgeError(Exception):
    """An answer the edge gives itself. ``detail`` is shown to the caller: never put a
    secret, a token or an internal address in it."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal Server Error"
    # The code in the envelope style (SPEC §4.2: UPPER_SNAKE, the partner API's names).
    envelope: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(
        self,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers: dict[str, str] = dict(headers or {})
        self.extra: dict[str, Any] = dict(extra or {})

    def envelope_code(self) -> str:
        return self.envelope


class BadRequest(EdgeError):
    status, code, title = 400, "bad_request", "Bad Request"
    envelope = "BAD_REQUEST"


class Unauthorized(EdgeError):
    status, code, title = 401, "unauthorized", "Unauthorized"
    envelope = "UNAUTHORIZED"


class Forbidden(EdgeError):
    status, code, title = 403, "forbidden", "Forbidden"
    envelope = "FORBIDDEN"

    def envelope_code(self) -> str:
        # A 403 that names the permission it lacks is the partner API's missing scope;
        # a denied route or the wrong environment is plainly forbidden.
        return "INSUFFICIENT_SCOPE" if "required" in self.extra else "FORBIDDEN"


class InsufficientScope(Forbidden):
    """A JWT access token whose scopes do not grant the route (RFC 6750 §3.1)."""

    code = "insufficient_scope"
    envelope = "INSUFFICIENT_SCOPE"

    def envelope_code(self) -> str:
        return self.envelope


class NotFound(EdgeError):
    status, code, title = 404, "not_found", "Not Found"
    envelope = "RESOURCE_NOT_FOUND"


class MethodNotAllowed(EdgeError):
    status, code, title = 405, "method_not_allowed", "Method Not Allowed"
    envelope = "METHOD_NOT_ALLOWED"


class Conflict(EdgeError):
    status, code, title = 409, "idempotency_conflict", "Conflict"
    envelope = "IDEMPOTENCY_CONFLICT"


class AnswerNotRecorded(Conflict):
    """The key's first request completed, but its answer was over ``max_record_bytes``."""

    code = "idempotency_answer_not_recorded"
    envelope = "IDEMPOTENCY_ANSWER_NOT_RECORDED"


class Gone(EdgeError):
    status, code, title = 410, "version_retired", "Gone"
    envelope = "VERSION_RETIRED"


class UnprocessableContent(EdgeError):
    status, code, title = 422, "idempotency_mismatch", "Unprocessable Content"
    envelope = "IDEMPOTENCY_MISMATCH"


class RequestBodyTimeout(EdgeError):
    """The client paused its request body for longer than the store's body-idle timeout
    (``timeouts.body``); the upstream request is cut."""

    status, code, title = 408, "request_timeout", "Request Timeout"
    envelope = "REQUEST_TIMEOUT"


class PayloadTooLarge(EdgeError):
    status, code, title = 413, "payload_too_large", "Content Too Large"
    envelope = "PAYLOAD_TOO_LARGE"


class TooManyRequests(EdgeError):
    status, code, title = 429, "rate_limited", "Too Many Requests"
    envelope = "RATE_LIMITED"


class RouteNotImplemented(EdgeError):
    """A route the API documents but the upstream has no equivalent for (policy
    ``not_implemented``): answered at the edge, nothing is sent upstream."""

    status, code, title = 501, "not_implemented", "Not Implemented"
    envelope = "NOT_IMPLEMENTED"


class UpstreamUnavailable(EdgeError):
    status, code, title = 502, "upstream_unavailable", "Bad Gateway"
    envelope = "UPSTREAM_UNAVAILABLE"


class UpstreamNotConfigured(EdgeError):
    status, code, title = 503, "upstream_not_configured", "Service Unavailable"
    envelope = "UPSTREAM_UNAVAILABLE"


class UpstreamCredentialUnavailable(EdgeError):
    status, code, title = 503, "upstream_credential_unavailable", "Service Unavailable"
    envelope = "UPSTREAM_UNAVAILABLE"


class LimiterUnavailable(EdgeError):
    status, code, title = 503, "rate_limiter_unavailable", "Service Unavailable"
    envelope = "SERVICE_UNAVAILABLE"


class KeyStoreUnavailable(EdgeError):
    status, code, title = 503, "keystore_unavailable", "Service Unavailable"
    envelope = "SERVICE_UNAVAILABLE"


class TokenIssuerUnavailable(EdgeError):
    """The JWT issuer's keys cannot be fetched and the last good set is too old."""

    status, code, title = 503, "token_issuer_unavailable", "Service Unavailable"
    envelope = "TOKEN_ISSUER_UNAVAILABLE"


class IdempotencyUnavailable(EdgeError):
    """The idempotency backend cannot be asked: a keyed write is refused, never run
    without its guarantee."""

    status, code, title = 503, "idempotency_unavailable", "Service Unavailable"
    envelope = "SERVICE_UNAVAILABLE"


class UpstreamSaturated(EdgeError):
    """Every connection the store (or upstream) may hold is busy and none came free within
    ``timeouts.pool``: the edge is waiting for itself, not for a slow upstream (that is
    :class:`UpstreamTimeout`). Sent with ``Retry-After``."""

    status, code, title = 503, "upstream_saturated", "Service Unavailable"
    envelope = "UPSTREAM_SATURATED"


class UpstreamTimeout(EdgeError):
    status, code, title = 504, "upstream_timeout", "Gateway Timeout"
    envelope = "UPSTREAM_TIMEOUT"


class BackendUnavailable(Exception):
    """The rate-limit backend could not be asked; the edge applies ``on_backend_error``."""


class DuplicateError(ValueError):
    """A token (by id or hash) or an account (by id) that already exists."""


def render(
    error: EdgeError, *, style: ErrorStyle, request_id: str, type_base: str
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body for ``error`` in the surface's error style.

    ``problem``: RFC 9457 ``application/problem+json`` with ``request_id``.
    ``envelope``: ``{"error": {"code", "message", "details", "request_id"}}`` (seed 001).
    ``magento``: Magento's own ``{"message", "parameters"}`` (the native mount, issue #16;
    ``parameters`` only when there are any, as Magento does).
    """
    if style == "magento":
        doc: dict[str, Any] = {"message": error.detail}
        if error.extra:
            doc["parameters"] = error.extra
        content_type = b"application/json; charset=utf-8"
    elif style == "problem":
        doc = {
            "type": type_base + error.code.replace("_", "-"),
            "title": error.title,
            "status": error.status,
            "detail": error.detail,
            "request_id": request_id,
        }
        doc.update(error.extra)
        content_type = b"application/problem+json"
    else:
        doc = {
            "error": {
                "code": error.envelope_code(),
                "message": error.detail,
                "details": error.extra,
                "request_id": request_id,
            }
        }
        content_type = b"application/json"
    body = orjson.dumps(doc)
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    headers.extend(
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in error.headers.items()
    )
    return error.status, headers, body


# Codes for answers the edge did not make (Magento's, rewritten by proxy.envelope): by status.
_STATUS_CODES = {
    400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "RESOURCE_NOT_FOUND",
    405: "METHOD_NOT_ALLOWED", 406: "NOT_ACCEPTABLE", 409: "CONFLICT", 410: "GONE",
    413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE", 422: "UNPROCESSABLE_CONTENT",
    429: "RATE_LIMITED", 500: "INTERNAL_ERROR", 501: "NOT_IMPLEMENTED",
    502: "UPSTREAM_UNAVAILABLE", 503: "SERVICE_UNAVAILABLE", 504: "UPSTREAM_TIMEOUT",
}  # fmt: skip


def envelope_code_for_status(status: int) -> str:
    """The envelope code of an upstream answer with ``status``."""
    code = _STATUS_CODES.get(status)
    if code is not None:
        return code
    return "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR"
