"""``magento-edge routes scan`` (proxy.routes_scan) on a Magento tree built in a temporary
directory: the 384 core and MSI routes of Magento 2.4.6 (from the stand-in's route table,
as composer packages under vendor/ with their etc/module.xml) and a third-party module in
app/code with routes no shipped policy knows, one of them shadowed by a core pattern."""

from __future__ import annotations

import csv
import re
import tomllib
from collections import defaultdict
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pytest

from proxy.cli import main
from proxy.config import load_config
from proxy.routes_scan import read_webapi, render, scan

ROOT = Path(__file__).resolve().parent.parent
TSV = ROOT / "magento_standin" / "data" / "magento_routes.tsv"

ACME = [  # (method, url, ACL)
    ("GET", "/V1/acme/loyalty/:customerId", "Acme_Loyalty::points"),
    ("POST", "/V1/acme/loyalty/:customerId/redeem", "Acme_Loyalty::points"),
    ("GET", "/V1/acme/loyalty/rules", "Acme_Loyalty::rules"),
    ("GET", "/V1/acme/loyalty/mine", "self"),
    ("GET", "/V1/acme/stores", "anonymous"),
    ("GET", "/V1/products/acme-feed", "Acme_Loyalty::feed"),  # shadowed by products/{sku}
]


def _webapi_xml(routes: list[tuple[str, str, str, str]]) -> str:
    body = "".join(
        f"  <route url={quoteattr(url)} method={quoteattr(method)}>\n"
        f"    <service class={quoteattr(service.split('::')[0])} "
        f"method={quoteattr(service.split('::')[1])}/>\n"
        "    <resources>\n"
        + "".join(f"      <resource ref={quoteattr(ref)}/>\n" for ref in acl.split(","))
        + "    </resources>\n  </route>\n"
        for method, url, service, acl in routes
    )
    return f'<?xml version="1.0"?>\n<routes xmlns:xsi="x">\n{body}</routes>\n'


def _tree(root: Path) -> Path:
    with TSV.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    by_module: dict[str, list[tuple[str, str, str, str]]] = defaultdict(list)
    for r in rows:
        by_module[r["module"]].append((r["method"], r["url"], r["service"], r["acl_resources"]))
    for module, routes in by_module.items():
        name = module.removeprefix("Magento_")
        package = "module-" + re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()
        etc = root / "vendor" / "magento" / package / "etc"
        etc.mkdir(parents=True)
        (etc / "webapi.xml").write_text(_webapi_xml(routes))
        (etc / "module.xml").write_text(f'<config><module name="{module}"/></config>')
    acme = root / "app" / "code" / "Acme" / "Loyalty" / "etc"
    acme.mkdir(parents=True)
    (acme / "webapi.xml").write_text(
        _webapi_xml([(m, u, "Acme\\Loyalty\\Api\\PointsInterface::get", a) for m, u, a in ACME])
    )
    # A test fixture inside a module is not the install's: skipped.
    fixture = root / "vendor" / "magento" / "module-catalog" / "Test" / "_files" / "etc"
    fixture.mkdir(parents=True)
    (fixture / "webapi.xml").write_text(_webapi_xml([("GET", "/V1/fixture", "X::y", "Z::z")]))
    return root


def _config(directory: Path, storeoncloud: Path | None = None) -> Path:
    policies = ROOT / "policies"
    native = policies / "magento.toml"
    if storeoncloud is not None:
        text = native.read_text().replace('"storeoncloud.toml"', f'"{storeoncloud}"')
        native = directory / "magento.toml"
        native.write_text(text)
    path = directory / "config.toml"
    path.write_text(f"""
[server]
policies = ["{storeoncloud or policies / "storeoncloud.toml"}", "{native}"]
[keystore]
path = "edge.db"
[stores.shop]
magento_url = "http://127.0.0.1:9"
credential = {{ kind = "bearer", token_env = "T" }}
native = true
""")
    return path


