"""Running the edge: build the app from a config file and serve it with uvicorn.

uvicorn trusts ``X-Forwarded-For`` from 127.0.0.1 by default; the edge turns that off
(``proxy_headers=False``) and decides itself, from ``server.trusted_proxies`` only.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn
from starlette.middleware import Middleware

from ._toml import ConfigError
from .admin_listener import admin_app
from .backends.keystore import open_keystore
from .config import Config, load_config, per_process_state_problem, unresolved_hosts
from .edge import Edge
from .frontdoor import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HEADER_FIELDS,
    front_door,
)
from .lifecycle import EdgeServer, Reloadable, write_pid_file
from .logs import configure_logging
from .workers import run_workers

__all__ = ["build_app", "serve", "uvicorn_config"]

log = logging.getLogger("magento_edge")


def build_app(config: Config, *, middleware: Sequence[Middleware] = ()) -> Edge:
    """The edge for ``config``, its backends opened from it; ``middleware``: an operator's
    own (Starlette ``Middleware`` entries, outermost first), around every request."""
    return Edge.from_config(config, open_keystore(config), middleware=middleware)


def uvicorn_config(
    app: Any,
    host: str,
    port: int,
    *,
    log_level: str = "info",
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    max_header_fields: int = DEFAULT_MAX_HEADER_FIELDS,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
) -> uvicorn.Config:
    """uvicorn's settings for the edge (and its admin listener): the front door's
    protocol (proxy.frontdoor: header limits and deadline) instead of uvicorn's own
    httptools protocol, and no WebSocket support at all (the front door refuses them)."""
    fast = importlib.util.find_spec("uvloop") is not None
    protocol = front_door(
        max_header_bytes=max_header_bytes,
        max_header_fields=max_header_fields,
        header_timeout=header_timeout,
    )
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        ws="none",
        loop="uvloop" if fast else "asyncio",
        proxy_headers=False,
        server_header=False,
        date_header=False,
        access_log=False,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )


def serve(
    config_path: str | Path,
    *,
    host: str | None = None,
    port: int | None = None,
    admin_port: int | None = None,
    workers: int | None = None,
    fd: int | None = None,
    admin_fd: int | None = None,
) -> int:
    """Serve ``config_path`` until SIGTERM (drained, proxy.lifecycle) or SIGINT; SIGHUP
    reloads. ``workers`` (default ``[server] workers``) > 1: that many processes on one
    port (proxy.workers); ``fd``: a worker's inherited listening socket."""
    config = load_config(config_path)
    configure_logging(config.log_format, config.log_level)  # issue #12 (proxy.logs)
    n = workers if workers is not None else config.workers
    if fd is None and n > 1:  # issue #12: the supervisor (proxy.workers)
        problem = per_process_state_problem(config.ratelimit_backend, config.idempotency_backend, n)
        if problem and not config.allow_per_process_state:
            raise ConfigError([f"{config_path}: server.workers: {problem}"])
        return run_workers(
            config_path,
            n,
            host or config.host,
            port or config.port,
            (config.admin.host, admin_port or config.admin.port),
        )
    for problem in unresolved_hosts(config):  # `check` refuses these; see unresolved_hosts
        log.warning("%s (serving anyway: requests to it fail until it resolves)", problem)
    for part, backend in (
        ("rate limits", config.ratelimit_backend),
        ("idempotency records", config.idempotency_backend),
    ):
        if backend == "memory" and fd is None:
            log.warning(
                "%s are kept in this process (memory backend): each process or replica "
                'counts alone; use backend = "redis" when more than one runs',
                part,
            )
    app = Reloadable(build_app(config), config_path)  # issue #12: SIGHUP swaps its edge
    # Everything built so far (modules, policies, route tables, config) lives as long as
    # the process: move it out of the collector's generations so that full collections
    # under load stop traversing it. Measured with gc.callbacks over ~110k requests at 32
    # connections: a full collection took ~14 ms before and ~2 ms after (a pause every
    # request in flight waits for), GC time per request 5.8 -> 4.2 us.
    gc.collect()
    gc.freeze()
    ucfg = uvicorn_config(
        app,
        host or config.host,
        port or config.port,
        log_level=config.log_level,
        max_header_bytes=config.max_header_bytes,  # issue #14: the front door's limits
        max_header_fields=config.max_header_fields,
        header_timeout=config.header_timeout,
    )
    ucfg.timeout_graceful_shutdown = math.ceil(config.grace_seconds)
    if fd is not None:
        ucfg.fd = fd
    configure_logging(config.log_format, config.log_level)  # again: uvicorn.Config set its own
    # issue #12: the admin listener (health, readiness, metrics) served beside the API
    edge = app.edge
    admin = uvicorn_config(
        admin_app(edge, edge.readiness), config.admin.host, admin_port or config.admin.port,
        log_level=config.log_level,
    )  # fmt: skip
    if admin_fd is not None:  # a worker: the supervisor's admin socket
        admin.fd = admin_fd
    server = EdgeServer(ucfg, app=app, drain_seconds=config.drain_seconds, admin=admin)
    pid = write_pid_file(config_path) if fd is None else None  # `magento-edge reload`
    try:
        server.run()
    finally:
        if pid is not None:
            pid.unlink(missing_ok=True)
    return 0
