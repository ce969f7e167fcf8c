"""Step 6b of the request path: Magento's own JSON error answers in the surface's envelope.

On a surface with ``error_style = "envelope"`` everything the caller reads is
``{"error": {"code", "message", "details", "request_id"}}`` — the edge's own errors
(:func:`proxy.errors.render`) and Magento's. A Magento error answer (4xx/5xx,
``application/json``, not content-encoded, at most 64 KiB) becomes:

    code        from the status (404 → RESOURCE_NOT_FOUND, 400 → BAD_REQUEST, ...)
    message     Magento's ``message`` with its ``%name`` / ``%1`` placeholders filled from
                ``parameters`` (Magento leaves them unsubstituted: contract §2.3)
    details     ``magento``: the original body's fields; ``errors``: an aggregate
                exception's messages, filled the same way

Anything larger, not JSON, encoded, or not shaped like a Magento error passes through
untouched (and a large one still streams). Only envelope surfaces build a
:class:`MagentoErrors`, so the problem+json surface's answer path pays nothing for it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from .errors import envelope_code_for_status

if TYPE_CHECKING:
    from .policy import Mount, Surface

__all__ = ["MAX_BYTES", "MagentoErrors", "fill", "magento_errors"]

MAX_BYTES = 64 * 1024


def magento_errors(surface: Surface, mount: Mount, request_id: str) -> MagentoErrors | None:
    """The rewriter for one request's answer, or None where answers pass verbatim."""
    if surface.error_style != "envelope" or mount.upstream != "magento":
        return None
    return MagentoErrors(request_id)


class MagentoErrors:
    """Rewrites one request's Magento error answer. Trust model: the body is Magento's
    (ours), but parsed defensively: anything unexpected passes through unchanged."""

    __slots__ = ("request_id",)

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id

    def wants(
        self, status: int, headers: Sequence[tuple[bytes, bytes]], length: int | None
    ) -> bool:
        """Whether the answer may be a rewritable error (the body decides the rest)."""
        if status < 400 or (length is not None and length > MAX_BYTES):
            return False
        json = False
        for name, value in headers:
            if name == b"content-type":
                media = value.split(b";", 1)[0].strip().lower()
                json = media == b"application/json"
            elif name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
                return False
        return json

    def rewrite(self, status: int, body: bytes) -> bytes | None:
        """The envelope for ``body``, or None when it is not a Magento error."""
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(doc, dict):
            return None
        message = doc.get("message")
        if not isinstance(message, str):
            # ErrorProcessor's fatal-error shape: {"messages": {"error": [{code, message}]}}
            messages = doc.get("messages")
            first = _first(messages.get("error") if isinstance(messages, dict) else None)
            if first is None:
                return None
            message = first
        details: dict[str, Any] = {"magento": doc}
        errors = doc.get("errors")
        if isinstance(errors, list):
            details["errors"] = [
                {"message": fill(e["message"], e.get("parameters"))}
                for e in errors
                if isinstance(e, dict) and isinstance(e.get("message"), str)
            ]
        envelope = {
            "error": {
                "code": envelope_code_for_status(status),
                "message": fill(message, doc.get("parameters")),
                "details": details,
                "request_id": self.request_id,
            }
        }
        return orjson.dumps(envelope)


def fill(template: str, parameters: object) -> str:
    """``template`` with Magento's placeholders filled as its Phrase renderer does: named
    ``%name`` from an object, positional ``%1``, ``%2`` from a list (PHP ``strtr``: the
    longest placeholder wins at each place, and filled text is never filled again)."""
    if isinstance(parameters, dict):
        pairs = {"%" + _placeholder(str(k)): _text(v) for k, v in parameters.items()}
    elif isinstance(parameters, list):
        pairs = {f"%{i}": _text(v) for i, v in enumerate(parameters, 1)}
    else:
        return template
    if not pairs or "%" not in template:
        return template
    pattern = re.compile("|".join(re.escape(p) for p in sorted(pairs, key=len, reverse=True)))
    return pattern.sub(lambda m: pairs[m.group(0)], template)


def _placeholder(key: str) -> str:
    # PHP turns a numeric array key into an int, and the renderer numbers those from 1.
    return str(int(key) + 1) if key.isdigit() else key


def _text(value: object) -> str:
    """A parameter as PHP would print it into the message."""
    if isinstance(value, str):
        return value
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def _first(errors: object) -> str | None:
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        message = errors[0].get("message")
        return message if isinstance(message, str) else None
    return None
