"""proxy.policy.load_policy: API surfaces from policies/*.toml, validated up front with the
file, key path and line of every problem (SPEC §2, §4)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy._toml import ConfigError
from proxy.policy import Surface, Tier, load_policy

SHIPPED = Path(__file__).resolve().parent.parent / "policies" / "storeoncloud.toml"

HEAD = """\
resources = ["orders", "products"]

[surface]
name = "mini"
base_path = "/api/mini"

[ratelimit.tiers.standard]
rate = 10
"""

MOUNT = """
[[mounts]]
name = "commerce"
path = "/stores/{store}/commerce"
target = "/rest/{store_code}/V1"
routes = "magento"
"""

ROUTES = """
[routes]
magento = [
  { method = "GET", path = "/orders", resource = "orders" },
  { method = "POST", path = "/products/base-prices-information", resource = "products", access = "read" },
  { method = "GET", path = "/integration/x", deny = "never" },
]
"""

MINIMAL = HEAD + MOUNT + ROUTES


def _with_routes(*lines: str) -> str:
    """MINIMAL with ``lines`` appended to routes.magento (indexes 3, 4, ...)."""
    assert MINIMAL.endswith("]\n")
    return MINIMAL[: -len("]\n")] + "".join(f"  {line},\n" for line in lines) + "]\n"


def _write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _problems(path: Path, display: str | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_policy(path, display)
    assert info.value.problems
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def _one(problems: list[str], pattern: str) -> str:
    hits = [p for p in problems if re.search(pattern, p)]
    assert len(hits) == 1, (pattern, problems)
    return hits[0]


# -- the shipped policy ---------------------------------------------------------------------


def test_shipped_policy_loads() -> None:
    s = load_policy(SHIPPED)
    assert isinstance(s, Surface)
    assert (s.name, s.base_path, s.base_parts) == ("storeoncloud", "/api/v1", ("api", "v1"))
    assert set(s.resources) == {
        "stores", "design", "settings", "email", "domains", "members", "webhooks",
        "integrations", "extensions", "backups", "deployments", "orders", "products",
        "customers", "inventory",
    }  # fmt: skip
    assert len(s.resources) == 15
    assert s.auth == "pat" and s.jwt is None
    assert s.error_style == "problem"
    assert s.error_type_base == "https://developer.storeoncloud.com/errors/"
    assert s.header_style == "ratelimit"
    assert s.default_tier == "standard"
    assert s.tiers["standard"] == Tier("standard", rate=60, period=60.0, burst=120, daily=20000)
    assert s.tiers["internal"].daily == 0
    assert [m.name for m in s.mounts] == ["commerce_bulk", "commerce_async", "commerce", "panel"]
    bulk, async_, commerce, panel = s.mounts
    assert bulk.form == "bulk" and bulk.methods == frozenset({"POST", "PUT", "PATCH", "DELETE"})
    assert async_.form == "plain" and async_.methods == bulk.methods
    assert commerce.methods is None and commerce.target == "/rest/{store_code}/V1"
    assert panel.upstream == "panel"
    assert [(e.method, e.pattern.text, e.handler, e.auth) for e in s.endpoints] == [
        ("GET", "/stores", "stores", True),
        ("GET", "/openapi.json", "openapi", False),
        ("POST", "/secret-scanning/leaks", "leaked_tokens", False),
    ]
    # 384 Magento routes plus the async bulk alias PUT /products.
    assert len(s.tables["magento"]) == 385
    assert len(s.tables["panel"]) == 20
    assert s.versions == ()


def test_required_access_by_method_or_override() -> None:
    s = load_policy(SHIPPED)
    by_key = {(r.method, r.pattern.text): r for r in s.tables["magento"]}
    products = by_key[("GET", "/products/{sku}")]
    assert products.required_access("GET") == "read"
    assert products.required_access("HEAD") == "read"
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert products.required_access(method) == "write"
    read_post = by_key[("POST", "/products/base-prices-information")]
    assert read_post.access == "read" and read_post.required_access("POST") == "read"


def test_minimal_policy_defaults(tmp_path: Path) -> None:
    s = load_policy(_write(tmp_path, MINIMAL))
    assert s.title == "mini"
    assert s.version == "1.0.0"
    assert s.auth == "pat"
    assert s.error_style == "problem"
    assert s.error_type_base == "about:blank#"
    assert s.header_style == "ratelimit"
    assert s.default_tier == "standard"
    assert s.tiers["standard"] == Tier("standard", rate=10, period=60.0, burst=10, daily=0)
    route = s.tables["magento"][2]
    assert (route.deny, route.resource, route.form) == ("never", None, "any")
    assert s.mounts[0].upstream == "magento" and s.mounts[0].form == "plain"


# -- error messages ---------------------------------------------------------------------------


def test_unknown_resource_names_file_line_key_and_known_resources(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        '{ method = "GET", path = "/orders", resource = "orders" }',
        '{ method = "GET", path = "/orders", resource = "order" }',
    )
    path = _write(tmp_path, text)
    line = (
        text.splitlines().index('  { method = "GET", path = "/orders", resource = "order" },') + 1
    )
    problems = _problems(path, display="policies/p.toml")
    assert problems == [
        f'policies/p.toml:{line}: routes.magento[0].resource: unknown resource "order" '
        "(known: orders, products)"
    ]


def test_unknown_resource_in_the_shipped_policy_shape(tmp_path: Path) -> None:
    original = SHIPPED.read_text()
    text = original.replace(
        'path = "/orders", resource = "orders"', 'path = "/orders", resource = "order"', 1
    )
    assert text != original
    problems = _problems(_write(tmp_path, text, "storeoncloud.toml"), "policies/storeoncloud.toml")
    assert len(problems) == 1
    assert re.fullmatch(
        r"policies/storeoncloud\.toml:\d+: routes\.magento\[\d+\]\.resource: unknown resource "
        r'"order" \(known: backups, customers, deployments, design, domains, email, extensions, '
        r"integrations, inventory, members, orders, products, settings, stores, webhooks\)",
        problems[0],
    )


def test_without_display_the_path_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL.replace('resource = "orders"', 'resource = "nope"'))
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}:")


@pytest.mark.parametrize(
    ("addition", "key"),
    [
        (
            "\n[extra]\nx = 1\n",
            r": extra: unknown key \(known: auth, endpoints, errors, lists, mounts, ",
        ),
        ('\n[auth]\nkind = "pat"\nscope = {}\n', r": auth\.scope: unknown key"),
        ('\n[errors]\nstyle = "problem"\ntypebase = "x"\n', r": errors\.typebase: unknown key"),
        ('\n[ratelimit]\nheader = "ratelimit"\n', r": ratelimit\.header: unknown key"),
    ],
)
def test_unknown_keys_are_refused(tmp_path: Path, addition: str, key: str) -> None:
    text = HEAD + MOUNT + addition + ROUTES
    _one(_problems(_write(tmp_path, text)), key)


def test_unknown_keys_in_nested_tables(tmp_path: Path) -> None:
    text = (
        HEAD.replace('base_path = "/api/mini"', 'base_path = "/api/mini"\nbasepath = "/x"')
        + "burts = 5\n"
        + MOUNT.replace('routes = "magento"', 'routes = "magento"\nupstreams = "x"')
        + ROUTES.replace('resource = "orders" }', 'resource = "orders", acess = "read" }')
    )
    problems = _problems(_write(tmp_path, text))
    _one(
        problems,
        r": surface\.basepath: unknown key \(known: base_path, hosts, name, title, version\)",
    )
    _one(problems, r": ratelimit\.tiers\.standard\.burts: unknown key")
    _one(problems, r": mounts\[0\]\.upstreams: unknown key")
    _one(problems, r": routes\.magento\[0\]\.acess: unknown key")
    assert len(problems) == 4


def test_duplicate_routes(tmp_path: Path) -> None:
    path = _write(
        tmp_path, _with_routes('{ method = "GET", path = "/orders/", resource = "products" }')
    )
    assert _problems(path) == [
        f"{path}:21: routes.magento[3]: duplicates routes.magento[0] ({path}:18): both are "
        "GET /orders/; only one can ever match"
    ]


BULK_MOUNT = """
[[mounts]]
name = "bulk"
path = "/stores/{store}/bulk"
target = "/rest/{store_code}/async/bulk/V1"
routes = "magento"
form = "bulk"
"""


def test_same_path_with_another_method_or_form_is_not_a_duplicate(tmp_path: Path) -> None:
    text = _with_routes(
        '{ method = "PUT", path = "/orders", resource = "orders" }',
        '{ method = "GET", path = "/items", resource = "orders", form = "plain" }',
        '{ method = "GET", path = "/items", resource = "products", form = "bulk" }',
    )
    assert len(load_policy(_write(tmp_path, text + BULK_MOUNT)).tables["magento"]) == 6


def test_same_shape_with_other_variable_names_is_a_duplicate(tmp_path: Path) -> None:
    text = _with_routes(
        '{ method = "GET", path = "/orders/{id}", resource = "orders" }',
        '{ method = "GET", path = "/orders/{orderId}", deny = "no" }',
    )
    _one(_problems(_write(tmp_path, text)), r"routes\.magento\[4\]: duplicates")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("orders", r'pattern "orders" must start with "/"'),
        ("/orders//x", "has an empty segment"),
        ("/a/{x}/{x}", 'repeats the variable "x"'),
        ("/a/{x:path}/b", "must be the last segment"),
        ("/a%2Fb", "is not a plain literal"),
        ("/a/{b", "bad variable segment"),
    ],
)
def test_bad_route_patterns(tmp_path: Path, path: str, message: str) -> None:
    text = MINIMAL.replace('path = "/orders"', f'path = "{path}"')
    (problem,) = _problems(_write(tmp_path, text))
    assert ": routes.magento[0].path: " in problem
    assert message in problem


def test_route_needs_resource_or_deny(tmp_path: Path) -> None:
    text = MINIMAL.replace(', resource = "orders" }', " }").replace('deny = "never"', 'deny = ""')
    problems = _problems(_write(tmp_path, text))
    _one(problems, r": routes\.magento\[0\]: needs a resource \(or deny = \"reason\"\)")
    _one(problems, r": routes\.magento\[2\]\.deny: must be a non-empty string")


def test_route_method_access_form_and_target_are_checked(tmp_path: Path) -> None:
    text = _with_routes(
        '{ method = "FETCH", path = "/a", resource = "orders" }',
        '{ method = "GET", path = "/b", resource = "orders", access = "admin" }',
        '{ method = "GET", path = "/c", resource = "orders", form = "batch" }',
        '{ method = "GET", path = "/d/{id}", resource = "orders", target = "/e/{sku}" }',
        '{ method = "GET", path = "/f", resource = "orders", target = "g" }',
    )
    problems = _problems(_write(tmp_path, text))
    _one(problems, r'routes\.magento\[3\]\.method: unknown value "FETCH" \(known: GET, HEAD, ')
    _one(problems, r'routes\.magento\[4\]\.access: unknown value "admin" \(known: read, write\)')
    _one(problems, r'routes\.magento\[5\]\.form: unknown value "batch"')
    _one(problems, r'routes\.magento\[6\]\.target: "/e/\{sku\}" uses unknown variable \{sku\}')
    _one(problems, r'routes\.magento\[7\]\.target: "g" must start with "/"')
    assert len(problems) == 5


def test_routes_must_be_an_array(tmp_path: Path) -> None:
    text = HEAD + MOUNT + '\n[routes]\nmagento = "x"\n'
    _one(_problems(_write(tmp_path, text)), r": routes\.magento: must be an array")


def test_mount_referencing_an_unknown_route_table(tmp_path: Path) -> None:
    text = MINIMAL.replace('routes = "magento"', 'routes = "magneto"')
    # Only the typo: the table it meant is not also reported unused.
    (problem,) = _problems(_write(tmp_path, text))
    assert re.search(
        r': mounts\[0\]\.routes: unknown route table "magneto" \(known: magento\)', problem
    )


def test_mount_checks(tmp_path: Path) -> None:
    text = (
        HEAD
        + """
