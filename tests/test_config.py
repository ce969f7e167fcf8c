"""proxy.config.load_config: config.toml (SPEC §2) into frozen objects; every problem named
with file, key path and line; secrets only by environment-variable reference."""

from __future__ import annotations

import ipaddress
import re
import shutil
from pathlib import Path

import pytest

from proxy._toml import ConfigError
from proxy.config import (
    BearerCredential,
    Config,
    OAuth1Credential,
    Timeouts,
    load_config,
)

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_POLICY = ROOT / "policies" / "storeoncloud.toml"

SECRET = "mgt-Sup3rSecretValue-0123456789"

# SPEC §2, verbatim in shape.
SPEC_EXAMPLE = """\
[server]
host = "127.0.0.1"
port = 8080
policies = ["policies/storeoncloud.toml"]   # paths relative to this file
trusted_proxies = []

[keystore]
backend = "sqlite"
path = "edge.db"
# url = "redis://127.0.0.1:6379/0"

[ratelimit]
backend = "memory"

[idempotency]
backend = "memory"
ttl_seconds = 86400

[stores.acme]
name = "Acme Outdoor"
environment = "live"
magento_url = "http://127.0.0.1:9000"
store_code = "default"
credential = { kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }
timeouts = { connect = 2.0, read = 30.0 }

[upstreams.panel]
url = "http://127.0.0.1:9100"
"""


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    (tmp_path / "policies").mkdir()
    shutil.copy(SHIPPED_POLICY, tmp_path / "policies" / "storeoncloud.toml")
    return tmp_path


def _write(directory: Path, text: str, name: str = "config.toml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def _problems(path: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env if env is not None else {"ACME_MAGENTO_TOKEN": SECRET})
    return info.value.problems


def _one(problems: list[str], pattern: str) -> str:
    hits = [p for p in problems if re.search(pattern, p)]
    assert len(hits) == 1, (pattern, problems)
    return hits[0]


# -- the SPEC example -----------------------------------------------------------------------


def test_spec_example_loads(confdir: Path) -> None:
    path = _write(confdir, SPEC_EXAMPLE)
    config = load_config(path, env={"ACME_MAGENTO_TOKEN": SECRET})
    assert isinstance(config, Config)
    assert config.source == path
    assert (config.host, config.port) == ("127.0.0.1", 8080)
    assert config.trusted_proxies == ()
    assert [s.name for s in config.surfaces] == ["storeoncloud"]
    assert config.keystore_backend == "sqlite"
    assert config.keystore_path == confdir / "edge.db"
    assert config.keystore_url is None
    assert (config.ratelimit_backend, config.ratelimit_url) == ("memory", None)
    assert (config.idempotency_backend, config.idempotency_ttl) == ("memory", 86400)
    acme = config.stores["acme"]
    assert (acme.id, acme.name, acme.environment) == ("acme", "Acme Outdoor", "live")
    assert (acme.magento_url, acme.store_code) == ("http://127.0.0.1:9000", "default")
    assert acme.credential == BearerCredential(SECRET)
    assert acme.timeouts == Timeouts(connect=2.0, read=30.0, pool=5.0)
    panel = config.upstreams["panel"]
    assert (panel.name, panel.url) == ("panel", "http://127.0.0.1:9100")
    assert config.max_connections == 512
    assert (config.log_level, config.access_log) == ("info", True)


def _example(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "config.example.toml", tmp_path / "config.toml")
    shutil.copytree(ROOT / "policies", tmp_path / "policies")
    return tmp_path / "config.toml"


def test_shipped_example_config_loads(tmp_path: Path) -> None:
    config = load_config(_example(tmp_path), env={"ACME_MAGENTO_TOKEN": SECRET})
    assert set(config.stores) == {"acme"}
    # All three shipped APIs, the two with an /api/v1 each on its own host.
    hosts = {s.name: s.hosts for s in config.surfaces}
    assert hosts == {
        "storeoncloud": frozenset({"api.storeoncloud.com"}),
        "storeicu": frozenset({"api.store.icu"}),
        "storefront": frozenset(),
    }
    issuer = config.issuers["storeicu"]
    assert (issuer.issuer, issuer.audience) == ("https://auth.store.icu/", "https://api.store.icu")
    assert config.stores["acme"].hosts == ("shop.example.com",)


def test_check_passes_on_the_shipped_example_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from proxy.cli import main

    monkeypatch.setenv("ACME_MAGENTO_TOKEN", SECRET)
    assert main(["check", "--config", str(_example(tmp_path))]) == 0, capsys.readouterr()


ONE_STORE = """\
[stores.acme]
magento_url = "http://127.0.0.1:9000"
credential = { kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }
"""


def test_defaults_for_a_config_with_only_a_store(confdir: Path) -> None:
    config = load_config(_write(confdir, ONE_STORE), env={"ACME_MAGENTO_TOKEN": SECRET})
    assert (config.host, config.port, config.max_connections) == ("127.0.0.1", 8080, 512)
    assert config.keystore_path == confdir / "edge.db"
    assert (config.ratelimit_backend, config.idempotency_backend) == ("memory", "memory")
    acme = config.stores["acme"]
    assert (acme.name, acme.environment, acme.store_code) == ("acme", "live", "default")
    assert config.upstreams == {}
    assert [s.name for s in config.surfaces] == ["storeoncloud"]


def test_trusted_proxies_and_redis_backends(confdir: Path) -> None:
    text = SPEC_EXAMPLE.replace(
        "trusted_proxies = []", 'trusted_proxies = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]'
    )
    text = text.replace(
        'backend = "sqlite"\npath = "edge.db"', 'backend = "redis"\nurl = "redis://r:6379/1"'
    )
    text = text.replace(
        '[ratelimit]\nbackend = "memory"', '[ratelimit]\nbackend = "redis"\nurl = "rediss://r/2"'
    )
    config = load_config(_write(confdir, text), env={"ACME_MAGENTO_TOKEN": SECRET})
    assert config.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("192.0.2.7/32"),
    )
    assert (config.keystore_backend, config.keystore_path) == ("redis", None)
    assert config.keystore_url == "redis://r:6379/1"
    assert (config.ratelimit_backend, config.ratelimit_url) == ("redis", "rediss://r/2")


