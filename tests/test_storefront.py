"""proxy.storefront and the storefront policy: the store from Host or X-Store-Id, the
``[stores.ID] hosts`` key, and the walk proving every storefront route lands on a Magento
route whose ACL is ``anonymous`` (Magento then treats the request as a guest's)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from proxy._toml import ConfigError
from proxy.config import Config, load_config
from proxy.errors import BadRequest, NotFound
from proxy.policy import load_policy
from proxy.routing import compile_pattern
from proxy.storefront import host_index, normalize_host, store_from_request

ROOT = Path(__file__).resolve().parent.parent
TSV = ROOT / "magento_standin" / "data" / "magento_routes.tsv"
SECRET = "integration-" + "z" * 20


def _magento_routes() -> list[tuple[str, tuple[str | None, ...], str]]:
    """(method, segments after /V1 with None for a :variable, acl)."""
    with TSV.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    out = []
    for r in rows:
        parts = tuple(
            None if p.startswith(":") else p
            for p in r["url"].removeprefix("/V1/").strip("/").split("/")
        )
        out.append((r["method"], parts, r["acl_resources"]))
    return out


def _compatible(a: tuple[str | None, ...], b: tuple[str | None, ...]) -> bool:
    """Some concrete path matches both shapes (a variable matches any literal)."""
    return len(a) == len(b) and all(
        x is None or y is None or x == y for x, y in zip(a, b, strict=True)
    )


def test_every_storefront_route_lands_only_on_anonymous_magento_routes() -> None:
    """Whatever values a client puts in the variables, Magento's router can only pick an
    anonymous route: every Magento route of the method that some filled-in target could
    match is anonymous, and at least one exists."""
    surface = load_policy(ROOT / "policies" / "storefront.toml")
    magento = _magento_routes()
    (mount,) = surface.mounts
    assert mount.credential == "none" and mount.upstream == "magento"
    assert mount.target == "/rest/{store_code}/V1"
    routes = surface.tables[mount.routes]
    assert len(routes) >= 10
    for route in routes:
        assert route.target is not None, route
        method = route.rewrite.target_method or route.method
        shape = compile_pattern(route.target).parts
        candidates = [acl for m, parts, acl in magento if m == method and _compatible(shape, parts)]
        assert candidates, f"{route.method} {route.pattern.text}: no Magento route"
        assert set(candidates) == {"anonymous"}, (
            f"{route.method} {route.pattern.text}: {candidates}"
        )


def test_spec_named_storefront_routes_are_there() -> None:
    surface = load_policy(ROOT / "policies" / "storefront.toml")
    routes = {(r.method, r.pattern.text): r for r in surface.tables["storefront"]}
    assert routes["GET", "/products"].target == "/products-render-info"
    assert routes["POST", "/cart"].target == "/guest-carts"
    assert surface.auth == "none" and surface.error_style == "envelope"


# -- the store of a storefront request ------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(
        _config(tmp_path, 'hosts = ["Shop.Example.com", "shop2.example.com"]'), env={"T": SECRET}
    )


def _config(
    tmp_path: Path, hosts: str, other: str = "", policies: str = '"policies/storefront.toml"'
) -> Path:
    (tmp_path / "policies").mkdir(exist_ok=True)
    for name in ("storefront.toml", "storeoncloud.toml"):
        (tmp_path / "policies" / name).write_text((ROOT / "policies" / name).read_text())
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
[server]
policies = [{policies}]

[stores.shop]
magento_url = "http://127.0.0.1:9000"
credential = {{ kind = "bearer", token_env = "T" }}
{hosts}

[stores.other]
magento_url = "http://127.0.0.1:9000"
credential = {{ kind = "bearer", token_env = "T" }}
{other}
"""
    )
    return path


def _headers(**values: str) -> list[tuple[bytes, bytes]]:
    return [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in values.items()]


def test_hosts_are_lower_cased_and_indexed(config: Config) -> None:
    assert config.stores["shop"].hosts == ("shop.example.com", "shop2.example.com")
    assert set(host_index(config.stores)) == {"shop.example.com", "shop2.example.com"}


@pytest.mark.parametrize(
    ("headers", "store"),
    [
        ({"host": "shop.example.com"}, "shop"),
        ({"host": "SHOP2.example.com:8443"}, "shop"),
        ({"host": "shop.example.com."}, "shop"),
        ({"host": "127.0.0.1:8080", "x_store_id": "other"}, "other"),
        ({"host": "shop.example.com", "x_store_id": "shop"}, "shop"),
    ],
)
def test_store_from_host_or_header(config: Config, headers: dict[str, str], store: str) -> None:
    found = store_from_request(_headers(**headers), host_index(config.stores), config.stores)
    assert found.id == store


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"host": "127.0.0.1:8080"}, NotFound),
        ({}, NotFound),
        ({"x_store_id": "nope"}, NotFound),
        ({"x_store_id": "\x01" * 3}, NotFound),
        ({"host": "shop.example.com", "x_store_id": "other"}, BadRequest),
    ],
)
def test_no_or_ambiguous_store_is_refused(
    config, headers: dict[str, str], error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        store_from_request(_headers(**headers), host_index(config.stores), config.stores)
    assert "\x01" not in str(info.value)


def test_two_store_id_headers_are_refused(config: Config) -> None:
    headers = [(b"x-store-id", b"shop"), (b"x-store-id", b"other")]
    with pytest.raises(BadRequest):
        store_from_request(headers, host_index(config.stores), config.stores)


@pytest.mark.parametrize(
    ("value", "host"),
    [
        ("A.example.com", "a.example.com"),
        ("[::1]:8080", "[::1]"),
        ("x.example.com:80", "x.example.com"),
    ],
)
def test_normalize_host(value: str, host: str) -> None:
    assert normalize_host(value) == host


@pytest.mark.parametrize(
    ("hosts", "other", "policies", "message"),
    [
        ('hosts = ["https://shop.example.com"]', "", None, "is not a host name"),
        ('hosts = ["shop.example.com:443"]', "", None, "is not a host name"),
        ('hosts = ["a.example.com", "A.example.com"]', "", None, "twice"),
        (
            'hosts = ["a.example.com"]',
            'hosts = ["a.example.com"]',
            None,
            'also a host of store "shop"',
        ),
        ('hosts = "a.example.com"', "", None, "list of strings"),
        ('hosts = ["a.example.com"]', "", '"policies/storeoncloud.toml"', "would do nothing"),
    ],
)
def test_bad_hosts_are_refused(
    tmp_path: Path, hosts: str, other: str, policies: str | None, message: str
) -> None:
    path = _config(tmp_path, hosts, other, *([policies] if policies else []))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"T": SECRET})
    hits = [p for p in info.value.problems if message in p]
    assert hits and all(re.search(r"hosts", p) for p in hits), info.value.problems
