"""``[server] workers = N``: N edge processes on one port (SPEC §9).

The supervisor binds the listening socket once and starts N ``magento-edge serve``
processes that inherit it (``--fd``); the kernel spreads connections among them. Why not
uvicorn's own ``workers``: its supervisor answers SIGHUP by restarting every worker, so an
invalid config would take the workers down instead of being refused while the old config
keeps serving, and it needs the application as an import string. Here each worker is the
ordinary single-process edge: SIGHUP and SIGTERM are handed on to every worker, which
reloads (validating first) or drains on its own.

A worker that exits while the others serve ends the lot (the rest are drained, the
supervisor exits 1): the orchestrator restarts a whole edge rather than running on with
fewer processes than configured.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from .lifecycle import write_pid_file

__all__ = ["run_workers"]

log = logging.getLogger("magento_edge.workers")


def _listening(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_workers(
    config_path: str | Path, n: int, host: str, port: int, admin: tuple[str, int]
) -> int:
    """Serve with ``n`` worker processes until they exit; the exit status. The API port and
    the admin listener's (``admin``: host, port) are bound once here and shared: each
    worker answers health, readiness and metrics for itself on the one admin port."""
    sock, admin_sock = _listening(host, port), _listening(*admin)
    fd, admin_fd = sock.fileno(), admin_sock.fileno()
    command = [sys.executable, "-m", "proxy", "serve", "--config", str(config_path)]
    procs = [
        subprocess.Popen(
            [*command, "--fd", str(fd), "--admin-fd", str(admin_fd)],
            pass_fds=(fd, admin_fd),
            close_fds=True,
        )
        for _ in range(n)
    ]
    sock.close()  # the workers hold them now
    admin_sock.close()
    log.info("serving on %s:%d with %d worker processes (pids %s)", host, port, n,
             ", ".join(str(p.pid) for p in procs))  # fmt: skip
    stopping = False

    def hand_on(sig: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if sig != signal.SIGHUP:
            stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(sig)

    previous = {sig: signal.signal(sig, hand_on) for sig in (signal.SIGHUP, signal.SIGTERM,
                                                             signal.SIGINT)}  # fmt: skip
    pid = write_pid_file(config_path)  # `magento-edge reload` signals the supervisor
    try:
        while any(proc.poll() is None for proc in procs):
            if not stopping and any(proc.poll() is not None for proc in procs):
                log.error("a worker exited on its own: stopping the others")
                stopping = True
                for proc in procs:
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGTERM)
            time.sleep(0.1)
    finally:
        pid.unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    codes = [proc.returncode for proc in procs]
    return 0 if all(code == 0 for code in codes) else 1