def test_oauth1_credential_from_env(confdir: Path) -> None:
    text = SPEC_EXAMPLE.replace(
        'credential = { kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }',
        'credential = { kind = "oauth1", consumer_key_env = "CK", consumer_secret_env = "CS", '
        'access_token_env = "AT", access_token_secret_env = "ATS" }',
    )
    env = {"CK": "ck-value", "CS": SECRET + "-cs", "AT": "at-value", "ATS": SECRET + "-ats"}
    config = load_config(_write(confdir, text), env=env)
    assert config.stores["acme"].credential == OAuth1Credential(
        "ck-value", SECRET + "-cs", "at-value", SECRET + "-ats"
    )
    assert SECRET not in repr(config)
    assert SECRET not in repr(config.stores["acme"])


def test_magento_url_trailing_slash_is_dropped(confdir: Path) -> None:
    text = SPEC_EXAMPLE.replace('"http://127.0.0.1:9000"', '"https://shop.example/magento/"')
    config = load_config(_write(confdir, text), env={"ACME_MAGENTO_TOKEN": SECRET})
    assert config.stores["acme"].magento_url == "https://shop.example/magento"


# -- secrets --------------------------------------------------------------------------------


def test_secret_never_appears_in_repr(confdir: Path) -> None:
    config = load_config(_write(confdir, SPEC_EXAMPLE), env={"ACME_MAGENTO_TOKEN": SECRET})
    assert config.stores["acme"].credential.token == SECRET  # type: ignore[union-attr]
    assert SECRET not in repr(config)
    assert SECRET not in str(config)
    assert SECRET not in repr(config.stores)
    assert SECRET not in repr(config.stores["acme"].credential)


@pytest.mark.parametrize("env", [{}, {"ACME_MAGENTO_TOKEN": ""}, {"OTHER": SECRET}])
def test_missing_env_var_is_named_never_valued(confdir: Path, env: dict[str, str]) -> None:
    path = _write(confdir, SPEC_EXAMPLE)
    problems = _problems(path, env=env)
    line = (
        SPEC_EXAMPLE.splitlines().index(
            'credential = { kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }'
        )
        + 1
    )
    assert problems == [
        f"{path}:{line}: stores.acme.credential.token_env: environment variable "
        "ACME_MAGENTO_TOKEN is not set or empty"
    ]
    assert all(SECRET not in p for p in problems)


