"""CPU and memory accounting of the measured process (and its descendants).

CPU: user + system seconds from ``psutil`` read before and after a load run; the
difference divided by the requests wrk completed is the CPU microseconds one request costs
the proxy. Only the proxy's own process tree is counted: the upstream, Redis and wrk run in
other processes, on the other core.

Memory: a background thread samples RSS every ~50 ms; the figure reported is the peak
growth over the idle RSS taken just before the transfer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import psutil


def cpu_seconds(pids: Iterable[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def rss_bytes(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


class RssSampler:
    """Sample the RSS of ``pids`` every ``interval`` seconds until stopped (bounded)."""

    def __init__(self, pids: list[int], interval: float = 0.05, max_seconds: float = 900) -> None:
        self.pids = pids
        self.interval = interval
        self.max_seconds = max_seconds
        self.idle = rss_bytes(pids)
        self.peak = self.idle
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            rss = rss_bytes(self.pids)
            self.samples += 1
            self.peak = max(self.peak, rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.idle) / 1e6
