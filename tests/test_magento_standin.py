"""The Magento stand-in, driven as an ASGI app (and once as its own process).

OAuth requests are signed here with oauthlib's RFC 5849 primitives, the way the edge signs
them, so a pass proves the stand-in's independent verifier agrees with oauthlib.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oauthlib.oauth1.rfc5849 import signature as oauth_sig

from magento_standin import MagentoStandin, OAuth1Integration, create_standin, load_routes
from magento_standin import app as ms

BEARER = "integration-bearer-token"
CUSTOMER_TOKEN = "customer-2-token"
ADMIN = ("admin", "admin123!")
INTEGRATION = OAuth1Integration(
    consumer_key="ck" * 16,
    consumer_secret="cs&secret with spaces~" + "s" * 10,
    access_token="at" * 16,
    access_token_secret="ats/secret+" + "t" * 21,
)
OTHER = OAuth1Integration(
    consumer_key="ok" * 16, consumer_secret="x", access_token="ot" * 16, access_token_secret="y"
)
DENIED_PRODUCTS = {
    "message": "The consumer isn't authorized to access %resources.",
    "parameters": {"resources": "Magento_Catalog::products"},
}
NO_ROUTE = {"message": "Request does not match any route."}
JSON_CT = {"Content-Type": "application/json"}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def standin() -> MagentoStandin:
    return create_standin(
        bearer_tokens=[BEARER],
        oauth1=[INTEGRATION, OTHER],
        customer_tokens={CUSTOMER_TOKEN: 2},
        admin_users={ADMIN[0]: ADMIN[1]},
        store_codes=("default", "fr"),
    )


@pytest.fixture
async def client(standin: MagentoStandin) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=standin)
    async with httpx.AsyncClient(transport=transport, base_url="http://magento.test") as c:
        yield c


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The same client, sending the integration's Bearer token."""
    client.headers["Authorization"] = f"Bearer {BEARER}"
    return client


def sign(
    request: httpx.Request,
    integration: OAuth1Integration = INTEGRATION,
    *,
    consumer_secret: str | None = None,
    signature_method: str = "HMAC-SHA256",
    scheme: str | None = None,
    drop: str | None = None,
    nonce: str | None = None,
    timestamp: str = "1700000000",
) -> httpx.Request:
    """Sign ``request`` in place the way the edge does: oauthlib primitives, query
    parameters from ``parse_qsl(keep_blank_values=True)``, the Host header. A fresh nonce
    each time unless given (Magento accepts a nonce once per consumer)."""
    oauth = {
        "oauth_consumer_key": integration.consumer_key,
        "oauth_nonce": nonce or uuid.uuid4().hex,
        "oauth_signature_method": signature_method,
        "oauth_timestamp": timestamp,
        "oauth_token": integration.access_token,
        "oauth_version": "1.0",
    }
    url = request.url
    raw_path = url.raw_path.split(b"?", 1)[0].decode("ascii")
    params = list(oauth.items()) + parse_qsl(url.query.decode("ascii"), keep_blank_values=True)
    uri = oauth_sig.base_string_uri(
        f"{scheme or url.scheme}://placeholder{raw_path}", request.headers["host"]
    )
    base = oauth_sig.signature_base_string(
        request.method, uri, oauth_sig.normalize_parameters(params)
    )
    secrets = SimpleNamespace(
        client_secret=integration.consumer_secret if consumer_secret is None else consumer_secret,
        resource_owner_secret=integration.access_token_secret,
    )
    oauth["oauth_signature"] = oauth_sig.sign_hmac_sha256_with_client(base, secrets)
    if drop:
        del oauth[drop]
    request.headers["Authorization"] = "OAuth " + ", ".join(
        f'{k}="{quote(v, safe="~")}"' for k, v in oauth.items()
    )
    return request


def last_signature(request: httpx.Request) -> str:
    found = re.search(r'oauth_signature="([^"]+)"', request.headers["Authorization"])
    assert found
    return found.group(1)


# --------------------------------------------------------------------------- the route table


def test_route_table_is_the_packaged_one() -> None:
    routes = load_routes()
    assert len(routes) == 384
    by_method: dict[str, int] = {}
    for r in routes:
        by_method[r.method] = by_method.get(r.method, 0) + 1
    assert by_method == {"GET": 170, "POST": 117, "PUT": 59, "DELETE": 38}
    assert sum(r.acl == "anonymous" for r in routes) == 41
    assert sum(r.acl == "self" for r in routes) == 38


def _magento_reference(method: str, path: str) -> str | None:
    """Router.php and Config::getRestRoutes as written: exact, else ksort + last match."""
    routes = [r for r in load_routes() if r.method == method]
    for r in routes:
        if r.url == path:
            return r.url
    segments = path.strip("/").split("/")
    winner = None
    for r in sorted(routes, key=lambda r: r.url.encode()):
        parts = r.url.strip("/").split("/")
        if len(parts) == len(segments) and all(
            p.startswith(":") or p == s for p, s in zip(parts, segments, strict=True)
        ):
            winner = r.url
    return winner


_LITERALS = sorted({p for r in load_routes() for p in r.url.strip("/").split("/")})


@settings(max_examples=300, deadline=None)
@given(
    route=st.sampled_from(load_routes()),
    fillers=st.lists(st.sampled_from([*_LITERALS, "mine", "me", "42", "BAG%2F01"]), min_size=8),
    trailing=st.booleans(),
)
def test_matching_agrees_with_magentos_rule(
    route: ms.MagentoRoute, fillers: list[str], trailing: bool
) -> None:
    it = iter(fillers)
    segments = [p if p is not None else next(it) for p in route.parts]
    path = "/" + "/".join(segments) + ("/" if trailing else "")
    index = ms._indexes()[0]
    found = index.match(route.method, path)
    expected = _magento_reference(route.method, path)
    assert (found[0].url if found else None) == expected
    assert expected is not None  # the route itself always fits its own shape


# --------------------------------------------------------------------------- routing


async def test_unknown_path_is_404_before_auth(client: httpx.AsyncClient) -> None:
    r = await client.get("/rest/V1/nothing/here")
    assert r.status_code == 404
    assert r.json() == NO_ROUTE
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    r = await client.get("/rest/V1/products/MB-01/no-such-child")
    assert (r.status_code, r.json()) == (404, NO_ROUTE)


async def test_unknown_path_is_404_with_credentials_too(admin: httpx.AsyncClient) -> None:
    r = await admin.post("/rest/default/V1/nothing", json={})
    assert (r.status_code, r.json()) == (404, NO_ROUTE)


async def test_paths_outside_rest_are_404(client: httpx.AsyncClient) -> None:
    r = await client.get("/soap/default")  # /graphql is served (magento_standin.graphql)
    assert (r.status_code, r.json()) == (404, NO_ROUTE)


