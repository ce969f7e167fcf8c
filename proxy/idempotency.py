"""Step 5 of the request path: ``Idempotency-Key`` makes a write safe to retry.

For a caller's POST/PATCH (and PUT/DELETE) carrying a key, the first completed answer is
recorded and every retry with the same key and the same request replays it, so the
upstream runs the request once (draft-ietf-httpapi-idempotency-key-header-06, with
Stripe's ``Idempotent-Replayed: true``):

    key bad (not 1..255 visible ASCII, bare or quoted)      400
    body over ``max_body_bytes``                            413, key untouched
    key unknown                 claim it, forward, record 2xx-4xx / release on 5xx or failure
    key recorded, same request  replay with ``Idempotent-Replayed: true``
    key recorded or in flight, different request            422
    key in flight, same request                             409 + ``Retry-After: 1``
    key recorded, answer was over ``max_record_bytes``      409 ``idempotency_answer_not_recorded``

"The same request" is the fingerprint: SHA-256 over method, store, raw path and query, and
the body's SHA-256 (the body is hashed while it is read; a keyed body is buffered, which is
why it is capped). A claim is a lease that expires (longest upstream timeouts + a margin)
and is renewed while the answer streams, so a process that dies mid-request frees the key.

An answer the backend cannot take when it completes (Redis down) is kept in this process
(:mod:`proxy.backends.idempotency.unsaved`, bounded) and saved again every 0.2 s until
the backend takes it or its TTL ends; meanwhile a retry reaching this process is replayed
from that copy, so a completed write never runs twice unless this process dies first.

Backends implement :class:`IdempotencyStore` (:mod:`proxy.backends.idempotency`): ``memory``
(per process) and ``redis`` (shared by replicas, survives restarts), chosen by
``[idempotency] backend``.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from .backends._outage import OutageLog
from .backends.idempotency import Answer, IdempotencyStore, Lease, open_idempotency_store
from .backends.idempotency.unsaved import (
    DEFAULT_MAX_UNSAVED_BYTES,
    RETRY_SECONDS,
    UnsavedAnswers,
)
from .body import BodyReplay, read_body
from .errors import (
    AnswerNotRecorded,
    BadRequest,
    Conflict,
    IdempotencyUnavailable,
    PayloadTooLarge,
    UnprocessableContent,
)
from .types import Message, Receive, Send

if TYPE_CHECKING:
    from .auth import Principal
    from .config import Config, Store
    from .context import RequestContext

__all__ = [
    "KEYED_METHODS",
    "Answer",
    "AnswerNotRecorded",
    "Idempotency",
    "IdempotencyStore",
    "IdempotencyUnavailable",
    "Lease",
    "caller_of",
    "forward_idempotently",
    "open_idempotency",
    "parse_idempotency_key",
    "request_target",
]

log = logging.getLogger("magento_edge.idempotency")

# A claim's owner: unique among every process sharing the store (a random per-process
# prefix and a counter), without a getrandom() system call per keyed request (~4 % of a
# keyed POST's CPU under load); the owner is never shown to a client.
_OWNER = secrets.token_hex(8) + "-%x"
_OWNERS = itertools.count(1)

KEYED_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
MAX_KEY_LENGTH = 255
DEFAULT_MAX_BYTES = 1024 * 1024
LEASE_MARGIN = 2.0  # seconds on top of the longest pool + connect + read timeout
REPLAYED = (b"idempotent-replayed", b"true")
# Fresh on every answer, so never recorded (the edge adds its own on a replay).
_FRESH = frozenset(
    {
        b"x-request-id", b"ratelimit-limit", b"ratelimit-remaining", b"ratelimit-reset",
        b"ratelimit", b"ratelimit-policy", b"x-rate-limit-limit", b"x-rate-limit-remaining",
        b"x-rate-limit-reset", b"idempotent-replayed",
    }
)  # fmt: skip
_BAD_KEY = (
    "Idempotency-Key must be 1 to 255 visible ASCII characters, sent bare "
    '(Idempotency-Key: 8e03978e-40d5) or as a quoted string (Idempotency-Key: "8e03978e-40d5").'
)


class Idempotency:
    """A store and the limits it is used with, one per edge; counters for metrics.
    Trust model: a recorded answer is only ever replayed to the caller that caused it."""

    def __init__(
        self,
        store: IdempotencyStore,
        *,
        ttl: float = 86400.0,
        lease: float = 30.0 + LEASE_MARGIN,
        max_body_bytes: int = DEFAULT_MAX_BYTES,
        max_record_bytes: int = DEFAULT_MAX_BYTES,
        max_unsaved_bytes: int = DEFAULT_MAX_UNSAVED_BYTES,
        retry_seconds: float = RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.lease = lease
        self.max_body_bytes = max_body_bytes
        self.max_record_bytes = max_record_bytes
        self.clock = clock
        self.unsaved = UnsavedAnswers(
            store, max_bytes=max_unsaved_bytes, retry_seconds=retry_seconds, clock=clock
        )
        self.outage = OutageLog(log, "idempotency backend")
        self.replays = 0
        self.conflicts = 0
        self.mismatches = 0

    @property
    def backend_errors(self) -> int:
        return self.outage.count

    async def close(self) -> None:
        await self.unsaved.close()
        await self.store.close()


def open_idempotency(config: Config) -> Idempotency:
    """The configured backend (``[idempotency] backend``) and its limits."""
    return Idempotency(
        open_idempotency_store(config.idempotency_backend, config.idempotency_url),
        ttl=float(config.idempotency_ttl),
        lease=lease_for(config),
        max_body_bytes=config.idempotency_max_body_bytes,
        max_record_bytes=config.idempotency_max_record_bytes,
    )


def lease_for(config: Config) -> float:
    """Seconds a claim lasts without renewal: the longest a forward can go without a
    message (pool wait + connect + the upstream taking the body, which is already read whole
    when the key is claimed + one read), plus a margin. It is renewed on each answer message
    after a third of it has passed, so only a dead process lets it lapse."""
    timeouts = [s.timeouts for s in config.stores.values()]
    timeouts += [u.timeouts for u in config.upstreams.values()]
    longest = max((t.pool + t.connect + t.write + t.read for t in timeouts), default=67.0)
    return longest + LEASE_MARGIN


# -- the request ----------------------------------------------------------------------


def parse_idempotency_key(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The client's key, ``None`` without one; :class:`BadRequest` for a bad one.

    An RFC 8941 string (``"..."``, the draft's form; ``\\"`` and ``\\\\`` escapes) and a
    bare value (Stripe's form) are the same key. Parameters, several header lines,
    empty, longer than 255 or anything outside visible ASCII (0x21-0x7E) are refused.
    """
    found: bytes | None = None
    for name, value in headers:
        if name == b"idempotency-key":
            if found is not None:
                raise BadRequest("Send one Idempotency-Key header, not several.")
            found = value
    if found is None:
        return None
    key = _key_from(found.strip(b" \t"))
    if key is None:
        raise BadRequest(_BAD_KEY)
    return key