def test_secrets_never_appear_in_problems(confdir: Path) -> None:
    # Everything else is wrong; the secrets that are set must still not be echoed.
    text = (
        SPEC_EXAMPLE.replace("port = 8080", "port = 99999")
        .replace('magento_url = "http://127.0.0.1:9000"', 'magento_url = "ftp://x"')
        .replace(
            'credential = { kind = "bearer", token_env = "ACME_MAGENTO_TOKEN" }',
            'credential = { kind = "oauth1", consumer_key_env = "CK", consumer_secret_env = "CS", '
            'access_token_env = "AT", access_token_secret_env = "MISSING" }',
        )
    )
    env = {"CK": SECRET + "1", "CS": SECRET + "2", "AT": SECRET + "3"}
    problems = _problems(_write(confdir, text), env=env)
    assert len(problems) == 3
    joined = "\n".join(problems)
    assert SECRET not in joined
    assert "MISSING is not set or empty" in joined


# -- problems name file and key path ------------------------------------------------------------


def test_unknown_top_level_key(confdir: Path) -> None:
    path = _write(confdir, "[servr]\nport = 1\n" + SPEC_EXAMPLE)
    assert _problems(path) == [
        f"{path}:1: servr: unknown key (known: admin, idempotency, issuers, keystore, logging, ratelimit, "
        "secret_scanning, server, stores, upstreams)"
    ]


@pytest.mark.parametrize(
    ("old", "new", "pattern"),
    [
        ('host = "127.0.0.1"', "host = 1", r":2: server\.host: must be a string, got an integer"),
        ("port = 8080", 'port = "8080"', r":3: server\.port: must be an integer, got a string"),
        ("port = 8080", "port = 8080.0", r":3: server\.port: must be an integer, got a number"),
        ("port = 8080", "port = true", r":3: server\.port: must be an integer, got a boolean"),
        ("port = 8080", "port = 65536", r":3: server\.port: must be at most 65535, got 65536"),
        ("port = 8080", "port = -1", r":3: server\.port: must be at least 0, got -1"),
        (
            "trusted_proxies = []",
            'trusted_proxies = "10.0.0.0/8"',
            r"server\.trusted_proxies: must be a list of strings",
        ),
        (
            'policies = ["policies/storeoncloud.toml"]',
            'policies = "policies/storeoncloud.toml"',
            r"server\.policies: must be a list of strings",
        ),
        ("ttl_seconds = 86400", "ttl_seconds = 0", r"idempotency\.ttl_seconds: must be at least 1"),
        ('backend = "memory"', 'backend = "memcached"', r'ratelimit\.backend: unknown value "memcached" \(known: memory, redis, none\)'),
        ('environment = "live"', 'environment = "prod"', r'stores\.acme\.environment: unknown value "prod" \(known: live, sandbox\)'),
        ('store_code = "default"', 'store_code = "de-fault"', r'stores\.acme\.store_code: "de-fault" is not a Magento store code'),
        ("connect = 2.0", "connect = 0", r"stores\.acme\.timeouts\.connect: must be at least 0\.001, got 0"),
        ("read = 30.0", 'read = "30s"', r"stores\.acme\.timeouts\.read: must be a number, got a string"),
        ("read = 30.0", "read = 30.0, idle = 1", r"stores\.acme\.timeouts\.idle: unknown key"),
        ('kind = "bearer"', 'kind = "basic"', r'stores\.acme\.credential\.kind: unknown value "basic" \(known: bearer, oauth1, admin\)'),
        ('token_env = "ACME_MAGENTO_TOKEN"', 'token = "inline"', r"stores\.acme\.credential\.token: unknown key"),
        ('name = "Acme Outdoor"', "name = 3", r"stores\.acme\.name: must be a string, got an integer"),
        ("[upstreams.panel]\n", "[upstreams.panel]\ntimeout = 1\n", r"upstreams\.panel\.timeout: unknown key"),
    ],
)  # fmt: skip
def test_wrong_values_name_file_line_and_key(
    confdir: Path, old: str, new: str, pattern: str
) -> None:
    assert old in SPEC_EXAMPLE
    path = _write(confdir, SPEC_EXAMPLE.replace(old, new, 1))
    problem = _one(_problems(path), pattern)
    assert problem.startswith(f"{path}")


