"""The front door's ``[server]`` keys (issue #14): validated at load with file and key, and
acted on by ``magento-edge serve`` (a setting that loads is a setting that works)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from proxy._toml import ConfigError
from proxy.config import load_config
from tests.conftest import MAGENTO_TOKEN, env, write_config
from tests.panel_app import PanelApp
from tests.servers import free_port, serving
from tests.test_lifecycle import edge_process, ops_config


def _config(tmp_path: Path, server: str) -> Path:
    path = write_config(tmp_path, "http://127.0.0.1:9", None)
    path.write_text(path.read_text().replace("port = 0\n", f"port = 0\n{server}\n", 1))
    return path


def test_defaults(tmp_path: Path) -> None:
    config = load_config(_config(tmp_path, ""), env=env())
    assert (config.max_header_bytes, config.max_header_fields, config.header_timeout) == (
        16384,
        100,
        10.0,
    )


def test_set(tmp_path: Path) -> None:
    server = "max_header_bytes = 8192\nmax_header_fields = 50\nheader_timeout_seconds = 2.5"
    config = load_config(_config(tmp_path, server), env=env())
    assert (config.max_header_bytes, config.max_header_fields, config.header_timeout) == (
        8192,
        50,
        2.5,
    )


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("max_header_bytes = 100", "server.max_header_bytes: must be at least 1024, got 100"),
        ("max_header_bytes = 1.5", "server.max_header_bytes: must be an integer"),
        ("max_header_fields = 2", "server.max_header_fields: must be at least 8, got 2"),
        ('header_timeout_seconds = "10"', "server.header_timeout_seconds: must be a number"),
        ("header_timeout_seconds = 0", "server.header_timeout_seconds: must be at least 1"),
        ("max_header_size = 1", "server.max_header_size"),  # unknown: refused, not ignored
    ],
)
def test_bad_values_name_file_and_key(tmp_path: Path, line: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_config(tmp_path, line), env=env())
    text = "\n".join(info.value.problems)
    assert problem in text and "config.toml" in text


def test_serve_acts_on_them(tmp_path: Path) -> None:
    """``magento-edge serve`` with ``max_header_bytes = 2048``: a 2,100-byte head is 431."""
    from magento_standin import create_standin

    port = free_port()
    with (
        serving(create_standin(bearer_tokens=[MAGENTO_TOKEN])) as magento,
        serving(PanelApp()) as panel,
    ):
        config = ops_config(tmp_path, magento.url, panel.url, port, "max_header_bytes = 2048")
        with edge_process(config, port):
            for size, status in ((1900, b"401"), (2100, b"431")):
                head = b"GET /api/v1/stores HTTP/1.1\r\nHost: a\r\nX-Pad: "
                head += b"p" * (size - len(head) - 4) + b"\r\n\r\n"
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    sock.sendall(head)
                    assert sock.recv(100).split(b" ")[1] == status
