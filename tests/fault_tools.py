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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.conftest import REPO, env, write_config
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


class ServeProcess:
    """``python -m proxy serve`` with its admin listener, its log in a file."""

    def __init__(self, config: Path, port: int, admin_port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.admin = f"http://127.0.0.1:{admin_port}"
        self.log = config.parent / f"serve-{port}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable, "-m", "proxy", "serve", "--config", str(config),
                    "--port", str(port), "--admin-port", str(admin_port),
                ],
                cwd=REPO,
                env={**os.environ, **env(), "PYTHONPATH": str(REPO)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        if not settle(self._up, timeout=20):
            self.stop()
            raise AssertionError(f"serve did not start: {self.log.read_text()}")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"serve exited: {self.log.read_text()}")
        try:
            httpx.get(self.admin + "/healthz", timeout=1)
            return True
        except httpx.TransportError:
            return False

    def ready(self) -> tuple[int, dict[str, object]]:
        r = httpx.get(self.admin + "/readyz", timeout=5)
        return r.status_code, r.json()

    def check(self, name: str) -> str:
        """One readiness check's verdict (the test config has stores that never pass)."""
        checks = self.ready()[1].get("checks", {})
        return str(checks.get(name, "")) if isinstance(checks, dict) else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def serve_config(
    directory: Path,
    magento: str,
    keystore: str | None = None,
    extra: str = "",
    *,
    panel: str | None = None,
    server: str = "drain_seconds = 0.1\ngrace_seconds = 2",  # tests stop it: no 5 s drain
) -> Path:
    """The tests' usual config (tests.conftest.write_config) for a serve process: text
    logs, readiness probed every 0.2 s, ``keystore`` replacing the SQLite table."""
    path = write_config(directory, magento, panel, extra)
    text = path.read_text()
    if keystore is not None:
        text = text.replace('[keystore]\nbackend = "sqlite"\npath = "edge.db"\n', keystore)
    text = text.replace("[logging]\n", '[logging]\nformat = "text"\n', 1)
    text += "\n[admin]\nprobe_interval_seconds = 0.2\nprobe_timeout_seconds = 1.0\n"
    text = text.replace("[server]\n", f"[server]\n{server}\n", 1)
    path.write_text(text)
    return path
