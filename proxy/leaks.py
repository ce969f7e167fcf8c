"""An answer the edge gives itself: leaked-token reports in the format of GitHub's secret
scanning partner program (``[[endpoints]] handler = "leaked_tokens"``).

GitHub POSTs a JSON array of ``{token, type, url, source}`` signed with ECDSA P-256 SHA-256
over the raw body: the signature (base64 DER) in ``Github-Public-Key-Signature``, the key's
id in ``Github-Public-Key-Identifier``. The keys come from config (``[secret_scanning]``),
never from the request. A report is read up to 1 MiB (413 above), verified before it is
parsed (unsigned 400, unknown key or bad signature 403), and every token in it that this
edge issued is revoked with a reason that says so. The answer is GitHub's feedback format:
``[{token_hash, token_type, label}]`` with ``label`` ``true_positive`` (ours, now revoked)
or ``false_positive`` (not ours); the token itself is never echoed.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from .backends.keystore.cached import CachedKeyStore
from .body import read_body
from .errors import BadRequest, Forbidden, NotFound, PayloadTooLarge
from .tokens import hash_token, parse_token
from .types import Receive

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

__all__ = ["MAX_REPORT_BYTES", "handle_report"]

log = logging.getLogger("magento_edge.leaks")

MAX_REPORT_BYTES = 1 << 20
_REASON_LEN = 300


async def handle_report(
    keys: Mapping[str, EllipticCurvePublicKey],
    keystore: CachedKeyStore,
    headers: Sequence[tuple[bytes, bytes]],
    receive: Receive,
) -> bytes:
    """Verify one report, revoke what it names, and return the JSON answer."""
    if not keys:
        raise NotFound("Leaked-token reports are not configured on this edge.")
    key_id = _header(headers, b"github-public-key-identifier")
    signature = _header(headers, b"github-public-key-signature")
    if not key_id or not signature:
        raise BadRequest(
            "A leaked-token report must be signed: send Github-Public-Key-Identifier "
            "and Github-Public-Key-Signature."
        )
    body = await read_body(
        receive,
        headers,
        cap=MAX_REPORT_BYTES,
        too_large=PayloadTooLarge(
            f"A leaked-token report may be at most {MAX_REPORT_BYTES} bytes."
        ),
    )
    key = keys.get(key_id.decode("latin-1"))
    if key is None:
        raise Forbidden("The report is signed with a key this edge does not know.")
    if not _verify(key, signature, body):
        raise Forbidden("The report's signature does not verify.")
    items = _parse(body)
    answer: list[dict[str, str]] = []
    for item in items:
        token: str = item["token"]
        raw_type = item.get("type")
        token_type = raw_type if isinstance(raw_type, str) else ""
        label = "false_positive"
        parsed = parse_token(token)
        if parsed is not None:
            record = await keystore.store.lookup(parsed.hash)  # the truth, not the cache
            if record is not None:
                await keystore.store.revoke(record.id, reason=_reason(item))
                keystore.forget(parsed.hash)
                log.warning("token %s revoked: reported leaked (%s)", record.id, _reason(item))
                label = "true_positive"
        answer.append({"token_hash": hash_token(token), "token_type": token_type, "label": label})
    return orjson.dumps(answer)


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value.strip()
    return None


def _verify(key: EllipticCurvePublicKey, signature: bytes, body: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        der = base64.b64decode(signature, validate=True)
        key.verify(der, body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, InvalidSignature, ValueError):
        return False
    return True


def _parse(body: bytes) -> list[dict[str, Any]]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("The report is not JSON.") from None
    if not isinstance(doc, list) or not all(
        isinstance(item, dict) and isinstance(item.get("token"), str) for item in doc
    ):
        raise BadRequest('The report must be a JSON array of objects with a string "token".')
    return doc


def _reason(item: Mapping[str, Any]) -> str:
    def clean(value: object) -> str:
        text = value if isinstance(value, str) else ""
        return "".join(c for c in text if c.isascii() and c.isprintable())

    where = ", ".join(
        part
        for part in (f"source {clean(item.get('source'))}", clean(item.get("url")))
        if part.strip() and part != "source "
    )
    return f"leaked: reported by GitHub secret scanning ({where or 'no location given'})"[
        :_REASON_LEN
    ]
