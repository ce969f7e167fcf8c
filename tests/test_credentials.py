"""proxy.credentials: the store's own Magento credential (SPEC §3): bearer, or OAuth 1.0a
HMAC-SHA256 (RFC 5849) that never needs the body."""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import re
from urllib.parse import unquote, unquote_plus

import pytest

from proxy.config import BearerCredential, OAuth1Credential
from proxy.credentials import BearerAuth, MagentoOrigin, OAuth1Auth, oauth1_authorization

CRED = OAuth1Credential(
    consumer_key="ck 1/x",
    consumer_secret="cs&secret+",
    access_token="at~token",
    access_token_secret="ts/secret=",
)
NONCE = "n0nce-ABC"
TIMESTAMP = "1700000000"
QUERY = (
    "searchCriteria[filter_groups][0][filters][0][field]=sku"
    "&searchCriteria[filter_groups][0][filters][0][value]=a%2Fb%25"
    "&searchCriteria[filter_groups][0][filters][0][condition_type]=eq"
    "&searchCriteria[pageSize]=10"
    "&fields=items[sku,name]"
    "&q=red+shoes"
    "&empty="
    "&a=2&a=1"
)
URL = "http://Magento.Example:9000/rest/default/V1/products/a%2Fb?" + QUERY


# -- an independent RFC 5849 implementation --------------------------------------------------

