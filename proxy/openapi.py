"""``GET {base_path}/openapi.json``: an OpenAPI 3.1 document generated from the policy.

Every route a token can be granted appears with the permission it needs
(``x-required-permission``), the bearer security scheme, the problem schema for what the
edge answers itself, the rate-limit headers every answer carries, and ``Idempotency-Key``
on writes. Denied routes are left out: they are not part of the API.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson

from .policy import Mount, Route, Surface

if TYPE_CHECKING:
    from .config import Config

__all__ = ["openapi_document"]

_ANY_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_VARIABLE = re.compile(r"\{[^}]+\}")
_cache: dict[tuple[int, int], bytes] = {}


def openapi_document(surface: Surface, config: Config | None = None) -> bytes:
    key = (id(surface), id(config))
    doc = _cache.get(key)
    if doc is None:
        doc = orjson.dumps(build(surface))
        _cache.clear()  # one config at a time; a reload builds anew
        _cache[key] = doc
    return doc


def _rate_headers(surface: Surface) -> dict[str, Any]:
    names = (
        ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
        if surface.header_style == "ratelimit"
        else ("X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset")
    )
    docs = (
        "Requests allowed in the current window (the token bucket's burst).",
        "Requests left before the limit applies.",
        "Seconds until the bucket is full again.",
    )
    return {
        n: {"description": d, "schema": {"type": "integer"}}
        for n, d in zip(names, docs, strict=True)
    }


def _error_schema(surface: Surface) -> dict[str, Any]:
    if surface.error_style == "problem":
        return {
            "type": "object",
            "description": "RFC 9457 problem details, for answers the edge gives itself.",
            "required": ["type", "title", "status", "detail", "request_id"],
            "properties": {
                "type": {"type": "string", "format": "uri-reference"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "request_id": {"type": "string"},
                "required": {"type": "string", "description": "The missing permission."},
            },
        }
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "request_id"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "details": {"type": "object"},
                    "request_id": {"type": "string"},
                },
            }
        },
    }


def _error_response(description: str, media: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}},
        "content": {media: {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def build(surface: Surface) -> dict[str, Any]:
    media = "application/problem+json" if surface.error_style == "problem" else "application/json"
    rate = _rate_headers(surface)
    components: dict[str, Any] = {
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "A personal access token: soc_pat_live_... or soc_pat_test_...",
            }
        },
        "schemas": {"Error": _error_schema(surface)},
        "headers": {
            "X-Request-Id": {"description": "Correlates logs.", "schema": {"type": "string"}},
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}},
            "Idempotent-Replayed": {
                "description": "true when this answer is a replay of a recorded one.",
                "schema": {"type": "string", "enum": ["true"]},
            },
            **rate,
        },
        "parameters": {
            "IdempotencyKey": {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Makes a write safely retryable: the first answer is recorded "
                "and replayed for retries with the same key and request.",
                "schema": {"type": "string", "maxLength": 255},
            }
        },
        "responses": {
            "BadRequest": _error_response("The request path or a header is malformed.", media),
            "Unauthorized": _error_response("Missing, malformed, unknown or revoked token.", media),
            "Forbidden": _error_response("The token lacks the permission named.", media),
            "NotFound": _error_response("No such route, or the store is not available.", media),
            "TooManyRequests": _error_response("Over the rate limit; see Retry-After.", media),
            "BadGateway": _error_response("The upstream refused or broke the connection.", media),
            "GatewayTimeout": _error_response("The upstream did not answer in time.", media),
        },
    }
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in surface.endpoints:
        op: dict[str, Any] = {
            "operationId": f"edge_{endpoint.handler}",
            "summary": endpoint.summary or endpoint.handler,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {}}}}
            },
        }
        if endpoint.auth:
            op["responses"]["401"] = {"$ref": "#/components/responses/Unauthorized"}
        else:
            op["security"] = []
        paths.setdefault(_oas_path(endpoint.pattern.text), {})[endpoint.method.lower()] = op
    # OpenAPI 3.1 §4.8.8: paths that differ only in parameter names are the same path.
    # Magento names one position differently across methods (categories/:categoryId vs
    # categories/:id), so the first name seen for a shape is used for all of them.
    canonical: dict[str, str] = {}
    for mount in surface.mounts:
        seen_ops: set[tuple[str, str]] = set()
        for route in surface.tables[mount.routes]:
            if route.deny is not None or route.form not in ("any", mount.form):
                continue
            pattern = route.pattern.bulk_form() if mount.form == "bulk" else route.pattern
            path = _oas_path(mount.pattern.text.rstrip("/") + pattern.text)
            path = canonical.setdefault(_VARIABLE.sub("{}", path), path)
            methods = _ANY_METHODS if route.method == "*" else (route.method,)
            for method in methods:
                if mount.methods is not None and method not in mount.methods:
                    continue
                if (path, method) in seen_ops:
                    continue
                seen_ops.add((path, method))
                paths.setdefault(path, {})[method.lower()] = _operation(
                    surface, mount, route, method, path
                )
    return {
        "openapi": "3.1.0",
        "info": {"title": surface.title, "version": surface.version},
        "servers": [{"url": surface.base_path}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": components,
    }


def _oas_path(text: str) -> str:
    return text.replace(":path}", "}")


def _operation(
    surface: Surface, mount: Mount, route: Route, method: str, path: str
) -> dict[str, Any]:
    if route.rewrite.not_implemented is not None:  # proxy.rewrite: answered 501 at the edge
        return {
            "operationId": f"{method.lower()}_{mount.name}_{route.table}_{route.index}",
            "summary": route.summary or f"{method} {route.pattern.text}",
            "description": route.rewrite.not_implemented,
            "security": [],
            "responses": {"501": {"description": route.rewrite.not_implemented}},
        }
    access = route.required_access(method)
    permission = f"{route.resource}:{access}"
    params: list[dict[str, Any]] = []
    for name in _path_names(path):
        params.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
    if method in ("POST", "PATCH", "PUT", "DELETE"):
        params.append({"$ref": "#/components/parameters/IdempotencyKey"})
    ok_headers = {
        name: {"$ref": f"#/components/headers/{name}"}
        for name in [*_rate_headers(surface), "X-Request-Id"]
    }
    op: dict[str, Any] = {
        "operationId": f"{method.lower()}_{mount.name}_{route.table}_{route.index}".replace(
            "-", "_"
        ),
        "summary": route.summary or f"{method} {route.pattern.text} ({mount.name})",
        "tags": [route.resource or "edge"],
        "x-required-permission": permission,
        "parameters": params,
        "responses": {
            "default": {
                "description": "The upstream's answer, verbatim, with its status.",
                "headers": ok_headers,
            },
            "400": {"$ref": "#/components/responses/BadRequest"},
            "401": {"$ref": "#/components/responses/Unauthorized"},
            "403": {"$ref": "#/components/responses/Forbidden"},
            "404": {"$ref": "#/components/responses/NotFound"},
            "429": {"$ref": "#/components/responses/TooManyRequests"},
            "502": {"$ref": "#/components/responses/BadGateway"},
            "504": {"$ref": "#/components/responses/GatewayTimeout"},
        },
    }
    if method in ("POST", "PUT", "PATCH"):
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": {}}},
        }
    return op


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]