async def test_literal_segments_beat_variables(
    admin: httpx.AsyncClient, standin: MagentoStandin
) -> None:
    r = await admin.get("/rest/V1/products/types")
    assert r.status_code == 200
    assert r.json() == []  # the generic answer of ProductTypeListInterface, not a SKU lookup
    await admin.get("/rest/V1/orders/items?searchCriteria=")
    assert standin.hits[("GET", "/V1/products/types")] == 1
    assert standin.hits[("GET", "/V1/orders/items")] == 1
    assert standin.hits[("GET", "/V1/products/:sku")] == 0


async def test_carts_mine_items_picks_the_mine_route(client: httpx.AsyncClient) -> None:
    # /V1/carts/mine/items/5 is /V1/carts/mine/items/:itemId (self), not
    # /V1/carts/:cartId/items/:itemId (Magento_Cart::manage).
    r = await client.put(
        "/rest/V1/carts/mine/items/5",
        json={"cartItem": {"qty": 2}},
        headers={"Authorization": f"Bearer {BEARER}"},
    )
    assert r.status_code == 401
    assert r.json()["parameters"] == {"resources": "self"}
    r = await client.put(
        "/rest/V1/carts/mine/items/5",
        json={"cartItem": {"qty": 2}},
        headers={"Authorization": f"Bearer {CUSTOMER_TOKEN}"},
    )
    assert r.status_code == 200
    assert r.json() == {"qty": 2, "item_id": "5"}  # the path parameter is written in


async def test_trailing_slashes_are_trimmed(
    admin: httpx.AsyncClient, standin: MagentoStandin
) -> None:
    r = await admin.get("/rest/V1/products/MB-01/")
    assert r.json()["sku"] == "MB-01"
    r = await admin.get("/rest/V1/stockItems/lowStock")  # declared with a trailing slash
    assert r.status_code == 200
    assert standin.hits[("GET", "/V1/stockItems/lowStock/")] == 1


async def test_method_other_than_the_four_is_405(client: httpx.AsyncClient) -> None:
    r = await client.patch("/rest/V1/products/MB-01", json={})
    assert r.status_code == 405
    assert r.json() == {"message": "The PATCH HTTP method is not supported."}
    r = await client.options("/rest/V1/nothing")
    assert r.status_code == 405
    assert r.json() == {"message": "The OPTIONS HTTP method is not supported."}


async def test_unacceptable_accept_is_406_and_xml_is_tolerated(
    admin: httpx.AsyncClient,
) -> None:
    r = await admin.get("/rest/V1/products/MB-01", headers={"Accept": "text/html"})
    assert r.status_code == 406
    assert r.json() == {
        "message": "Server cannot match any of the given Accept HTTP header media type(s) "
        'from the request: "text/html" with media types from the config of response renderer.'
    }
    r = await admin.get("/rest/V1/products/MB-01", headers={"Accept": "application/xml"})
    assert r.status_code == 200
    r = await admin.get("/rest/V1/products/MB-01", headers={"Accept": "text/html, */*;q=0.1"})
    assert r.status_code == 200


# --------------------------------------------------------------------------- store codes


@pytest.mark.parametrize(
    "prefix", ["/rest/default", "/rest", "/rest/all", "/rest/fr", "/rest//default"]
)
async def test_store_prefixes(admin: httpx.AsyncClient, prefix: str) -> None:
    r = await admin.get(f"{prefix}/V1/products/MB-01")
    assert r.status_code == 200
    assert r.json()["sku"] == "MB-01"


@pytest.mark.parametrize("store", ["nosuchstore", "admin"])
async def test_unknown_store_code_is_404(admin: httpx.AsyncClient, store: str) -> None:
    r = await admin.get(f"/rest/{store}/V1/products/MB-01")
    assert (r.status_code, r.json()) == (404, NO_ROUTE)


async def test_not_a_processor_path_is_400(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/rest/default/X1/products")
    assert r.status_code == 400
    assert r.json() == {"message": "Specified request cannot be processed."}


async def test_schema_lists_what_the_caller_may_use(client: httpx.AsyncClient) -> None:
    guest = (await client.get("/rest/default/schema?services=all")).json()
    assert guest["swagger"] == "2.0"
    assert "/V1/directory/countries" in guest["paths"]
    assert "/V1/products/{sku}" not in guest["paths"]
    full = (
        await client.get("/rest/default/schema", headers={"Authorization": f"Bearer {BEARER}"})
    ).json()
    assert set(full["paths"]["/V1/products/{sku}"]) == {"get", "put", "delete"}


# --------------------------------------------------------------------------- authentication


async def test_guest_gets_401_with_the_resources_parameter(client: httpx.AsyncClient) -> None:
    r = await client.get("/rest/V1/products/MB-01")
    assert r.status_code == 401
    assert r.json() == DENIED_PRODUCTS
    assert r.content == (
        b'{"message":"The consumer isn\'t authorized to access %resources.",'
        b'"parameters":{"resources":"Magento_Catalog::products"}}'
    )


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (f"Bearer {BEARER}", 200),
        (f"bearer {BEARER}", 200),
        (f"BEARER {BEARER}", 200),
        ("Bearer wrong-token", 401),
        (f"Bearer  {BEARER}", 401),  # three pieces: not a Bearer header at all
        (f"Bearer {BEARER} extra", 401),
        (f"Token {BEARER}", 401),
        (BEARER, 401),
        ("", 401),
    ],
)
async def test_bearer_tokens(client: httpx.AsyncClient, header: str, status: int) -> None:
    r = await client.get("/rest/V1/products/MB-01", headers={"Authorization": header})
    assert r.status_code == status
    if status == 401:
        assert r.json() == DENIED_PRODUCTS  # a bad token is a guest, not an error


async def test_anonymous_routes_need_no_credentials(client: httpx.AsyncClient) -> None:
    r = await client.get("/rest/V1/directory/countries")
    assert (r.status_code, r.json()) == (200, [])
    # A broken OAuth header is not even looked at on an anonymous route.
    r = await client.get("/rest/V1/directory/countries", headers={"Authorization": "OAuth x=1"})
    assert r.status_code == 200


async def test_customer_tokens_reach_self_routes_only(client: httpx.AsyncClient) -> None:
    customer = {"Authorization": f"Bearer {CUSTOMER_TOKEN}"}
    r = await client.get("/rest/V1/customers/me", headers=customer)
    assert r.status_code == 200
    assert r.json()["email"] == "john.doe@example.com"
    r = await client.get("/rest/V1/products/MB-01", headers=customer)
    assert (r.status_code, r.json()) == (401, DENIED_PRODUCTS)
    r = await client.get("/rest/V1/customers/me", headers={"Authorization": f"Bearer {BEARER}"})
    assert r.status_code == 401
    assert r.json() == {
        "message": "The consumer isn't authorized to access %resources.",
        "parameters": {"resources": "self"},
    }


