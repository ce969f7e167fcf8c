"""``GET {base_path}/openapi.json``: an OpenAPI 3.1 document generated from the policy.

Every route a token can be granted appears with the permission it needs
(``x-required-permission``), the bearer security scheme, the problem schema for what the
edge answers itself, the rate-limit headers every answer carries, and ``Idempotency-Key``
on writes. Denied routes are left out: they are not part of the API.

On a JWT surface (``auth.kind = "jwt"``, the partner API) the scheme is OAuth 2.0: its
flows carry ``auth.token_url`` (client credentials) and ``auth.authorization_url``
(authorization code) with every scope of ``[auth.scopes]``, and each operation lists the
scopes any one of which grants it (the ones a 403 ``insufficient_scope`` names). Without a
token URL OpenAPI has no flow to put the scopes in: the scheme is then HTTP bearer
(``bearerFormat: JWT``) and the scopes are the operations' required role names (OpenAPI
3.1 §4.8.30). ``list = "page"`` routes take ``page``/``limit``; ``[[versions]]`` are
further servers, marked deprecated with their dates.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from .auth_jwt import scopes_granting
from .decide import required_access
from .policy import Mount, Route, Surface, Version

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
        "Seconds until the bucket is full again."
        if surface.header_style == "ratelimit"
        else "When the bucket is full again, in Unix epoch seconds.",
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
    scheme_name, scheme = _security_scheme(surface)
    components: dict[str, Any] = {
        "securitySchemes": {scheme_name: scheme},
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
            "NotImplemented": _error_response("This route has no Magento equivalent.", media),
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
            # A route "/" is the mount's own path (POST /webhooks, not /webhooks/).
            path = _oas_path(mount.pattern.text.rstrip("/") + pattern.text.rstrip("/") or "/")
            path = canonical.setdefault(_VARIABLE.sub("{}", path), path)
            methods = _ANY_METHODS if route.method == "*" else (route.method,)
            for method in methods:
                if mount.methods is not None and method not in mount.methods:
                    continue
                if (path, method) in seen_ops:
                    continue
                seen_ops.add((path, method))
                paths.setdefault(path, {})[method.lower()] = _operation(
                    surface, mount, route, method, path, scheme_name
                )
    return {
        "openapi": "3.1.0",
        "info": {"title": surface.title, "version": surface.version},
        "servers": [{"url": surface.base_path}, *(_server(v) for v in surface.versions)],
        "security": [{scheme_name: []}],
        "paths": paths,
        "components": components,
    }


def _security_scheme(surface: Surface) -> tuple[str, dict[str, Any]]:
    jwt = surface.jwt
    if surface.auth != "jwt" or jwt is None:
        return "bearerAuth", {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal access token: soc_pat_live_... or soc_pat_test_...",
        }
    scopes = {
        name: ", ".join(f"{res}:{acc}" for res, acc in grants).replace("*:", "every resource:")
        or "grants nothing"
        for name, grants in surface.scopes.items()
    }
    about = (
        "An OAuth 2.0 access token (a JWT, RFC 9068) issued for one store (its store_id "
        "claim); its scope claim decides what it may call."
    )
    if jwt.token_url is None:
        return "oauth2", {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": f"{about} Scopes: " + "; ".join(f"{n} ({g})" for n, g in scopes.items()),
        }
    flows: dict[str, Any] = {"clientCredentials": {"tokenUrl": jwt.token_url, "scopes": scopes}}
    if jwt.authorization_url is not None:
        flows["authorizationCode"] = {
            "authorizationUrl": jwt.authorization_url,
            "tokenUrl": jwt.token_url,
            "scopes": scopes,
        }
    return "oauth2", {"type": "oauth2", "description": about, "flows": flows}


def _server(version: Version) -> dict[str, Any]:
    """An earlier version: served like this one until its sunset (proxy.versions)."""
    dates = []
    if version.deprecation is not None:
        dates.append(f"deprecated since {_iso(version.deprecation)}")
    if version.sunset is not None:
        dates.append(f"retired from {_iso(version.sunset)} (410 VERSION_RETIRED)")
    server: dict[str, Any] = {
        "url": version.base_path,
        "description": f"{version.name}: " + ("; ".join(dates) or "an alias of this version"),
    }
    if dates:
        server["x-deprecated"] = True
        for key, value in (
            ("x-deprecation", _iso(version.deprecation)),
            ("x-sunset", _iso(version.sunset)),
            ("x-link", version.link),
        ):
            if value is not None:
                server[key] = value
    return server


def _oas_path(text: str) -> str:
    return text.replace(":path}", "}")


def _operation(
    surface: Surface, mount: Mount, route: Route, method: str, path: str, scheme: str
) -> dict[str, Any]:
    if route.rewrite.not_implemented is not None:  # proxy.rewrite: answered 501 at the edge
        return {
            "operationId": f"{method.lower()}_{mount.name}_{route.table}_{route.index}",
            "summary": route.summary or f"{method} {route.pattern.text}",
            "description": route.rewrite.not_implemented,
            "security": [],
            "parameters": [_path_parameter(name) for name in _path_names(path)],
            "responses": {
                "501": {
                    **_error_ref("NotImplemented"),
                    "description": route.rewrite.not_implemented,
                }
            },
        }
    access = required_access(mount, route, method)  # issue #14: async mounts need write
    permission = f"{route.resource}:{access}"
    params = [_path_parameter(name) for name in _path_names(path)]
    if route.rewrite.list == "page":
        params.extend(_page_parameters(surface))
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
    if surface.auth == "jwt" and route.resource is not None:
        # Any one of these scopes grants the route (OR of requirements).
        names = scopes_granting(surface, route.resource, access)
        op["x-required-scopes"] = names
        if names:
            op["security"] = [{scheme: [name]} for name in names]
    if method in ("POST", "PUT", "PATCH"):
        op["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": {}}},
        }
    return op


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _path_parameter(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _page_parameters(surface: Surface) -> list[dict[str, Any]]:
    lists = surface.lists
    return [
        {
            "name": "page",
            "in": "query",
            "required": False,
            "description": "The page, from 1 (Magento's searchCriteria[currentPage]).",
            "schema": {"type": "integer", "minimum": 1, "default": 1},
        },
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "description": "Items per page (Magento's searchCriteria[pageSize]).",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": lists.max_page_size,
                "default": lists.default_page_size,
            },
        },
    ]


def _error_ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/{name}"}


def _iso(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