[[mounts]]
path = "/files/{rest:path}"
target = "/x"
routes = "magento"

[[mounts]]
path = "/stores/{store}"
target = "/rest/{code}/V1"
routes = "magento"
methods = ["GET", "FETCH"]
form = "zip"
auth = "basic"
"""
        + ROUTES
    )
    problems = _problems(_write(tmp_path, text))
    _one(problems, r"mounts\[0\]\.path: a mount path cannot end in \{name:path\}")
    _one(problems, r'mounts\[1\]\.target: "/rest/\{code\}/V1" uses unknown variable \{code\}')
    _one(problems, r'mounts\[1\]\.methods: unknown method "FETCH"')
    _one(problems, r'mounts\[1\]\.form: unknown value "zip"')
    _one(problems, r'mounts\[1\]\.auth: unknown value "basic"')


def test_mounts_are_ordered_most_specific_first(tmp_path: Path) -> None:
    text = (
        HEAD
        + """
[[mounts]]
name = "short"
path = "/stores/{store}"
target = "/"
routes = "magento"

[[mounts]]
name = "long"
path = "/stores/{store}/commerce/async"
target = "/"
routes = "magento"

[[mounts]]
name = "mid"
path = "/stores/{store}/commerce"
target = "/"
routes = "magento"
"""
        + ROUTES
    )
    assert [m.name for m in load_policy(_write(tmp_path, text)).mounts] == ["long", "mid", "short"]


@pytest.mark.parametrize(
    ("tier", "pattern"),
    [
        (
            "[ratelimit.tiers.standard]\nburst = 5\n",
            r"ratelimit\.tiers\.standard\.rate: is required",
        ),
        ("[ratelimit.tiers.standard]\nrate = 0\n", r"\.rate: must be at least 1, got 0"),
        ("[ratelimit.tiers.standard]\nrate = 1.5\n", r"\.rate: must be an integer, got a number"),
        ("[ratelimit.tiers.standard]\nrate = true\n", r"\.rate: must be an integer, got a boolean"),
        ('[ratelimit.tiers.standard]\nrate = 5\nburst = "x"\n', r"\.burst: must be an integer"),
        (
            "[ratelimit.tiers.standard]\nrate = 5\nperiod = 0\n",
            r"\.period: must be at least 0\.001",
        ),
        ("[ratelimit.tiers.standard]\nrate = 5\ndaily = -1\n", r"\.daily: must be at least 0"),
        ("[ratelimit]\ntiers = { standard = 5 }\n", r"ratelimit\.tiers\.standard: must be a table"),
        (
            '[ratelimit]\nheaders = "ratelimit"\n',
            r"ratelimit\.tiers: must define at least one tier",
        ),
    ],
)
def test_tier_validation(tmp_path: Path, tier: str, pattern: str) -> None:
    head = HEAD.replace("[ratelimit.tiers.standard]\nrate = 10\n", tier)
    _one(_problems(_write(tmp_path, head + MOUNT + ROUTES)), pattern)


def test_default_tier_must_exist(tmp_path: Path) -> None:
    head = HEAD.replace(
        "[ratelimit.tiers.", '[ratelimit]\ndefault_tier = "gold"\n\n[ratelimit.tiers.'
    )
    (problem,) = _problems(_write(tmp_path, head + MOUNT + ROUTES))
    assert re.search(
        r':\d+: ratelimit\.default_tier: unknown tier "gold" \(known: standard\)', problem
    )


def test_resources_and_base_path(tmp_path: Path) -> None:
    text = MINIMAL.replace('resources = ["orders", "products"]', "resources = []").replace(
        'base_path = "/api/mini"', 'base_path = "/api/{v}"'
    )
    problems = _problems(_write(tmp_path, text))
    _one(problems, r": resources: must list at least one resource")
    _one(problems, r": surface\.base_path: must not contain variables")


def test_missing_required_keys(tmp_path: Path) -> None:
    problems = _problems(_write(tmp_path, 'resources = ["x"]\n'))
    _one(problems, r"surface\.name: is required")
    _one(problems, r"surface\.base_path: is required")


def test_many_problems_are_reported_together(tmp_path: Path) -> None:
    text = (
        MINIMAL.replace('resource = "orders"', 'resource = "order"')
        .replace('routes = "magento"', 'routes = "x"')
        .replace("rate = 10", "rate = 0")
        .replace("[surface]", "bogus = 1\n[surface]")
    )
    problems = _problems(_write(tmp_path, text))
    assert len(problems) == 4
    assert all(p.startswith(f"{tmp_path / 'p.toml'}") for p in problems)


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path / "missing.toml", "policies/missing.toml")
    assert problem.startswith("policies/missing.toml: cannot read")
    (problem,) = _problems(_write(tmp_path, "resources = [\n"), "policies/p.toml")
    assert problem == "policies/p.toml:1: resources: invalid TOML: Invalid value (at end of file)"
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'name = "caf\xe9"\n')
    (problem,) = _problems(bad, "policies/latin1.toml")
    assert problem == "policies/latin1.toml: not UTF-8 text"


# -- auth ---------------------------------------------------------------------------------

JWT = """
[auth]
kind = "jwt"
issuer = "storeicu"

