"""The edge's forwarding path without its policy: the steps between the bare proxy and the
edge, for ``breakdown.py``.

- ``--steps client``: the edge's own upstream client (``proxy.upstream.UpstreamClient``),
  given the client's headers minus hop-by-hop ones, exactly what the bare proxy sends;
- ``--steps headers``: the same plus the edge's forwarding rules (``proxy.headers``: request
  id, ``X-Forwarded-*``, ``Via``, the store's bearer credential upstream, ``X-Request-Id``
  on the answer).

No routing, no token, no rate limit: the raw path goes to the upstream as it came. Served
exactly like every Python proxy in the benchmark (``bare_proxy.serve``).

Run: ``python benchmarks/steps_proxy.py --port P --upstream http://127.0.0.1:U --steps client``
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bare_proxy import HOP, lifespan, serve
from edge import MAGENTO_TOKEN

from proxy.config import Timeouts
from proxy.headers import (
    build_forwarding,
    request_id_from,
    upstream_request_headers,
)
from proxy.upstream import UpstreamClient

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

CREDENTIAL = ("authorization", f"Bearer {MAGENTO_TOKEN}")  # what the edge modes send


def make_app(upstream: str, steps: str) -> Any:
    client = UpstreamClient()
    timeouts = Timeouts()
    base = upstream.rstrip("/")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send, client.start, client.close)
            return
        headers = scope["headers"]
        if steps == "client":
            up = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers if k not in HOP]
            answer: list[tuple[bytes, bytes]] = []
        else:
            request_id = request_id_from(headers)
            fwd = build_forwarding(scope.get("client"), "http", headers, (), request_id)
            up = upstream_request_headers(headers, fwd, [CREDENTIAL])
            answer = [(b"x-request-id", request_id.encode())]
        url = base + scope["raw_path"].decode("latin-1")
        if scope.get("query_string"):
            url += "?" + scope["query_string"].decode("latin-1")
        await client.forward(
            method=scope["method"], url=url, headers=up, request_headers=headers,
            receive=receive, send=send, timeouts=timeouts, extra_response_headers=answer,
        )  # fmt: skip

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--steps", choices=("client", "headers"), required=True)
    args = parser.parse_args()
    serve(make_app(args.upstream, args.steps), args.port)


if __name__ == "__main__":
    main()