@pytest.mark.parametrize("cidr", ["10.0.0.0/33", "nope", "10.0.0.256/8", "::g/64", ""])
def test_bad_cidr(confdir: Path, cidr: str) -> None:
    path = _write(
        confdir,
        SPEC_EXAMPLE.replace("trusted_proxies = []", f'trusted_proxies = ["10.0.0.0/8", "{cidr}"]'),
    )
    (problem,) = _problems(path)
    assert re.fullmatch(
        rf'{re.escape(str(path))}:5: server\.trusted_proxies\[1\]: "{re.escape(cidr)}" is not an IP network',
        problem,
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1:9000", "must be an http:// or https:// URL with a host"),
        ("127.0.0.1:9000", "must be an http:// or https:// URL with a host"),
        ("http://", "must be an http:// or https:// URL with a host"),
        ("http:///rest", "must be an http:// or https:// URL with a host"),
        ("http://m.example/?a=1", "must not carry a query or fragment"),
        ("http://m.example/#x", "must not carry a query or fragment"),
    ],
)
def test_bad_magento_url(confdir: Path, url: str, message: str) -> None:
    path = _write(confdir, SPEC_EXAMPLE.replace("http://127.0.0.1:9000", url))
    problem = _one(_problems(path), r"stores\.acme\.magento_url: ")
    assert f'"{url}" {message}' in problem
    assert problem.startswith(f"{path}:")


def test_bad_upstream_url_and_reserved_name(confdir: Path) -> None:
    text = SPEC_EXAMPLE.replace('url = "http://127.0.0.1:9100"', 'url = "panel:9100"')
    text += '\n[upstreams.magento]\nurl = "http://m"\n'
    problems = _problems(_write(confdir, text))
    _one(problems, r'upstreams\.panel\.url: "panel:9100" must be an http:// or https:// URL')
    _one(problems, r"upstreams\.magento: \"magento\" is reserved")


def test_bad_redis_url(confdir: Path) -> None:
    text = SPEC_EXAMPLE.replace(
        '[ratelimit]\nbackend = "memory"', '[ratelimit]\nbackend = "redis"\nurl = "http://r"'
    )
    _one(_problems(_write(confdir, text)), r'ratelimit\.url: "http://r" is not a redis:// URL')


def test_bad_store_id(confdir: Path) -> None:
    text = SPEC_EXAMPLE.replace("[stores.acme]", '[stores."ac me"]')
    _one(_problems(_write(confdir, text)), r"stores\.ac me: store ids may use only ASCII letters")


def test_store_must_be_a_table(confdir: Path) -> None:
    path = _write(confdir, "stores = { beta = 1 }\n")
    _one(_problems(path, env={}), r"stores\.beta: must be a table")


def test_many_problems_are_reported_together(confdir: Path) -> None:
    text = (
        SPEC_EXAMPLE.replace("port = 8080", "port = 70000")
        .replace("trusted_proxies = []", 'trusted_proxies = ["x"]')
        .replace('backend = "sqlite"', 'backend = "mysql"')
        .replace('environment = "live"', 'environment = "prod"')
    )
    problems = _problems(_write(confdir, "bogus = 1\n" + text), env={})
    assert len(problems) == 6
    for pattern in (
        r": bogus: unknown key",
        r": server\.port: must be at most 65535",
        r': server\.trusted_proxies\[0\]: "x" is not an IP network',
        r': keystore\.backend: unknown value "mysql"',
        r": stores\.acme\.credential\.token_env: environment variable ACME_MAGENTO_TOKEN",
        r': stores\.acme\.environment: unknown value "prod"',
    ):
        _one(problems, pattern)


def test_unreadable_and_invalid_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml", env={})
    path = _write(tmp_path, "[server\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.problems == [
        f"{path}:1: server: invalid TOML: Expected ']' at the end of a table declaration (column 8)"
    ]


# -- policies -----------------------------------------------------------------------------


def test_policies_are_relative_to_the_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "etc" / "edge"
    (conf / "surfaces").mkdir(parents=True)
    shutil.copy(SHIPPED_POLICY, conf / "surfaces" / "v1.toml")
    text = SPEC_EXAMPLE.replace('"policies/storeoncloud.toml"', '"surfaces/v1.toml"')
    config = load_config(_write(conf, text), env={"ACME_MAGENTO_TOKEN": SECRET})
    assert [s.source for s in config.surfaces] == [(conf / "surfaces" / "v1.toml").resolve()]
    assert config.keystore_path == conf / "edge.db"


