"""Tools for the fault-injection tests (``tests/test_faults_*.py``): a redis-server that a
test kills by its PID and restarts on the same port and data directory, the check that no
client-facing body names an internal address, and counts of open files and tasks."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

import psutil

from tests.servers import free_port

# An IPv4 address, "localhost", an IPv6 literal, a host:port (a name's last character
# before the colon: JSON's '"status":503' does not match) or a Redis/socket URL: none may
# reach a client.
ADDRESS = re.compile(
    rb"\b\d{1,3}(?:\.\d{1,3}){3}\b|localhost|\[[0-9a-f:]+\]|[a-z0-9\]]:\d{2,5}\b|redis://|unix:",
    re.I,
)


def names_no_address(body: bytes) -> bool:
    return ADDRESS.search(body) is None


class KillableRedis:
    """A real redis-server on a loopback port, with AOF (``appendfsync always``) so what
    it acknowledged survives a SIGKILL, as README 'Guarantees under faults' asks."""

    def __init__(self, port: int | None = None, *, persistent: bool = True) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run scripts/setup.sh test")
        self.binary = binary
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="edge-fault-redis-")
        self.persistent = persistent
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> KillableRedis:
        aof = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else []
        self.proc = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--dir", self.dir, "--protected-mode", "yes", *aof,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)  # a real process binding its port: poll, bounded above

    def kill(self) -> None:
        """SIGKILL by PID: no shutdown save, connections cut as a crash cuts them."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def open_fds(pid: int | None = None) -> int:
    return int(psutil.Process(pid or os.getpid()).num_fds())


def tasks_on(loop: asyncio.AbstractEventLoop) -> int:
    """Tasks alive on another thread's loop (the in-process edge's server)."""

    async def count() -> int:
        return len(asyncio.all_tasks())

    return asyncio.run_coroutine_threadsafe(count(), loop).result(timeout=5)


def settle(predicate: Any, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds (bounded): effects in another thread or process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())
