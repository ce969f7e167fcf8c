"""The access line and the log formats (proxy.logs), against a real edge in front of the
panel upstream and the Magento stand-in."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.config import load_config
from proxy.edge import Edge
from proxy.logs import AccessLine, JsonFormatter, TextFormatter, configure_logging
from tests.conftest import MAGENTO_TOKEN, env, wait_for
from tests.panel_app import PanelApp
from tests.servers import serving
from tests.test_lifecycle import ops_config, token_and_id


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(edge url, its config) with the access log on."""
    from magento_standin import create_standin

    with ExitStack() as stack:
        magento = stack.enter_context(serving(create_standin(bearer_tokens=[MAGENTO_TOKEN])))
        panel = stack.enter_context(serving(PanelApp()))
        path = ops_config(tmp_path, magento.url, panel.url, 0)
        config = load_config(path, env=env())
        app = Edge.from_config(config, SQLiteKeyStore(config.keystore_path or ""))
        server = stack.enter_context(serving(app))
        yield server.url, path


def access_lines(caplog: pytest.LogCaptureFixture, count: int = 1) -> list[AccessLine]:
    # Written in the server's thread once the answer is out: the client may be first.
    wait_for(lambda: len(_lines(caplog)) >= count)
    return _lines(caplog)


def _lines(caplog: pytest.LogCaptureFixture) -> list[AccessLine]:
    return [r.msg for r in caplog.records if isinstance(r.msg, AccessLine)]


def test_one_access_line_per_request_with_its_facts(
    edge: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    url, config = edge
    token, token_id = token_and_id(config, "backups:write")
    auth = {"Authorization": f"Bearer {token}"}
    with caplog.at_level(logging.INFO, logger="magento_edge.access"):
        r = httpx.get(
            url + "/api/v1/stores/acme/backups/big",
            params={"bytes": 3000},
            headers={**auth, "X-Request-Id": "req-1"},
        )
        assert r.status_code == 200
        posted = httpx.post(url + "/api/v1/stores/acme/backups", content=b"y" * 5000, headers=auth)
        assert posted.status_code == 200
        refused = httpx.get(url + "/api/v1/stores/acme/backups/7")
        assert refused.status_code == 401
        # inside at_level: the server's thread may write the line after the client is done
        lines = access_lines(caplog, 3)
    assert len(lines) == 3
    got, post, unauth = lines
    assert got["request_id"] == "req-1" and got["method"] == "GET" and got["status"] == 200
    assert got["route"] == "/api/v1/stores/{store}/backups/{rest:path}"  # never the path
    assert (got["surface"], got["store"], got["token_id"]) == ("storeoncloud", "acme", token_id)
    assert got["bytes_out"] == 3000 and got["bytes_in"] == 0
    assert got["client"] == "127.0.0.1"
    assert got["upstream_ms"] is not None and 0 <= got["edge_ms"] <= got["ms"]
    assert got["reason"] is None and got["error"] is None
    assert post["bytes_in"] == 5000 and post["route"] == "/api/v1/stores/{store}/backups"
    assert unauth["status"] == 401 and unauth["reason"] == "unauthorized"
    assert unauth["token_id"] is None and unauth["upstream_ms"] is None
    rendered = "\n".join(str(line) for line in lines) + caplog.text
    assert token not in rendered


def test_a_5xx_carries_its_error_on_one_line(
    edge: tuple[str, Path], caplog: pytest.LogCaptureFixture
) -> None:
    url, config = edge
    # The "gone" store's Magento is not listening: 502, and the access line says why.
    token, _ = token_and_id(config, "products:read", stores=("gone",))
    with caplog.at_level(logging.INFO, logger="magento_edge.access"):
        r = httpx.get(
            url + "/api/v1/stores/gone/commerce/products/sku-1",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 502
        (line,) = access_lines(caplog)  # inside at_level: the line may come after the answer
    assert line["status"] == 502 and line["reason"] == "upstream_unavailable"
    # the transport's own exception class (proxy.transport; ClientConnectorError on aiohttp)
    assert line["error"].startswith("ConnectFailed") and "\n" not in line["error"]
    assert line["route"] == "/api/v1/stores/{store}/commerce/products/{sku}"
    assert line["upstream_ms"] is not None


def test_json_lines_are_one_object_each(capsys: pytest.CaptureFixture[str]) -> None:
    formatter = JsonFormatter()
    line = AccessLine(request_id="r", client="1.2.3.4", method="GET", route=None, status=502,
                      error="UpstreamUnavailable: refused")  # fmt: skip
    record = logging.LogRecord("magento_edge.access", logging.INFO, __file__, 1, line, None, None)
    out = json.loads(formatter.format(record))
    assert out["message"] == "access" and out["status"] == 502 and out["level"] == "info"
    assert out["time"].endswith("Z") and isinstance(out["pid"], int)
    try:
        raise ValueError("two\nlines")
    except ValueError:
        failed = logging.LogRecord(
            "magento_edge", logging.ERROR, __file__, 1, "r1 unexpected error", None,
            sys.exc_info(),
        )  # fmt: skip
    text = formatter.format(failed)
    assert "\n" not in text and "ValueError" in json.loads(text)["exc"]
    assert str(line).startswith("r 1.2.3.4 GET - 502 ")
    assert 'error="UpstreamUnavailable: refused"' in str(line)
    assert TextFormatter().format(record).endswith(str(line))


def test_uvicorn_logs_in_the_same_format(capsys: pytest.CaptureFixture[str]) -> None:
    handler = configure_logging("json", "info")
    try:
        logging.getLogger("uvicorn.error").info("Started server process")
    finally:
        logging.getLogger().removeHandler(handler)
    (line,) = capsys.readouterr().err.splitlines()
    out = json.loads(line)
    assert (out["logger"], out["message"]) == ("uvicorn.error", "Started server process")