def test_absolute_policy_path(tmp_path: Path) -> None:
    text = SPEC_EXAMPLE.replace('"policies/storeoncloud.toml"', f'"{SHIPPED_POLICY.as_posix()}"')
    config = load_config(_write(tmp_path, text), env={"ACME_MAGENTO_TOKEN": SECRET})
    assert config.surfaces[0].source == SHIPPED_POLICY


def test_policy_problems_are_named_by_their_relative_path(confdir: Path) -> None:
    policy = confdir / "policies" / "storeoncloud.toml"
    policy.write_text(
        policy.read_text().replace(
            'path = "/orders", resource = "orders"', 'path = "/orders", resource = "order"', 1
        )
    )
    problems = _problems(_write(confdir, SPEC_EXAMPLE.replace("port = 8080", "port = -5")))
    assert len(problems) == 2
    _one(problems, r": server\.port: must be at least 0")
    assert re.fullmatch(
        r"policies/storeoncloud\.toml:\d+: routes\.magento\[\d+\]\.resource: unknown resource "
        r'"order" \(known: backups, customers, .*\)',
        _one(problems, "unknown resource"),
    )


def test_an_empty_policy_list_is_refused(confdir: Path) -> None:
    text = SPEC_EXAMPLE.replace('["policies/storeoncloud.toml"]', "[]")
    _one(
        _problems(_write(confdir, text)),
        r":4: server\.policies: must name at least one policy file",
    )


def test_missing_policy_file(confdir: Path) -> None:
    text = SPEC_EXAMPLE.replace('"policies/storeoncloud.toml"', '"policies/nope.toml"')
    (problem,) = _problems(_write(confdir, text))
    assert problem.startswith("policies/nope.toml: cannot read")


def _policy_copy(directory: Path, name: str, base_path: str) -> None:
    text = SHIPPED_POLICY.read_text().replace('base_path = "/api/v1"', f'base_path = "{base_path}"')
    (directory / "policies" / name).write_text(text)


def test_two_policies_claiming_the_same_base_path(confdir: Path) -> None:
    _policy_copy(confdir, "other.toml", "/api/v1")
    text = SPEC_EXAMPLE.replace(
        '["policies/storeoncloud.toml"]', '["policies/storeoncloud.toml", "policies/other.toml"]'
    )
    (problem,) = _problems(_write(confdir, text))
    assert re.search(
        r': server\.policies: other\.toml and storeoncloud\.toml both claim the base path "/api/v1"',
        problem,
    )


def test_two_policies_with_distinct_base_paths(confdir: Path) -> None:
    _policy_copy(confdir, "other.toml", "/api/v9")
    text = SPEC_EXAMPLE.replace(
        '["policies/storeoncloud.toml"]', '["policies/storeoncloud.toml", "policies/other.toml"]'
    )
    config = load_config(_write(confdir, text), env={"ACME_MAGENTO_TOKEN": SECRET})
    assert [s.base_path for s in config.surfaces] == ["/api/v1", "/api/v9"]


def test_a_nested_base_path_routes_to_the_longest_match(confdir: Path) -> None:
    from proxy.decide import surface_for

    _policy_copy(confdir, "broad.toml", "/api")
    text = SPEC_EXAMPLE.replace(
        '["policies/storeoncloud.toml"]', '["policies/broad.toml", "policies/storeoncloud.toml"]'
    )
    config = load_config(_write(confdir, text), env={"ACME_MAGENTO_TOKEN": SECRET})
    v1 = surface_for(config.surfaces, ("api", "v1", "stores"))
    broad = surface_for(config.surfaces, ("api", "v2", "stores"))
    assert v1 is not None and v1.base_path == "/api/v1"
    assert broad is not None and broad.base_path == "/api"


# -- a setting that loads is a setting that works (SPEC §2) ---------------------------------


def _line(text: str, needle: str) -> int:
    """The 1-based line of the only line of ``text`` that holds ``needle``."""
    (hit,) = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return hit


REDIS_SECTIONS = {
    "keystore": ('backend = "sqlite"\npath = "edge.db"', 'backend = "redis"'),
    "ratelimit": ('[ratelimit]\nbackend = "memory"', '[ratelimit]\nbackend = "redis"'),
    "idempotency": ('[idempotency]\nbackend = "memory"', '[idempotency]\nbackend = "redis"'),
}


