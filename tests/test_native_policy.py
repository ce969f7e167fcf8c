"""proxy.native_policy and the config keys of sidecar mode: the shipped native policy's ACL
lists are exactly Magento 2.4.6's anonymous and self routes, every other route is decided
by the v1 commerce mount's own table (shared, not copied), and what cannot work is refused
at load with file and key."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from proxy._toml import ConfigError
from proxy.config import load_config
from proxy.errors import Unauthorized, render
from proxy.policy import load_policy

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"
TSV = ROOT / "magento_standin" / "data" / "magento_routes.tsv"


def _rows() -> list[dict[str, str]]:
    with TSV.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _segments(url: str) -> tuple[str, ...]:
    # A variable filled with a value no literal of the table has.
    return tuple(
        "v4lue" if p.startswith(":") else p for p in url.removeprefix("/V1/").strip("/").split("/")
    )


def test_every_magento_route_is_decided_by_its_acl_class() -> None:
    native = load_policy(POLICIES / "magento.toml").native
    v1 = load_policy(POLICIES / "storeoncloud.toml")
    assert native is not None
    assert native.shared_policy == (POLICIES / "storeoncloud.toml").resolve()
    assert native.resources == v1.resources
    shared = {(r.method, r.pattern.text): r for r in v1.tables["magento"]}
    for row in _rows():
        hit = native.lookup("plain", row["method"], _segments(row["url"]))
        assert hit is not None, row
        entry = hit[0]
        acl = row["acl_resources"]
        if row["url"] == "/V1/integration/admin/token":
            assert entry.acl == "deny"
        elif acl in ("anonymous", "self"):
            assert entry.acl == acl, row
        else:
            route = shared[(entry.route.method, entry.route.pattern.text)]
            # The v1 table's own decision: its resource, or its deny.
            assert entry.acl == ("deny" if route.deny else "edge"), row
            assert entry.route.resource == route.resource
            assert entry.route.rewrite.changes_request is False  # forwarded as sent


def test_the_customer_login_has_its_own_tier() -> None:
    native = load_policy(POLICIES / "magento.toml").native
    assert native is not None
    hit = native.lookup("plain", "POST", ("integration", "customer", "token"))
    assert hit is not None and hit[0].acl == "anonymous" and hit[0].tier == "login"


def _native_policy(tmp_path: Path, native: str) -> Path:
    path = tmp_path / "native.toml"
    path.write_text(f"""