async def test_admin_token_endpoint(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/rest/V1/integration/admin/token", json={"username": "admin", "password": "nope"}
    )
    assert r.status_code == 401
    assert r.json() == {
        "message": "The account sign-in was incorrect or your account is disabled "
        "temporarily. Please wait and try again later."
    }
    r = await client.post("/rest/V1/integration/admin/token", json={})
    assert r.status_code == 400
    assert r.json() == {
        "message": "One or more input exceptions have occurred.",
        "errors": [
            {
                "message": '"%fieldName" is required. Enter and try again.',
                "parameters": {"fieldName": "username"},
            },
            {
                "message": '"%fieldName" is required. Enter and try again.',
                "parameters": {"fieldName": "password"},
            },
        ],
    }
    r = await client.post(
        "/rest/V1/integration/admin/token", json={"username": ADMIN[0], "password": ADMIN[1]}
    )
    assert r.status_code == 200
    token = r.json()
    assert isinstance(token, str) and token.count(".") == 2  # a JWT, as 2.4.4+ issues
    r = await client.get("/rest/V1/products/MB-01", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200


async def test_customer_token_endpoint_refuses(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/rest/V1/integration/customer/token",
        json={"username": "john.doe@example.com", "password": "x"},
    )
    assert r.status_code == 401


# --------------------------------------------------------------------------- OAuth 1.0a


async def test_oauth_hmac_sha256_accepted(client: httpx.AsyncClient) -> None:
    request = sign(client.build_request("GET", "/rest/default/V1/products/MB-01"))
    r = await client.send(request)
    assert r.status_code == 200
    assert r.json()["sku"] == "MB-01"


async def test_oauth_signs_an_encoded_slash_in_the_path(client: httpx.AsyncClient) -> None:
    r = await client.send(sign(client.build_request("GET", "/rest/V1/products/BAG%2F01")))
    assert r.status_code == 200
    assert r.json()["sku"] == "BAG/01"


async def test_oauth_signs_raw_bracket_queries(
    client: httpx.AsyncClient, standin: MagentoStandin
) -> None:
    query = (
        "searchCriteria[filter_groups][0][filters][0][field]=sku"
        "&searchCriteria[filter_groups][0][filters][0][value]=MB-%25"
        "&searchCriteria[filter_groups][0][filters][0][condition_type]=like"
        "&searchCriteria[sort_orders][0][field]=price"
        "&searchCriteria[sort_orders][0][direction]=DESC"
        "&searchCriteria[pageSize]=10&fields=&note=a+b%20c"
    )
    r = await client.send(sign(client.build_request("GET", f"/rest/V1/products?{query}")))
    assert r.status_code == 200, r.text
    assert [p["sku"] for p in r.json()["items"]] == ["MB-01", "MB-04"]
    assert standin.requests[-1]["query"] == query.encode()  # unchanged, brackets raw


async def test_oauth_post_with_json_body(client: httpx.AsyncClient) -> None:
    request = client.build_request(
        "POST", "/rest/all/V1/products", json={"product": {"sku": "OAUTH-1", "price": 5}}
    )
    r = await client.send(sign(request))
    assert r.status_code == 200
    assert r.json()["sku"] == "OAUTH-1"


async def test_oauth_tampered_signature_is_rejected(client: httpx.AsyncClient) -> None:
    request = sign(client.build_request("GET", "/rest/V1/products/MB-01"))
    good = last_signature(request)
    forged = ("A" if good[0] != "A" else "B") + good[1:]
    request.headers["Authorization"] = request.headers["Authorization"].replace(good, forged)
    r = await client.send(request)
    assert r.status_code == 401
    assert r.json() == {"message": "The signature is invalid. Verify and try again."}


async def test_oauth_signature_does_not_cover_another_request(client: httpx.AsyncClient) -> None:
    for method, url in [
        ("GET", "/rest/V1/products/MB-04"),
        ("DELETE", "/rest/V1/products/MB-01"),
        ("GET", "/rest/V1/products/MB-01?extra=1"),
    ]:
        signed = sign(client.build_request("GET", "/rest/V1/products/MB-01"))
        other = client.build_request(method, url)
        other.headers["Authorization"] = signed.headers["Authorization"]
        r = await client.send(other)
        assert r.status_code == 401, url
        assert r.json()["message"] == "The signature is invalid. Verify and try again."


async def test_oauth_wrong_secret_and_wrong_host_are_rejected(client: httpx.AsyncClient) -> None:
    r = await client.send(
        sign(client.build_request("GET", "/rest/V1/products/MB-01"), consumer_secret="guess")
    )
    assert r.status_code == 401
    request = client.build_request("GET", "/rest/V1/products/MB-01")
    sign(request)
    request.headers["Host"] = "evil.test"
    r = await client.send(request)
    assert r.status_code == 401


async def test_oauth_scheme_follows_x_forwarded_proto(client: httpx.AsyncClient) -> None:
    request = sign(client.build_request("GET", "/rest/V1/products/MB-01"), scheme="https")
    assert (await client.send(request)).status_code == 401  # the stand-in sees plain http
    request = sign(
        client.build_request(
            "GET", "/rest/V1/products/MB-01", headers={"X-Forwarded-Proto": "https"}
        ),
        scheme="https",
    )
    assert (await client.send(request)).status_code == 200


async def test_oauth_host_with_a_port(standin: MagentoStandin) -> None:
    transport = httpx.ASGITransport(app=standin)
    async with httpx.AsyncClient(transport=transport, base_url="http://Magento.Test:8080") as c:
        r = await c.send(sign(c.build_request("GET", "/rest/V1/products/MB-01")))
        assert r.status_code == 200
    async with httpx.AsyncClient(transport=transport, base_url="https://magento.test:443") as c:
        r = await c.send(sign(c.build_request("GET", "/rest/V1/products/MB-01")))
        assert r.status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "status", "body"),
    [
        (
            {"signature_method": "HMAC-SHA1"},
            400,
            {"message": "Signature method %1 is not supported", "parameters": ["HMAC-SHA1"]},
        ),
        (
            {"drop": "oauth_nonce"},
            400,
            {
                "message": '"%fieldName" is required. Enter and try again.',
                "parameters": {"fieldName": "oauth_nonce"},
            },
        ),
        (
            {"integration": OAuth1Integration("u" * 32, "s", "at" * 16, "t")},
            401,
            {"message": "A consumer having the specified key does not exist"},
        ),
        (
            {"integration": OAuth1Integration("ck" * 16, "s", "zz" * 16, "t")},
            401,
            {"message": "Specified token does not exist"},
        ),
        (
            {"integration": OAuth1Integration("ck" * 16, "s", "ot" * 16, "t")},
            401,
            {"message": "Token is not associated with the specified consumer"},
        ),
    ],
)
async def test_oauth_errors_are_magentos(
    client: httpx.AsyncClient, kwargs: dict[str, Any], status: int, body: dict[str, Any]
) -> None:
    r = await client.send(sign(client.build_request("GET", "/rest/V1/products/MB-01"), **kwargs))
    assert (r.status_code, r.json()) == (status, body)


