"""proxy.versions: which surface and version a request addresses (host, base path), and a
version's lifecycle by date — loading, ``check``, and end to end through a real server with
the edge's clock moved across each date."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from proxy._toml import ConfigError
from proxy.backends.keystore.sqlite import SQLiteKeyStore
from proxy.config import load_config
from proxy.edge import Edge
from proxy.policy import load_policy
from proxy.versions import host_problem, index, match, normalize_host, parse_when
from tests.conftest import (
    MAGENTO_TOKEN,
    REPO,
    FakeClock,
    Harness,
    env,
    running_edge,
    write_config,
)
from tests.servers import serving

SHIPPED = (REPO / "policies" / "storeoncloud.toml").read_text()
LINK = "https://developer.example.com/migrate/v0-to-v1"
VERSIONS = f"""
[[versions]]
name = "v0"
base_path = "/api/v0"
deprecation = "2025-01-01"
sunset = "2026-01-01T12:00:00+02:00"
link = "{LINK}"

[[versions]]
name = "latest"
base_path = "/api/latest"
"""


def _epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


DEPRECATION = _epoch("2025-01-01T00:00:00")
SUNSET = _epoch("2026-01-01T10:00:00")  # 12:00 at +02:00


def _policy(directory: Path, text: str, name: str = "policy.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def _problems(path: Path) -> list[str]:
    try:
        load_policy(path)
    except ConfigError as exc:
        return exc.problems
    return []


# -- dates and hosts ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "epoch"),
    [
        ("2025-06-30", _epoch("2025-06-30T00:00:00")),
        ("2025-06-30T12:30:00Z", _epoch("2025-06-30T12:30:00")),
        ("2025-06-30t12:30:00.5z", _epoch("2025-06-30T12:30:00.5")),
        ("2025-06-30T12:30:00-01:00", _epoch("2025-06-30T13:30:00")),
        (dt.date(2025, 6, 30), _epoch("2025-06-30T00:00:00")),
        (dt.datetime(2025, 6, 30, 1, tzinfo=dt.UTC), _epoch("2025-06-30T01:00:00")),
    ],
)
def test_dates(value: object, epoch: float) -> None:
    assert parse_when(value) == epoch


@pytest.mark.parametrize(
    "value",
    [
        "2025-6-30", "2025-06-31", "June 30, 2025", "2025-06-30T12:30", "2025-06-30T12:30:00",
        "@1735689600", "Wed, 31 Dec 2025 23:59:59 GMT", "", 20250630,
        dt.datetime(2025, 6, 30, 1),  # a TOML local date-time: no offset
    ],
)  # fmt: skip
def test_bad_dates_say_why(value: object) -> None:
    assert isinstance(parse_when(value), str)


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("API.Store.icu", "api.store.icu"),
        ("api.store.icu:8443", "api.store.icu"),
        ("api.store.icu.", "api.store.icu"),
        ("[::1]:8080", "::1"),
        ("127.0.0.1:80", "127.0.0.1"),
        ("", ""),
    ],
)
def test_normalize_host(raw: str, host: str) -> None:
    assert normalize_host(raw) == host


@pytest.mark.parametrize(
    "host", ["https://api.store.icu", "api.store.icu:443", "*.store.icu", "a/b", "-x.com", ""]
)
def test_bad_host_names(host: str) -> None:
    assert host_problem(host) is not None


def test_good_host_names() -> None:
    assert host_problem("api.store.icu") is None
    assert host_problem("::1") is None
    assert host_problem("10.0.0.1") is None


# -- loading --------------------------------------------------------------------------------


def test_versions_load_with_their_dates_and_headers(tmp_path: Path) -> None:
    s = load_policy(_policy(tmp_path, SHIPPED + VERSIONS))
    v0, latest = s.versions
    assert (v0.name, v0.base_path, v0.base_parts) == ("v0", "/api/v0", ("api", "v0"))
    assert (v0.deprecation, v0.sunset, v0.link) == (DEPRECATION, SUNSET, LINK)
    assert v0.headers == (
        (b"deprecation", f"@{int(DEPRECATION)}".encode()),
        (b"sunset", b"Thu, 01 Jan 2026 10:00:00 GMT"),
        (b"link", f'<{LINK}>; rel="deprecation"'.encode()),
    )
    assert [v0.status(t) for t in (DEPRECATION - 1, DEPRECATION, SUNSET - 1, SUNSET)] == [
        "current", "deprecated", "deprecated", "retired",
    ]  # fmt: skip
    assert (latest.headers, latest.status(SUNSET * 2)) == ((), "current")


def test_toml_dates_are_accepted(tmp_path: Path) -> None:
    text = SHIPPED + (
        '\n[[versions]]\nname = "v0"\nbase_path = "/api/v0"\n'
        f'deprecation = 2025-01-01\nsunset = 2026-01-01T10:00:00Z\nlink = "{LINK}"\n'
    )
    (v0,) = load_policy(_policy(tmp_path, text)).versions
    assert (v0.deprecation, v0.sunset) == (DEPRECATION, SUNSET)


def test_a_sunset_without_deprecation_warns_from_the_start(tmp_path: Path) -> None:
    text = SHIPPED + (
        f'\n[[versions]]\nname = "v0"\nbase_path = "/api/v0"\nsunset = "2026-01-01"\n'
        f'link = "{LINK}"\n'
    )
    (v0,) = load_policy(_policy(tmp_path, text)).versions
    assert [n for n, _ in v0.headers] == [b"sunset", b"link"]  # no date to give Deprecation
    assert v0.status(0) == "deprecated"


def test_version_problems_name_file_line_and_key(tmp_path: Path) -> None:
    lines = SHIPPED.count("\n")
    text = SHIPPED + (
        "\n[[versions]]\n"  # +2
        'name = "v0"\n'  # +3
        'base_path = "/api/v1"\n'  # +4: the surface's own
        'deprecation = "2025-13-01"\n'  # +5
        'sunset = "soon"\n'  # +6
        'link = "ftp://x"\n'  # +7
        'status = "retired"\n'  # +8: no longer a key, the dates decide
        "\n[[versions]]\n"  # +10
        'name = "v0"\n'  # +11
        'base_path = "/api/{x}"\n'  # +12
        'deprecation = "2026-01-01"\n'  # +13
        'sunset = "2025-01-01"\n'  # +14
        "\n[[versions]]\n"  # +16
        'name = "alias"\n'
        'base_path = "/api/alias"\n'
        'link = "https://x.example/"\n'  # +19
    )
    path = _policy(tmp_path, text)
    problems = _problems(path)
    expected = [
        rf':{lines + 4}: versions\[0\]\.base_path: "/api/v1" is also surface\.base_path',
        rf":{lines + 5}: versions\[0\]\.deprecation: .*not a valid date",
        rf':{lines + 6}: versions\[0\]\.sunset: "soon" must be YYYY-MM-DD',
        rf':{lines + 7}: versions\[0\]\.link: "ftp://x" must be an http:// or https:// URL',
        rf":{lines + 8}: versions\[0\]\.status: unknown key",
        rf':{lines + 11}: versions\[1\]\.name: "v0" is also versions\[0\]',
        rf":{lines + 12}: versions\[1\]\.base_path: must not contain variables",
        rf":{lines + 14}: versions\[1\]\.sunset: must come after deprecation",
        rf":{lines + 10}: versions\[1\]: a version with a deprecation or sunset date needs",
        rf":{lines + 19}: versions\[2\]\.link: is only sent once a version is deprecated",
    ]
    for pattern in expected:
        assert len([p for p in problems if re.search(pattern, p)]) == 1, (pattern, problems)
    assert len(problems) == len(expected), problems
    assert all(p.startswith(f"{path}:") for p in problems)


def test_hosts_load_lower_cased_and_are_checked(tmp_path: Path) -> None:
    text = SHIPPED.replace(
        'base_path = "/api/v1"', 'base_path = "/api/v1"\nhosts = ["API.Example.com", "x.test."]'
    )
    assert load_policy(_policy(tmp_path, text)).hosts == {"api.example.com", "x.test"}
    bad = SHIPPED.replace('base_path = "/api/v1"', 'base_path = "/api/v1"\nhosts = ["a.com:80"]')
    (problem,) = _problems(_policy(tmp_path, bad))
    assert re.search(r':\d+: surface\.hosts: "a\.com:80" is not a host name', problem)
    empty = SHIPPED.replace('base_path = "/api/v1"', 'base_path = "/api/v1"\nhosts = []')
    (problem,) = _problems(_policy(tmp_path, empty))
    assert "surface.hosts: must name at least one host" in problem


# -- check: two surfaces on one base path ---------------------------------------------------


def _variant(name: str, hosts: str | None, base_path: str = "/api/v1") -> str:
    text = SHIPPED.replace('name = "storeoncloud"', f'name = "{name}"')
    line = f'base_path = "{base_path}"' + (f"\nhosts = {hosts}" if hosts is not None else "")
    return text.replace('base_path = "/api/v1"', line)


def _config(directory: Path, policies: list[Path], *, trusted: bool = False) -> Path:
    """The test config (conftest.write_config) naming ``policies``."""
    path = write_config(directory, "http://127.0.0.1:9", None)
    text = re.sub(
        r"policies = \[.*\]", f"policies = {[str(p) for p in policies]!r}", path.read_text()
    )
    text = text.replace("'", '"')
    if trusted:
        text = text.replace("port = 0\n", 'port = 0\ntrusted_proxies = ["127.0.0.1/32"]\n')
    path.write_text(text)
    return path


def _two(tmp_path: Path, hosts_a: str | None, hosts_b: str | None, extra_b: str = "") -> Path:
    a = _policy(tmp_path, _variant("devapi", hosts_a), "a.toml")
    b = _policy(tmp_path, _variant("partner", hosts_b) + extra_b, "b.toml")
    return _config(tmp_path, [a, b])


def _check(path: Path) -> list[str]:
    try:
        load_config(path, env=env())
    except ConfigError as exc:
        return exc.problems
    return []


@pytest.mark.parametrize(
    ("hosts_a", "hosts_b", "where"),
    [
        (None, None, r"on every host \(neither declares \[surface\] hosts\)"),
        (None, '["api.store.icu"]', r'on host "api\.store\.icu" \(a surface without hosts'),
        ('["a.test", "API.store.icu"]', '["api.store.icu"]', r'on host "api\.store\.icu"$'),
    ],
)
def test_check_refuses_one_base_path_on_one_host(
    tmp_path: Path, hosts_a: str | None, hosts_b: str | None, where: str
) -> None:
    (problem,) = _check(_two(tmp_path, hosts_a, hosts_b))
    assert re.search(
        rf'server\.policies: b\.toml and a\.toml both claim the base path "/api/v1" {where}',
        problem,
    )


def test_check_accepts_one_base_path_on_disjoint_hosts(tmp_path: Path) -> None:
    assert _check(_two(tmp_path, '["dev.test"]', '["api.store.icu"]')) == []


def test_one_policy_needs_no_hosts(tmp_path: Path) -> None:
    a = _policy(tmp_path, SHIPPED + VERSIONS, "a.toml")
    assert _check(_config(tmp_path, [a])) == []


def test_check_counts_a_versions_base_path(tmp_path: Path) -> None:
    # The partner API's retired v1 and the developer API's current v1 both live at /api/v1.
    retired_v1 = f'\n[[versions]]\nname = "v1"\nbase_path = "/api/v1"\nsunset = "2025-06-30"\nlink = "{LINK}"\n'
    a = _policy(tmp_path, _variant("devapi", None), "a.toml")
    b = _policy(
        tmp_path, _variant("partner", '["api.store.icu"]', "/api/v3") + retired_v1, "b.toml"
    )
    (problem,) = _check(_config(tmp_path, [a, b]))
    assert re.search(
        r'b\.toml and a\.toml both claim the base path "/api/v1" on host "api\.store\.icu"', problem
    )
    a.write_text(_variant("devapi", '["api.storeoncloud.test"]'))
    assert _check(_config(tmp_path, [a, b])) == []


# -- routing by host, then base path --------------------------------------------------------


def test_match_prefers_the_surfaces_that_name_the_host(tmp_path: Path) -> None:
    broad = load_policy(
        _policy(
            tmp_path,
            SHIPPED.replace('base_path = "/api/v1"', 'base_path = "/api"\nhosts = ["a.test"]'),
            "broad.toml",
        )
    )
    v1 = load_policy(_policy(tmp_path, SHIPPED + VERSIONS, "v1.toml"))
    bases = index([v1, broad])
    segments = ("api", "v1", "stores")
    hit = match(bases, segments, "A.test:8080")
    assert hit is not None and hit.surface is broad  # a white-labelled host is its surface's
    hit = match(bases, segments, "other.test")
    assert hit is not None and (hit.surface, hit.version) == (v1, None)
    hit = match(bases, ("api", "v0", "stores"), "other.test")
    assert hit is not None and hit.surface is v1 and hit.version is v1.versions[0]
    assert match(bases, ("api", "v9"), "other.test") is None


# -- end to end: the clock moves across each date -------------------------------------------


@pytest.fixture(scope="module")
def versioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Harness, FakeClock]]:
    directory = tmp_path_factory.mktemp("versions")
    clock = FakeClock(DEPRECATION - 3600)
    policy = _policy(directory, SHIPPED + VERSIONS)
    with running_edge(directory, panel=False, policy=policy, clock=clock) as h:
        yield h, clock


def _lifecycle(r: httpx.Response) -> dict[str, str]:
    return {k: r.headers[k] for k in ("deprecation", "sunset", "link") if k in r.headers}


def test_a_version_across_its_dates(versioned: tuple[Harness, FakeClock]) -> None:
    h, clock = versioned
    token = h.token("products:read")
    headers = {
        "deprecation": f"@{int(DEPRECATION)}",
        "sunset": "Thu, 01 Jan 2026 10:00:00 GMT",
        "link": f'<{LINK}>; rel="deprecation"',
    }
    with h.client(token) as c:
        # before the deprecation date: served like the current version, nothing said
        clock.now = DEPRECATION - 1
        r = c.get("/api/v0/stores/acme/commerce/products/MB-01")
        assert r.status_code == 200 and r.json()["sku"] == "MB-01"
        assert _lifecycle(r) == {}
        assert h.standin.requests[-1]["raw_path"] == b"/rest/default/V1/products/MB-01"
        # from the deprecation date: served, with the lifecycle headers on every answer
        for now in (DEPRECATION, SUNSET - 1):
            clock.now = now
            r = c.get("/api/v0/stores/acme/commerce/products/MB-01")
            assert r.status_code == 200 and _lifecycle(r) == headers
            missing = c.get("/api/v0/stores/acme/commerce/no-such-route")
            assert missing.status_code == 404 and _lifecycle(missing) == headers
            stores = c.get("/api/v0/stores")  # the edge's own endpoints are served too
            assert stores.status_code == 200 and _lifecycle(stores) == headers
        # the current base path never carries them
        assert _lifecycle(c.get("/api/v1/stores/acme/commerce/products/MB-01")) == {}
        # from the sunset on: 410 in the surface's style, with the migration link
        for now in (SUNSET, SUNSET + 86400 * 365):
            clock.now = now
            seen = len(h.standin.requests)
            r = c.get("/api/v0/stores/acme/commerce/products/MB-01")
            assert r.status_code == 410
            assert r.headers["content-type"] == "application/problem+json"
            doc = r.json()
            assert doc["type"].endswith("/version-retired")
            assert (doc["link"], doc["version"], doc["sunset"]) == (
                LINK,
                "v0",
                "2026-01-01T10:00:00Z",
            )
            assert LINK in doc["detail"] and "/api/v1" in doc["detail"]
            assert _lifecycle(r) == headers
            assert len(h.standin.requests) == seen  # nothing went upstream
    # retired before auth: no token needed to learn it is gone
    with h.client() as anonymous:
        assert anonymous.get("/api/v0/stores").status_code == 410


def test_a_version_without_dates_is_an_alias(versioned: tuple[Harness, FakeClock]) -> None:
    h, clock = versioned
    clock.now = SUNSET * 2
    with h.client(h.token("products:read")) as c:
        r = c.get("/api/latest/stores/acme/commerce/products/MB-01")
    assert r.status_code == 200 and _lifecycle(r) == {}


ENVELOPE_VERSIONS = SHIPPED.replace('style = "problem"', 'style = "envelope"') + VERSIONS


def test_a_retired_version_in_the_envelope(tmp_path: Path) -> None:
    clock = FakeClock(SUNSET)
    policy = _policy(tmp_path, ENVELOPE_VERSIONS)
    with running_edge(tmp_path, panel=False, policy=policy, clock=clock) as h:
        with h.client() as c:
            r = c.get("/api/v0/stores/acme/commerce/products/MB-01")
        assert r.status_code == 410
        assert r.headers["content-type"] == "application/json"
        error = r.json()["error"]
        assert error["code"] == "VERSION_RETIRED"
        assert error["details"] == {"version": "v0", "sunset": "2026-01-01T10:00:00Z", "link": LINK}
        assert error["request_id"] == r.headers["x-request-id"]


# -- end to end: hosts ----------------------------------------------------------------------


@contextmanager
def _edge(directory: Path, policies: list[Path], *, trusted: bool) -> Iterator[Harness]:
    from magento_standin import create_standin

    standin = create_standin(bearer_tokens=[MAGENTO_TOKEN])
    with serving(standin) as magento:
        path = _config(directory, policies, trusted=trusted)
        path.write_text(path.read_text().replace("http://127.0.0.1:9", magento.url))
        config = load_config(path, env=env())
        edge = Edge.from_config(config, SQLiteKeyStore(config.keystore_path or ""))
        with serving(edge) as server:
            yield Harness(server.url, path, config, standin, None, edge)  # type: ignore[arg-type]


def _two_apis(tmp_path: Path) -> list[Path]:
    dev = _variant("storeoncloud", '["dev.test"]')
    partner = _variant("partner", '["api.store.icu"]').replace(
        'style = "problem"', 'style = "envelope"'
    )
    return [_policy(tmp_path, dev, "dev.toml"), _policy(tmp_path, partner, "partner.toml")]


PRODUCT = "/api/v1/stores/acme/commerce/products/MB-01"


def test_hosts_pick_the_surface_end_to_end(tmp_path: Path) -> None:
    with _edge(tmp_path, _two_apis(tmp_path), trusted=False) as h, h.client() as c:
        r = c.get(PRODUCT, headers={"Host": "API.Store.icu:8443"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = c.get(PRODUCT, headers={"Host": "dev.test"})
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        r = c.get(PRODUCT, headers={"Host": "elsewhere.test"})
        assert r.status_code == 404  # no surface serves that host
        # an untrusted peer's X-Forwarded-Host is not believed
        r = c.get(PRODUCT, headers={"Host": "dev.test", "X-Forwarded-Host": "api.store.icu"})
        assert r.headers["content-type"] == "application/problem+json"
        token = h.token("products:read")
        r = c.get(PRODUCT, headers={"Host": "api.store.icu", "Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["sku"] == "MB-01"


def test_a_trusted_proxys_forwarded_host_picks_the_surface(tmp_path: Path) -> None:
    with _edge(tmp_path, _two_apis(tmp_path), trusted=True) as h, h.client() as c:
        r = c.get(PRODUCT, headers={"Host": "dev.test", "X-Forwarded-Host": "api.store.icu"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
