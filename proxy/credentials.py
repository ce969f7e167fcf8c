"""Step 6b of the request path: the store's own Magento credential, replacing the client's.

``bearer``: ``Authorization: Bearer <integration or admin token>``.
``oauth1``: OAuth 1.0a with HMAC-SHA256, Magento's default for integrations. The
signature covers the method, the URL and its query parameters and the ``oauth_*``
parameters, never a JSON body (RFC 5849 §3.4.1.3 includes only form-encoded bodies), so
signing never buffers a request body.

The signature primitives are oauthlib's. Its request-level ``Client.sign`` is not used:
it refuses query strings with raw ``[`` ``]``, which Magento's ``searchCriteria[...]``
syntax is full of, so the query is parsed here with ``parse_qsl`` and handed to
oauthlib's normalisation.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, quote

from oauthlib.oauth1.rfc5849 import signature as _sig

from .config import BearerCredential, Credential, OAuth1Credential

__all__ = ["authorization_for", "oauth1_authorization"]


def authorization_for(credential: Credential) -> Callable[[str, str], str]:
    """A function ``(method, url) -> Authorization header value`` for the credential."""
    if isinstance(credential, BearerCredential):
        value = "Bearer " + credential.token
        return lambda _method, _url: value
    return lambda method, url: oauth1_authorization(credential, method, url)


class _Secrets:
    """The two attributes oauthlib's ``sign_hmac_sha256_with_client`` reads."""

    __slots__ = ("client_secret", "resource_owner_secret")

    def __init__(self, client_secret: str, resource_owner_secret: str) -> None:
        self.client_secret = client_secret
        self.resource_owner_secret = resource_owner_secret


def oauth1_authorization(
    cred: OAuth1Credential,
    method: str,
    url: str,
    *,
    nonce: str | None = None,
    timestamp: str | None = None,
    clock: Callable[[], float] = time.time,
) -> str:
    """The ``Authorization: OAuth ...`` value signing ``method url`` with HMAC-SHA256."""
    oauth_params = [
        ("oauth_consumer_key", cred.consumer_key),
        ("oauth_nonce", nonce or secrets.token_hex(16)),
        ("oauth_signature_method", "HMAC-SHA256"),
        ("oauth_timestamp", timestamp or str(int(clock()))),
        ("oauth_token", cred.access_token),
        ("oauth_version", "1.0"),
    ]
    base_url, _, query = url.partition("?")
    params = parse_qsl(query, keep_blank_values=True) + oauth_params
    base = _sig.signature_base_string(
        method.upper(), _sig.base_string_uri(base_url), _sig.normalize_parameters(params)
    )
    signature = _sig.sign_hmac_sha256_with_client(
        base, _Secrets(cred.consumer_secret, cred.access_token_secret)
    )
    pairs = [*oauth_params, ("oauth_signature", signature)]
    return "OAuth " + ", ".join(f'{k}="{quote(v, safe="~")}"' for k, v in pairs)
