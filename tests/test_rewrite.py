"""proxy.rewrite: the route keys that change a forward's method and query, checked at load
and applied in one place (the values are what is signed and sent)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy._toml import ConfigError
from proxy.errors import BadRequest
from proxy.policy import load_policy
from proxy.rewrite import Lists, RouteRewrite, upstream_call

ROOT = Path(__file__).resolve().parent.parent
TSV = ROOT / "magento_standin" / "data" / "magento_routes.tsv"

HEAD = """\
resources = ["orders"]

[surface]
name = "mini"
base_path = "/api/mini"

[ratelimit.tiers.standard]
rate = 10

[[mounts]]
path = "/"
target = "/rest/{store_code}/V1"
routes = "t"
"""


def _problems(tmp_path: Path, routes: str, extra: str = "") -> list[str]:
    path = tmp_path / "p.toml"
    path.write_text(HEAD + extra + "\n[routes]\nt = [\n" + routes + "\n]\n")
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    return info.value.problems


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ('{ method = "*", path = "/o", resource = "orders", target_method = "PUT" }', 'not "\\*"'),
        ('{ method = "GET", path = "/o", resource = "orders", target_method = "PUT" }', 'access = "write"'),
        ('{ method = "POST", path = "/o", resource = "orders", target_method = "FETCH" }', "target_method"),
        ('{ method = "POST", path = "/o", resource = "orders", list = "page" }', "GET routes"),
        ('{ method = "GET", path = "/o", resource = "orders", list = "all" }', "list"),
        ('{ method = "GET", path = "/o", resource = "orders", not_implemented = "no" }', "never forwarded"),
        ('{ method = "GET", path = "/o", not_implemented = "" }', "non-empty string"),
        ('{ method = "GET", path = "/o", deny = "x", not_implemented = "no" }', "never forwarded"),
    ],
)  # fmt: skip
def test_bad_rewrite_keys_are_refused(tmp_path: Path, route: str, message: str) -> None:
    problems = _problems(tmp_path, "  " + route)
    assert any(re.search(message, p) for p in problems), problems
    assert all(re.match(r".*p\.toml:\d+: ", p) for p in problems), problems  # with a line


def test_a_read_rewritten_to_a_write_loads_with_write_access(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        HEAD + '\n[routes]\nt = [{ method = "GET", path = "/o", resource = "orders", '
        'access = "write", target_method = "PUT" }]\n'
    )
    (route,) = load_policy(path).tables["t"]
    assert route.rewrite == RouteRewrite(target_method="PUT")


@pytest.mark.parametrize(
    ("lists", "message"),
    [
        ("default_page_size = 0", "at least 1"),
        ("default_page_size = 300\nmax_page_size = 250", "at most max_page_size"),
        ("page_size = 10", "unknown key"),
    ],
)
def test_bad_lists_are_refused(tmp_path: Path, lists: str, message: str) -> None:
    route = '  { method = "GET", path = "/o", resource = "orders" }'
    problems = _problems(tmp_path, route, f"\n[lists]\n{lists}\n")
    assert any(message in p and "lists" in p for p in problems), problems


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        ('upstream = "panel"\ncredential = "none"\nauth = "none"', 'upstream = "magento"'),
        ('credential = "none"', 'needs auth "none"'),
        ('credential = "guest"', "credential"),
    ],
)
def test_guest_mounts_are_checked(tmp_path: Path, mount: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        HEAD.replace('routes = "t"', f'routes = "t"\n{mount}')
        + '\n[routes]\nt = [{ method = "GET", path = "/o", resource = "orders" }]\n'
    )
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert any(message in p for p in info.value.problems), info.value.problems


def test_guest_mount_cannot_name_a_store_in_its_path(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    text = HEAD.replace('path = "/"', 'path = "/s/{store}"').replace(
        'routes = "t"', 'routes = "t"\ncredential = "none"\nauth = "none"'
    )
    path.write_text(
        text + '\n[routes]\nt = [{ method = "GET", path = "/o", resource = "orders" }]\n'
    )
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    assert any("drop {store}" in p for p in info.value.problems), info.value.problems


# -- applying -----------------------------------------------------------------------------

LISTS = Lists(default_page_size=50, max_page_size=250)
PAGE = RouteRewrite(list="page")
CRITERIA = RouteRewrite(list="criteria")


def test_no_rewrite_changes_nothing() -> None:
    assert upstream_call(RouteRewrite(), "GET", "a=%5B&b", LISTS) == ("GET", "a=%5B&b")
    assert upstream_call(RouteRewrite(target_method="PUT"), "POST", "x=1", LISTS) == ("PUT", "x=1")


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", "searchCriteria[pageSize]=50&searchCriteria[currentPage]=1"),
        ("fields=items[sku]", "fields=items[sku]&searchCriteria[pageSize]=50&searchCriteria[currentPage]=1"),
        # Any searchCriteria is the client's: byte for byte (SPEC §4.1).
        ("searchCriteria=", "searchCriteria="),
        ("search_criteria[filter_groups][0][filters][0][field]=sku", "search_criteria[filter_groups][0][filters][0][field]=sku"),
        ("searchCriteria%5BcurrentPage%5D=2", "searchCriteria%5BcurrentPage%5D=2"),
        # page and limit mean nothing to v1: passed on, the default added.
        ("limit=5", "limit=5&searchCriteria[pageSize]=50&searchCriteria[currentPage]=1"),
    ],
)  # fmt: skip
def test_criteria_lists_get_a_default_only_without_criteria(query: str, expected: str) -> None:
    assert upstream_call(CRITERIA, "GET", query, LISTS) == ("GET", expected)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", "searchCriteria[pageSize]=50&searchCriteria[currentPage]=1"),
        ("limit=1&page=2147483647", "searchCriteria[pageSize]=1&searchCriteria[currentPage]=2147483647"),
        ("page=%32", "searchCriteria[pageSize]=50&searchCriteria[currentPage]=2"),
        ("searchCriteria[page_size]=9", "searchCriteria[page_size]=9&searchCriteria[currentPage]=1"),
        ("a=1&&b=2", "a=1&b=2&searchCriteria[pageSize]=50&searchCriteria[currentPage]=1"),
    ],
)  # fmt: skip
def test_page_lists_translate_page_and_limit(query: str, expected: str) -> None:
    assert upstream_call(PAGE, "GET", query, LISTS) == ("GET", expected)


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=251", "limit=-1", "limit=abc", "limit=", "limit", "limit=%C2%B2", "page=2147483648",
     "page=1&page=1", "limit= 5", "limit=0x10", "limit=%D9%A1"],
)  # fmt: skip
def test_bad_values_are_400(query: str) -> None:
    with pytest.raises(BadRequest) as info:
        upstream_call(PAGE, "GET", query, LISTS)
    assert info.value.extra["parameter"] in ("page", "limit")


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=60))
def test_any_query_is_rewritten_or_refused_never_crashes(query: str) -> None:
    try:
        method, out = upstream_call(PAGE, "GET", query, LISTS)
    except BadRequest:
        return
    assert method == "GET"
    assert out.count("searchCriteria[pageSize]=") + out.count("searchCriteria[page_size]=") >= 1


# -- which routes are lists ----------------------------------------------------------------

# getList services without path parameters that take no searchCriteria (the stand-in's
# _NO_CRITERIA, from their interfaces).
NO_CRITERIA = {"/V1/carts/licence", "/V1/store/storeGroups", "/V1/store/storeViews", "/V1/store/websites"}  # fmt: skip


def _magento_lists() -> set[str]:
    with TSV.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return {
        r["url"].removeprefix("/V1")
        for r in rows
        if r["method"] == "GET"
        and r["service"].endswith(("::getList", "::search"))
        and ":" not in r["url"]
        and not r["forced_params"]
        and r["url"] not in NO_CRITERIA
    }


def test_v1_list_routes_are_exactly_magentos_search_criteria_routes() -> None:
    surface = load_policy(ROOT / "policies" / "storeoncloud.toml")
    routes = surface.tables["magento"]
    marked = {r.pattern.text for r in routes if r.rewrite.list == "criteria"}
    denied = {r.pattern.text for r in routes if r.deny is not None and r.method == "GET"}
    assert marked == _magento_lists() - denied
    assert len(marked) >= 25


def test_v3_and_storefront_list_targets_are_magento_list_routes() -> None:
    """Every GET onto a Magento list route pages (page/limit), and only those do."""
    lists = _magento_lists()
    for path in (ROOT / "policies" / "storeicu.toml", ROOT / "policies" / "storefront.toml"):
        surface = load_policy(path)
        for mount in surface.mounts:
            if mount.upstream != "magento" or not mount.target.endswith("/V1"):
                continue
            for route in surface.tables[mount.routes]:
                method = route.rewrite.target_method or route.method
                onto_list = method == "GET" and route.target in lists
                assert (route.rewrite.list == "page") == onto_list, route


def test_openapi_documents_not_implemented_routes_as_501() -> None:
    from proxy.openapi import build

    surface = load_policy(ROOT / "policies" / "storeicu.toml")
    doc = build(surface)
    op = doc["paths"]["/orders/{id}"]["put"]
    assert list(op["responses"]) == ["400", "501"]
    assert "Magento" in op["description"]
    assert doc["paths"]["/orders"]["post"]["x-required-permission"] == "orders:write"
