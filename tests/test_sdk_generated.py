"""An SDK generated from each document with openapi-python-client (issue #17), as partners
do, calling a few operations through a real demo edge (uvicorn on 127.0.0.1 in front of the
Magento stand-in): the operation ids read as a person would write them, and a SKU with a
``/`` travels as ``%2F``."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.openapi_demo import DemoEdge, demo_edge

GENERATOR = Path(sys.executable).with_name("openapi-python-client")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoEdge]:
    with demo_edge(tmp_path_factory.mktemp("sdk")) as edge:
        yield edge


def generate(url: str, name: str, out: Path) -> ModuleType:
    """The SDK package for the document at ``url``, imported."""
    document = out / f"{name}.json"
    document.write_bytes(httpx.get(url, timeout=10).content)
    config = out / f"{name}.yaml"
    config.write_text(f"project_name_override: {name}\npackage_name_override: {name}\n")
    subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(document),
            "--config",
            str(config),
            "--output-path",
            str(out / name),
            "--meta",
            "none",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=240,
    )
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(out))


def op(package: ModuleType, tag: str, name: str) -> Any:
    return importlib.import_module(f"{package.__name__}.api.{tag}.{name}")


@pytest.mark.timeout(300)
def test_v1_sdk_calls_the_edge(demo: DemoEdge, tmp_path: Path) -> None:
    sdk = generate(f"{demo.v1}/openapi.json", "storeoncloud_sdk", tmp_path)
    with sdk.AuthenticatedClient(base_url=demo.v1, token=demo.pat) as client:
        _v1_calls(sdk, client, demo)
    with sdk.Client(base_url=demo.v1) as no_token:
        refused = op(sdk, "products", "get_product").sync_detailed(
            client=no_token, store_id="demo", sku="MB-01"
        )
    assert refused.status_code == 401


def _v1_calls(sdk: ModuleType, client: Any, demo: DemoEdge) -> None:
    stores = op(sdk, "stores", "list_stores").sync_detailed(client=client)
    assert stores.status_code == 200
    assert [s["id"] for s in _json(stores)["stores"]] == ["demo"]
    products = op(sdk, "products", "get_product")
    found = products.sync_detailed(client=client, store_id="demo", sku="BAG/01")
    assert found.status_code == 200, found.content  # %2F: one SKU, not two segments
    assert _json(found)["sku"] == "BAG/01"
    missing = products.sync_detailed(client=client, store_id="demo", sku="NO-SUCH-SKU")
    assert missing.status_code == 404  # Magento's own answer, passed through
    listed = op(sdk, "orders", "list_orders").sync_detailed(client=client, store_id="demo")
    assert listed.status_code == 200 and "items" in _json(listed)


@pytest.mark.timeout(300)
def test_v3_sdk_calls_the_edge(demo: DemoEdge, tmp_path: Path) -> None:
    sdk = generate(f"{demo.v3}/openapi.json", "storeicu_sdk", tmp_path)
    with sdk.AuthenticatedClient(base_url=demo.v3, token=demo.jwt) as client:
        _v3_calls(sdk, client)


def _v3_calls(sdk: ModuleType, client: Any) -> None:
    listed = op(sdk, "products", "list_products").sync_detailed(client=client, limit=2)
    assert listed.status_code == 200
    assert len(_json(listed)["items"]) == 2
    one = op(sdk, "products", "get_product").sync_detailed(client=client, id="BAG/01")
    assert one.status_code == 200 and _json(one)["sku"] == "BAG/01"
    cart = op(sdk, "orders", "create_cart").sync_detailed(client=client)
    assert cart.status_code == 200 and isinstance(_json(cart), str)
    not_there = op(sdk, "commerce", "update_order").sync_detailed(client=client, id="1")
    assert not_there.status_code == 501


def _json(response: Any) -> Any:
    import json

    return json.loads(response.content)
