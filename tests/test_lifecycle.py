"""Reload (SIGHUP, ``magento-edge reload``) and drain (SIGTERM) against a real edge
process: ``python -m proxy serve`` in front of a Magento stand-in and a panel upstream."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.backends.keystore.base import TokenRecord
from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.config import load_config
from proxy.lifecycle import pid_file
from proxy.tokens import generate_token, hash_token
from tests.conftest import MAGENTO_TOKEN, REPO, env, write_config
from tests.panel_app import PanelApp
from tests.servers import free_port, serving


class EdgeProcess:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path, config: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log
        self.config = config

    def lines(self) -> list[dict[str, Any]]:
        """The process's log (JSON format): one object per line."""
        return [
            json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")
        ]

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(text in line["message"] for line in self.lines()) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged {count} times: {self.log.read_text()}")


def token_for(config_path: Path, *permissions: str) -> str:
    return token_and_id(config_path, *permissions)[0]


def token_and_id(
    config_path: Path, *permissions: str, stores: tuple[str, ...] = ("acme",)
) -> tuple[str, str]:
    config = load_config(config_path, env=env())
    token = generate_token("live")
    record = TokenRecord(
        id="tok_" + secrets.token_hex(8),
        name="ops",
        kind="live",
        stores=stores,
        permissions={p.split(":")[0]: p.split(":")[1] for p in permissions},  # type: ignore[misc]
    )
    store = SQLiteKeyStore(config.keystore_path or "")
    asyncio.run(store.create(record, hash_token(token)))
    asyncio.run(store.close())
    return token, record.id


def ops_config(
    directory: Path, magento: str, panel: str, port: int, server: str = "", extra: str = ""
) -> Path:
    path = write_config(directory, magento, panel, extra, panel_read=10)
    text = path.read_text().replace("port = 0\n", f"port = {port}\n{server}\n", 1)
    text = text.replace("access_log = false", 'access_log = true\nformat = "json"', 1)
    path.write_text(text)
    return path


