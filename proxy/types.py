"""Type names shared across the package, each defined once: the ASGI callables and the
literals more than one module speaks (``from .types import Scope, Access``).

Nothing here runs; it imports nothing from the package, so any module may import it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

__all__ = ["Access", "HeaderStyle", "Message", "Receive", "Scope", "Send", "TokenKind"]

# ASGI (the spec's own names): the connection scope, one event, and the two callables.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# What a grant allows on a resource; ``write`` implies ``read``.
Access = Literal["read", "write"]
# A personal access token's kind: its prefix (``soc_pat_live_``, ``soc_pat_test_``).
TokenKind = Literal["live", "test"]
# The rate-limit header family a surface answers with.
HeaderStyle = Literal["ratelimit", "x-rate-limit"]
