"""The one request-body reader: chunks as they come, a cap enforced early, a disconnect."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.body import BodyReplay, ClientGone, declared_length, iter_body, read_body
from proxy.errors import PayloadTooLarge


class Client:
    """``receive`` for a body sent in ``parts``; a disconnect after them if asked."""

    def __init__(self, *parts: bytes, disconnect: bool = False) -> None:
        self.messages: list[dict[str, Any]] = [
            {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
            for i, p in enumerate(parts)
        ]
        if disconnect:
            self.messages[-1]["more_body"] = True
            self.messages.append({"type": "http.disconnect"})
        self.reads = 0

    async def receive(self) -> dict[str, Any]:
        self.reads += 1
        return self.messages.pop(0)


async def test_read_body_joins_chunks_and_skips_empty_ones() -> None:
    client = Client(b"ab", b"", b"cd", b"e")
    assert await read_body(client.receive) == b"abcde"
    assert client.reads == 4


async def test_read_body_puts_an_already_received_chunk_first() -> None:
    assert await read_body(Client(b"cd").receive, first=b"ab") == b"abcd"


async def test_iter_body_yields_chunks_as_they_arrive() -> None:
    chunks = [c async for c in iter_body(Client(b"a", b"b", b"").receive, b"0")]
    assert chunks == [b"0", b"a", b"b"]


async def test_over_the_cap_stops_reading_at_the_chunk_that_crosses_it() -> None:
    client = Client(b"aaaa", b"bbbb", b"cccc", b"dddd")
    error = PayloadTooLarge("too big")
    with pytest.raises(PayloadTooLarge) as info:
        await read_body(client.receive, cap=6, too_large=error)
    assert info.value is error and client.reads == 2  # never read past the cap


async def test_a_declared_length_over_the_cap_is_refused_before_reading() -> None:
    client = Client(b"a")
    with pytest.raises(PayloadTooLarge, match="at most 5 bytes"):
        await read_body(client.receive, [(b"content-length", b"6")], cap=5)
    assert client.reads == 0


async def test_exactly_the_cap_passes() -> None:
    assert await read_body(Client(b"abc", b"de").receive, cap=5) == b"abcde"


async def test_a_disconnect_is_client_gone() -> None:
    with pytest.raises(ClientGone):
        await read_body(Client(b"ab", disconnect=True).receive)
    with pytest.raises(ClientGone):
        [c async for c in iter_body(Client(b"ab", disconnect=True).receive)]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"content-length", b"12")], 12),
        ([(b"host", b"x")], None),
        ([(b"content-length", b"twelve")], None),
        ([(b"content-length", b"0"), (b"content-length", b"9")], 0),  # the first one
    ],
)
def test_declared_length(headers: list[tuple[bytes, bytes]], expected: int | None) -> None:
    assert declared_length(headers) == expected


async def test_a_replayed_body_is_handed_over_once_then_the_client_is_asked() -> None:
    # The idempotency step's replay: the body it read, then the client's own receive
    # (where the upstream step watches for a disconnect).
    client = Client(b"ignored", disconnect=True)
    client.messages.pop(0)  # only the disconnect is left to read
    replay = BodyReplay(b'{"a":1}', client.receive)
    assert not replay.delivered
    assert await replay() == {"type": "http.request", "body": b'{"a":1}', "more_body": False}
    assert replay.delivered and client.reads == 0
    assert await replay() == {"type": "http.disconnect"}
    assert client.reads == 1
