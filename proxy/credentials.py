"""Step 6b of the request path: the store's own Magento credential, replacing the client's.

``bearer``: ``Authorization: Bearer <integration token>``.
``oauth1``: OAuth 1.0a with HMAC-SHA256, Magento's default for integrations. The
signature covers the method, the URL and its query parameters and the ``oauth_*``
parameters, never a JSON body (RFC 5849 §3.4.1.3 includes only form-encoded bodies), so
signing never buffers a request body.
``admin``: a Magento admin token fetched with a username and password and refreshed
before it expires (:mod:`proxy.admin_token`).

What gets signed is what Magento will rebuild (``Oauth\\Helper\\Request::getRequestUrl``):
the scheme Magento derives (``https`` when it sees TLS, or when its offloader header —
``web/secure/offloader_header``, ``X-Forwarded-Proto`` by default — says exactly
``https``), the ``Host`` header the edge sends, and the raw path and query as forwarded.
:meth:`MagentoOrigin.target` decides all three once, for the signature and the headers
alike, so they cannot drift apart.

The HMAC and base-string primitives are oauthlib's. Parameter normalisation (RFC 5849
§3.4.1.3.2) is done here on bytes: oauthlib's works on text and re-encodes as UTF-8, which
would sign ``%E9`` (a Latin-1 query byte) as ``%C3%A9`` while Magento signs the byte as
received.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import NamedTuple, Protocol
from urllib.parse import quote, quote_from_bytes, unquote_to_bytes, urlsplit

from oauthlib.oauth1.rfc5849 import signature as _sig

from .config import AdminCredential, BearerCredential, OAuth1Credential, Store

__all__ = [
    "MagentoOrigin",
    "MagentoTarget",
    "UpstreamAuth",
    "auth_for",
    "oauth1_authorization",
]


class MagentoTarget(NamedTuple):
    """One request's view of a store's Magento, decided once."""

    url: str  # where the edge connects: magento_url + path [+ "?" + query]
    signed_url: str  # what Magento rebuilds: derived scheme + Host + raw path [+ query]
    host: str  # the Host header the edge sends
    proto: str  # the offloader header's value (and X-Forwarded-Proto's)


_tuple_new = tuple.__new__


class MagentoOrigin:
    """A store's Magento base URL and offloader header, parsed once."""

    __slots__ = ("base", "base_path", "drop", "host", "http_base", "https_base", "offloader", "tls")

    def __init__(self, magento_url: str, offloader_header: str = "X-Forwarded-Proto") -> None:
        parts = urlsplit(magento_url)
        self.base = magento_url.rstrip("/")
        self.base_path = parts.path.rstrip("/")
        self.host = parts.netloc  # config refuses userinfo: no secret can be here
        self.tls = parts.scheme == "https"
        # What Magento rebuilds before the path, for either scheme it may derive: target()
        # then formats nothing per request (issue #14).
        self.http_base = f"http://{self.host}{self.base_path}"
        self.https_base = f"https://{self.host}{self.base_path}"
        self.offloader = offloader_header.lower()
        # Magento believes only its offloader header: a client's copy of a custom one is
        # never forwarded (X-Forwarded-Proto is rebuilt by the header rules anyway).
        custom = self.offloader != "x-forwarded-proto"
        self.drop = frozenset({self.offloader.encode("latin-1")}) if custom else frozenset()

    def headers(self, target: MagentoTarget, credential: str | None) -> list[tuple[str, str]]:
        """The headers that carry the target's decisions: credential (``None``: a guest
        request, none at all), Host, offloader."""
        if credential is not None:
            out = [("authorization", credential), ("host", target.host)]
        else:
            out = [("host", target.host)]
        if self.drop:
            out.append((self.offloader, target.proto))
        return out

    def target(self, proto: str, path: str, query: str = "") -> MagentoTarget:
        """``path`` is appended to the base URL as it is (raw, still percent-encoded);
        ``proto`` is what the edge tells Magento the client used (``https`` or ``http``)."""
        tail = path + "?" + query if query else path
        # Magento's isSecure(): the connection itself, or its offloader header == "https".
        signed = self.https_base if self.tls or proto == "https" else self.http_base
        # tuple.__new__: the NamedTuple without its Python-level __new__ (every request)
        return _tuple_new(MagentoTarget, (self.base + tail, signed + tail, self.host, proto))


