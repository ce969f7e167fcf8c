"""The contract of an idempotency backend: what a claim on a key returns, and the
operations each backend (:mod:`.memory`, :mod:`.redis`) makes atomic per key. A backend that
cannot be asked raises :class:`~proxy.errors.IdempotencyUnavailable`. The request step that
uses it is :mod:`proxy.idempotency`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Answer",
    "IdempotencyStore",
    "Lease",
    "decode",
    "encode_answer",
    "encode_lease",
]


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim on a key while its first request is in flight; ``owner`` is per request."""

    owner: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Answer:
    """A recorded answer as the first client received it, minus per-answer headers.
    ``body`` is ``None`` when it was over the record cap (only the status is kept)."""

    fingerprint: str
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes | None


class IdempotencyStore(Protocol):
    """Where leases and answers live, each operation atomic per key. ``renew`` and
    ``release`` act only while ``lease`` holds the key; ``record`` also when nothing does
    (a lapsed lease nobody took), never over another request's lease or answer."""

    async def claim(self, key: str, lease: Lease, seconds: float) -> Lease | Answer | None:
        """Take ``key`` for ``seconds`` and return ``None``; or return what holds it."""
        ...

    async def renew(self, key: str, lease: Lease, seconds: float) -> bool: ...

    async def record(self, key: str, lease: Lease, answer: Answer, ttl: float) -> bool: ...

    async def release(self, key: str, lease: Lease) -> None: ...

    async def close(self) -> None: ...


# -- one byte encoding, for Redis values and for the memory backend (a bytes value is
# invisible to the garbage collector, an object graph per answer is not) --


def encode_lease(lease: Lease) -> bytes:
    return b"L" + lease.owner.encode() + b" " + lease.fingerprint.encode()


def encode_answer(answer: Answer) -> bytes:
    headers = json.dumps(
        [[n.decode("latin-1"), v.decode("latin-1")] for n, v in answer.headers],
        separators=(",", ":"),
    ).encode()
    kept = b"B" if answer.body is not None else b"N"
    head = f"{answer.fingerprint} {answer.status:03d} {len(headers):08d} ".encode()
    return b"R" + head + kept + headers + (answer.body or b"")


def decode(value: bytes) -> Lease | Answer:
    if value[:1] == b"L":
        owner, _, fingerprint = value[1:].decode("ascii").partition(" ")
        return Lease(owner, fingerprint)
    fp, status, size, rest = value[1:].split(b" ", 3)
    end = 1 + int(size)
    headers = tuple((n.encode("latin-1"), v.encode("latin-1")) for n, v in json.loads(rest[1:end]))
    body = rest[end:] if rest[:1] == b"B" else None
    return Answer(fp.decode("ascii"), int(status), headers, body)
