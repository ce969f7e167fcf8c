"""Logs (SPEC §9): ``[logging] format = "json" | "text"`` and ``level`` for every logger in
the process (the edge's and uvicorn's own), and the one access line per request.

The access line's facts are collected on the request's :class:`AccessInfo` (shared by
every view of the request, see :meth:`proxy.context.RequestContext.with_io`) while the
request runs, and written once, in :meth:`proxy.edge.Edge._http`'s ``finally``. Nothing in
it can hold a secret: the token's id, never the token; the route template, never the raw
path (which carries ids); a refusal's stable code; a 5xx's exception class and message
(the edge's own messages and its upstream transport's, which name no credential).

The line is built lazily: the formatter renders it, so a level or a handler that drops it
pays for a dict, not for the rendering.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from .context import RequestContext

__all__ = [
    "AccessInfo",
    "AccessLine",
    "JsonFormatter",
    "TextFormatter",
    "access_line",
    "configure_logging",
    "count_bytes",
    "log_access",
]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# uvicorn's loggers: their records go through the same handler and format as the edge's.
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class AccessInfo:
    """What the access line needs beyond what the request context already holds."""

    __slots__ = ("bytes_in", "bytes_out", "error", "reason", "t_upstream", "upstream_ms")

    def __init__(self) -> None:
        self.bytes_in = 0
        self.bytes_out = 0
        self.t_upstream = 0.0  # perf_counter when the upstream call began; 0: none made
        self.upstream_ms: float | None = None  # until the upstream's response head
        self.reason: str | None = None  # a refusal's code (EdgeError.code)
        self.error: str | None = None  # a 5xx's cause, one line


class AccessLine(dict[str, Any]):
    """The access line's fields; as text (``str``) ``key=value`` pairs after the request
    id, method, route and status, for a person reading a terminal."""

    def __str__(self) -> str:
        head = (
            f"{self['request_id']} {self['client']} {self['method']} "
            f"{self['route'] or '-'} {self['status']}"
        )
        tail = " ".join(
            f"{key}={_text(value)}"
            for key, value in self.items()
            if key not in _HEAD and value is not None
        )
        return f"{head} {tail}"


_HEAD = frozenset(("request_id", "client", "method", "route", "status"))


def _text(value: object) -> str:
    text = str(value)
    return orjson.dumps(text).decode() if (" " in text or not text) else text


def route_template(ctx: RequestContext) -> str | None:
    """The matched route as written in the policy (``/V1/orders/{id}``), never the path."""
    decision = ctx.decision
    if decision is None:
        return None
    base = decision.surface.base_path.rstrip("/")
    if decision.endpoint is not None:
        return base + decision.endpoint.pattern.text
    if decision.mount is None:
        return None
    mount = decision.mount.pattern.text.rstrip("/")
    if decision.route is not None:
        return base + mount + decision.route.pattern.text
    return base + mount + "/…"


def access_line(ctx: RequestContext) -> AccessLine:
    info = ctx.access
    now = time.perf_counter()
    total = (now - ctx.t0) * 1000
    upstream_ms = info.upstream_ms
    if info.t_upstream and upstream_ms is None:  # the upstream failed before its head
        upstream_ms = (now - info.t_upstream) * 1000
    # The edge's own time: before the upstream call, or all of it when none was made.
    edge_ms = (info.t_upstream - ctx.t0) * 1000 if info.t_upstream else total
    client = ctx.fwd.client if ctx.fwd is not None else _peer(ctx.scope.get("client"))
    principal = ctx.principal
    return AccessLine(
        request_id=ctx.request_id,
        client=client,
        method=ctx.scope.get("method", "-"),
        route=route_template(ctx),
        status=ctx.status,
        surface=ctx.surface.name if ctx.surface is not None else None,
        store=ctx.store.id if ctx.store is not None else None,
        token_id=principal.token_id if principal is not None else None,
        bytes_in=info.bytes_in,
        bytes_out=info.bytes_out,
        ms=round(total, 2),
        edge_ms=round(edge_ms, 2),
        upstream_ms=round(upstream_ms, 2) if upstream_ms is not None else None,
        reason=info.reason,
        error=info.error,
    )


def log_access(logger: logging.Logger, ctx: RequestContext) -> None:
    """Emit the request's access line on ``logger`` (``magento_edge.access``).

    The record goes through ``logging`` (an operator's own handlers and filters see it), but
    not through ``Logger.info``: that walks the stack for the caller's file and line
    (``findCaller``, ~5 µs a request here), which an access line never shows."""
    if logger.isEnabledFor(logging.INFO):
        record = logger.makeRecord(
            logger.name,
            logging.INFO,
            "proxy/edge.py",
            0,
            access_line(ctx),
            (),
            None,
            extra={"request_id": ctx.request_id},
        )
        logger.handle(record)


def _peer(client: Any) -> str:
    return str(client[0]) if client else "-"


def count_bytes(ctx: RequestContext) -> None:
    """Route the request's ``receive`` and ``send`` through counters (body bytes in and
    out) and note when the upstream's answer starts; only when the access log is on."""
    info = ctx.access
    receive, send = ctx.receive, ctx.send

    async def counting_receive() -> Any:
        message = await receive()
        if message["type"] == "http.request":
            info.bytes_in += len(message.get("body", b""))
        return message

    async def counting_send(message: Any) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            info.bytes_out += len(message.get("body", b""))
        elif kind == "http.response.start" and info.t_upstream and info.upstream_ms is None:
            info.upstream_ms = (time.perf_counter() - info.t_upstream) * 1000
        await send(message)

    ctx.receive, ctx.send = counting_receive, counting_send


class JsonFormatter(logging.Formatter):
    """One JSON object per line (orjson): time, level, logger, message; an access line's
    fields at the top level; an exception's traceback in ``exc`` (still one line)."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""  # the formatted whole second of ``_second``: one strftime a second

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        out: dict[str, Any] = {
            "time": f"{self._stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,  # several workers write to one stream
        }
        if isinstance(record.msg, AccessLine):
            out["message"] = "access"
            out.update(record.msg)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)


def configure_logging(fmt: str, level: str) -> logging.Handler:
    """Send every logger's records (the edge's and uvicorn's) to one stderr handler in
    ``fmt`` at ``level``; returns the handler. Idempotent: a reload or a second call
    replaces the handler this function installed, not an operator's own."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler._magento_edge = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_magento_edge", False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _UVICORN:
        logger = logging.getLogger(name)
        logger.handlers.clear()  # uvicorn's own dictConfig handlers: same format as ours
        logger.propagate = True
        logger.setLevel(level.upper())
    return handler