@pytest.mark.parametrize("section", sorted(REDIS_SECTIONS))
def test_a_redis_backend_without_the_package_is_refused(
    confdir: Path, monkeypatch: pytest.MonkeyPatch, section: str
) -> None:
    import importlib.util

    old, new = REDIS_SECTIONS[section]
    text = SPEC_EXAMPLE.replace(old, f'{new}\nurl = "redis://127.0.0.1:6379/0"')
    path = _write(confdir, text)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "redis" else real(name, *a)
    )
    # Before: `check` passed and `serve` crashed on the first import for ratelimit.
    line = _line(text, 'backend = "redis"')
    assert _problems(path) == [
        f'{path}:{line}: {section}.backend: "redis" needs the redis package '
        "(pip install 'magento-edge[redis]')"
    ]


@pytest.mark.parametrize("section", sorted(REDIS_SECTIONS))
def test_a_redis_backend_without_a_url_is_refused(confdir: Path, section: str) -> None:
    old, new = REDIS_SECTIONS[section]
    text = SPEC_EXAMPLE.replace(old, new)
    path = _write(confdir, text)
    # Named at its table: never a silent default of 127.0.0.1.
    line = _line(text, f"[{section}]")
    assert _problems(path) == [
        f'{path}:{line}: {section}.url: is required with backend = "redis" (redis://HOST:PORT/DB)'
    ]


@pytest.mark.parametrize(
    ("old", "new", "key", "owner", "backend"),
    [
        ('path = "edge.db"', 'path = "edge.db"\nurl = "redis://r/0"', "keystore.url", "redis", "sqlite"),
        ('path = "edge.db"', 'path = "edge.db"\nprefix = "x:"', "keystore.prefix", "redis", "sqlite"),
        ('backend = "sqlite"', 'backend = "redis"\nurl = "redis://r/0"', "keystore.path", "sqlite", "redis"),
        ('[ratelimit]\nbackend = "memory"', '[ratelimit]\nbackend = "memory"\nurl = "redis://r/0"', "ratelimit.url", "redis", "memory"),
        ('[ratelimit]\nbackend = "memory"', '[ratelimit]\nbackend = "none"\nurl = "redis://r/0"', "ratelimit.url", "redis", "none"),
        ("ttl_seconds = 86400", 'ttl_seconds = 86400\nurl = "redis://r/0"', "idempotency.url", "redis", "memory"),
    ],
)  # fmt: skip
def test_a_key_the_chosen_backend_never_reads_is_refused(
    confdir: Path, old: str, new: str, key: str, owner: str, backend: str
) -> None:
    text = SPEC_EXAMPLE.replace(old, new, 1)
    path = _write(confdir, text)
    needle = {"keystore.path": "path =", "keystore.prefix": "prefix ="}.get(
        key, 'url = "redis://r/0"'
    )
    assert _problems(path) == [
        f'{path}:{_line(text, needle)}: {key}: is only used with backend = "{owner}" '
        f'(this backend is "{backend}")'
    ]


@pytest.mark.parametrize(
    ("text", "line"), [("# nothing\n", ""), ("[server]\nport = 8080\n\n[stores]\n", ":4")]
)
def test_a_config_without_stores_is_refused(confdir: Path, text: str, line: str) -> None:
    path = _write(confdir, text)
    assert _problems(path, env={}) == [
        f"{path}{line}: stores: no store is configured: add a [stores.ID] table"
    ]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/rest",
        "http://127.0.0.1:9000/rest/",
        "http://127.0.0.1:9000/rest/V1",
        "https://shop.example/magento/rest/default/V1",
        "https://shop.example/REST",
    ],
)
def test_a_magento_url_ending_in_rest_is_refused(confdir: Path, url: str) -> None:
    text = SPEC_EXAMPLE.replace("http://127.0.0.1:9000", url)
    path = _write(confdir, text)
    base = url.rstrip("/")
    assert _problems(path) == [
        f'{path}:{_line(text, "magento_url")}: stores.acme.magento_url: "{base}" must be '
        "Magento's base URL, without /rest (the policy's mount target adds "
        "/rest/{store_code}/V1)"
    ]