async def test_oauth_short_token_and_version(client: httpx.AsyncClient) -> None:
    header = (
        'OAuth oauth_consumer_key="k", oauth_nonce="n", oauth_signature="s", '
        'oauth_signature_method="HMAC-SHA256", oauth_timestamp="1", oauth_token="short"'
    )
    r = await client.get("/rest/V1/products/MB-01", headers={"Authorization": header})
    assert r.status_code == 400
    assert r.json() == {"message": "The token length is invalid. Check the length and try again."}
    r = await client.get(
        "/rest/V1/products/MB-01",
        headers={"Authorization": header + ', oauth_version="2.0"'},
    )
    assert r.json() == {
        "message": 'The "%1" Oauth version isn\'t supported.',
        "parameters": ["2.0"],
    }


def test_oauth_deprecated_sign_hmac_sha256_gives_the_same_signature() -> None:
    params = [("oauth_token", INTEGRATION.access_token), ("searchCriteria[pageSize]", "5")]
    uri = oauth_sig.base_string_uri("http://magento.test/rest/V1/products")
    base = oauth_sig.signature_base_string("GET", uri, oauth_sig.normalize_parameters(params))
    with pytest.warns(DeprecationWarning):
        expected = oauth_sig.sign_hmac_sha256(
            base, INTEGRATION.consumer_secret, INTEGRATION.access_token_secret
        )
    ours = ms._oauth_signature(
        "GET", ms._base_string_uri("http", "magento.test", "/rest/V1/products"), params,
        INTEGRATION.consumer_secret, INTEGRATION.access_token_secret,
    )  # fmt: skip
    assert ours == expected


_QUERY_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    host=st.sampled_from(
        ["magento.test", "Magento.TEST:80", "shop.example:8443", "127.0.0.1:9000", "[::1]:8080"]
    ),
    scheme=st.sampled_from(["http", "https"]),
    path=st.lists(
        st.text(alphabet="abcXYZ019-_.~%2F", min_size=1, max_size=8), min_size=1, max_size=4
    ),
    query=st.lists(st.tuples(_QUERY_TEXT, _QUERY_TEXT), max_size=5),
    secrets_=st.tuples(_QUERY_TEXT, _QUERY_TEXT),
)
def test_oauth_verifier_agrees_with_oauthlib(
    method: str,
    host: str,
    scheme: str,
    path: list[str],
    query: list[tuple[str, str]],
    secrets_: tuple[str, str],
) -> None:
    raw_path = "/rest/" + "/".join(quote(p, safe="%") for p in path)
    query_string = "&".join(f"{quote(k)}={quote(v)}" for k, v in query)
    params = [("oauth_nonce", "n"), *parse_qsl(query_string, keep_blank_values=True)]
    uri = oauth_sig.base_string_uri(f"{scheme}://placeholder{raw_path}", host)
    base = oauth_sig.signature_base_string(method, uri, oauth_sig.normalize_parameters(params))
    client = SimpleNamespace(client_secret=secrets_[0], resource_owner_secret=secrets_[1])
    expected = oauth_sig.sign_hmac_sha256_with_client(base, client)
    assert ms._base_string_uri(scheme, host, raw_path) == uri
    assert ms._oauth_signature(method, uri, params, *secrets_) == expected


def test_integration_credentials_have_magentos_length() -> None:
    with pytest.raises(ValueError, match="32"):
        OAuth1Integration("short", "s", "at" * 16, "t")
    generated = OAuth1Integration.generate()
    assert len(generated.consumer_key) == len(generated.access_token_secret) == 32
    assert generated.consumer_secret not in repr(generated)


# --------------------------------------------------------------------------- async and bulk


_UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


async def test_async_single_is_202(admin: httpx.AsyncClient, standin: MagentoStandin) -> None:
    r = await admin.post(
        "/rest/default/async/V1/products", json={"product": {"sku": "ASYNC-1", "price": 1}}
    )
    assert r.status_code == 202
    body = r.json()
    assert set(body) == {"bulk_uuid", "request_items", "errors"}
    assert _UUID4.match(body["bulk_uuid"])
    assert body["errors"] is False
    [item] = body["request_items"]
    assert item["id"] == 0 and item["status"] == "accepted"
    assert re.fullmatch(r"[0-9a-f]{64}", item["data_hash"])
    assert standin.hits[("POST", "/async/V1/products")] == 1
    assert "ASYNC-1" not in standin.products  # accepted, not processed
    r = await admin.put("/rest/async/V1/products/BAG%2F01", json={"product": {"price": 2}})
    assert r.status_code == 202
    assert standin.hits[("PUT", "/async/V1/products/:sku")] == 1


async def test_bulk_by_param_forms(admin: httpx.AsyncClient, standin: MagentoStandin) -> None:
    payload = [{"product": {"sku": f"B-{i}", "price": i}} for i in range(3)]
    r = await admin.put("/rest/all/async/bulk/V1/products/bySku", json=payload)
    assert r.status_code == 202
    items = r.json()["request_items"]
    assert [i["id"] for i in items] == [0, 1, 2]
    assert len({i["data_hash"] for i in items}) == 3
    r = await admin.put("/rest/async/bulk/V1/products", json=payload[:1])  # the alias
    assert [i["id"] for i in r.json()["request_items"]] == [0]
    assert standin.hits[("PUT", "/async/bulk/V1/products/bySku")] == 2
    r = await admin.post(
        "/rest/default/async/bulk/V1/products/bySku/media", json=[{"entry": {}}, 7, {"entry": {}}]
    )
    assert [i["id"] for i in r.json()["request_items"]] == [0, 2]  # non-objects are skipped
    r = await admin.request(
        "DELETE", "/rest/async/bulk/V1/customers/byCustomerId", json=[{"customerId": 1}]
    )
    assert r.status_code == 202
    # The sync form of the URL is no bulk route.
    r = await admin.put("/rest/async/bulk/V1/products/BAG01", json=payload)
    assert (r.status_code, r.json()) == (404, NO_ROUTE)


@pytest.mark.parametrize(
    "path", ["/rest/default/async/V1/products/MB-01", "/rest/async/bulk/V1/products/bySku"]
)
async def test_get_on_async_is_400(admin: httpx.AsyncClient, path: str) -> None:
    r = await admin.get(path)
    assert r.status_code == 400
    assert r.json() == {"message": "Specified request cannot be processed."}


async def test_async_is_authorized_like_sync(client: httpx.AsyncClient) -> None:
    r = await client.post("/rest/async/V1/products", json={"product": {"sku": "X"}})
    assert (r.status_code, r.json()) == (401, DENIED_PRODUCTS)
    r = await client.post("/rest/async/V1/customers", json={"customer": {}})  # anonymous
    assert r.status_code == 202


# --------------------------------------------------------------------------- products


