"""Property tests over real HTTP: whatever path, method or header a client sends, the edge
answers with no 5xx of its own, and nothing reaches a Magento route whose resource the
token lacks (the stand-in counts every route it actually runs)."""

from __future__ import annotations

import http.client
from collections import Counter

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from proxy.routing import compile_pattern
from tests.conftest import Harness

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
    conn = http.client.HTTPConnection(harness.url.removeprefix("http://"), timeout=10)
    try:
        conn.putrequest("GET", "/api/v1/stores/acme/commerce/products/MB-01")
        try:
            conn.putheader("Authorization", auth)
            conn.putheader("X-Request-Id", request_id)
            conn.putheader("Connection", connection)
            conn.putheader("X-Forwarded-For", xff)
        except ValueError:
            assume(False)
        conn.endheaders()
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status < 500, (response.status, body[:200])
    if response.status == 200:  # only a real token gets through
        raise AssertionError("an arbitrary Authorization value was accepted")