def test_a_magento_base_under_a_path_that_only_looks_like_rest_loads(confdir: Path) -> None:
    text = SPEC_EXAMPLE.replace("http://127.0.0.1:9000", "http://127.0.0.1:9000/restaurant/shop")
    config = load_config(_write(confdir, text), env={"ACME_MAGENTO_TOKEN": SECRET})
    assert config.stores["acme"].magento_url == "http://127.0.0.1:9000/restaurant/shop"


# -- every problem carries file:line: key.path ----------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # type errors inside inline tables: the line of the inline table
        ('kind = "bearer"', "kind = 1", "stores.acme.credential.kind: must be a string, got an integer"),
        ("read = 30.0", 'read = "30s"', "stores.acme.timeouts.read: must be a number, got a string"),
        ('token_env = "ACME_MAGENTO_TOKEN"', 'token_env = "ACME_MAGENTO_TOKEN", token = "x"', "stores.acme.credential.token: unknown key (known: kind, token_env)"),
        # a required key that is absent: the line of the table that lacks it
        ('magento_url = "http://127.0.0.1:9000"\n', "", "stores.acme.magento_url: is required"),
        # a table given as something else
        ("timeouts = { connect = 2.0, read = 30.0 }", "timeouts = 5", "stores.acme.timeouts: must be a table, got an integer"),
        ("[upstreams.panel]\n", "[upstreams.panel]\ntimeout = 1\n", "upstreams.panel.timeout: unknown key (known: max_connections, timeouts, url)"),
    ],
)  # fmt: skip
def test_problems_carry_the_line_of_their_key(
    confdir: Path, old: str, new: str, expected: str
) -> None:
    text = SPEC_EXAMPLE.replace(old, new, 1)
    path = _write(confdir, text)
    key = expected.split(":", 1)[0]
    needle = {
        "stores.acme.magento_url": "[stores.acme]",
        "upstreams.panel.timeout": "timeout =",
    }.get(key, new.split(" =")[0] if "{" not in new else new)
    if key.startswith("stores.acme.credential"):
        needle = "credential ="
    elif key.startswith("stores.acme.timeouts"):
        needle = "timeouts ="
    assert _problems(path) == [f"{path}:{_line(text, needle)}: {expected}"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[server\n", ":1: server: invalid TOML: Expected ']' at the end of a table declaration (column 8)"),
        ('[server]\nport = 1\nport = 2\n', ":3: server.port: invalid TOML: Cannot overwrite a value (column 9)"),
        ('[stores.acme]\ncredential = { kind = "bearer" token_env = "X" }\n', ":2: stores.acme.credential: invalid TOML: Unclosed inline table (column 32)"),
        ('[server]\nhost = \n', ":2: server.host: invalid TOML: Invalid value (column 8)"),
        ("[server]\npolicies = [\n", ":2: server.policies: invalid TOML: Invalid value (at end of file)"),
    ],
)  # fmt: skip
def test_toml_syntax_errors_carry_line_and_key(confdir: Path, text: str, expected: str) -> None:
    path = _write(confdir, text)
    assert _problems(path, env={}) == [f"{path}{expected}"]


# -- host names (check refuses, serve warns) ------------------------------------------------


def test_unresolvable_hosts_are_named_with_their_lines(confdir: Path) -> None:
    from proxy.config import unresolved_hosts

    # RFC 2606: .invalid never resolves. Two keys naming one host: both named.
    text = SPEC_EXAMPLE.replace("http://127.0.0.1:9000", "http://shop.invalid:9000").replace(
        "http://127.0.0.1:9100", "http://shop.invalid:9100"
    )
    text += '\n[upstreams.local]\nurl = "http://localhost:9200"\n'
    path = _write(confdir, text)
    problems = unresolved_hosts(load_config(path, env={"ACME_MAGENTO_TOKEN": SECRET}))
    assert len(problems) == 2
    magento, panel = problems
    assert magento.startswith(
        f'{path}:{_line(text, "magento_url")}: stores.acme.magento_url: host "shop.invalid" '
        "does not resolve ("
    )
    assert panel.startswith(
        f'{path}:{_line(text, "shop.invalid:9100")}: upstreams.panel.url: host "shop.invalid" '
        "does not resolve ("
    )


