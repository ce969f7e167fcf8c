"""Property tests over real HTTP: whatever path, method or header a client sends, the edge
answers with no 5xx of its own, and nothing reaches a Magento route whose resource the
token lacks (the stand-in counts every route it actually runs); and every request the
token may make, read from the policy file itself, does reach Magento, so an edge that
refused everything would fail here too."""

from __future__ import annotations

import http.client
import re
import tomllib
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from proxy.routing import compile_pattern
from tests.conftest import MAGENTO_TOKEN, REPO, Harness

WORDS = [
    "products", "orders", "customers", "inventory", "carts", "mine", "me", "search",
    "stockItems", "source-items", "async", "bulk", "bySku", "V1", "rest", "default", "all",
    "commerce", "stores", "acme", "oak", "lab", "api", "v1", "integration", "admin", "token",
    "items", "MB-01", "BAG%2F01", "1", "base-prices-information", "design", "backups",
]  # fmt: skip
TRICKS = [
    "..", ".", "%2e", "%2E%2e", ".%2e", "%2e.", "%252e%252e", "..%2F", "%2F..%2F", "%2F",
    "%252F", "a%2Fb", "%5C", "\\", "%00", "%", "%zz", "%4", "%ff", "", ";", "%3B", "%20",
    "..;", "%c0%ae",
]  # fmt: skip
segment = st.one_of(
    st.sampled_from(WORDS),
    st.sampled_from(TRICKS),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=8),
)
prefix = st.sampled_from(
    ["/api/v1/stores/acme/commerce/", "/api/v1/stores/acme/", "/api/v1/", "/", "/rest/V1/"]
)
method = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])


def _allowed_routes(h: Harness) -> set[tuple[str, str]]:
    """(method, Magento url) pairs a products:read token may run, from the policy."""
    surface = h.config.surfaces[0]
    out: set[tuple[str, str]] = set()
    for route in surface.tables["magento"]:
        if route.deny is None and route.resource == "products":
            methods = ["GET", "HEAD"] if route.access is None else [route.method]
            if route.access is None and route.method not in ("GET", "HEAD"):
                continue
            for m in methods:
                if route.method in (m, "*"):
                    out.add((m, "/V1/" + route.pattern.sort_key.rstrip("/")))
                    bulk = compile_pattern(route.pattern.text).bulk_form()
                    out.add((m, "/V1/" + bulk.sort_key.rstrip("/")))
    return out


def _normalise(key: str) -> str:
    for p in ("/async/bulk", "/async"):
        if key.startswith(p + "/V1"):
            key = key[len(p) :]
    return key.rstrip("/")


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(prefix=prefix, segments=st.lists(segment, max_size=6), method=method)
def test_no_path_reaches_a_route_the_token_lacks(
    harness: Harness, prefix: str, segments: list[str], method: str
) -> None:
    token = _token(harness)
    path = prefix + "/".join(segments)
    before = Counter(harness.standin.hits)
    conn = http.client.HTTPConnection(harness.url.removeprefix("http://"), timeout=10)
    try:
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
        except (http.client.InvalidURL, ValueError):
            assume(False)
        conn.putheader("Authorization", f"Bearer {token}")
        conn.putheader("Content-Length", "2")
        conn.endheaders(b"{}")
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    reached = Counter(harness.standin.hits) - before
    allowed = _allowed_routes(harness)
    for m, url in reached:
        assert (m, _normalise(url)) in allowed, f"{method} {path} reached {m} {url}"
    # The edge's own answers are never 5xx here: the upstream is up and fast.
    assert response.status < 500, f"{method} {path} -> {response.status}"


_TOKENS: dict[int, str] = {}


def _token(h: Harness) -> str:
    if id(h) not in _TOKENS:
        _TOKENS[id(h)] = h.token("products:read", stores=("acme",), tier="internal")
    return _TOKENS[id(h)]


# -- what the token may do is forwarded --------------------------------------------------

