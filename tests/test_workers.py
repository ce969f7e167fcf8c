"""``[server] workers = N`` (proxy.workers): N real edge processes on one port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import REPO, env, write_config
from tests.panel_app import PanelApp
from tests.servers import free_port
from tests.test_lifecycle import edge_process, ops_config, token_for, upstreams

__all__ = ["upstreams"]  # the fixture, shared with test_lifecycle


def test_two_workers_share_one_port(
    tmp_path: Path, upstreams: tuple[str, PanelApp, str, PanelApp, str]
) -> None:
    magento, _, panel_url, _, _ = upstreams
    port = free_port()
    refused = ops_config(tmp_path, magento, panel_url, port, "workers = 2")
    # Memory rate limits and idempotency with 2 processes: refused unless allowed.
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "check", "--config", str(refused)],
        cwd=REPO,
        env={**os.environ, **env(), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "server.workers" in done.stderr and "allow_per_process_state" in done.stderr
    config = ops_config(
        tmp_path, magento, panel_url, port, "workers = 2\nallow_per_process_state = true"
    )
    token = token_for(config, "backups:read")
    admin_port = free_port()
    with edge_process(config, port, "--admin-port", str(admin_port)) as edge:
        children = Path(f"/proc/{edge.proc.pid}/task/{edge.proc.pid}/children").read_text()
        pids = [int(p) for p in children.split()]
        assert len(pids) == 2
        url = f"http://127.0.0.1:{port}/api/v1/stores/acme/backups"
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(10):
            assert httpx.get(url, headers=headers, timeout=5).status_code == 200
        # The supervisor bound the admin port once; every worker answers on it.
        admin = f"http://127.0.0.1:{admin_port}"
        for _ in range(6):
            assert httpx.get(f"{admin}/healthz", timeout=5).status_code == 200
        edge.proc.send_signal(signal.SIGHUP)  # handed on: each worker reloads
        edge.wait_for_log("reloaded", count=2)
        edge.proc.send_signal(signal.SIGTERM)  # handed on: each worker drains, then exits
        assert edge.proc.wait(timeout=30) == 0
    reloaded = {line["pid"] for line in edge.lines() if "reloaded" in line["message"]}
    assert reloaded == set(pids)


def test_serve_refuses_workers_flag_with_memory_state(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", None)
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--config", str(config), "--workers", "2"],
        cwd=REPO,
        env={**os.environ, **env(), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "server.workers: 2 processes with [ratelimit] backend" in done.stderr