def test_ip_literals_are_not_looked_up(confdir: Path) -> None:
    from proxy.config import unresolved_hosts

    def refuse(host: str) -> object:
        raise AssertionError(f"looked up {host}")

    config = load_config(_write(confdir, SPEC_EXAMPLE), env={"ACME_MAGENTO_TOKEN": SECRET})
    assert unresolved_hosts(config, resolve=refuse) == []


def test_a_lookup_without_an_answer_is_a_problem_after_the_timeout(confdir: Path) -> None:
    import threading

    from proxy.config import unresolved_hosts

    text = SPEC_EXAMPLE.replace("127.0.0.1:9000", "slow.invalid:9000")
    config = load_config(_write(confdir, text), env={"ACME_MAGENTO_TOKEN": SECRET})
    release = threading.Event()
    try:
        problems = unresolved_hosts(config, timeout=0.05, resolve=lambda host: release.wait(5))
    finally:
        release.set()
    assert [p.split(": ", 1)[1] for p in problems] == [
        'stores.acme.magento_url: host "slow.invalid" does not resolve (no answer within 0.05 s)'
    ]


def test_check_refuses_an_unresolvable_host(
    confdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from proxy.cli import main

    monkeypatch.setenv("ACME_MAGENTO_TOKEN", SECRET)
    text = SPEC_EXAMPLE.replace("http://127.0.0.1:9000", "http://shop.invalid")
    path = _write(confdir, text)
    assert main(["check", "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"{path}:{_line(text, 'magento_url')}: stores.acme.magento_url: host ")


def test_serve_warns_about_an_unresolvable_host_and_serves(
    confdir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    import uvicorn

    from proxy import server

    ran: list[bool] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, *a, **k: ran.append(True))
    monkeypatch.setattr(gc, "freeze", lambda: None)  # not this test process's heap
    monkeypatch.setenv("ACME_MAGENTO_TOKEN", SECRET)
    text = SPEC_EXAMPLE.replace("http://127.0.0.1:9000", "http://shop.invalid")
    path = _write(confdir, text)
    with caplog.at_level("WARNING", logger="magento_edge"):
        server.serve(path)
    assert ran == [True]
    (warning,) = [r.getMessage() for r in caplog.records if "does not resolve" in r.getMessage()]
    assert warning.startswith(f"{path}:{_line(text, 'magento_url')}: stores.acme.magento_url: ")
    assert warning.endswith("(serving anyway: requests to it fail until it resolves)")


# -- operations (issue #12): workers, drain, grace, log format ------------------------------


def test_operations_keys_default_and_load(confdir: Path) -> None:
    config = load_config(_write(confdir, SPEC_EXAMPLE), env={"ACME_MAGENTO_TOKEN": SECRET})
    assert (config.workers, config.drain_seconds, config.grace_seconds) == (1, 5.0, 30.0)
    assert (config.log_format, config.allow_per_process_state) == ("json", False)
    text = (
        SPEC_EXAMPLE.replace(
            "port = 8080\n",
            "port = 8080\nworkers = 3\nallow_per_process_state = true\n"
            "drain_seconds = 0.5\ngrace_seconds = 120\n",
            1,
        )
        + '\n[logging]\nformat = "text"\n'
    )
    config = load_config(_write(confdir, text), env={"ACME_MAGENTO_TOKEN": SECRET})
    assert (config.workers, config.drain_seconds, config.grace_seconds) == (3, 0.5, 120.0)
    assert (config.log_format, config.allow_per_process_state) == ("text", True)


def test_operations_keys_are_checked(confdir: Path) -> None:
    text = (
        SPEC_EXAMPLE.replace("port = 8080\n", "port = 8080\nworkers = 0\ndrain_seconds = -1\n", 1)
        + '\n[logging]\nformat = "xml"\n'
    )
    problems = _problems(_write(confdir, text))
    _one(problems, r"server\.workers.*at least 1")
    _one(problems, r"server\.drain_seconds.*at least 0")
    _one(problems, r'logging\.format.*unknown value "xml" \(known: json, text\)')


def test_workers_with_memory_state_need_consent(confdir: Path) -> None:
    text = SPEC_EXAMPLE.replace("port = 8080\n", "port = 8080\nworkers = 2\n", 1)
    problem = _one(_problems(_write(confdir, text)), r"server\.workers")
    assert "[ratelimit] backend and [idempotency] backend" in problem
    assert "allow_per_process_state = true" in problem
