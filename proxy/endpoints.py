"""The few answers the edge gives itself (``[[endpoints]]`` in a policy):
``GET /stores`` (the stores this token reaches, with its effective grants on each),
``GET /openapi.json`` (generated from the policy) and ``POST`` leaked-token reports
(:mod:`proxy.leaks`). Nothing else is answered at the edge.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from . import leaks
from .auth import Principal
from .errors import Unauthorized
from .openapi import openapi_document
from .policy import Surface
from .types import Send

if TYPE_CHECKING:
    from .edge import Edge

__all__ = ["answer"]


async def answer(
    handler: str,
    edge: Edge,
    surface: Surface,
    principal: Principal | None,
    answer_headers: list[tuple[bytes, bytes]],
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Send,
) -> int:
    """Answer ``handler``; ``answer_headers`` (request id, rate-limit fields) go on it."""
    if handler == "stores":
        if principal is None:  # a policy that lists stores without auth is refused at load
            raise Unauthorized("This API needs a bearer token.")
        body = json.dumps({"stores": _stores(edge, principal)}).encode()
        content_type = b"application/json"
    elif handler == "leaked_tokens":
        body = await leaks.handle_report(
            edge.config.secret_scanning_keys, edge.keystore, scope["headers"], receive
        )
        content_type = b"application/json"
    else:
        body = openapi_document(surface, edge.config)
        content_type = b"application/json"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"max-age=300" if handler == "openapi" else b"no-store"),
                *answer_headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
    return 200


def _stores(edge: Edge, principal: Principal) -> list[dict[str, Any]]:
    out = []
    for store_id in principal.record.stores:  # the token's order
        if store_id not in principal.stores:
            continue  # its account no longer has this store
        store = edge.config.stores.get(store_id)
        if store is None:
            continue  # a store removed from config since the token was made
        if (store.environment == "sandbox") != (principal.kind == "test"):
            continue  # live tokens never reach sandbox stores, nor test tokens live ones
        out.append(
            {
                "id": store.id,
                "name": store.name,
                "environment": store.environment,
                "permissions": [
                    f"{r}:{a}" for r, a in sorted(principal.permissions_for(store_id).items())
                ],
            }
        )
    return out