def _key_from(raw: bytes) -> str | None:
    if raw[:1] == b'"':
        if len(raw) < 2 or raw[-1:] != b'"':
            return None
        out = bytearray()
        inner = raw[1:-1]
        i = 0
        while i < len(inner):
            c = inner[i]
            if c == 0x5C:  # backslash: escapes only '"' and '\'
                if i + 1 == len(inner) or inner[i + 1] not in (0x22, 0x5C):
                    return None
                out.append(inner[i + 1])
                i += 2
                continue
            if c == 0x22:  # an unescaped quote ends the string early: parameters follow
                return None
            out.append(c)
            i += 1
        raw = bytes(out)
    elif b'"' in raw:
        return None
    if not 0 < len(raw) <= MAX_KEY_LENGTH or not all(0x21 <= b <= 0x7E for b in raw):
        return None
    return raw.decode("ascii")


def caller_of(principal: Principal) -> str:
    """Whose keys these are: the token's account (every token of it shares keys, as
    Stripe scopes keys to the account), a JWT's partner application (its access tokens
    are short-lived: a retry may carry the next one), else the token itself."""
    if principal.client_id is not None:
        return f"client:{principal.client_id}"
    account = principal.record.account_id if principal.record else None
    return f"acct:{account}" if account else f"tok:{principal.token_id}"


def request_target(scope: MutableMapping[str, Any], store: Store | None) -> str:
    """What besides method and body makes two requests "the same": the store and the
    path and query exactly as the client sent them."""
    raw = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    return f"{store.id if store else ''} {raw.decode('latin-1')}?{query.decode('latin-1')}"


def store_key(caller: str, key: str) -> str:
    """One fixed-length name per (caller, key): callers never share a key."""
    return hashlib.sha256(f"{len(caller)}:{caller}:{key}".encode()).hexdigest()


