"""A control-panel upstream for tests: records what arrives and streams big bodies.

``GET .../backups/big?bytes=N`` streams N bytes in 64 KiB chunks; ``POST .../backups``
consumes the body, counting and hashing it without keeping it; anything else echoes the
request line and headers as JSON. ``GET .../slow`` waits before answering.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import deque
from typing import Any
from urllib.parse import parse_qs

CHUNK = b"x" * 65536


class PanelApp:
    def __init__(self) -> None:
        self.requests: deque[dict[str, Any]] = deque(maxlen=100)
        self.aborted = 0
        self.completed_uploads = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        record = {
            "method": scope["method"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": headers,
        }
        self.requests.append(record)
        if path.endswith("/backups/big"):
            size = int(parse_qs(scope["query_string"].decode())["bytes"][0])
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")],
                }
            )
            sent = 0
            while sent < size:
                part = CHUNK[: min(len(CHUNK), size - sent)]
                await send({"type": "http.response.body", "body": part, "more_body": True})
                sent += len(part)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        if path.endswith("/slow"):
            await asyncio.sleep(5)
        digest = hashlib.sha256()
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.aborted += 1
                return
            body = message.get("body", b"")
            total += len(body)
            digest.update(body)
            if not message.get("more_body", False):
                break
        if scope["method"] == "POST" and path.endswith("/backups"):
            self.completed_uploads += 1
        answer = json.dumps({**record, "received": total, "sha256": digest.hexdigest()}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"set-cookie", b"panel_session=secret"),
                    (b"x-panel", b"yes"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})