def test_reads_every_webapi_xml_of_core_and_third_party_modules(tmp_path: Path) -> None:
    routes, files, problems = read_webapi(_tree(tmp_path))
    assert problems == []
    assert files == 32  # 31 core and MSI modules, one third-party; the Test fixture skipped
    assert len(routes) == 384 + len(ACME)
    acme = [r for r in routes if r.module == "Acme_Loyalty"]
    assert [(r.method, r.url, r.resources) for r in acme] == [(m, u, (a,)) for m, u, a in ACME]
    products = next(r for r in routes if r.url == "/V1/products/:sku" and r.method == "GET")
    assert products.module == "Magento_Catalog"
    assert products.path == "/products/{sku}"


def test_every_core_route_is_covered_and_the_third_party_ones_are_listed(tmp_path: Path) -> None:
    root = _tree(tmp_path / "magento")
    config = load_config(_config(tmp_path), secrets=False)
    result = scan(config, root)
    assert {(r.method, r.url) for r in result.uncovered} == {
        (m, u) for m, u, _ in ACME if not u.startswith("/V1/products/")
    }
    ((shadowed, now),) = result.shadowed
    assert shadowed.url == "/V1/products/acme-feed"
    assert now == "GET /products/{sku} → resource products"

    fragment = render(result, root)
    entries = tomllib.loads("magento = [\n" + fragment + "\n]")["magento"]
    assert len(entries) == len(ACME)
    assert all(set(e) == {"method", "path", "deny", "summary"} for e in entries)
    assert {e["path"] for e in entries} >= {"/acme/loyalty/{customerId}", "/products/acme-feed"}
    points = next(e for e in entries if e["path"] == "/acme/loyalty/{customerId}")
    assert points["deny"] == "not reviewed: Acme_Loyalty::points (Acme_Loyalty)"
    assert "# -- Acme_Loyalty::points (2 routes)" in fragment
    assert '# anonymous: { method = "GET", path = "/acme/stores" },' in fragment
    assert '# self: { method = "GET", path = "/acme/loyalty/mine" },' in fragment


def test_the_fragment_pasted_into_the_shared_table_covers_them(tmp_path: Path) -> None:
    root = _tree(tmp_path / "magento")
    first = scan(load_config(_config(tmp_path), secrets=False), root)
    fragment = render(first, root)
    policy = (ROOT / "policies" / "storeoncloud.toml").read_text()
    assert policy.count("\nmagento = [\n") == 1
    edited = tmp_path / "storeoncloud.toml"
    edited.write_text(policy.replace("\nmagento = [\n", "\nmagento = [\n" + fragment, 1))
    config = load_config(_config(tmp_path, storeoncloud=edited), secrets=False)
    again = scan(config, root)
    assert again.uncovered == () and again.shadowed == ()
    assert "Every route is mapped or denied" in render(again, root)
    # ... and on the native mount they are now denied: nothing unreviewed is forwarded.
    native = next(s for s in config.surfaces if s.native is not None).native
    assert native is not None
    hit = native.lookup("plain", "GET", ("acme", "loyalty", "42"))
    assert hit is not None and hit[0].acl == "deny"


def test_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _tree(tmp_path / "magento")
    assert main(["routes", "scan", "--config", str(_config(tmp_path)), str(root)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# magento-edge routes scan of {root}: 390 routes in 32 webapi.xml")
    assert "5 not covered by any loaded policy, 1 shadowed." in out
    (root / "app" / "code" / "Acme" / "Loyalty" / "etc" / "webapi.xml").write_text("<routes")
    assert main(["routes", "scan", "--config", str(_config(tmp_path)), str(root)]) == 1
    assert "# problem: app/code/Acme/Loyalty/etc/webapi.xml: cannot read" in capsys.readouterr().out
    assert main(["routes", "scan", "--config", str(_config(tmp_path)), str(tmp_path / "x")]) == 1
    assert "has neither app/code nor vendor" in capsys.readouterr().err
