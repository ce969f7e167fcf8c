"""One request's state as it travels the request path: built once when the request
arrives, filled in step by step (surface → decision → principal → store), and handed to
each step whole instead of as a row of loose parameters.

The edge's own answers (Starlette routes) find it in the ASGI scope under
:data:`SCOPE_KEY`, the one key the edge adds to a scope.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .logs import AccessInfo
from .types import Message, Receive, Scope, Send

if TYPE_CHECKING:
    from .auth import Principal
    from .config import Store
    from .decide import Decision
    from .headers import ForwardingContext
    from .policy import Surface

__all__ = ["SCOPE_KEY", "Message", "Receive", "RequestContext", "Scope", "Send"]


SCOPE_KEY = "magento_edge"


class RequestContext:
    """Trust model: everything in it came from the client until a step has checked it
    (``decision`` after routing, ``principal`` after auth, ``store`` after grants)."""

    # Slotted: one is built per request, on the hot path.
    __slots__ = (
        "access", "answer_headers", "decision", "fwd", "principal", "receive",
        "refusal",  # issue #12: metrics (proxy.metrics)
        "request_id", "scope", "send", "started", "status", "store", "surface", "t0",
        "upstream_seconds",  # issue #12
    )  # fmt: skip

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        request_id: str,
        surface: Surface | None = None,
        answer_headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.request_id = request_id
        self.surface = surface
        # Headers every answer from the edge carries from here on (request id, rate limits).
        self.answer_headers = (
            answer_headers
            if answer_headers is not None
            else [(b"x-request-id", request_id.encode())]
        )
        self.decision: Decision | None = None
        self.principal: Principal | None = None
        self.store: Store | None = None
        self.fwd: ForwardingContext | None = None
        self.status = 0  # what was answered, for the access log
        self.started = False  # set where a step tracks it: an error is only rendered before
        self.t0 = time.perf_counter()
        self.refusal: str | None = None  # the EdgeError code the edge answered with
        self.upstream_seconds = 0.0  # time inside the upstream call
        # The access line's facts (proxy.logs); shared with every with_io() view.
        self.access = AccessInfo()

    @property
    def method(self) -> str:
        method: str = self.scope["method"]
        return method

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = self.scope["headers"]
        return headers

    def with_io(self, receive: Receive, send: Send) -> RequestContext:
        """The same request read and answered through other channels (the idempotency
        step's buffered body and recording ``send``)."""
        other = RequestContext.__new__(RequestContext)
        for name in RequestContext.__slots__:
            setattr(other, name, getattr(self, name))
        other.receive = receive
        other.send = send
        return other