[auth.scopes]
read_orders = ["orders:read"]
admin = ["*:write"]
"""


def test_jwt_policy_loads_naming_its_config_issuer(tmp_path: Path) -> None:
    path = _write(tmp_path, HEAD + JWT + MOUNT + ROUTES)
    s = load_policy(path)
    assert s.auth == "jwt"
    assert s.jwt is not None
    assert (s.jwt.issuer, dict(s.jwt.claims), s.jwt.where) == ("storeicu", {}, f"{path}:12")
    assert s.scopes == {"read_orders": (("orders", "read"),), "admin": (("*", "write"),)}


def test_jwt_claims_may_be_renamed(tmp_path: Path) -> None:
    text = HEAD + JWT + '\n[auth.claims]\nstore_id = "https://store.icu/store"\nscp = "roles"\n'
    s = load_policy(_write(tmp_path, text + MOUNT + ROUTES))
    assert s.jwt is not None
    assert dict(s.jwt.claims) == {"store_id": "https://store.icu/store", "scp": "roles"}


def test_jwt_claim_renames_are_checked(tmp_path: Path) -> None:
    text = HEAD + JWT + '\n[auth.claims]\nstore = "sid"\njti = ""\nscope = 3\n'
    problems = _problems(_write(tmp_path, text + MOUNT + ROUTES))
    _one(problems, r":19: auth\.claims\.store: unknown key \(known: client_id, jti, partner_tier")
    _one(problems, r":20: auth\.claims\.jti: must name a claim")
    _one(problems, r":21: auth\.claims\.scope: must be a string, got an integer")
    assert len(problems) == 3


def test_the_old_inline_jwt_table_points_to_config_issuers(tmp_path: Path) -> None:
    # The issuer is deployment data (SPEC §4.2): an inline [auth.jwt] is refused, saying where.
    text = HEAD + JWT + '\n[auth.jwt]\nissuer = "https://id.example"\n' + MOUNT + ROUTES
    problems = _problems(_write(tmp_path, text))
    _one(problems, r":18: auth\.jwt: the issuer is deployment data: define it in config\.toml")
    assert len(problems) == 1


def test_jwt_oauth_urls_document_the_issuer(tmp_path: Path) -> None:
    urls = 'token_url = "https://id.example/token"\nauthorization_url = "https://id.example/a"\n'
    s = load_policy(
        _write(
            tmp_path, HEAD + JWT.replace("[auth.scopes]", urls + "[auth.scopes]") + MOUNT + ROUTES
        )
    )
    assert s.jwt is not None
    assert (s.jwt.token_url, s.jwt.authorization_url) == (
        "https://id.example/token",
        "https://id.example/a",
    )
    bare = load_policy(_write(tmp_path, HEAD + JWT + MOUNT + ROUTES, "bare.toml")).jwt
    assert bare is not None and (bare.token_url, bare.authorization_url) == (None, None)


@pytest.mark.parametrize(
    ("urls", "message"),
    [
        ('token_url = "ftp://id.example/token"', r'auth\.token_url: "ftp://id\.example/token" must be an http'),
        ('token_url = 3', r"auth\.token_url: must be a string"),
        ('authorization_url = "https://id.example/a"', r"auth\.authorization_url: the authorization code flow needs auth\.token_url"),
    ],
)  # fmt: skip
def test_jwt_oauth_urls_are_checked(tmp_path: Path, urls: str, message: str) -> None:
    text = HEAD + JWT.replace("[auth.scopes]", urls + "\n[auth.scopes]") + MOUNT + ROUTES
    problems = _problems(_write(tmp_path, text))
    _one(problems, message)
    assert len(problems) == 1


def test_jwt_kind_needs_an_issuer_and_scopes(tmp_path: Path) -> None:
    text = HEAD + '\n[auth]\nkind = "jwt"\n' + MOUNT + ROUTES
    problems = _problems(_write(tmp_path, text))
    _one(problems, r":10: auth\.issuer: is required")
    _one(problems, r":10: auth\.scopes: JWT access tokens need \[auth\.scopes\]")
    assert len(problems) == 2


def test_jwt_settings_without_jwt_in_use_are_refused(tmp_path: Path) -> None:
    # A setting that loads is a setting that works (SPEC §2): with personal tokens only,
    # an issuer, claim renames or scopes would never be read.
    text = HEAD + JWT.replace('kind = "jwt"', 'kind = "pat"') + '[auth.claims]\njti = "id"\n'
    text = text.replace(
        'issuer = "storeicu"\n', 'issuer = "storeicu"\ntoken_url = "https://i.example/t"\n'
    )
    path = _write(tmp_path, text + MOUNT + ROUTES)
    problems = _problems(path)
    _one(problems, r':12: auth\.issuer: is only read with auth\.kind = "jwt"')
    _one(problems, r':13: auth\.token_url: is only read with auth\.kind = "jwt"')
    _one(problems, r':15: auth\.scopes: is only read with auth\.kind = "jwt"')
    _one(problems, r':18: auth\.claims: is only read with auth\.kind = "jwt"')
    assert len(problems) == 4


def test_a_jwt_mount_on_a_pat_surface_uses_the_surface_issuer(tmp_path: Path) -> None:
    text = HEAD + JWT.replace('kind = "jwt"', 'kind = "pat"') + MOUNT + ROUTES
    text = text.replace('routes = "magento"', 'routes = "magento"\nauth = "jwt"')
    s = load_policy(_write(tmp_path, text))
    assert s.auth == "pat" and s.mounts[0].auth == "jwt"
    assert s.jwt is not None and s.jwt.issuer == "storeicu"
    # Without the issuer, the jwt mount cannot be served.
    bare = HEAD + MOUNT.replace('routes = "magento"', 'routes = "magento"\nauth = "jwt"') + ROUTES
    problems = _problems(_write(tmp_path, bare, "bare.toml"))
    _one(problems, r"auth\.issuer: is required")


def test_scope_grants_are_checked(tmp_path: Path) -> None:
    text = (
        HEAD + '\n[auth]\nkind = "jwt"\nissuer = "x"\n'
        '\n[auth.scopes]\nok = ["orders:read", "*:write"]\nbad = ["orders", "order:read", '
        '"orders:admin"]\nnotalist = "orders:read"\n' + MOUNT + ROUTES
    )
    problems = _problems(_write(tmp_path, text))
    _one(problems, r'auth\.scopes\.bad: "orders" must be RESOURCE:read or RESOURCE:write')
    _one(problems, r'auth\.scopes\.bad: unknown resource "order" \(known: orders, products\)')
    _one(problems, r'auth\.scopes\.bad: "orders:admin" must be RESOURCE:read')
    _one(problems, r"auth\.scopes\.notalist: must be a list of RESOURCE:read\|write strings")
    assert len(problems) == 4


# -- endpoints and versions --------------------------------------------------------------------


def test_endpoint_checks(tmp_path: Path) -> None:
    text = MINIMAL + (
        '\n[[endpoints]]\nmethod = "POST"\npath = "/stores"\nhandler = "stores"\n'
        '\n[[endpoints]]\npath = "/x"\nhandler = "graphql"\nauth = "yes"\n'
        '\n[[endpoints]]\npath = "x"\nhandler = "openapi"\n'
    )
    problems = _problems(_write(tmp_path, text))
    _one(problems, r'endpoints\[0\]\.method: unknown value "POST" \(known: GET\)')
    _one(
        problems,
        r'endpoints\[1\]\.handler: unknown value "graphql" \(known: stores, openapi, leaked_tokens\)',
    )
    _one(problems, r"endpoints\[1\]\.auth: must be true or false, got a string")
    _one(problems, r'endpoints\[2\]\.path: pattern "x" must start with "/"')


def test_leaked_tokens_endpoint_is_a_post_without_token_auth(tmp_path: Path) -> None:
    text = MINIMAL + (
        '\n[[endpoints]]\nmethod = "GET"\npath = "/leaks"\nhandler = "leaked_tokens"\n'
        "auth = false\n"
        '\n[[endpoints]]\nmethod = "POST"\npath = "/leaks2"\nhandler = "leaked_tokens"\n'
    )
    problems = _problems(_write(tmp_path, text))
    _one(problems, r'endpoints\[0\]\.method: unknown value "GET" \(known: POST\)')
    _one(problems, r"endpoints\[1\]\.auth: .*sends no token: set auth = false")
    ok = MINIMAL + '\n[[endpoints]]\npath = "/leaks"\nhandler = "leaked_tokens"\nauth = false\n'
    surface = load_policy(_write(tmp_path, ok))
    assert [(e.method, e.handler, e.auth) for e in surface.endpoints] == [
        ("POST", "leaked_tokens", False)
    ]


# Versions ([[versions]]) are tested in tests/test_versions.py.


# -- a v3-shaped policy (SPEC §4.2) -------------------------------------------------------------

V3 = """\
resources = ["products", "orders", "customers", "inventory", "carts", "pages", "reports"]