# Read straight from the policy file (not through proxy.policy): the Magento routes of the
# "products" resource that are not denied and that a read grant covers (GET, or an
# explicit access = "read"). Routes are per method: HEAD is not one of Magento's REST
# methods, and the edge answers it 405 on a GET route.
_POLICY = tomllib.loads((REPO / "policies" / "storeoncloud.toml").read_text())
_MAGENTO = _POLICY["routes"]["magento"]
_READABLE = sorted(
    (r["method"], r["path"])
    for r in _MAGENTO
    if r.get("resource") == "products"
    and "deny" not in r
    and (r.get("access") == "read" or (r["method"] == "GET" and "access" not in r))
)
# Magento list routes: a query without searchCriteria gets the policy's default page appended.
_LISTS = {r["path"] for r in _MAGENTO if r.get("list") == "criteria"}
_DEFAULT_PAGE = f"searchCriteria[pageSize]={_POLICY['lists']['default_page_size']}&searchCriteria[currentPage]=1"
# A variable's value is never a literal segment of any route, so the path can only be
# the route it was built from (a literal would win over the variable).
_LITERALS = {part for r in _MAGENTO for part in r["path"].split("/") if not part.startswith("{")}
_value = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.~-]{0,11}", fullmatch=True),
    st.sampled_from(["MB-01", "BAG%2F01", "24-WB04", "a%20b", "%C3%A9t%C3%A9", "1"]),
).filter(lambda v: v not in _LITERALS)
_query = st.sampled_from(
    ["", "searchCriteria%5BpageSize%5D=1", "fields=items%5Bsku%5D&x=1", "a=1&a=2"]
)


@st.composite
def _readable_request(draw: st.DrawFn) -> tuple[str, str, str]:
    method, path = draw(st.sampled_from(_READABLE))
    filled = re.sub(r"\{[^}]+\}", lambda _: draw(_value), path)
    return method, filled, draw(_query)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=_readable_request())
def test_every_request_the_token_may_make_reaches_magento(
    harness: Harness, request: tuple[str, str, str]
) -> None:
    method, path, query = request
    target = "/api/v1/stores/acme/commerce" + path + ("?" + query if query else "")
    last = harness.standin.requests[-1] if harness.standin.requests else None
    conn = http.client.HTTPConnection(harness.url.removeprefix("http://"), timeout=10)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        conn.putheader("Authorization", f"Bearer {_token(harness)}")
        if method == "POST":
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", "2")
            conn.endheaders(b"{}")
        else:
            conn.endheaders()
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert harness.standin.requests, f"{method} {target} reached nothing"
    seen: Any = harness.standin.requests[-1]
    assert seen is not last, f"{method} {target} -> {response.status}, not forwarded"
    assert seen["method"] == method
    assert seen["raw_path"] == ("/rest/default/V1" + path).encode()  # byte for byte
    if method == "GET" and path in _LISTS and "searchCriteria" not in query:
        query = "&".join(q for q in (query, _DEFAULT_PAGE) if q)
    assert seen["query"] == query.encode()  # byte for byte, the default page appended
    assert ("authorization", f"Bearer {MAGENTO_TOKEN}") in seen["headers"]  # the store's
    assert response.status == seen["status"]  # Magento's answer, passed through


# -- headers ------------------------------------------------------------------------------

header_value = st.binary(max_size=80).filter(lambda b: b"\r" not in b and b"\n" not in b)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    auth=header_value,
    request_id=header_value,
    connection=header_value,
    xff=header_value,
)
def test_no_header_value_yields_a_5xx(
    harness: Harness, auth: bytes, request_id: bytes, connection: bytes, xff: bytes
) -> None:
    def get(authorization: bytes) -> tuple[int, bytes, str | None]:
        conn = http.client.HTTPConnection(harness.url.removeprefix("http://"), timeout=10)
        try:
            conn.putrequest("GET", "/api/v1/stores/acme/commerce/products/MB-01")
            try:
                conn.putheader("Authorization", authorization)
                conn.putheader("X-Request-Id", request_id)
                conn.putheader("Connection", connection)
                conn.putheader("X-Forwarded-For", xff)
            except ValueError:
                assume(False)
            conn.endheaders()
            response = conn.getresponse()
            return response.status, response.read(), response.getheader("content-type")
        finally:
            conn.close()

    status, body, _ = get(auth)
    assert status < 500, (status, body[:200])
    if status == 200:  # only a real token gets through
        raise AssertionError("an arbitrary Authorization value was accepted")
    # The same odd headers with the token's real credential: forwarded, answered by Magento.
    before = harness.standin.hits[("GET", "/V1/products/:sku")]
    status, body, content_type = get(f"Bearer {_token(harness)}".encode())
    # The HTTP server's own refusal (the front door, proxy.frontdoor: an about:blank type,
    # no surface known yet), before the edge
    if (
        status == 400
        and content_type == "application/problem+json"
        and b'"type":"about:blank#bad_request"' in body
    ):
        event("the HTTP server refused a header line")
        return  # ... itself, before the edge
    assert status == 200, (status, body[:200])
    assert harness.standin.hits[("GET", "/V1/products/:sku")] == before + 1
