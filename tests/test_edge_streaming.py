"""Streaming through a real ``magento-edge serve`` process: 200 MB each way with bounded
edge memory, and a client that goes away mid-upload cancels the upstream request."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import env, wait_for, write_config
from tests.panel_app import CHUNK, PanelApp
from tests.servers import ThreadServer, free_port, serving

SIZE = 200 * 1024 * 1024
# Buffering 200 MB would grow the edge by ≥ 200 MB; streaming stays within a few MB.
# The bound is generous for allocator noise and is not a timing.
RSS_BOUND = 48 * 1024 * 1024


class EdgeProcess:
    def __init__(self, config: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.admin_port = free_port()  # several edges on one machine: one admin port each
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        # A file, not a pipe: nobody reads the log while the edge runs, and a full pipe
        # would block the edge on its next log line.
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "proxy",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--admin-port",
                str(self.admin_port),
            ],
            env={**os.environ, **env()},
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    self.stderr.seek(0)
                    err = self.stderr.read().decode()
                    self.stop()
                    raise RuntimeError(err) from None
                time.sleep(0.05)  # a real process binding its port: poll, bounded above
        self.stop()
        raise RuntimeError("edge did not start")

    def rss(self) -> int:
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def stop(self) -> None:
        # SIGINT: shut down now; SIGTERM would drain first ([server] drain_seconds).
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


class PeakRss:
    """Samples a process's RSS in a thread while a transfer runs."""

    def __init__(self, edge: EdgeProcess) -> None:
        self.edge = edge
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.edge.rss())
            time.sleep(0.02)  # the sampling period of a real process's RSS, not a wait

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EdgeProcess, PanelApp, str]]:
    directory = tmp_path_factory.mktemp("stream")
    panel = PanelApp()
    with serving(panel) as panel_srv:
        # A generous read timeout: the panel shares this process (and its GIL) with the
        # client pushing 200 MB, so its answer can be late on a busy machine.
        config = write_config(directory, panel_srv.url, panel_srv.url, panel_read=30.0)
        out = subprocess.run(
            [
                sys.executable, "-m", "proxy", "tokens", "create", "--config", str(config),
                "--store", "acme", "--permission", "backups:write", "--name", "stream",
                "--tier", "internal",
            ],
            env={**os.environ, **env()},
            capture_output=True,
            text=True,
            check=True,
        )  # fmt: skip
        token = out.stdout.strip().splitlines()[-1]
        assert re.fullmatch(r"soc_pat_live_[0-9A-Za-z]{36}", token)
        edge = EdgeProcess(config, free_port())
        try:
            yield edge, panel, token
        finally:
            edge.stop()


def _warm(edge: EdgeProcess, token: str) -> int:
    with httpx.Client(base_url=edge.url, headers={"Authorization": f"Bearer {token}"}) as c:
        for _ in range(20):
            c.post("/api/v1/stores/acme/backups", content=b"x" * 100_000)
            with c.stream(
                "GET", "/api/v1/stores/acme/backups/big", params={"bytes": 4_000_000}
            ) as r:
                for _ in r.iter_raw():
                    pass
    return edge.rss()


@pytest.mark.slow
@pytest.mark.timeout(180)  # 200 MB through a real process on a shared 2-core machine
def test_200mb_download_streams_with_bounded_memory(
    stack: tuple[EdgeProcess, PanelApp, str],
) -> None:
    edge, _panel, token = stack
    idle = _warm(edge, token)
    received = 0
    with (
        PeakRss(edge) as peak,
        httpx.Client(base_url=edge.url, timeout=60) as c,
        c.stream(
            "GET",
            "/api/v1/stores/acme/backups/big",
            params={"bytes": SIZE},
            headers={"Authorization": f"Bearer {token}"},
        ) as r,
    ):
        assert r.status_code == 200
        for chunk in r.iter_raw():
            received += len(chunk)
    assert received == SIZE
    growth = peak.peak - idle
    print(f"\ndownload 200 MB: edge peak RSS growth {growth / 1e6:.1f} MB")
    assert growth < RSS_BOUND


@pytest.mark.slow
@pytest.mark.timeout(180)  # 200 MB through a real process on a shared 2-core machine
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_200mb_upload_streams_with_bounded_memory(
    stack: tuple[EdgeProcess, PanelApp, str], declared: bool
) -> None:
    edge, _panel, token = stack
    idle = _warm(edge, token)
    expected = hashlib.sha256()
    for _ in range(SIZE // len(CHUNK)):
        expected.update(CHUNK)

    def body() -> Iterator[bytes]:
        for _ in range(SIZE // len(CHUNK)):
            yield CHUNK

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
    if declared:
        headers["Content-Length"] = str(SIZE)
    with PeakRss(edge) as peak, httpx.Client(base_url=edge.url, timeout=60) as c:
        r = c.post("/api/v1/stores/acme/backups", content=body(), headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["received"] == SIZE
    assert r.json()["sha256"] == expected.hexdigest()
    growth = peak.peak - idle
    print(f"\nupload 200 MB ({'declared' if declared else 'chunked'}): edge peak RSS growth "
          f"{growth / 1e6:.1f} MB")  # fmt: skip
    assert growth < RSS_BOUND


def test_client_gone_mid_upload_cancels_upstream(stack: tuple[EdgeProcess, PanelApp, str]) -> None:
    edge, panel, token = stack
    before_aborted, before_done = panel.aborted, panel.completed_uploads
    last = panel.requests[-1] if panel.requests else None
    port = int(edge.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(
            b"POST /api/v1/stores/acme/backups HTTP/1.1\r\nHost: edge\r\n"
            + f"Authorization: Bearer {token}\r\n".encode()
            + b"Content-Type: application/octet-stream\r\nContent-Length: 50000000\r\n\r\n"
        )
        s.sendall(b"y" * 2_000_000)
        # Hang up only once the upload has reached the panel: there is something to cancel.
        assert wait_for(lambda: panel.requests and panel.requests[-1] is not last, timeout=10)
        assert panel.requests[-1]["method"] == "POST"
    assert wait_for(lambda: panel.aborted > before_aborted, timeout=10)
    assert panel.completed_uploads == before_done


def test_thread_server_helper_is_real_http() -> None:
    # The fixture servers speak real HTTP/1.1 on loopback (no in-process transport).
    app = PanelApp()
    server = ThreadServer(app).start()
    try:
        r = httpx.get(server.url + "/stores/x/ping")
        assert r.status_code == 200 and r.json()["raw_path"] == "/stores/x/ping"
    finally:
        server.stop()