class UpstreamAuth(Protocol):
    """The store's credential as the request path uses it.

    ``authorization`` is synchronous on the hot path; it returns ``None`` only when a
    credential must first be fetched (an admin token), and the caller then awaits
    ``refresh()`` once and asks again."""

    def authorization(self, method: str, signed_url: str) -> str | None: ...

    async def refresh(self) -> None: ...

    def rejected(self) -> None:
        """Magento answered 401 to a request that carried this credential."""

    async def close(self) -> None: ...


class _Fixed:
    """A credential that never changes: nothing to refresh, nothing to close."""

    __slots__ = ()

    async def refresh(self) -> None:
        return None

    def rejected(self) -> None:
        return None

    async def close(self) -> None:
        return None


class BearerAuth(_Fixed):
    __slots__ = ("_value",)

    def __init__(self, credential: BearerCredential) -> None:
        self._value = "Bearer " + credential.token

    def authorization(self, method: str, signed_url: str) -> str:
        return self._value


class OAuth1Auth(_Fixed):
    __slots__ = ("_clock", "_credential")

    def __init__(
        self, credential: OAuth1Credential, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._credential = credential
        self._clock = clock

    def authorization(self, method: str, signed_url: str) -> str:
        return oauth1_authorization(self._credential, method, signed_url, clock=self._clock)


def auth_for(store: Store, *, clock: Callable[[], float] = time.time) -> UpstreamAuth:
    """The request path's credential object for one store."""
    credential = store.credential
    if isinstance(credential, BearerCredential):
        return BearerAuth(credential)
    if isinstance(credential, OAuth1Credential):
        return OAuth1Auth(credential, clock=clock)
    assert isinstance(credential, AdminCredential)
    from .admin_token import AdminTokenAuth

    return AdminTokenAuth(store, clock=clock)


class _Secrets:
    """The two attributes oauthlib's ``sign_hmac_sha256_with_client`` reads."""

    __slots__ = ("client_secret", "resource_owner_secret")

    def __init__(self, client_secret: str, resource_owner_secret: str) -> None:
        self.client_secret = client_secret
        self.resource_owner_secret = resource_owner_secret


def _pct(raw: bytes) -> str:
    """RFC 5849 §3.6: every byte outside ALPHA DIGIT ``-._~`` as ``%XX``."""
    return quote_from_bytes(raw, safe=b"~")


def _normalized(query: str, oauth_params: list[tuple[str, str]]) -> str:
    """RFC 5849 §3.4.1.3: the query's pairs (form-decoded to bytes, ``+`` is a space) and
    the ``oauth_*`` pairs, each percent-encoded, sorted, joined."""
    pairs = [(_pct(k.encode()), _pct(v.encode())) for k, v in oauth_params]
    if query:
        raw = query.encode("latin-1")
        for item in raw.split(b"&"):
            if not item:
                continue
            name, _, value = item.partition(b"=")
            pairs.append(
                (
                    _pct(unquote_to_bytes(name.replace(b"+", b" "))),
                    _pct(unquote_to_bytes(value.replace(b"+", b" "))),
                )
            )
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def oauth1_authorization(
    cred: OAuth1Credential,
    method: str,
    url: str,
    *,
    nonce: str | None = None,
    timestamp: str | None = None,
    clock: Callable[[], float] = time.time,
) -> str:
    """The ``Authorization: OAuth ...`` value signing ``method url`` with HMAC-SHA256.
    ``url`` is what Magento will rebuild (:attr:`MagentoTarget.signed_url`)."""
    oauth_params = [
        ("oauth_consumer_key", cred.consumer_key),
        ("oauth_nonce", nonce or secrets.token_hex(16)),
        ("oauth_signature_method", "HMAC-SHA256"),
        ("oauth_timestamp", timestamp or str(int(clock()))),
        ("oauth_token", cred.access_token),
        ("oauth_version", "1.0"),
    ]
    base_url, _, query = url.partition("?")
    base = _sig.signature_base_string(
        method.upper(), _sig.base_string_uri(base_url), _normalized(query, oauth_params)
    )
    signature = _sig.sign_hmac_sha256_with_client(
        base, _Secrets(cred.consumer_secret, cred.access_token_secret)
    )
    pairs = [*oauth_params, ("oauth_signature", signature)]
    return "OAuth " + ", ".join(f'{k}="{quote(v, safe="~")}"' for k, v in pairs)