@contextmanager
def edge_process(config: Path, port: int, *args: str) -> Iterator[EdgeProcess]:
    log = config.parent / f"edge-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "proxy", "serve", "--config", str(config), *args],
            cwd=REPO,
            env={**os.environ, **env(), "PYTHONPATH": str(REPO)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    edge = EdgeProcess(proc, f"http://127.0.0.1:{port}", log, config)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(edge.url + "/api/v1/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"edge did not start: {log.read_text()}") from None
                time.sleep(0.1)
        yield edge
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def upstreams() -> Iterator[tuple[str, PanelApp, str, PanelApp, str]]:
    """(magento url, panel, panel url, a second panel, its url)."""
    from magento_standin import create_standin

    panel, other = PanelApp(), PanelApp()
    with ExitStack() as stack:
        magento = stack.enter_context(serving(create_standin(bearer_tokens=[MAGENTO_TOKEN])))
        one = stack.enter_context(serving(panel))
        two = stack.enter_context(serving(other))
        yield magento.url, panel, one.url, other, two.url


class Hammer:
    """Requests one after another on fresh connections until stopped; every status."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.statuses: list[int | str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        while not self._stop.is_set():
            try:
                r = httpx.get(self.url, headers=headers, timeout=10)
                self.statuses.append(r.status_code)
            except httpx.TransportError as exc:
                self.statuses.append(type(exc).__name__)

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def test_reload_applies_a_valid_change_and_refuses_an_invalid_one(
    tmp_path: Path, upstreams: tuple[str, PanelApp, str, PanelApp, str]
) -> None:
    magento, _, panel_url, other, other_url = upstreams
    port = free_port()
    config = ops_config(tmp_path, magento, panel_url, port)
    token = token_for(config, "backups:read")
    url = f"http://127.0.0.1:{port}/api/v1/stores/acme/backups"
    with edge_process(config, port) as edge:
        assert pid_file(config).read_text().strip() == str(edge.proc.pid)
        with Hammer(url, token) as hammer:
            time.sleep(0.3)
            before = len(other.requests)
            # A valid change (the panel moves), through the CLI: it signals the process.
            config.write_text(config.read_text().replace(panel_url, other_url))
            done = subprocess.run(
                [sys.executable, "-m", "proxy", "reload", "--config", str(config)],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert done.returncode == 0, done.stderr
            assert f"pid {edge.proc.pid}" in done.stdout
            edge.wait_for_log("reloaded")
            time.sleep(0.3)
            assert len(other.requests) > before  # the new config serves
            # An invalid change: refused, the running config keeps serving.
            good = config.read_text()
            config.write_text(good.replace("[keystore]", "[keystore]\nbogus = 1", 1))
            edge.proc.send_signal(signal.SIGHUP)
            edge.wait_for_log("reload of")
            served = len(other.requests)
            time.sleep(0.3)
            assert len(other.requests) > served  # still the config from the valid reload
            # A change that needs a restart is refused too, saying so.
            config.write_text(good.replace(f"port = {port}", f"port = {free_port()}", 1))
            edge.proc.send_signal(signal.SIGHUP)
            edge.wait_for_log("reload of", count=2)
            time.sleep(0.3)
        assert edge.proc.poll() is None  # SIGHUP never ends the process
    assert hammer.statuses and set(hammer.statuses) == {200}, set(hammer.statuses)
    refusals = [line for line in edge.lines() if "reload of" in line["message"]]
    assert "bogus" in refusals[0]["message"] and refusals[0]["level"] == "error"
    assert "port changed: it takes effect on a restart only" in refusals[1]["message"]
    assert MAGENTO_TOKEN not in edge.log.read_text() and token not in edge.log.read_text()


def test_sigterm_drains_then_waits_for_requests_in_flight(
    tmp_path: Path, upstreams: tuple[str, PanelApp, str, PanelApp, str]
) -> None:
    magento, _, panel_url, _, _ = upstreams
    port = free_port()
    config = ops_config(
        tmp_path, magento, panel_url, port, "drain_seconds = 1.5\ngrace_seconds = 20"
    )
    token = token_for(config, "backups:read")
    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{port}/api/v1/stores/acme/backups"
    size = 64 * 1024 * 1024
    results: dict[str, Any] = {}

    def slow() -> None:  # the panel answers after 5 s
        results["slow"] = httpx.get(base + "/slow", headers=headers, timeout=30).status_code

    def download() -> None:  # read slowly: it is still streaming when the drain ends
        got = 0
        with httpx.stream(
            "GET", base + "/big", params={"bytes": size}, headers=headers, timeout=30
        ) as r:
            for chunk in r.iter_bytes(1 << 20):
                got += len(chunk)
                time.sleep(0.05)
        results["download"] = got

    with edge_process(config, port) as edge:
        threads = [threading.Thread(target=f) for f in (slow, download)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        edge.proc.send_signal(signal.SIGTERM)
        edge.wait_for_log("SIGTERM: draining")
        # Still serving during the drain, new connections included.
        assert httpx.get(base, headers=headers, timeout=5).status_code == 200
        assert edge.proc.poll() is None
        # After drain_seconds: no longer accepting.
        while time.monotonic() - t0 < 2.5:
            time.sleep(0.1)
        with pytest.raises(httpx.ConnectError):
            httpx.get(base, headers=headers, timeout=2)
        code = edge.proc.wait(timeout=30)
        elapsed = time.monotonic() - t0
        for t in threads:
            t.join(timeout=30)
    assert code == 0
    assert results == {"slow": 200, "download": size}
    assert elapsed >= 4  # it waited for the slow answer (5 s from its start)
    access = [line for line in edge.lines() if line.get("message") == "access"]
    assert any(line["route"] == "/api/v1/stores/{store}/backups/{rest:path}" for line in access)


def test_reload_without_a_running_edge_says_so(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9", None)
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "reload", "--config", str(config)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "no running edge serves" in done.stderr


@pytest.mark.parametrize("with_middleware", [False, True])
async def test_reloadable_hands_requests_to_the_edge_and_its_middleware(
    tmp_path: Path, with_middleware: bool
) -> None:
    """Reloadable calls the edge's request handling directly when it has no operator
    middleware (issue #14); with middleware, every request still passes through it."""
    from starlette.middleware import Middleware

    from proxy.edge import Edge
    from proxy.lifecycle import Reloadable

    seen: list[str] = []

    class Note:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            seen.append(scope["type"])
            await self.app(scope, receive, send)

    path = write_config(tmp_path, "http://127.0.0.1:9", None)
    config = load_config(path, env=env())
    middleware = [Middleware(Note)] if with_middleware else []
    edge = Edge.from_config(config, SQLiteKeyStore(tmp_path / "edge.db"), middleware=middleware)
    app = Reloadable(edge, path)
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "GET", "path": "/api/v1/nowhere", "raw_path": b"/api/v1/nowhere",
        "query_string": b"", "headers": [(b"host", b"edge.test")], "client": ("127.0.0.1", 1),
        "scheme": "http", "http_version": "1.1",
    }  # fmt: skip
    await app(scope, receive, send)
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 404
    assert seen == (["http"] if with_middleware else [])
    sent.clear()
    await app({"type": "websocket", "path": "/", "headers": []}, receive, send)
    assert sent == []