_UNRESERVED = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _pct(text: str) -> str:
    """RFC 5849 §3.6: UTF-8, then every byte outside ALPHA DIGIT - . _ ~ as %XX (upper)."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in text.encode("utf-8"))


def _query_params(query: str) -> list[tuple[str, str]]:
    """RFC 5849 §3.4.1.3.1: the query parsed as application/x-www-form-urlencoded."""
    out = []
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        out.append((unquote_plus(name), unquote_plus(value)))
    return out


def _expected_signature(method: str, base_uri: str, params: list[tuple[str, str]]) -> str:
    encoded = sorted((_pct(k), _pct(v)) for k, v in params)  # §3.4.1.3.2
    normalized = "&".join(f"{k}={v}" for k, v in encoded)
    base = "&".join([method.upper(), _pct(base_uri), _pct(normalized)])  # §3.4.1.1
    key = _pct(CRED.consumer_secret) + "&" + _pct(CRED.access_token_secret)  # §3.4.2
    digest = hmac.new(key.encode(), base.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _oauth_params() -> list[tuple[str, str]]:
    return [
        ("oauth_consumer_key", CRED.consumer_key),
        ("oauth_nonce", NONCE),
        ("oauth_signature_method", "HMAC-SHA256"),
        ("oauth_timestamp", TIMESTAMP),
        ("oauth_token", CRED.access_token),
        ("oauth_version", "1.0"),
    ]


def _parse_header(value: str) -> dict[str, str]:
    assert value.startswith("OAuth ")
    pairs = re.findall(r'([a-z_]+)="([^"]*)"', value)
    # Every parameter is quoted and comma-separated (RFC 5849 §3.5.1).
    assert ", ".join(f'{k}="{v}"' for k, v in pairs) == value[len("OAuth ") :]
    return {k: unquote(v) for k, v in pairs}


# -- bearer -------------------------------------------------------------------------------


def test_bearer_value() -> None:
    auth = BearerAuth(BearerCredential("magento-integration-token"))
    assert auth.authorization("GET", "http://m/rest/V1/products") == (
        "Bearer magento-integration-token"
    )
    assert auth.authorization("POST", "http://other/") == "Bearer magento-integration-token"


# -- what Magento rebuilds ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("magento_url", "proto", "signed"),
    [
        # Plain HTTP all the way: Magento sees http.
        ("http://127.0.0.1:9000", "http", "http://127.0.0.1:9000/rest/V1/x?a=1"),
        # A TLS ingress in front of the edge: Magento's offloader header says https.
        ("http://127.0.0.1:9000", "https", "https://127.0.0.1:9000/rest/V1/x?a=1"),
        # TLS from the edge to Magento: https whatever the client used.
        ("https://shop.example", "http", "https://shop.example/rest/V1/x?a=1"),
        # A base path under which Magento is installed is part of what it rebuilds.
        ("http://m.example:8080/magento/", "https", "https://m.example:8080/magento/rest/V1/x?a=1"),
    ],
)
def test_target_signs_the_scheme_magento_derives(magento_url: str, proto: str, signed: str) -> None:
    target = MagentoOrigin(magento_url).target(proto, "/rest/V1/x", "a=1")
    assert target.signed_url == signed
    assert target.url == magento_url.rstrip("/") + "/rest/V1/x?a=1"  # where the edge connects
    assert target.host == magento_url.split("://")[1].split("/")[0]
    assert target.proto == proto


def test_target_keeps_raw_path_and_query_bytes() -> None:
    path = "/rest/default/V1/products/BAG%2F01"
    query = "searchCriteria[filter_groups][0][filters][0][value]=%C3%A9t%C3%A9&x=%E9"
    target = MagentoOrigin("http://m:1").target("https", path, query)
    assert target.signed_url == f"https://m:1{path}?{query}"
    assert target.url == f"http://m:1{path}?{query}"


# -- OAuth 1.0a -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "put", "DELETE"])
def test_oauth1_signature_known_answer(method: str) -> None:
    header = oauth1_authorization(CRED, method, URL, nonce=NONCE, timestamp=TIMESTAMP)
    fields = _parse_header(header)
    base_uri = "http://magento.example:9000/rest/default/V1/products/a%2Fb"
    expected = _expected_signature(method, base_uri, _query_params(QUERY) + _oauth_params())
    assert fields["oauth_signature"] == expected


def test_oauth1_known_answer_without_query_and_default_port() -> None:
    url = "HTTPS://Shop.Example:443/rest/all/V1/orders"
    header = oauth1_authorization(CRED, "POST", url, nonce=NONCE, timestamp=TIMESTAMP)
    expected = _expected_signature(
        "POST", "https://shop.example/rest/all/V1/orders", _oauth_params()
    )
    assert _parse_header(header)["oauth_signature"] == expected


def test_oauth1_header_lists_every_oauth_parameter() -> None:
    header = oauth1_authorization(CRED, "GET", URL, nonce=NONCE, timestamp=TIMESTAMP)
    fields = _parse_header(header)
    assert fields == {**dict(_oauth_params()), "oauth_signature": fields["oauth_signature"]}
    assert list(fields) == [
        "oauth_consumer_key",
        "oauth_nonce",
        "oauth_signature_method",
        "oauth_timestamp",
        "oauth_token",
        "oauth_version",
        "oauth_signature",
    ]
    # Values are percent-encoded in the header (RFC 5849 §3.5.1, §3.6).
    assert 'oauth_consumer_key="ck%201%2Fx"' in header
    assert 'oauth_token="at~token"' in header
    assert "+" not in header.split('oauth_signature="')[0]
    # No query parameter ends up in the header.
    assert "searchCriteria" not in header


def test_oauth1_signature_covers_path_query_and_method() -> None:
    def sig(method: str, url: str) -> str:
        header = oauth1_authorization(CRED, method, url, nonce=NONCE, timestamp=TIMESTAMP)
        return _parse_header(header)["oauth_signature"]

    base = sig("GET", URL)
    assert sig("GET", URL) == base
    assert sig("POST", URL) != base
    assert sig("GET", URL.replace("a%2Fb?", "a%2Fc?")) != base
    assert sig("GET", URL.replace("pageSize]=10", "pageSize]=11")) != base
    assert sig("GET", URL.split("?")[0]) != base


def test_oauth1_signs_query_bytes_as_received() -> None:
    # %E9 is not UTF-8: Magento signs the byte as it came (%E9), never U+FFFD or %C3%A9.
    url = "http://m:9000/rest/V1/products?q=%E9t%E9&r=%C3%A9+x"
    header = oauth1_authorization(CRED, "GET", url, nonce=NONCE, timestamp=TIMESTAMP)
    params = sorted(
        [*((_pct(k), _pct(v)) for k, v in _oauth_params()), ("q", "%E9t%E9"), ("r", "%C3%A9%20x")]
    )
    normalized = "&".join(f"{k}={v}" for k, v in params)
    base = "&".join(["GET", _pct("http://m:9000/rest/V1/products"), _pct(normalized)])
    key = _pct(CRED.consumer_secret) + "&" + _pct(CRED.access_token_secret)
    digest = hmac.new(key.encode(), base.encode(), hashlib.sha256).digest()
    assert _parse_header(header)["oauth_signature"] == base64.b64encode(digest).decode()


def test_oauth1_nonce_and_timestamp_defaults() -> None:
    auth = OAuth1Auth(CRED)
    first = _parse_header(auth.authorization("GET", URL))
    second = _parse_header(auth.authorization("GET", URL))
    assert first["oauth_nonce"] != second["oauth_nonce"]
    assert re.fullmatch(r"[0-9a-f]{32}", first["oauth_nonce"])
    header = oauth1_authorization(CRED, "GET", URL, nonce=NONCE, clock=lambda: 1234.9)
    assert _parse_header(header)["oauth_timestamp"] == "1234"


def test_oauth1_never_needs_the_body() -> None:
    # The signature is a function of method and URL only: there is no way to pass a body.
    params = set(inspect.signature(oauth1_authorization).parameters)
    assert params == {"cred", "method", "url", "nonce", "timestamp", "clock"}
    assert set(inspect.signature(OAuth1Auth(CRED).authorization).parameters) == {
        "method",
        "signed_url",
    }


def test_signing_raises_no_deprecation_warning() -> None:
    # Regression: oauthlib's sign_hmac_sha256 warns on every call; filterwarnings=error
    # turns that into a failure here.
    header = oauth1_authorization(CRED, "GET", URL, nonce=NONCE, timestamp=TIMESTAMP)
    assert header.startswith("OAuth ")
