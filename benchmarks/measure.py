"""CPU and memory accounting of the measured process (and its descendants).

CPU: user + system seconds from ``psutil`` read before and after a load run; the
difference divided by the requests wrk completed is the CPU microseconds one request costs
the proxy. Only the proxy's own process tree is counted: the upstream, Redis and wrk run in
other processes, on the other core.

Memory: a background thread samples RSS every ~50 ms; the figure reported is the peak
growth over the idle RSS taken just before the transfer.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable, Iterable

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


# --- background load ----------------------------------------------------------------------
# Other work on the machine (a test run, a build) steals CPU from the measured proxy. We
# measure it: machine-wide busy time (user + nice + system + steal) minus the CPU of every
# process we started, of wrk (reaped children) and of this process, as a share of the
# whole machine. A point run while it is above the limit is repeated (within a budget).


def _machine_busy() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "steal", 0.0)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Background:
    """Foreign CPU share of the machine over a window; ``own`` lists our PIDs."""

    def __init__(self, own: Callable[[], list[int]]) -> None:
        self.own = own
        self.ncpu = psutil.cpu_count() or 1

    def _snap(self) -> tuple[float, float, float, float]:
        pids = [*self.own(), os.getpid()]
        return time.monotonic(), _machine_busy(), cpu_seconds(pids), _children_cpu()

    def start(self) -> None:
        self._t0 = self._snap()

    def share(self) -> float:
        t1 = self._snap()
        t0 = self._t0
        elapsed = max(1e-6, t1[0] - t0[0])
        foreign = (t1[1] - t0[1]) - (t1[2] - t0[2]) - (t1[3] - t0[3])
        return max(0.0, foreign / (self.ncpu * elapsed))

    def wait_quiet(self, limit: float, max_wait: float, window: float = 0.5) -> tuple[float, float]:
        """Wait (bounded) until a window's foreign share is under ``limit``.
        Returns (last share, seconds waited)."""
        waited = 0.0
        while True:
            self.start()
            time.sleep(window)
            share = self.share()
            if share < limit or waited >= max_wait:
                return share, waited
            waited += window