async def forward_idempotently(
    idem: Idempotency,
    ctx: RequestContext,
    *,
    caller: str,
    key: str,
    target: str,
    forward: Callable[[Receive, Send], Awaitable[int]],
) -> int:
    """Forward a keyed request at most once per (caller, key); returns the status sent.

    ``caller`` and ``key`` name the record (:func:`caller_of`), ``ctx``'s method, ``target``
    (:func:`request_target`) and body make its fingerprint. ``forward(receive, send)`` is
    the plain forward: it gets the buffered body and a ``send`` that passes every message
    through while recording the answer. ``ctx.answer_headers`` (request id, rate limits)
    are fresh on every answer: never recorded, and added to a replay.
    """
    try:
        body = await read_body(ctx.receive, ctx.headers, cap=idem.max_body_bytes)
    except PayloadTooLarge:
        raise PayloadTooLarge(
            f"A request with an Idempotency-Key may carry at most {idem.max_body_bytes} "
            "bytes; send larger bodies without a key."
        ) from None
    digest = hashlib.sha256(body).digest()
    fp = hashlib.sha256(f"{ctx.method} {len(target)} {target} ".encode() + digest).hexdigest()
    name = store_key(caller, key)
    lease = Lease(_OWNER % next(_OWNERS), fp)
    # An answer the backend has not taken yet (it was down) is still this key's answer.
    found = idem.unsaved.get(name) if idem.unsaved else None
    if found is None:
        found = await _call(idem, idem.store.claim(name, lease, idem.lease))
    if found is not None:
        return await _answer_existing(idem, found, fp, ctx.send, ctx.answer_headers)

    capture = _Capture(idem, name, lease, ctx.send, ctx.answer_headers)
    try:
        status = await forward(BodyReplay(body, ctx.receive), capture.send)
    except BaseException:
        # Edge errors (502/503/504), a client or upstream gone mid-way, cancellation:
        # nothing trustworthy to replay, so the retry goes through.
        await _quietly(idem, idem.store.release(name, lease))
        raise
    answer = capture.answer(fp)
    if answer is None or answer.status >= 500:
        await _quietly(idem, idem.store.release(name, lease))
        return status
    try:
        recorded = await idem.store.record(name, lease, answer, idem.ttl)
    except IdempotencyUnavailable as exc:
        # The write ran: never let its key run it again. Kept here and saved later.
        idem.outage.failed(exc)
        idem.unsaved.keep(name, lease, answer, idem.ttl)
        return status
    idem.outage.succeeded()
    if not recorded:
        log.warning("idempotency key lease lapsed before its answer was recorded")
    return status


async def _answer_existing(
    idem: Idempotency,
    found: Lease | Answer,
    fp: str,
    send: Send,
    answer_headers: Sequence[tuple[bytes, bytes]],
) -> int:
    if found.fingerprint != fp:
        idem.mismatches += 1
        raise UnprocessableContent(
            "This Idempotency-Key was already used with a different request (method, path, "
            "query or body); use a new key for a new request."
        )
    if isinstance(found, Lease):
        idem.conflicts += 1
        raise Conflict(
            "A request with this Idempotency-Key is still in flight; retry shortly.",
            headers={"Retry-After": "1"},
        )
    if found.body is None:
        idem.conflicts += 1
        raise AnswerNotRecorded(
            f"The request with this Idempotency-Key completed with status {found.status}, "
            "but its answer was too large to record; it is not run again. Use a new key "
            "to run it again.",
            extra={"original_status": found.status},
        )
    idem.replays += 1
    fresh = {n for n, _ in answer_headers}
    out = [(n, v) for n, v in found.headers if n not in fresh]
    out.extend(answer_headers)
    out.append(REPLAYED)
    await send({"type": "http.response.start", "status": found.status, "headers": out})
    await send({"type": "http.response.body", "body": found.body, "more_body": False})
    return found.status


class _Capture:
    """The ``send`` the forward writes to: everything passes through to the client; the
    answer is kept up to the record cap; the lease is renewed while it streams."""

    __slots__ = (
        "_fresh", "_idem", "_lease", "_name", "_renew_at", "_send", "body", "done", "headers",
        "size", "status",
    )  # fmt: skip

    def __init__(
        self,
        idem: Idempotency,
        name: str,
        lease: Lease,
        send: Send,
        answer_headers: Sequence[tuple[bytes, bytes]],
    ) -> None:
        self._idem = idem
        self._name = name
        self._lease = lease
        self._send = send
        self._fresh = _FRESH.union(n for n, _ in answer_headers)
        self._renew_at = idem.clock() + idem.lease / 3
        self.status = 0
        self.headers: tuple[tuple[bytes, bytes], ...] = ()
        self.body: list[bytes] | None = []
        self.size = 0
        self.done = False

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            self.headers = tuple((n, v) for n, v in message["headers"] if n not in self._fresh)
        elif kind == "http.response.body":
            chunk = message.get("body", b"")
            if chunk and self.body is not None:
                self.size += len(chunk)
                if self.size > self._idem.max_record_bytes:
                    self.body = None  # over the cap: keep the status only
                else:
                    self.body.append(chunk)
            if not message.get("more_body", False):
                self.done = True
        idem = self._idem
        if idem.clock() >= self._renew_at:
            self._renew_at = idem.clock() + idem.lease / 3
            await _quietly(idem, idem.store.renew(self._name, self._lease, idem.lease))
        await self._send(message)

    def answer(self, fp: str) -> Answer | None:
        """The complete answer, or ``None`` if it never completed."""
        if not self.done or not self.status:
            return None
        body = b"".join(self.body) if self.body is not None else None
        return Answer(fp, self.status, self.headers, body)


async def _call(idem: Idempotency, op: Awaitable[Any]) -> Any:
    try:
        found = await op
    except IdempotencyUnavailable as exc:
        idem.outage.failed(exc)  # counted; logged once per interval, not per request
        raise
    idem.outage.succeeded()
    return found


async def _quietly(idem: Idempotency, op: Awaitable[Any]) -> Any:
    """Once the answer is under way a backend failure cannot be told to the client:
    count and log it (the lease then lapses on its own)."""
    try:
        return await op
    except IdempotencyUnavailable as exc:
        idem.outage.failed(exc)
        return False
