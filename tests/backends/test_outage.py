"""The outage log (issue #13 part 4): every failure counted, one line per interval with the
counts, one line on recovery; never a line per request, never silent."""

from __future__ import annotations

import logging

import pytest

from proxy.backends._outage import OutageLog
from proxy.errors import KeyStoreUnavailable
from tests.conftest import FakeClock


def _failure() -> KeyStoreUnavailable:
    try:
        try:
            raise ConnectionError("Error 111 connecting to 10.0.0.7:6379")
        except ConnectionError as cause:
            raise KeyStoreUnavailable("The key store cannot be reached right now.") from cause
    except KeyStoreUnavailable as exc:
        return exc


def test_one_line_per_interval_with_counts_and_one_on_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(0.0)
    outage = OutageLog(logging.getLogger("test.outage"), "key store", interval=10, clock=clock)
    with caplog.at_level(logging.WARNING, "test.outage"):
        for _ in range(5000):  # a burst of failing requests within one interval
            outage.failed(_failure())
            clock.now += 0.001
        clock.now += 10
        outage.failed(_failure())
        outage.succeeded()
        outage.succeeded()  # already up: nothing more
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages
    assert messages[0].startswith("key store unavailable: 1 failures since the last report")
    assert "ConnectionError: Error 111 connecting to 10.0.0.7:6379" in messages[0]  # the cause
    assert "5000 failures since the last report (5001 in all)" in messages[1]
    assert (
        messages[2] == "key store reachable again (5001 failures in all; 0 since the last report)"
    )
    assert outage.count == 5001 and not outage.down