async def test_product_with_a_slash_in_its_sku(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/rest/V1/products/BAG%2F01")
    assert r.status_code == 200
    product = r.json()
    assert product["sku"] == "BAG/01"
    assert product["extension_attributes"]["stock_item"]["qty"] == 7
    assert b'"sku":"BAG\\/01"' in r.content  # PHP json_encode escapes slashes
    r = await admin.get("/rest/V1/products/BAG/01")  # unencoded: another path
    assert (r.status_code, r.json()) == (404, NO_ROUTE)


async def test_product_lookup_is_case_insensitive(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/rest/V1/products/mb-01")
    assert r.json()["sku"] == "MB-01"


async def test_missing_product_is_404(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/rest/V1/products/NOPE")
    assert r.status_code == 404
    assert r.json() == {
        "message": "The product that was requested doesn't exist. Verify the product and try again."
    }
    r = await admin.delete("/rest/V1/products/NOPE")
    assert r.status_code == 404


async def test_create_then_read_update_delete(admin: httpx.AsyncClient) -> None:
    product = {"sku": "NEW-1", "name": "New", "price": 9.5, "attribute_set_id": 4}
    r = await admin.post("/rest/V1/products", json={"product": product, "saveOptions": True})
    assert r.status_code == 200  # Magento never answers 201
    created = r.json()
    assert created["id"] == 7 and created["sku"] == "NEW-1" and created["price"] == 9.5
    r = await admin.post("/rest/V1/products", json={"product": {"sku": "new-1", "price": 10}})
    assert (r.json()["id"], r.json()["sku"], r.json()["price"]) == (7, "NEW-1", 10)
    r = await admin.get("/rest/default/V1/products/NEW-1")
    assert r.json()["name"] == "New"
    r = await admin.delete("/rest/V1/products/NEW-1")
    assert (r.status_code, r.content) == (200, b"true")
    assert (await admin.get("/rest/V1/products/NEW-1")).status_code == 404


async def test_put_path_sku_overrides_body_sku(
    admin: httpx.AsyncClient, standin: MagentoStandin
) -> None:
    r = await admin.put(
        "/rest/all/V1/products/BAG%2F01",
        json={"product": {"sku": "OTHER", "name": "Renamed", "custom_attributes": [
            {"attribute_code": "color", "value": "Green"}]}},
    )  # fmt: skip
    assert r.status_code == 200
    assert r.json()["sku"] == "BAG/01"
    assert "OTHER" not in standin.products
    saved = standin.products["BAG/01"]
    assert saved["name"] == "Renamed"
    colors = [a["value"] for a in saved["custom_attributes"] if a["attribute_code"] == "color"]
    assert colors == ["Green"]
    assert any(a["attribute_code"] == "url_key" for a in saved["custom_attributes"])
    r = await admin.put("/rest/V1/products/FRESH", json={"product": {"name": "Made by PUT"}})
    assert r.json()["sku"] == "FRESH"  # PUT on an unknown SKU creates it


async def test_stock_item_through_the_product_payload(admin: httpx.AsyncClient) -> None:
    r = await admin.put(
        "/rest/V1/products/MB-01",
        json={"product": {"extension_attributes": {"stock_item": {"qty": 3, "is_in_stock": True}}}},
    )
    assert r.json()["extension_attributes"]["stock_item"]["qty"] == 3
    r = await admin.get("/rest/V1/stockItems/MB-01")
    assert (r.json()["qty"], r.json()["is_in_stock"]) == (3, True)


async def test_product_create_needs_the_product(admin: httpx.AsyncClient) -> None:
    r = await admin.post("/rest/V1/products", json={"saveOptions": True})
    assert r.status_code == 400
    assert r.json() == {
        "message": '"%fieldName" is required. Enter and try again.',
        "parameters": {"fieldName": "product"},
    }


@pytest.mark.parametrize(
    ("content", "headers", "message"),
    [
        (b'{"product": ', JSON_CT, "Decoding error."),
        (b'{"product": NaN}', JSON_CT, "Decoding error."),
        (b"\xff\xfe", JSON_CT, "Decoding error."),
        (b'{"product": {}}', {}, "Content-Type header is empty."),
        (
            b"{}",
            {"Content-Type": "application/json; boundary=x"},
            "Content-Type header is invalid.",
        ),
        (
            b"{}",
            {"Content-Type": "application/json; charset=latin-1"},
            "UTF-8 is the only supported charset.",
        ),
        (
            b"{}",
            {"Content-Type": "text/plain"},
            "Server cannot understand Content-Type HTTP header media type text/plain",
        ),
    ],
)
async def test_body_errors(
    admin: httpx.AsyncClient, content: bytes, headers: dict[str, str], message: str
) -> None:
    r = await admin.post("/rest/V1/products", content=content, headers=headers)
    assert r.status_code == 400
    assert r.json() == {"message": message}


async def test_charset_utf8_is_fine_and_get_bodies_are_ignored(admin: httpx.AsyncClient) -> None:
    r = await admin.post(
        "/rest/V1/products",
        content=b'{"product": {"sku": "CS-1"}}',
        headers={"Content-Type": "application/json; charset=UTF-8"},
    )
    assert r.status_code == 200
    r = await admin.request("GET", "/rest/V1/products/CS-1", content=b"not json")
    assert r.status_code == 200


# --------------------------------------------------------------------------- searchCriteria


def _filter(group: int, index: int, field: str, value: str, cond: str | None = None) -> str:
    prefix = f"searchCriteria[filter_groups][{group}][filters][{index}]"
    out = f"{prefix}[field]={field}&{prefix}[value]={quote(value)}"
    return out + (f"&{prefix}[condition_type]={cond}" if cond else "")


async def _skus(client: httpx.AsyncClient, query: str) -> list[str]:
    r = await client.get(f"/rest/V1/products?{query}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"items", "search_criteria", "total_count"}
    return [p["sku"] for p in body["items"]]


async def test_missing_search_criteria_is_400(admin: httpx.AsyncClient) -> None:
    for path in ["/rest/V1/products", "/rest/V1/orders", "/rest/V1/cmsPage/search"]:
        r = await admin.get(path)
        assert r.status_code == 400
        assert r.content == (
            b'{"message":"\\"%fieldName\\" is required. Enter and try again.",'
            b'"parameters":{"fieldName":"searchCriteria"}}'
        )


async def test_empty_search_criteria_lists_everything(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/rest/V1/products?searchCriteria=")
    body = r.json()
    assert body["total_count"] == 6
    assert body["search_criteria"] == {"filter_groups": []}
    assert "stock_item" not in body["items"][0]["extension_attributes"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (_filter(0, 0, "sku", "MB-01"), ["MB-01"]),
        (_filter(0, 0, "sku", "mb-01", "eq"), ["MB-01"]),
        (_filter(0, 0, "sku", "MB-%", "like"), ["MB-01", "MB-04"]),
        (_filter(0, 0, "name", "%duffle%", "like"), ["MB-01", "WB-04"]),
        (_filter(0, 0, "sku", "MB-0_", "like"), ["MB-01", "MB-04"]),
        (_filter(0, 0, "sku", "%B-%", "nlike"), ["BAG/01", "MH01-XS-Black", "WS12-M-Orange"]),
        (_filter(0, 0, "sku", "MB-01,BAG/01", "in"), ["MB-01", "BAG/01"]),
        (
            _filter(0, 0, "sku", "MB-01,BAG/01,WB-04", "nin"),
            ["MB-04", "MH01-XS-Black", "WS12-M-Orange"],
        ),
        (_filter(0, 0, "price", "45", "gt"), ["BAG/01", "MH01-XS-Black"]),
        (_filter(0, 0, "price", "45", "gteq"), ["WB-04", "BAG/01", "MH01-XS-Black"]),
        (_filter(0, 0, "price", "32", "lt"), ["WS12-M-Orange"]),
        (_filter(0, 0, "price", "32", "lteq"), ["MB-04", "WS12-M-Orange"]),
        (_filter(0, 0, "status", "1", "neq"), ["WS12-M-Orange"]),
        (_filter(0, 0, "special_price", "", "null"), [
            "MB-01", "MB-04", "WB-04", "BAG/01", "MH01-XS-Black", "WS12-M-Orange"]),
        (_filter(0, 0, "special_price", "", "notnull"), []),
        (_filter(0, 0, "color", "black"), ["MB-01", "MB-04", "MH01-XS-Black"]),
        (_filter(0, 0, "entity_id", "2,3", "in"), ["MB-04", "WB-04"]),
        # OR within a group
        (_filter(0, 0, "sku", "MB-01") + "&" + _filter(0, 1, "sku", "BAG/01"),
         ["MB-01", "BAG/01"]),
        # AND across groups
        (_filter(0, 0, "sku", "%B-%", "like") + "&" + _filter(1, 0, "price", "33", "gt"),
         ["MB-01", "WB-04"]),
    ],
)  # fmt: skip
async def test_filters(admin: httpx.AsyncClient, query: str, expected: list[str]) -> None:
    assert await _skus(admin, query) == expected


async def test_sort_and_paging(admin: httpx.AsyncClient) -> None:
    sort = (
        "searchCriteria[sort_orders][0][field]=price&searchCriteria[sort_orders][0][direction]=DESC"
    )
    assert await _skus(admin, sort) == [
        "BAG/01", "MH01-XS-Black", "WB-04", "MB-01", "MB-04", "WS12-M-Orange"
    ]  # fmt: skip
    r = await admin.get(
        f"/rest/V1/products?{sort}&searchCriteria[pageSize]=2&searchCriteria[currentPage]=2"
    )
    body = r.json()
    assert [p["sku"] for p in body["items"]] == ["WB-04", "MB-01"]
    assert body["total_count"] == 6
    assert body["search_criteria"] == {
        "filter_groups": [],
        "sort_orders": [{"field": "price", "direction": "DESC"}],
        "page_size": 2,
        "current_page": 2,
    }
    # Magento's quirk: a page past the end returns the last page again.
    last = await _skus(admin, f"{sort}&searchCriteria[pageSize]=4&searchCriteria[currentPage]=9")
    assert last == ["MB-04", "WS12-M-Orange"]


async def test_camel_case_keys(admin: httpx.AsyncClient) -> None:
    query = (
        "searchCriteria[filterGroups][0][filters][0][field]=sku"
        "&searchCriteria[filterGroups][0][filters][0][value]=%25B-%25"
        "&searchCriteria[filterGroups][0][filters][0][conditionType]=like"
        "&searchCriteria[sortOrders][0][field]=sku&searchCriteria[sortOrders][0][direction]=desc"
        "&searchCriteria[pageSize]=2&searchCriteria[currentPage]=1"
    )
    assert await _skus(admin, query) == ["WB-04", "MB-04"]
    r = await admin.get("/rest/V1/products?search_criteria[page_size]=1")
    assert r.json()["total_count"] == 6 and len(r.json()["items"]) == 1


async def test_search_criteria_echo(admin: httpx.AsyncClient) -> None:
    r = await admin.get(f"/rest/V1/products?{_filter(0, 0, 'sku', 'MB-%', 'like')}")
    assert r.json()["search_criteria"] == {
        "filter_groups": [
            {"filters": [{"field": "sku", "value": "MB-%", "condition_type": "like"}]}
        ]
    }
    r = await admin.get(f"/rest/V1/products?{_filter(0, 0, 'sku', 'X')}")
    assert r.json()["search_criteria"]["filter_groups"][0]["filters"][0]["condition_type"] == "eq"


async def test_bad_page_size_is_400(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/rest/V1/products?searchCriteria[pageSize]=abc")
    assert r.status_code == 400
    assert r.json() == {
        "message": 'The "abc" value\'s type is invalid. The "int" type was expected. '
        "Verify and try again."
    }


async def test_orders_and_customers_search(admin: httpx.AsyncClient) -> None:
    r = await admin.get(f"/rest/V1/orders?{_filter(0, 0, 'status', 'processing')}")
    assert [o["increment_id"] for o in r.json()["items"]] == ["000000001"]
    r = await admin.get(f"/rest/V1/orders?{_filter(0, 0, 'grand_total', '110', 'gt')}")
    assert [o["entity_id"] for o in r.json()["items"]] == [2]
    r = await admin.get(
        f"/rest/V1/customers/search?{_filter(0, 0, 'email', '%@example.com', 'like')}"
    )
    assert r.json()["total_count"] == 3
    r = await admin.get("/rest/V1/cmsPage/search?searchCriteria[pageSize]=5")
    assert r.json() == {"items": [], "search_criteria": {"filter_groups": [], "page_size": 5},
                        "total_count": 0}  # fmt: skip


# --------------------------------------------------------------------------- orders, customers


async def test_orders(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/rest/V1/orders/1")
    assert (r.json()["entity_id"], r.json()["status"]) == (1, "processing")
    entity_404 = {
        "message": "The entity that was requested doesn't exist. Verify the entity and try again."
    }
    r = await admin.get("/rest/V1/orders/99")
    assert (r.status_code, r.json()) == (404, entity_404)
    r = await admin.get("/rest/V1/orders/abc")
    assert r.status_code == 400
    r = await admin.post("/rest/V1/orders/1/cancel")
    assert (r.status_code, r.content) == (200, b"true")
    assert (await admin.get("/rest/V1/orders/1")).json()["status"] == "canceled"
    r = await admin.post("/rest/V1/orders/1/cancel")
    assert r.content == b"false"  # no longer cancellable
    r = await admin.post("/rest/V1/orders/3/cancel")
    assert r.content == b"false"  # complete
    r = await admin.post("/rest/V1/orders/99/cancel")
    assert (r.status_code, r.json()) == (404, entity_404)


async def test_customers(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/rest/V1/customers/1")
    assert r.json()["email"] == "roni_cost@example.com"
    r = await admin.get("/rest/V1/customers/99")
    assert r.status_code == 404
    assert r.content == (
        b'{"message":"No such entity with %fieldName = %fieldValue",'
        b'"parameters":{"fieldName":"customerId","fieldValue":99}}'
    )


# --------------------------------------------------------------------------- stock and MSI


async def test_stock_items(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/rest/V1/stockItems/BAG%2F01")
    assert (r.json()["qty"], r.json()["is_in_stock"]) == (7, True)
    r = await admin.get("/rest/V1/stockItems/NOPE")
    assert r.status_code == 404
    assert r.json() == {
        "message": 'The Product with the "%1" SKU doesn\'t exist.',
        "parameters": ["NOPE"],
    }
    r = await admin.put("/rest/V1/products/WB-04/stockItems/3", json={"stockItem": {"qty": 12}})
    assert r.json() == 3
    assert (await admin.get("/rest/V1/stockItems/WB-04")).json()["is_in_stock"] is True


async def test_source_items(admin: httpx.AsyncClient) -> None:
    r = await admin.post(
        "/rest/V1/inventory/source-items",
        json={"sourceItems": [
            {"sku": "MB-01", "source_code": "default", "quantity": 42, "status": 1},
            {"sku": "MB-01", "source_code": "warehouse-2", "quantity": 5, "status": 1},
        ]},
    )  # fmt: skip
    assert (r.status_code, r.json()) == (200, [])
    assert (await admin.get("/rest/V1/stockItems/MB-01")).json()["qty"] == 42
    r = await admin.get(f"/rest/V1/inventory/source-items?{_filter(0, 0, 'sku', 'MB-01')}")
    assert {i["source_code"]: i["quantity"] for i in r.json()["items"]} == {
        "default": 42,
        "warehouse-2": 5,
    }
    r = await admin.post(
        "/rest/V1/inventory/source-items", json={"sourceItems": [{"sku": "", "quantity": 1}]}
    )
    assert r.status_code == 400
    assert r.json()["message"] == "Validation Failed"
    assert [e["parameters"]["field"] for e in r.json()["errors"]] == ["sku", "source_code"]


# --------------------------------------------------------------------------- everything else


async def test_generic_routes(admin: httpx.AsyncClient) -> None:
    r = await admin.delete("/rest/V1/cmsPage/5")
    assert (r.status_code, r.content) == (200, b"true")
    r = await admin.get("/rest/V1/cmsPage/a%20b")
    assert r.json() == {"pageId": "a b"}
    r = await admin.post("/rest/V1/cmsPage", json={"page": {"title": "Hi"}})
    assert r.json() == {"title": "Hi"}
    r = await admin.put("/rest/V1/cmsPage/5", json={"page": {"id": 1, "title": "Hi"}})
    assert r.json() == {"id": "5", "title": "Hi"}
    r = await admin.post("/rest/V1/orders/2/hold")
    assert r.content == b"true"


async def test_secure_route_needs_https(admin: httpx.AsyncClient) -> None:
    r = await admin.get("/rest/V1/analytics/link")
    assert (r.status_code, r.json()) == (400, {"message": "Operation allowed only in HTTPS"})
    r = await admin.get("/rest/V1/analytics/link", headers={"X-Forwarded-Proto": "https"})
    assert r.status_code == 200


# --------------------------------------------------------------------------- observability


async def test_hits_count_only_requests_that_reached_a_service(
    client: httpx.AsyncClient, standin: MagentoStandin
) -> None:
    await client.get("/rest/V1/products/MB-01")  # 401
    await client.get("/rest/V1/nothing")  # 404
    await client.post(
        "/rest/V1/products", content=b"{", headers={"Authorization": f"Bearer {BEARER}"}
    )
    assert not standin.hits
    await client.get("/rest/V1/products/MB-01", headers={"Authorization": f"Bearer {BEARER}"})
    await client.get("/rest/all/V1/products/NOPE", headers={"Authorization": f"Bearer {BEARER}"})
    assert standin.hits == {("GET", "/V1/products/:sku"): 2}


async def test_requests_record_what_arrived(
    client: httpx.AsyncClient, standin: MagentoStandin
) -> None:
    await client.post(
        "/rest/V1/products/BAG%2F01/media?a=%5B1%5D&b[c]=d+e",
        content=b'{"entry": {}}',
        headers={"Authorization": "Bearer swapped", "Content-Type": "application/json"},
    )
    seen = standin.requests[-1]
    assert seen["method"] == "POST"
    assert seen["raw_path"] == b"/rest/V1/products/BAG%2F01/media"
    assert seen["query"] == b"a=%5B1%5D&b[c]=d+e"
    headers = dict(seen["headers"])
    assert headers["authorization"] == "Bearer swapped"
    assert headers["content-type"] == "application/json"
    assert (seen["body_length"], seen["body"], seen["status"]) == (13, b'{"entry": {}}', 401)


async def test_requests_are_bounded() -> None:
    standin = create_standin(max_recorded=3)
    transport = httpx.ASGITransport(app=standin)
    async with httpx.AsyncClient(transport=transport, base_url="http://m.test") as c:
        for i in range(5):
            await c.get(f"/rest/V1/directory/countries/{i}")
    assert [r["raw_path"] for r in standin.requests] == [
        f"/rest/V1/directory/countries/{i}".encode() for i in (2, 3, 4)
    ]


async def test_body_size_is_capped() -> None:
    standin = create_standin(bearer_tokens=[BEARER], max_body_bytes=16)
    transport = httpx.ASGITransport(app=standin)
    async with httpx.AsyncClient(transport=transport, base_url="http://m.test") as c:
        headers = {"Authorization": f"Bearer {BEARER}", **JSON_CT}
        r = await c.post("/rest/V1/cmsPage", content=b'{"page": {"a": 1}}', headers=headers)
        assert r.status_code == 413
        assert r.json() == {"message": "The request body is too large."}

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"x" * 10

        r = await c.post("/rest/V1/cmsPage", content=chunks(), headers=headers)
        assert r.status_code == 413
        r = await c.post("/rest/V1/cmsPage", content=b'{"page": {}}', headers=headers)
        assert r.status_code == 200
    assert standin.requests[0]["body"] == b""


async def test_lifespan_protocol() -> None:
    standin = create_standin()
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: list[dict[str, Any]] = []
    for kind in ("lifespan.startup", "lifespan.shutdown"):
        inbox.put_nowait({"type": kind})

    async def send(message: Any) -> None:
        outbox.append(dict(message))

    await standin({"type": "lifespan"}, inbox.get, send)
    assert [m["type"] for m in outbox] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


# --------------------------------------------------------------------------- as a process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def served() -> Iterator[tuple[str, OAuth1Integration]]:
    integration = OAuth1Integration.generate()
    port = _free_port()
    env = dict(
        os.environ,
        STANDIN_BEARER="process-bearer",
        STANDIN_OAUTH_CONSUMER_KEY=integration.consumer_key,
        STANDIN_OAUTH_CONSUMER_SECRET=integration.consumer_secret,
        STANDIN_OAUTH_ACCESS_TOKEN=integration.access_token,
        STANDIN_OAUTH_ACCESS_TOKEN_SECRET=integration.access_token_secret,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "magento_standin", "--host", "127.0.0.1",
         "--port", str(port), "--bearer-token-env", "STANDIN_BEARER",
         "--oauth1-env", "STANDIN_OAUTH"],
        env=env, cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(
                        proc.stderr.read().decode() if proc.stderr else ""
                    ) from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", integration
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


async def test_runs_as_its_own_process(served: tuple[str, OAuth1Integration]) -> None:
    base_url, integration = served
    async with httpx.AsyncClient(base_url=base_url) as c:
        r = await c.get(
            "/rest/V1/products/BAG%2F01", headers={"Authorization": "Bearer process-bearer"}
        )
        assert (r.status_code, r.json()["sku"]) == (200, "BAG/01")
        query = "searchCriteria[pageSize]=1"
        r = await c.send(sign(c.build_request("GET", f"/rest/V1/products?{query}"), integration))
        assert r.status_code == 200, r.text
        assert len(r.json()["items"]) == 1
        r = await c.get("/rest/V1/products/MB-01")
        assert r.status_code == 401


def test_cli_refuses_a_missing_secret(capsys: pytest.CaptureFixture[str]) -> None:
    env_name = "STANDIN_TEST_SURELY_UNSET"
    assert env_name not in os.environ
    with pytest.raises(SystemExit) as exc:
        ms.main(["--bearer-token-env", env_name])
    assert exc.value.code == 2
    assert env_name in capsys.readouterr().err


# --------------------------------------------------------------------------- clocks, offloader


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_oauth_timestamp_ahead_of_magentos_clock_is_refused(
    client: httpx.AsyncClient, standin: MagentoStandin
) -> None:
    now = int(standin.clock())
    # 605, not 601: ``now`` is truncated and the clock moves on before the check (a loaded
    # machine took the fraction past a second).
    ahead = sign(client.build_request("GET", "/rest/V1/products/MB-01"), timestamp=str(now + 605))
    r = await client.send(ahead)
    assert r.status_code == 400
    assert r.json() == {"message": "Incorrect timestamp value in the oauth_timestamp parameter"}
    # Up to 600 s ahead passes, and so does any past time (Magento checks only the future).
    for ts in (now + 590, now - 86400):
        request = sign(client.build_request("GET", "/rest/V1/products/MB-01"), timestamp=str(ts))
        assert (await client.send(request)).status_code == 200
    garbage = sign(client.build_request("GET", "/rest/V1/products/MB-01"), timestamp="soon")
    assert (await client.send(garbage)).status_code == 400


async def test_oauth_nonce_is_accepted_once(client: httpx.AsyncClient) -> None:
    first = sign(client.build_request("GET", "/rest/V1/products/MB-01"), nonce="n-1")
    assert (await client.send(first)).status_code == 200
    again = sign(client.build_request("GET", "/rest/V1/products/MB-01"), nonce="n-1")
    r = await client.send(again)
    assert r.status_code == 401
    assert r.json() == {
        "message": "The nonce is already being used by the consumer with ID %1",
        "parameters": [1],
    }
    # Another consumer may use the same nonce.
    other = sign(client.build_request("GET", "/rest/V1/products/MB-01"), OTHER, nonce="n-1")
    assert (await client.send(other)).status_code == 200


async def test_answers_carry_a_date_from_magentos_clock() -> None:
    standin = create_standin(clock=FakeClock(1_700_000_000.0))
    transport = httpx.ASGITransport(app=standin)
    async with httpx.AsyncClient(transport=transport, base_url="http://m.test") as c:
        r = await c.get("/rest/V1/directory/currency")
    assert r.headers["date"] == "Tue, 14 Nov 2023 22:13:20 GMT"


async def test_custom_offloader_header_decides_https() -> None:
    standin = create_standin(oauth1=[INTEGRATION], offloader_header="X-Forwarded-Scheme")
    transport = httpx.ASGITransport(app=standin)
    async with httpx.AsyncClient(transport=transport, base_url="http://m.test") as c:
        url = "/rest/V1/products/MB-01"
        # Signed as https: only the configured header makes Magento rebuild https://.
        for header, expected in (("X-Forwarded-Scheme", 200), ("X-Forwarded-Proto", 401)):
            request = sign(c.build_request("GET", url), scheme="https")
            request.headers[header] = "https"
            assert (await c.send(request)).status_code == expected, header
        # Exactly "https": Magento compares the value as it is.
        request = sign(c.build_request("GET", url), scheme="https")
        request.headers["X-Forwarded-Scheme"] = "HTTPS"
        assert (await c.send(request)).status_code == 401


async def test_admin_tokens_expire_on_magentos_clock() -> None:
    clock = FakeClock(1_800_000_000.0)
    standin = create_standin(admin_users={"ops": "pw"}, admin_token_minutes=60, clock=clock)
    transport = httpx.ASGITransport(app=standin)
    async with httpx.AsyncClient(transport=transport, base_url="http://m.test") as c:
        r = await c.post(
            "/rest/V1/integration/admin/token", json={"username": "ops", "password": "pw"}
        )
        token = r.json()
        auth = {"Authorization": f"Bearer {token}"}
        assert (await c.get("/rest/V1/products/MB-01", headers=auth)).status_code == 200
        clock.now += 3599
        assert (await c.get("/rest/V1/products/MB-01", headers=auth)).status_code == 200
        clock.now += 2
        r = await c.get("/rest/V1/products/MB-01", headers=auth)
        assert (r.status_code, r.json()) == (401, DENIED_PRODUCTS)  # a guest now


async def test_two_factor_auth_refuses_admin_tokens() -> None:
    standin = create_standin(admin_users={"ops": "pw"}, two_factor=True)
    transport = httpx.ASGITransport(app=standin)
    async with httpx.AsyncClient(transport=transport, base_url="http://m.test") as c:
        url = "/rest/V1/integration/admin/token"
        r = await c.post(url, json={"username": "ops", "password": "pw"})
        assert r.status_code == 401
        assert r.json() == {
            "message": "Please use the 2fa provider-specific endpoints to obtain a token.",
            "parameters": {"active_providers": ["google"]},
        }
        # A wrong password is still the plain sign-in error.
        r = await c.post(url, json={"username": "ops", "password": "no"})
        assert r.status_code == 401 and "sign-in was incorrect" in r.json()["message"]


async def test_guest_cart_creation_answers_a_masked_cart_id(
    client: httpx.AsyncClient, standin: MagentoStandin
) -> None:
    # GuestCartManagementInterface::createEmptyCart: anonymous, no body, a JSON string.
    first = await client.post("/rest/default/V1/guest-carts")
    second = await client.post("/rest/V1/guest-carts")
    assert first.status_code == second.status_code == 200
    ids = [first.json(), second.json()]
    assert all(isinstance(i, str) and len(i) == 32 and i.isalnum() for i in ids)
    assert ids[0] != ids[1]
    assert set(ids) <= standin.guest_carts