[surface]
name = "storeicu"
title = "Store.icu Partner API"
version = "3.0.0"
base_path = "/api/v3"

[auth]
kind = "jwt"
issuer = "storeicu"

[auth.claims]
store_id = "store"

[auth.scopes]
read_products = ["products:read"]
write_products = ["products:write"]
read_orders = ["orders:read"]
admin = ["*:write"]

[errors]
style = "envelope"

[ratelimit]
headers = "x-rate-limit"
default_tier = "standard"

[ratelimit.tiers.standard]
rate = 60
period = 60
burst = 120
daily = 20000

[ratelimit.tiers.gold]
rate = 120
burst = 240
daily = 50000

[ratelimit.tiers.platinum]
rate = 240
burst = 480
daily = 100000

[[mounts]]
name = "products"
path = "/stores/{store}"
upstream = "magento"
target = "/rest/{store_code}/V1"
routes = "v3"

[routes]
v3 = [
  { method = "GET", path = "/products", resource = "products", target = "/products" },
  { method = "GET", path = "/products/{id}", resource = "products", target = "/products/{id}" },
  { method = "PUT", path = "/products/{id}", resource = "products", target = "/products/{id}" },
  { method = "GET", path = "/orders/{id}", resource = "orders", target = "/orders/{id}" },
]