[surface]
name = "n"
base_path = "/"
[errors]
style = "magento"
[ratelimit.tiers.standard]
rate = 1
[native]
{native}
""")
    return path


@pytest.mark.parametrize(
    ("native", "problem"),
    [
        ('policy = "nope.toml"', 'native.policy: "nope.toml" does not load'),
        (f'policy = "{POLICIES / "storeoncloud.toml"}"\ntable = "x"', 'no route table "x"'),
        (f'policy = "{POLICIES / "magento.toml"}"', "is itself a native policy"),
        (
            f'policy = "{POLICIES / "storeoncloud.toml"}"\n'
            'anonymous = [{ method = "GET", path = "/a" }]\n'
            'self = [{ method = "GET", path = "/{x}" }]\n'
            'deny = [{ method = "GET", path = "/a", reason = "r" }]',
            "native.anonymous[0]: GET /a is also native.deny[0]",
        ),
        (
            f'policy = "{POLICIES / "storeoncloud.toml"}"\n'
            'anonymous = [{ method = "GET", path = "/a", tier = "gold" }]',
            'native.anonymous[0].tier: unknown tier "gold"',
        ),
        (
            f'policy = "{POLICIES / "storeoncloud.toml"}"\n'
            'self = [{ method = "PATCH", path = "/a", tier = "standard" }]',
            "native.self[0].tier: unknown key",
        ),
    ],
)
def test_a_bad_native_section_is_refused(tmp_path: Path, native: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_policy(_native_policy(tmp_path, native))
    assert any(problem in p for p in err.value.problems), err.value.problems


def test_the_magento_error_style_is_for_native_policies_only(tmp_path: Path) -> None:
    text = (POLICIES / "storefront.toml").read_text().replace('"envelope"', '"magento"')
    path = tmp_path / "storefront.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"errors\.style"):
        load_policy(path)


def _config(tmp_path: Path, stores: str, policies: tuple[str, ...]) -> Path:
    path = tmp_path / "config.toml"
    listed = ", ".join(f'"{POLICIES / p}"' for p in policies)
    path.write_text(f"[server]\npolicies = [{listed}]\n[keystore]\npath = 'e.db'\n{stores}")
    return path


STORE = """
[stores.{id}]
magento_url = "http://127.0.0.1:9"
credential = {{ kind = "bearer", token_env = "T" }}
"""


@pytest.mark.parametrize(
    ("stores", "policies", "problem"),
    [
        (
            STORE.format(id="a") + "native = true",
            ("storeoncloud.toml",),
            "stores.a.native: no loaded policy serves Magento's own paths",
        ),
        (
            STORE.format(id="a"),
            ("storeoncloud.toml", "magento.toml"),
            "no store sets native = true",
        ),
        (
            STORE.format(id="a") + 'store_codes = ["default"]',
            ("storeoncloud.toml",),
            "stores.a.store_codes: is read only with native = true",
        ),
        (
            STORE.format(id="a") + 'native = true\nstore_codes = ["de fault"]',
            ("storeoncloud.toml", "magento.toml"),
            '"de fault" is not a Magento store code',
        ),
        (
            STORE.format(id="a") + "native = true\n" + STORE.format(id="b") + "native = true",
            ("storeoncloud.toml", "magento.toml"),
            "stores.a.native: with several native stores each needs hosts",
        ),
    ],
)
def test_sidecar_config_that_would_not_work_is_refused(
    tmp_path: Path, stores: str, policies: tuple[str, ...], problem: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, stores, policies), env={"T": "t"})
    assert any(problem in p for p in err.value.problems), err.value.problems


def test_a_native_store_defaults_its_store_codes_and_may_pick_by_host(tmp_path: Path) -> None:
    stores = (
        STORE.format(id="a")
        + 'store_code = "en"\nnative = true\nhosts = ["a.example.com"]\n'
        + STORE.format(id="b")
        + 'native = true\nhosts = ["b.example.com"]\nstore_codes = ["b", "b"]'
    )
    config = load_config(
        _config(tmp_path, stores, ("storeoncloud.toml", "magento.toml")), env={"T": "t"}
    )
    assert config.stores["a"].store_codes == ("en", "all", "default")
    assert config.stores["b"].store_codes == ("b",)
    assert config.stores["a"].native and config.stores["a"].hosts == ("a.example.com",)


def test_the_magento_error_style() -> None:
    err = Unauthorized(
        "The consumer isn't authorized to access %resources.", extra={"resources": "orders:read"}
    )
    status, headers, body = render(err, style="magento", request_id="r", type_base="")
    assert status == 401
    assert body == (
        b'{"message":"The consumer isn\'t authorized to access %resources.",'
        b'"parameters":{"resources":"orders:read"}}'
    )
    assert (b"content-type", b"application/json; charset=utf-8") in headers
    _, _, plain = render(Unauthorized("No."), style="magento", request_id="r", type_base="")
    assert plain == b'{"message":"No."}'  # no parameters: none at all, as Magento


def test_the_example_configs_sidecar_block_loads(tmp_path: Path) -> None:
    """config.example.toml's commented sidecar block, uncommented, is a working config."""
    text = (ROOT / "config.example.toml").read_text()
    block = text[text.index("# [stores.shop]") : text.index("# -- end of sidecar mode")]
    store = "\n".join(line.removeprefix("# ") for line in block.splitlines())
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        f'[server]\npolicies = ["{POLICIES / "storeoncloud.toml"}", "{POLICIES / "magento.toml"}"]\n'
        f"[keystore]\npath = 'e.db'\n{store}\n"
    )
    config = load_config(config_path, env={"SHOP_MAGENTO_TOKEN": "t"})
    shop = config.stores["shop"]
    assert shop.native and shop.store_codes == ("default", "all")
    assert shop.hosts == ("shop.example.com",)


def test_the_host_picks_the_native_store(tmp_path: Path) -> None:
    from proxy.errors import NotFound
    from proxy.native import NativeStores

    stores = (
        STORE.format(id="a")
        + 'native = true\nhosts = ["a.example.com"]\n'
        + STORE.format(id="b")
        + 'native = true\nhosts = ["b.example.com"]\n'
        + STORE.format(id="c")
    )
    config = load_config(
        _config(tmp_path, stores, ("storeoncloud.toml", "magento.toml")), env={"T": "t"}
    )
    natives = NativeStores(config.stores)
    assert natives.store_for("B.Example.com:8443").id == "b"
    assert natives.store_for("a.example.com").id == "a"
    for host in ("c.example.com", "", "127.0.0.1:8080"):  # c is not native; no single one
        with pytest.raises(NotFound):
            natives.store_for(host)
