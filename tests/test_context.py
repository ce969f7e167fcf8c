"""The per-request object: what a fresh one holds, and a copy with other channels."""

from __future__ import annotations

from typing import Any

from proxy.context import RequestContext


async def _receive() -> dict[str, Any]:
    return {"type": "http.request"}


async def _send(message: Any) -> None:
    return None


def test_a_new_context_carries_its_request_id_header_and_nothing_decided() -> None:
    scope = {"method": "POST", "headers": [(b"host", b"edge")]}
    ctx = RequestContext(scope, _receive, _send, request_id="req-9")
    assert ctx.answer_headers == [(b"x-request-id", b"req-9")]
    assert ctx.method == "POST" and ctx.headers == [(b"host", b"edge")]
    assert (ctx.decision, ctx.principal, ctx.store, ctx.fwd) == (None, None, None, None)
    assert ctx.status == 0 and ctx.started is False


def test_with_io_changes_only_the_channels_and_shares_the_answer_headers() -> None:
    async def other_receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def other_send(message: Any) -> None:
        return None

    ctx = RequestContext({"method": "GET", "headers": []}, _receive, _send, request_id="r")
    ctx.status = 7
    copy = ctx.with_io(other_receive, other_send)
    assert copy is not ctx
    assert copy.receive is other_receive and copy.send is other_send
    assert ctx.receive is _receive and ctx.send is _send
    assert copy.status == 7 and copy.scope is ctx.scope
    copy.answer_headers.append((b"ratelimit-limit", b"1"))
    assert ctx.answer_headers[-1] == (b"ratelimit-limit", b"1")  # one list, one answer
