"""The process's life (SPEC §9): reload on SIGHUP, drain and shut down on SIGTERM.

**Reload.** :class:`Reloadable` is the ASGI application uvicorn serves: it hands each
request to the current :class:`~proxy.edge.Edge`, looked up once when the request arrives,
so a request in flight finishes on the config it started with. :meth:`Reloadable.reload`
reads config and policies again with the same loader as ``serve`` and ``check`` (every
check), builds a new ``Edge`` sharing the long-lived backends (key store, rate limiter,
idempotency store, upstream pool) and swaps it in with one assignment; on any error the
old edge keeps serving, the error is logged and counted in :data:`RELOADS`. Settings that
name those backends or the listener cannot change without a restart: a reload that changes
them is refused, saying which.

**Drain.** On SIGTERM :data:`DRAIN` is set at once (``/readyz`` answers 503 from then on),
the edge keeps serving for ``[server] drain_seconds`` so the load balancer notices, then
uvicorn stops accepting and waits up to ``[server] grace_seconds`` for requests in flight
(a long download completes), the lifespan closes the backends, and the process exits 0.
A second SIGTERM or a SIGINT skips the rest of the drain.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from starlette.middleware import Middleware

from ._toml import ConfigError
from .config import Config, load_config
from .context import Receive, Scope, Send
from .edge import Edge
from .logs import configure_logging

__all__ = [
    "DRAIN",
    "RELOADS",
    "EdgeServer",
    "ReloadStats",
    "Reloadable",
    "draining",
    "pid_file",
    "signal_reload",
]

log = logging.getLogger("magento_edge.lifecycle")

# Set from the moment a drain begins (SIGTERM); the admin listener's /readyz reads it.
# A threading.Event: readable from any thread and any event loop.
DRAIN = threading.Event()


def draining() -> bool:
    return DRAIN.is_set()


@dataclass
class ReloadStats:
    """Reloads in this process (the metrics read these): applied, refused, and why the
    last one was refused."""

    succeeded: int = 0
    failed: int = 0
    last_error: str | None = None


RELOADS = ReloadStats()

# Config fields that the long-lived backends or the listener were built from: a change
# needs a restart (a new process), so a reload that changes one is refused.
RESTART_ONLY = (
    "host", "port", "workers", "max_connections", "keystore_backend", "keystore_path",
    "keystore_url", "keystore_prefix", "ratelimit_backend", "ratelimit_url",
    "idempotency_backend", "idempotency_url", "idempotency_ttl",
    "idempotency_max_body_bytes", "idempotency_max_record_bytes", "allow_per_process_state",
    "max_header_bytes", "max_header_fields", "header_timeout",  # issue #14: the front door
)  # fmt: skip


class Reloadable:
    """The ASGI application: the current edge; :meth:`reload` replaces it."""

    def __init__(
        self, edge: Edge, path: str | Path, *, middleware: tuple[Middleware, ...] = ()
    ) -> None:
        self.edge = edge
        self.path = Path(path)
        self._middleware = middleware
        self._first = edge  # its lifespan starts and closes the shared backends
        self._replaced: list[Edge] = []

    @property
    def config(self) -> Config:
        return self.edge.config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        edge = self.edge  # looked up once: a request in flight stays on it
        if scope["type"] == "http":
            # Without Edge.__call__'s coroutine frame (each frame costs its call, and again
            # on every resume of the request's task: issue #14).
            await edge.http_handler(scope, receive, send)
            return
        if scope["type"] == "lifespan":
            await self._first(scope, receive, send)
            # Shut down: the edges built by reloads hold their own store credentials
            # and issuer key sets; the shared backends were closed by the first one's.
            for replaced in self._replaced:
                await replaced.close_config_resources()
            return
        await edge(scope, receive, send)

    def reload(self) -> bool:
        """Load config and policies again and swap them in; False (and the old config
        keeps serving) on any error, logged and counted."""
        old = self.edge
        try:
            config = load_config(self.path)
            changed = [
                name for name in RESTART_ONLY if getattr(config, name) != getattr(old.config, name)
            ]
            if changed:
                raise ConfigError(
                    [f"{name} changed: it takes effect on a restart only" for name in changed]
                )
            edge = Edge(
                config,
                old.keystore,
                limiter=old.limiter,
                idempotency=old.idempotency,
                upstream=old.upstream,
                clock=old.clock,
                middleware=self._middleware,
            )
        except ConfigError as exc:
            return self._refused("; ".join(exc.problems))
        except Exception as exc:  # any failure keeps the old config serving
            return self._refused(f"{type(exc).__name__}: {exc}")
        # The admin listener's metrics and readiness live as long as the process: the new
        # edge counts into the same registry.
        edge.metrics, edge.readiness = old.metrics, old.readiness
        if edge.metrics is not None:
            edge.metrics.watch_steps_of(edge)
            edge.metrics.reloaded(True)
        self.edge = edge  # one assignment: the swap
        self._replaced.append(edge)
        configure_logging(config.log_format, config.log_level)
        RELOADS.succeeded += 1
        log.info("reloaded %s: config and policies swapped in", self.path)
        return True

    def _refused(self, why: str) -> bool:
        if self.edge.metrics is not None:
            self.edge.metrics.reloaded(False)
        RELOADS.failed += 1
        RELOADS.last_error = why
        log.error("reload of %s refused, the running config keeps serving: %s", self.path, why)
        return False


class EdgeServer(uvicorn.Server):
    """uvicorn's server with the edge's signals: SIGHUP reloads, SIGTERM drains first."""

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        app: Reloadable | None,
        drain_seconds: float,
        admin: uvicorn.Config | None = None,
    ) -> None:
        super().__init__(config)
        self.reloadable = app
        self.drain_seconds = drain_seconds
        self.admin_config = admin  # the admin listener, served beside (proxy.admin_listener)
        self._reload_requested = False
        self._drain_until = 0.0

    async def serve(self, sockets: list[Any] | None = None) -> None:
        hup = None
        if threading.current_thread() is threading.main_thread():
            hup = signal.signal(signal.SIGHUP, self.handle_exit)
        try:
            if self.admin_config is None:
                await super().serve(sockets)
            else:
                from .admin_listener import follower, serve_beside

                await serve_beside(follower(self.admin_config), super().serve(sockets))
        finally:
            if hup is not None:
                signal.signal(signal.SIGHUP, hup)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: only flags here; on_tick (in the event loop) acts on them.
        if sig == signal.SIGHUP:
            self._reload_requested = True
            return
        if sig == signal.SIGTERM and not DRAIN.is_set():
            DRAIN.set()
            if self.reloadable is not None:  # /readyz answers 503 from now on
                self.reloadable.edge.readiness.start_drain()
            log.info(
                "SIGTERM: draining (readiness 503), serving %.1f s more, then waiting up "
                "to %.1f s for requests in flight",
                self.drain_seconds,
                self.config.timeout_graceful_shutdown or 0,
            )
            # Not handed on to uvicorn: it would raise SIGTERM again after the graceful
            # shutdown, and the process would end killed instead of with status 0.
            self._drain_until = time.monotonic() + self.drain_seconds
            return
        DRAIN.set()
        if sig == signal.SIGTERM:  # the second one: skip the rest of the drain
            self.should_exit = True
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._reload_requested:
            self._reload_requested = False
            if self.reloadable is not None:
                self.reloadable.reload()
            else:
                log.warning("SIGHUP: this server has nothing to reload")
        if self._drain_until and time.monotonic() >= self._drain_until:
            self._drain_until = 0.0
            self.should_exit = True
        return await super().on_tick(counter)


# -- `magento-edge reload --config PATH`: the running process, found by its pid file ----


def pid_file(config_path: str | Path) -> Path:
    """Where ``serve`` notes its process id: the temporary directory, named after the
    config file's absolute path (the config's own directory is often mounted read-only)."""
    key = hashlib.sha256(str(Path(config_path).resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"magento-edge-{key}.pid"


def write_pid_file(config_path: str | Path) -> Path:
    path = pid_file(config_path)
    path.write_text(f"{os.getpid()}\n")
    return path


def signal_reload(config_path: str | Path) -> int:
    """Send SIGHUP to the edge serving ``config_path``; its pid. Raises LookupError
    (with a message for the operator) when no running edge serves it."""
    path = pid_file(config_path)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        raise LookupError(
            f"no running edge serves {config_path} (no pid file at {path}); "
            "start it with magento-edge serve --config PATH"
        ) from None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise LookupError(
            f"the edge that served {config_path} (pid {pid}) is not running"
        ) from None
    return pid