[[versions]]
name = "v2"
base_path = "/api/v2"
deprecation = "2025-01-01"
sunset = "2026-01-01"
link = "https://developer.store.icu/migrate/v2-to-v3"

[[versions]]
name = "v1"
base_path = "/api/v1"
sunset = "2025-06-30"
link = "https://developer.store.icu/migrate/v1-to-v3"
"""


# The whole v3 surface loads: JWT auth, scopes and versions are all built.
V3_TODAY = V3


def test_v3_shaped_policy_loads_its_versions(tmp_path: Path) -> None:
    s = load_policy(_write(tmp_path, V3, "storeicu.toml"))
    assert [(v.name, v.base_path) for v in s.versions] == [("v2", "/api/v2"), ("v1", "/api/v1")]


def test_v3_shaped_policy_loads_without_what_is_not_built(tmp_path: Path) -> None:
    s = load_policy(_write(tmp_path, V3_TODAY, "storeicu.toml"))
    assert (s.name, s.title, s.version, s.base_path) == (
        "storeicu",
        "Store.icu Partner API",
        "3.0.0",
        "/api/v3",
    )
    assert (s.auth, len(s.versions)) == ("jwt", 2)
    assert s.jwt is not None
    assert (s.jwt.issuer, dict(s.jwt.claims)) == ("storeicu", {"store_id": "store"})
    assert s.scopes["admin"] == (("*", "write"),)
    assert s.scopes["read_products"] == (("products", "read"),)
    assert s.error_style == "envelope"
    assert s.header_style == "x-rate-limit"
    assert set(s.tiers) == {"standard", "gold", "platinum"}
    assert s.tiers["platinum"] == Tier("platinum", rate=240, period=60.0, burst=480, daily=100000)
    route = s.tables["v3"][1]
    assert route.pattern.text == "/products/{id}"
    assert route.target == "/products/{id}"


def test_v3_route_table_lookup(tmp_path: Path) -> None:
    s = load_policy(_write(tmp_path, V3_TODAY, "storeicu.toml"))
    table = s.table_for(s.mounts[0])
    hit = table.lookup("GET", ("products", "SKU%2F1"))
    assert hit is not None
    route, values = hit
    assert (route.resource, route.target, values) == (
        "products",
        "/products/{id}",
        {"id": "SKU%2F1"},
    )
    assert table.lookup("DELETE", ("products", "x")) is None
    assert table.allowed_methods(("products", "x")) == ["GET", "PUT"]


# -- entries that shadow or contradict one another (SPEC §2): both places named ---------------


def _line(text: str, needle: str) -> int:
    (hit,) = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return hit


def test_the_shipped_policy_has_no_shadowed_or_contradicting_entries() -> None:
    # Every one of its 385 routes is reachable through the mounts that read its table.
    surface = load_policy(SHIPPED)
    assert len(surface.tables["magento"]) == 385 and len(surface.mounts) == 4


def test_an_endpoint_hiding_a_mount_route(tmp_path: Path) -> None:
    text = MINIMAL + (
        '\n[[endpoints]]\npath = "/stores/{id}/commerce/orders"\nhandler = "stores"\n'
    )
    path = _write(tmp_path, text)
    assert _problems(path) == [
        f"{path}:18: routes.magento[0]: GET /stores/{{store}}/commerce/orders through "
        f"mounts[0] ({path}:10) is also matched by endpoints[0] ({path}:23, "
        "/stores/{id}/commerce/orders): endpoints are tried before any mount"
    ]


def test_an_endpoint_hidden_by_an_earlier_endpoint(tmp_path: Path) -> None:
    text = MINIMAL + (
        '\n[[endpoints]]\npath = "/docs/{name}"\nhandler = "openapi"\nauth = false\n'
        '\n[[endpoints]]\npath = "/docs/openapi.json"\nhandler = "openapi"\nauth = false\n'
    )
    path = _write(tmp_path, text)
    assert _problems(path) == [
        f"{path}:28: endpoints[1]: /docs/openapi.json is also matched by endpoints[0] "
        f"({path}:23, /docs/{{name}}), which is tried first: endpoints are tried in file order"
    ]


def test_duplicate_mounts(tmp_path: Path) -> None:
    text = MINIMAL + MOUNT.replace('name = "commerce"', 'name = "again"').replace(
        "{store}", "{shop}"
    )
    path = _write(tmp_path, text)
    assert _problems(path) == [
        f"{path}:25: mounts[1].path: duplicates mounts[0] ({path}:10, "
        "/stores/{store}/commerce): only the first is ever reached"
    ]


def test_mounts_of_equal_standing_that_overlap(tmp_path: Path) -> None:
    text = (
        HEAD
        + (
            '\n[[mounts]]\npath = "/stores/{store}"\ntarget = "/rest/{store_code}/V1"\n'
            'routes = "magento"\n'
            '\n[[mounts]]\npath = "/{section}/acme"\ntarget = "/rest/{store_code}/V1"\n'
            'routes = "magento"\n'
        )
        + ROUTES
    )
    path = _write(tmp_path, text)
    assert _problems(path) == [
        f"{path}:16: mounts[1].path: /{{section}}/acme and mounts[0] ({path}:10, "
        "/stores/{store}) match some paths alike with the same specificity: file order "
        "would decide"
    ]


def test_a_mount_that_takes_every_path_of_another_mounts_route(tmp_path: Path) -> None:
    panel = (
        '[routes]\npanel = [\n  { method = "GET", path = "/commerce/orders", resource = "orders" },\n'
        '  { method = "GET", path = "/settings", resource = "orders" },\n]\n'
    )
    text = (
        MINIMAL.replace("[routes]\n", panel)
        + '\n[[mounts]]\npath = "/stores/{store}"\nupstream = "panel"\ntarget = "/"\n'
        'routes = "panel"\n'
    )
    path = _write(tmp_path, text)
    assert _line(text, "/commerce/orders") == 18 and _line(text, 'routes = "panel"') == 31
    assert _problems(path) == [
        f"{path}:18: routes.panel[0]: GET /stores/{{store}}/commerce/orders through mounts[1] "
        f"({path}:27) is unreachable: mounts[0] ({path}:10, /stores/{{store}}/commerce) takes "
        "every such path first"
    ]


def test_a_route_both_mapped_and_denied_through_star(tmp_path: Path) -> None:
    text = _with_routes('{ method = "*", path = "/orders", deny = "closed" }')
    path = _write(tmp_path, text)
    assert _problems(path) == [
        f"{path}:21: routes.magento[3]: is both mapped and denied with routes.magento[0] "
        f"({path}:18): both match GET /orders and * /orders (the method's route is tried "
        'first, whatever the specificity); denied ("closed") here, orders there'
    ]


def test_a_star_route_contradicting_a_more_specific_method_route(tmp_path: Path) -> None:
    # GET /orders/items would reach orders:read through the GET route: the * route's
    # products decision for that path is bypassed, whatever its specificity.
    text = _with_routes(
        '{ method = "GET", path = "/orders/{id}", resource = "orders" }',
        '{ method = "*", path = "/orders/items", resource = "products" }',
    )
    path = _write(tmp_path, text)
    assert _problems(path) == [
        f"{path}:22: routes.magento[4]: contradicts routes.magento[3] ({path}:21): both "
        "match GET /orders/{id} and * /orders/items (the method's route is tried first, "
        "whatever the specificity); products here, orders there"
    ]


def test_a_star_route_agreeing_with_a_method_route_loads(tmp_path: Path) -> None:
    text = _with_routes(
        '{ method = "GET", path = "/carts/{id}", resource = "orders" }',
        '{ method = "*", path = "/carts/{id}", resource = "orders" }',
    )
    assert len(load_policy(_write(tmp_path, text)).tables["magento"]) == 5


def test_the_same_request_in_the_bulk_form_view(tmp_path: Path) -> None:
    # In the bulk form both routes are GET /orders/bySku: one can never be chosen.
    text = _with_routes(
        '{ method = "GET", path = "/orders/{sku}", resource = "orders" }',
        '{ method = "GET", path = "/orders/bySku", resource = "products", form = "bulk" }',
    )
    path = _write(tmp_path, text + BULK_MOUNT)
    assert _problems(path) == [
        f"{path}:22: routes.magento[4]: contradicts routes.magento[3] ({path}:21): both "
        "match GET /orders/bySku (bulk form); products here, orders there"
    ]


@pytest.mark.parametrize("key", ['resource = "orders"', 'access = "read"', 'target = "/x"'])
def test_a_denied_route_carrying_a_mapping(tmp_path: Path, key: str) -> None:
    text = MINIMAL.replace('deny = "never"', f'deny = "never", {key}')
    path = _write(tmp_path, text)
    name = key.split(" =")[0]
    assert _problems(path) == [
        f"{path}:20: routes.magento[2].{name}: a denied route is never forwarded: drop this or deny"
    ]


def test_a_route_table_no_mount_uses(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "[routes]\n", '[routes]\nspare = [{ method = "GET", path = "/x", resource = "orders" }]\n'
    )
    path = _write(tmp_path, text)
    assert _problems(path) == [f"{path}:17: routes.spare: no mount uses this route table"]


def test_a_bulk_route_without_a_bulk_mount(tmp_path: Path) -> None:
    text = _with_routes('{ method = "PUT", path = "/orders", resource = "orders", form = "bulk" }')
    path = _write(tmp_path, text)
    assert _problems(path) == [
        f'{path}:21: routes.magento[3].form: no mount with form = "bulk" uses routes.magento'
    ]
