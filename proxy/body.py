"""The request body, read one way: every step that needs a client's body (the upstream
forward, ``Idempotency-Key`` fingerprints, leaked-token reports) reads ``receive`` through
here, so a disconnect is :class:`ClientGone` and a cap is enforced the same way everywhere.

Bodies are bytes in, the same bytes out: never decoded here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from .errors import EdgeError, PayloadTooLarge
from .types import Message, Receive

__all__ = ["BodyReplay", "ClientGone", "declared_length", "iter_body", "read_body"]


class ClientGone(Exception):
    """The client disconnected; nothing can be answered."""


class BodyReplay:
    """A ``receive`` that hands over a body already read whole, then passes on to the
    client's (the disconnect watch). Until the body is handed over it never waits: the
    upstream step needs no timeout around that first call."""

    __slots__ = ("_body", "_receive", "delivered")

    def __init__(self, body: bytes, receive: Receive) -> None:
        self._body = body
        self._receive = receive
        self.delivered = False

    async def __call__(self) -> Message:
        if self.delivered:
            return await self._receive()  # after the body: the disconnect watch
        self.delivered = True
        return {"type": "http.request", "body": self._body, "more_body": False}


def declared_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    """The client's ``Content-Length``, ``None`` when absent or not a number."""
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def iter_body(receive: Receive, first: bytes = b"") -> AsyncIterator[bytes]:
    """The body's chunks as they arrive (``first``: a chunk already received)."""
    if first:
        yield first
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def read_body(
    receive: Receive,
    headers: Sequence[tuple[bytes, bytes]] = (),
    *,
    cap: int | None = None,
    too_large: EdgeError | None = None,
    first: bytes = b"",
) -> bytes:
    """The whole body. Over ``cap`` bytes raises ``too_large`` (a plain 413 without one)
    as soon as it is over (at once when ``Content-Length`` says so), unread past that."""
    if cap is not None:
        declared = declared_length(headers)
        if declared is not None and declared > cap:
            raise too_large or PayloadTooLarge(f"The body may be at most {cap} bytes.")
    parts: list[bytes] = []
    size = 0
    async for chunk in iter_body(receive, first):
        size += len(chunk)
        if cap is not None and size > cap:
            raise too_large or PayloadTooLarge(f"The body may be at most {cap} bytes.")
        parts.append(chunk)
    return b"".join(parts)
