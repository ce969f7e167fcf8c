"""Issue #16's "done when": a Magento REST client library from PyPI (my-magento, imported
as ``magento``), used unchanged except for its base URL and token, lists and fetches
products and creates an order through the native mount of a real edge, in front of the
stand-in; a token without the resource is refused in Magento's shape, nothing forwarded.

The library logs to files in the working directory (``my-magento.log`` at import, one per
client): the tests run it from a temporary directory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from tests.native_servers import STORE_TOKEN, NativeHarness, native_edge


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeHarness]:
    with native_edge(tmp_path_factory.mktemp("native-client")) as harness:
        yield harness


@pytest.fixture(scope="module")
def magento(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("my-magento-logs"))
        import magento  # my-magento

        yield magento
    # Its loggers keep file handlers open on the temporary directory: close them.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("my-magento") or "127_0_0_1" in name:
            for handler in list(logging.getLogger(name).handlers):
                handler.close()
                logging.getLogger(name).removeHandler(handler)


def _client(magento: Any, h: NativeHarness, token: str) -> Any:
    """The library's Client, given only the edge's address and an edge token. Its domain
    argument drops a port, so the base URL is set on its public ``BASE_URL`` attribute
    ("The base API URL"), the one place it builds request URLs from."""
    api = magento.Client(
        "127.0.0.1",
        "unused",
        "unused",
        local=True,
        # Without one the library looks a browser's user agent up on the internet.
        user_agent="native-mount-test",
        token=token,
        login=False,
        log_level="WARNING",
    )
    api.BASE_URL = f"{h.url}/rest/V1/"
    return api


def test_a_magento_client_library_works_through_the_native_mount(
    h: NativeHarness, magento: Any
) -> None:
    api = _client(magento, h, h.token("products:read", "orders:write"))
    before = len(h.standin.requests)

    products = api.products.by_list("sku", ["MB-01", "MB-04"])
    assert sorted(p.sku for p in products) == ["MB-01", "MB-04"]
    bag = api.products.by_sku("BAG/01")  # the library encodes the slash: %2F
    assert bag.sku == "BAG/01" and bag.name

    entity = {
        "customer_email": "erp@example.com",
        "customer_is_guest": 1,
        "items": [{"sku": "MB-01", "qty_ordered": 1, "price": 34}],
        "grand_total": 34,
    }
    created = api.post(api.url_for("orders"), {"entity": entity})
    assert created.status_code == 200, created.text
    order_id = created.json()["entity_id"]
    order = api.orders.by_id(order_id)
    assert order.id == order_id and order.data["customer_email"] == "erp@example.com"

    seen = h.standin.requests
    sent = list(seen)[before:]
    assert [r["method"] for r in sent] == ["GET", "GET", "POST", "GET"]
    assert all(r["raw_path"].startswith(b"/rest/V1/") for r in sent)
    # Magento saw the store's own credential, never the edge token.
    assert all(("authorization", f"Bearer {STORE_TOKEN}") in r["headers"] for r in sent)


def test_the_library_with_a_token_lacking_the_resource_is_refused(
    h: NativeHarness, magento: Any
) -> None:
    api = _client(magento, h, h.token("products:read"))
    before = len(h.standin.requests)
    # On a 401 the library logs in again with the admin password: the native mount denies
    # that route, so it gives up with its own error and nothing reaches Magento.
    with pytest.raises(magento.exceptions.AuthenticationError):
        api.orders.by_id(1)
    # What it was refused with: Magento's own shape, which the library parses.
    import requests

    raw = requests.get(api.url_for("orders/1"), headers=api.headers, timeout=10)
    assert raw.status_code == 401
    assert raw.json() == {
        "message": "The consumer isn't authorized to access %resources.",
        "parameters": {"resources": "orders:read"},
    }
    assert "orders:read" in magento.exceptions.MagentoError.parse(raw)
    assert list(h.standin.requests)[before:] == []
