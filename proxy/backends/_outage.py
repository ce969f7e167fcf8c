"""One way to log a backend outage: counted on every failure, logged at most once per
interval with the counts, and once more when the backend answers again. Never one line
per request (a 5,000-request outage is a handful of lines, not 5,000), never silent.

The log names the cause (its class and message: an address or a file there is for the
operator); a client never sees it (the backends' client-facing details are fixed text).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["OutageLog"]


class OutageLog:
    """Failures of one backend (``what``, e.g. ``"key store"``) and when they were logged."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._what = what
        self._interval = interval
        self._clock = clock
        self.count = 0  # failures in all, for metrics
        self._unlogged = 0  # failures since the last line
        self._last: float | None = None  # when the last line was written
        self.down = False

    def failed(self, exc: BaseException | None) -> None:
        self.count += 1
        self._unlogged += 1
        self.down = True
        now = self._clock()
        if self._last is None or now - self._last >= self._interval:
            cause = exc.__cause__ if exc is not None and exc.__cause__ is not None else exc
            why = f"{type(cause).__name__}: {cause}" if cause is not None else "unknown"
            self._log.error(
                "%s unavailable: %d failures since the last report (%d in all): %s",
                self._what, self._unlogged, self.count, why,
            )  # fmt: skip
            self._last = now
            self._unlogged = 0

    def succeeded(self) -> None:
        if self.down:
            self.down = False
            self._log.warning(
                "%s reachable again (%d failures in all; %d since the last report)",
                self._what, self.count, self._unlogged,
            )  # fmt: skip
            self._unlogged = 0
            self._last = None
