"""A Magento 2.4.6 REST stand-in: the upstream behind the edge in tests, demos and benchmarks.

Not part of the product: a sibling package of ``proxy`` that ``magento-edge demo`` imports
lazily (so it ships in the same distribution) and the tests and benchmarks use.

Magento itself cannot be installed here, so this raw ASGI app plays it. It answers the
384 routes of ``data/magento_routes.tsv`` (core 2.4.6 and MSI) the way the ``webapi_rest``
area does, as documented in the shared Magento contract. It is fast on purpose: one
precompiled route index, no framework, stdlib ``json``.

Reproduced from Magento (file names are Magento's):

* **Paths** (``Webapi/Controller/PathProcessor.php``, ``Rest/RequestProcessorPool.php``):
  ``/rest/{store}/V1/...``, ``/rest/V1/...`` (default store), ``/rest/all/V1/...`` (admin),
  ``/rest[/{store}]/async/V1/...`` and ``/rest[/{store}]/async/bulk/V1/...``. A first
  segment that is not a known store code is kept as part of the path (see
  ``UNKNOWN_STORE_ANSWER`` for what that then answers). ``/rest/{store}/schema`` gives a
  small Swagger document of the routes the caller may use.
* **Routing** (``Webapi/Model/Rest/Config.php``, ``Controller/Rest/Router.php``): an exact
  match of the declared URL wins; otherwise routes with the same number of segments whose
  literal segments match are tried in byte order of their ``:var`` URL and the **last**
  match wins, so literals beat variables (``/V1/products/types`` is not a SKU).
  Leading and trailing ``/`` are trimmed. Variable segments are PHP-``urldecode``d, so a
  SKU ``BAG/01`` arrives as ``BAG%2F01`` and ``+`` means a space. Routing happens before
  authorization: an unknown path is a 404 even without credentials.
* **Methods** (``Framework/Webapi/Rest/RequestMethodValidator.php``): anything but GET,
  POST, PUT and DELETE is a 405 ``The %1 HTTP method is not supported.``, rendered with the
  method (``The PATCH HTTP method is not supported.``).
* **Async and bulk** (``WebapiAsync``): GET is 400 ``Specified request cannot be
  processed.``; accepted requests answer 202 with ``bulk_uuid``, one ``request_items``
  entry per operation (``id``, ``data_hash`` = SHA-256 of the operation's JSON, ``status``
  ``accepted``) and ``errors: false``. Bulk URLs spell ``:param`` as ``by<Param>``
  (``PUT /async/bulk/V1/products/bySku``), ``PUT /async/bulk/V1/products`` is its alias,
  and the body is a JSON array; elements that are not objects or arrays are skipped.
* **Authentication** (``Webapi/etc/webapi_rest/di.xml``): Bearer tokens
  (``TokenUserContext``: exactly two space-separated pieces, scheme case-insensitive; an
  unknown token means guest), then OAuth 1.0a (``OauthUserContext``,
  ``Framework/Oauth/Oauth.php``, ``Integration/Model/Oauth/Token/Provider.php``) with
  HMAC-SHA256 only. The OAuth check is an independent RFC 5849 implementation
  (hashlib/hmac/urllib, never oauthlib, so the edge's oauthlib signing is really
  cross-checked). The base string URI is the request's scheme (``https`` when the
  connection is TLS or the offloader header, ``X-Forwarded-Proto`` by default, is exactly
  ``https``, as Magento's ``isSecure()``), the ``Host`` header (lower-cased, default port
  dropped) and the raw path as received; the parameters are the query string parsed with
  ``urllib.parse.parse_qsl(keep_blank_values=True)`` (so raw ``searchCriteria[...]``
  brackets are fine) plus the header's ``oauth_*`` parameters except
  ``oauth_signature``. Request bodies are never signed: Magento REST bodies are JSON.
  As in Magento, OAuth is evaluated only when a route needs a user, and a bad OAuth
  header is then an error, not guest: missing parameters 400 ``"%fieldName" is required.
  Enter and try again.``, a token that is not 32 characters 400 ``The token length is
  invalid. Check the length and try again.``, another method 400 ``Signature method %1 is
  not supported``, then 401 ``Consumer key is not the correct length`` / ``A consumer
  having the specified key does not exist`` / ``Specified token does not exist`` /
  ``Token is not associated with the specified consumer`` / ``The signature is invalid.
  Verify and try again.``.
* **ACL** (``Framework/Webapi/Authorization.php``, ``GuestAuthorization.php``,
  ``Customer/Model/Customer/Authorization.php``): ``anonymous`` routes are open; ``self``
  routes need a customer; every other route needs an integration or admin. A denial is 401
  ``{"message":"The consumer isn't authorized to access %resources.","parameters":
  {"resources":"..."}}`` with ``%resources`` left unsubstituted. ``GET /V1/analytics/link``
  (``secure="true"``) answers 400 ``Operation allowed only in HTTPS`` over plain HTTP.
* **Input** (``Framework/Webapi/Rest/Request.php``, ``Rest/Request/Deserializer/Json.php``):
  bodies are read for POST and PUT only (and DELETE in bulk); an empty body is no body.
  No ``Content-Type`` is 400 ``Content-Type header is empty.``, a malformed one ``Content-
  Type header is invalid.``, a charset other than UTF-8 ``UTF-8 is the only supported
  charset.``, another media type ``Server cannot understand Content-Type HTTP header media
  type <type>``, bad JSON ``Decoding error.``. On PUT the last path parameter is written
  into the single top-level body object (``ParamsOverrider``): ``PUT /V1/products/:sku``
  sets ``product.sku``.
* **Accept** (``Rest/Response/RendererFactory.php``): an ``Accept`` with no JSON- or
  XML-compatible range is 406 ``Server cannot match any of the given Accept HTTP header
  media type(s) from the request: "<types>" with media types from the config of response
  renderer.``.
* **Output** (``Webapi/Rest/Response.php``, ``Renderer/Json.php``): ``Content-Type:
  application/json; charset=utf-8``; 200 for every synchronous success, creates included;
  scalars as JSON scalars (``true`` from deletes, the token string from token routes);
  PHP ``json_encode`` escaping (``\\/`` and ``\\uXXXX``); errors as ``message`` plus
  ``parameters`` only when there are any (named placeholders give an object, positional
  ones a list) and ``errors`` for aggregates.
* **searchCriteria** (``Framework/Api/SearchCriteria*``, ``ServiceInputProcessor``):
  PHP-style nested query keys, camelCase or snake_case; filters OR-ed within a group,
  groups AND-ed; condition types ``eq neq like nlike in nin gt gteq lt lteq moreq from to
  null notnull finset nfinset`` (``condition_type`` defaults to ``eq``; ``in``/``nin`` take
  comma-separated values; comparisons are numeric when both sides are numbers and
  otherwise case-insensitive like MySQL's default collation; ``like`` honours ``%`` and
  ``_``); ``sort_orders`` (NULLs first when ascending); ``pageSize``/``currentPage`` with
  Magento's quirk that a page past the end returns the last page. Missing criteria are 400
  ``"%fieldName" is required. Enter and try again.`` with ``fieldName`` ``searchCriteria``;
  an empty ``searchCriteria=`` lists everything. The envelope is ``{"items", "search_criteria",
  "total_count"}``.

Implemented for real, on in-memory data per instance (seeded with a handful of products,
one with the SKU ``BAG/01``, orders, customers and MSI source items):
``GET/POST /V1/products`` and ``GET/PUT/DELETE /V1/products/:sku`` (SKUs match
case-insensitively like MySQL; POST and PUT save or update; 404 ``The product that was
requested doesn't exist. Verify the product and try again.``), ``GET /V1/orders``,
``GET /V1/orders/:id`` (404 ``The entity that was requested doesn't exist. Verify the entity
and try again.``), ``POST /V1/orders/:id/cancel`` (``true``, or ``false`` when the order can
no longer be cancelled), ``GET /V1/customers/:customerId`` (404 ``No such entity with
%fieldName = %fieldValue``), ``GET /V1/customers/search``, ``GET /V1/customers/me``,
``GET /V1/stockItems/:productSku``, ``PUT /V1/products/:productSku/stockItems/:itemId``,
``GET/POST /V1/inventory/source-items`` (the ``default`` source is the legacy stock),
``POST /V1/guest-carts`` (a new masked cart id, a 32-character JSON string), and
``POST /V1/integration/admin/token`` / ``customer/token`` (401 ``The account sign-in was
incorrect or your account is disabled temporarily. Please wait and try again later.``).

Every other route answers, once authorized, 200 with a small plausible body: a
``searchCriteria`` list route (``getList`` without path parameters) the empty search
envelope (and the 400 when criteria are missing), another GET its decoded path parameters
as an object or ``[]`` when it has none, DELETE ``true``, POST and PUT the echoed body (the
single top-level object unwrapped, with the PUT path parameter written in) or ``true``
without a body.

OAuth timestamps and nonces are checked as ``Nonce/Generator::validateNonce`` does: a
timestamp more than 600 s ahead of Magento's clock is 400 ``Incorrect timestamp value in the
oauth_timestamp parameter`` (a past one passes), a nonce seen before for the consumer is
401 ``The nonce is already being used by the consumer with ID %1``. Admin tokens are JWTs
(HS256, 2.4.4+) that expire after ``admin_token_minutes`` (60, ``webapi/jwtauth/
admin_expiration``); an expired one makes the caller a guest. With ``two_factor=True``
(Magento_TwoFactorAuth, bundled with 2.4) valid admin credentials get 401 ``Please use the
2fa provider-specific endpoints to obtain a token.`` with ``active_providers``. The
offloader header (``web/secure/offloader_header``) is configurable; every answer carries a
``Date`` from the stand-in's clock, as the web server in front of Magento adds.

Simplified or not reproduced: OAuth parameters are read from the header only, never from
the query or a form body; Magento's PHP ``parse_str`` nesting of bracketed query keys in
the signature is not modelled (flat ``parse_qsl`` pairs are signed, as the edge signs
them). All admins and integrations hold every ACL resource; the customer token route issues
a JWT to a customer whose email and password are in ``customer_passwords`` (tokens may also
be configured directly with ``customer_tokens``). Integration order saves (``POST
/V1/orders``, ``PUT /V1/orders/create``) are real; with ``carts=True`` so are guest carts and
a customer's active cart (``carts/mine``: items, order placement; ``carts.py``), which
otherwise get the generic answers below. XML is neither parsed nor rendered (XML
bodies get the unsupported media type 400; XML-only ``Accept`` still gets JSON). Stores do
not scope data. ``fields`` sparse fieldsets, input limits, reCAPTCHA and rate limits are
not reproduced. Error texts for sort directions and MSI validation are the stand-in's
best reading of Magento, not verified on the wire. Paths outside ``/rest`` answer 404
``Request does not match any route.`` (Magento would serve a storefront page). Bodies
beyond ``max_body_bytes`` get 413 ``{"message":"The request body is too large."}`` (Magento
itself has no such limit; PHP or the web server would cut in).

Observability for tests: ``hits`` counts ``(method, route_url)`` for requests that reached a
service (matched, authorized, input accepted); async routes count as
``/async/V1/...`` and bulk ones as ``/async/bulk/V1/...by<Param>``. ``requests`` keeps the
most recent requests as dicts (``method``, ``raw_path`` and ``query`` bytes, ``headers`` as
latin-1 ``(name, value)`` pairs, ``body_length``, ``body`` (its first 64 KiB) and ``status``).

Run it alone with ``python -m magento_standin --host 127.0.0.1 --port 9000
[--bearer-token-env NAME] [--oauth1-env PREFIX]``; secrets come only from environment
variables named on the command line (``PREFIX_CONSUMER_KEY``, ``PREFIX_CONSUMER_SECRET``,
``PREFIX_ACCESS_TOKEN``, ``PREFIX_ACCESS_TOKEN_SECRET``).
"""

from __future__ import annotations

import argparse
import base64
import copy
import functools
import hashlib
import hmac
import ipaddress
import json
import math
import os
import re
import secrets
import string
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import formatdate
from importlib import resources
from typing import Any, Final, Literal, TypedDict
from urllib.parse import parse_qsl, quote, unquote, unquote_plus

import jwt

from .carts import CartBook, CartError
from .graphql import GraphQLEndpoint

__all__ = [
    "UNKNOWN_STORE_ANSWER",
    "MagentoRoute",
    "MagentoStandin",
    "OAuth1Integration",
    "RecordedRequest",
    "create_standin",
    "load_routes",
    "main",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
DEFAULT_MAX_RECORDED: Final = 1000
RECORDED_BODY_BYTES: Final = 64 * 1024

# What ``/rest/<not a store code>/V1/...`` answers. The contract (section 2.1) says 404
# ``Request does not match any route.``; a reading of 2.4.6's PathProcessor and
# RequestProcessorPool suggests 400 ``Specified request cannot be processed.`` instead
# (the path ``/nosuchstore/V1/...`` matches no processor). The contract wins here.
UNKNOWN_STORE_ANSWER: Final[tuple[int, str]] = (404, "Request does not match any route.")

_METHODS: Final = frozenset({"GET", "POST", "PUT", "DELETE"})
_ASYNC_METHODS: Final = frozenset({"POST", "PUT", "DELETE"})
_SECURE_ROUTES: Final = frozenset({("GET", "/V1/analytics/link")})  # webapi.xml secure="true"
# getList services without path parameters that take no searchCriteria.
_NO_CRITERIA: Final = frozenset(
    {"/V1/carts/licence", "/V1/store/storeGroups", "/V1/store/storeViews", "/V1/store/websites"}
)
_OAUTH_REQUIRED: Final = (
    "oauth_consumer_key",
    "oauth_signature",
    "oauth_signature_method",
    "oauth_nonce",
    "oauth_timestamp",
    "oauth_token",
)
_OAUTH_LENGTH: Final = 32  # Framework/Oauth/Helper/Oauth.php LENGTH_CONSUMER_KEY, LENGTH_TOKEN
# Integration/Model/Oauth/Nonce/Generator.php: TIME_DEVIATION, and its messages.
_OAUTH_TIME_DEVIATION: Final = 600
_MSG_TIMESTAMP: Final = "Incorrect timestamp value in the oauth_timestamp parameter"
_MSG_NONCE: Final = "The nonce is already being used by the consumer with ID %1"
_MAX_NONCES: Final = 100_000
# TwoFactorAuth/Model/AdminAccessTokenService.php (security-package), as of 2.4.6.
_MSG_2FA: Final = "Please use the 2fa provider-specific endpoints to obtain a token."
_CONTENT_TYPE_RE: Final = re.compile(r"^([a-z\d/\-+.]+?)(?:; *charset=(.+))?$", re.IGNORECASE)
_SYNC_PATH_RE: Final = re.compile(r"^/V\d+")
_ASYNC_PATH_RE: Final = re.compile(r"^/async(/V.+)")
_BULK_PATH_RE: Final = re.compile(r"^/async/bulk(/V.+)")
_INT_RE: Final = re.compile(r"^-?\d+$")
# Webapi/etc/di.xml renderers; XML ones are accepted but answered in JSON.
_RENDERER_TYPES: Final = (
    "*/*", "application/json", "text/xml", "application/xml", "application/xhtml+xml"
)  # fmt: skip
_JSON_TYPES: Final = frozenset({"application/json"})
# PUT routes whose last path parameter has no setter on the body object (CustomerInterface
# has no setCustomerId, ProductAttributeMediaGalleryEntryInterface no setEntryId).
_UNDECLARED_PATH_PARAMS: Final = frozenset({("customer", "customerId"), ("entry", "entryId")})
_RESPONSE_HEADERS: Final = b"application/json; charset=utf-8"

# Exact Magento texts.
_MSG_NO_ROUTE: Final = "Request does not match any route."
_MSG_CANNOT_PROCESS: Final = "Specified request cannot be processed."
_MSG_METHOD: Final = "The %s HTTP method is not supported."
_MSG_DENIED: Final = "The consumer isn't authorized to access %resources."
_MSG_REQUIRED: Final = '"%fieldName" is required. Enter and try again.'
_MSG_AGGREGATE: Final = "One or more input exceptions have occurred."
_MSG_PRODUCT_404: Final = (
    "The product that was requested doesn't exist. Verify the product and try again."
)
_MSG_ENTITY_404: Final = (
    "The entity that was requested doesn't exist. Verify the entity and try again."
)
_MSG_NO_SUCH_ENTITY: Final = "No such entity with %fieldName = %fieldValue"
_MSG_SIGN_IN: Final = (
    "The account sign-in was incorrect or your account is disabled temporarily. "
    "Please wait and try again later."
)
_MSG_TOO_LARGE: Final = "The request body is too large."


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True, slots=True)
class OAuth1Integration:
    """One Magento integration's OAuth 1.0a credentials. Magento issues 32-character
    consumer keys and access tokens and rejects other lengths, so this does too."""

    consumer_key: str
    consumer_secret: str = field(repr=False)
    access_token: str
    access_token_secret: str = field(repr=False)

    def __post_init__(self) -> None:
        for name in ("consumer_key", "access_token"):
            value = getattr(self, name)
            if len(value) != _OAUTH_LENGTH:
                raise ValueError(f"OAuth1Integration.{name} must be {_OAUTH_LENGTH} characters")

    @classmethod
    def generate(cls) -> OAuth1Integration:
        """Fresh random credentials shaped like Magento's (32 alphanumerics each)."""
        return cls(*(_random_alnum(_OAUTH_LENGTH) for _ in range(4)))


@dataclass(frozen=True, slots=True)
class MagentoRoute:
    """One row of ``magento_routes.tsv``, compiled for matching."""

    method: str
    url: str  # as declared, e.g. "/V1/products/:sku"
    module: str
    service: str  # "Class::method"
    resources: tuple[str, ...]
    forced_params: str
    parts: tuple[str | None, ...]  # trimmed segments; None marks a :variable
    names: tuple[str, ...]  # the variables, in order
    hit_key: str = ""  # what ``hits`` counts; the URL unless async

    @property
    def acl(self) -> Literal["anonymous", "self", "acl"]:
        if "anonymous" in self.resources:
            return "anonymous"
        if "self" in self.resources:
            return "self"
        return "acl"

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        """Path parameters (``urldecode``d) if ``segments`` fit this route, else ``None``."""
        parts = self.parts
        if len(segments) != len(parts):
            return None
        values: dict[str, str] = {}
        names = iter(self.names)
        for part, seg in zip(parts, segments, strict=True):
            if part is None:
                values[next(names)] = unquote_plus(seg, errors="surrogateescape")
            elif part != seg:
                return None
        return values


class RecordedRequest(TypedDict):
    """What arrived, byte for byte: ``standin.requests[-1]["raw_path"]``. Header names and
    values are latin-1 decoded, as the server delivered them (names lower-cased)."""

    method: str
    raw_path: bytes
    query: bytes
    headers: list[tuple[str, str]]
    body_length: int
    body: bytes  # the first RECORDED_BODY_BYTES
    status: int


# --------------------------------------------------------------------------- route table


@functools.cache
def load_routes() -> tuple[MagentoRoute, ...]:
    """The packaged route table (``magento_standin/data/magento_routes.tsv``)."""
    text = (
        resources.files("magento_standin")
        .joinpath("data/magento_routes.tsv")
        .read_text(encoding="utf-8")
    )
    lines = text.splitlines()
    header = lines[0].split("\t")
    expected = ["method", "url", "module", "service", "acl_resources", "forced_params", "source"]
    if header != expected:
        raise ValueError(f"unexpected magento_routes.tsv header: {header}")
    routes: list[MagentoRoute] = []
    for line in lines[1:]:
        if not line.strip():
            continue
        method, url, module, service, acl, forced, _source = (line.split("\t") + [""] * 7)[:7]
        routes.append(_compile_route(method, url, module, service, acl, forced))
    return tuple(routes)


def _compile_route(
    method: str, url: str, module: str, service: str, acl: str, forced: str, hit_key: str = ""
) -> MagentoRoute:
    parts: list[str | None] = []
    names: list[str] = []
    for seg in url.strip("/").split("/"):
        if seg.startswith(":"):
            parts.append(None)
            names.append(seg[1:])
        else:
            parts.append(seg)
    resources_ = tuple(r.strip() for r in acl.split(",") if r.strip())
    return MagentoRoute(
        method, url, module, service, resources_, forced, tuple(parts), tuple(names), hit_key or url
    )


def _bulk_url(url: str) -> str:
    """``/V1/products/:sku`` -> ``/V1/products/bySku`` (``BulkServiceConfig``)."""
    return "/".join(
        "by" + seg[1:2].upper() + seg[2:] if seg.startswith(":") else seg for seg in url.split("/")
    )


class _RouteIndex:
    """Magento's matching rule, precompiled: exact URL first, then per (method, segment
    count, second segment) the candidates in descending byte order of their URL, so the
    first match found is the one Magento's "last match wins" would pick."""

    def __init__(self, routes: Iterable[MagentoRoute]) -> None:
        self._exact: dict[tuple[str, str], MagentoRoute] = {}
        buckets: dict[tuple[str, int, str], list[MagentoRoute]] = {}
        for route in routes:
            self._exact.setdefault((route.method, route.url), route)
            if len(route.parts) < 2 or route.parts[0] is None or route.parts[1] is None:
                raise ValueError(f"route {route.url} must start with two literal segments")
            key = (route.method, len(route.parts), route.parts[1])
            buckets.setdefault(key, []).append(route)
        self._buckets: dict[tuple[str, int, str], tuple[MagentoRoute, ...]] = {
            k: tuple(sorted(v, key=lambda r: r.url.encode(), reverse=True))
            for k, v in buckets.items()
        }

    def match(self, method: str, path: str) -> tuple[MagentoRoute, dict[str, str]] | None:
        segments = path.strip("/").split("/")
        exact = self._exact.get((method, path))
        if exact is not None:
            params = exact.match(segments)
            return exact, params if params is not None else {}
        if len(segments) < 2:
            return None
        for route in self._buckets.get((method, len(segments), segments[1]), ()):
            params = route.match(segments)
            if params is not None:
                return route, params
        return None


@functools.cache
def _indexes() -> tuple[_RouteIndex, _RouteIndex, _RouteIndex, tuple[MagentoRoute, ...]]:
    routes = load_routes()
    sync = _RouteIndex(routes)
    async_routes = [
        replace(r, hit_key="/async" + r.url) for r in routes if r.method in _ASYNC_METHODS
    ]
    bulk_routes: list[MagentoRoute] = []
    seen: set[tuple[str, str]] = set()
    for r in routes:
        if r.method not in _ASYNC_METHODS:
            continue
        url = _bulk_url(r.url)
        if (r.method, url) in seen:
            continue
        seen.add((r.method, url))
        hit = "/async/bulk" + url
        acl = ",".join(r.resources)
        bulk_routes.append(_compile_route(r.method, url, r.module, r.service, acl, "", hit))
        if (r.method, r.url) == ("PUT", "/V1/products/:sku"):
            # Catalog/etc/webapi_async.xml: async/bulk/V1/products aliases .../bySku.
            bulk_routes.append(
                _compile_route("PUT", "/V1/products", r.module, r.service, acl, "", hit)
            )
    return sync, _RouteIndex(async_routes), _RouteIndex(bulk_routes), routes


# --------------------------------------------------------------------------- helpers


class _Fail(Exception):
    """A Magento error answer: raised anywhere below, rendered once."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class _Identity:
    kind: Literal["guest", "integration", "admin", "customer"]
    customer_id: int | None = None


_GUEST: Final = _Identity("guest")
_INTEGRATION: Final = _Identity("integration")
_ADMIN: Final = _Identity("admin")


@dataclass(slots=True)
class _Call:
    method: str
    route: MagentoRoute
    params: dict[str, str]
    query: dict[str, Any]
    body: Any  # decoded JSON, None without a body
    identity: _Identity
    store: str


def _random_alnum(n: int) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _encode(obj: object) -> bytes:
    """PHP ``json_encode`` without flags: ``\\uXXXX`` escapes and ``\\/``."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode()


def _error(
    message: str,
    parameters: Mapping[str, Any] | Sequence[Any] | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
) -> bytes:
    doc: dict[str, Any] = {"message": message}
    if errors:
        doc["errors"] = list(errors)
    if parameters:
        doc["parameters"] = parameters if isinstance(parameters, Mapping) else list(parameters)
    return _encode(doc)


def _fail(
    status: int, message: str, parameters: Mapping[str, Any] | Sequence[Any] | None = None
) -> _Fail:
    return _Fail(status, _error(message, parameters))


def _required(names: Sequence[str]) -> _Fail:
    """``ServiceInputProcessor::processInputError``: one error, or the aggregate."""
    if len(names) == 1:
        return _fail(400, _MSG_REQUIRED, {"fieldName": names[0]})
    errors = [{"message": _MSG_REQUIRED, "parameters": {"fieldName": n}} for n in names]
    return _Fail(400, _error(_MSG_AGGREGATE, errors=errors))


def _to_int(value: Any) -> int:
    """``TypeProcessor::processSimpleAndAnyType`` for ``int``."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_RE.match(value):
        return int(value)
    shown = value if isinstance(value, str) else json.dumps(value)
    raise _fail(
        400,
        f'The "{shown}" value\'s type is invalid. The "int" type was expected. '
        "Verify and try again.",
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _pct(text: str) -> str:
    """RFC 5849 section 3.6 percent-encoding (unreserved characters kept)."""
    return quote(text, safe="~")


def _base_string_uri(scheme: str, host: str, raw_path: str) -> str:
    """RFC 5849 section 3.4.1.2: scheme and host lower-cased, default port dropped."""
    host = host.strip().lower()
    port: int | None = None
    if host.startswith("["):
        end = host.find("]")
        hostname, rest = (host[: end + 1], host[end + 1 :]) if end != -1 else (host, "")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        hostname, sep, port_text = host.rpartition(":")
        if not sep:
            hostname, port_text = host, ""
    if port_text:
        if not port_text.isdigit():
            raise ValueError("bad port")
        port = int(port_text)
    try:
        address = ipaddress.ip_address(hostname.strip("[]"))
    except ValueError:
        pass
    else:
        hostname = f"[{address}]" if address.version == 6 else str(address)
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        netloc = f"{hostname}:{port}"
    else:
        netloc = hostname
    return f"{scheme}://{netloc}{raw_path or '/'}"


def _oauth_signature(
    method: str,
    base_uri: str,
    params: Iterable[tuple[str, str]],
    consumer_secret: str,
    token_secret: str,
) -> str:
    """HMAC-SHA256 over the RFC 5849 signature base string, base64-encoded."""
    pairs = sorted((_pct(k), _pct(v)) for k, v in params)
    normalized = "&".join(f"{k}={v}" for k, v in pairs)
    base = "&".join((_pct(method.upper()), _pct(base_uri), _pct(normalized)))
    key = f"{_pct(consumer_secret)}&{_pct(token_secret)}"
    digest = hmac.new(key.encode(), base.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _parse_oauth_header(value: str) -> dict[str, str]:
    """``oauth_*`` parameters of an ``OAuth ...`` header (``realm`` and others dropped)."""
    found: dict[str, str] = {}
    for piece in value[6:].split(","):
        name, sep, raw = piece.strip().partition("=")
        if not sep:
            continue
        name = unquote(name.strip())
        if name.startswith("oauth_"):
            found[name] = unquote(raw.strip().strip('"'))
    return found


def _php_query(query: str) -> dict[str, Any]:
    """PHP ``parse_str``: ``a[b][0]=x`` nests, ``a[]=x`` appends; the last value wins."""
    result: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        base, bracket, rest = key.partition("[")
        if not bracket or not base:
            result[key] = value
            continue
        path = [base]
        rest = "[" + rest
        while rest.startswith("["):
            end = rest.find("]")
            if end == -1:
                break
            path.append(rest[1:end])
            rest = rest[end + 1 :]
        node = result
        for i, name in enumerate(path):
            last = i == len(path) - 1
            if name == "":
                name = str(sum(1 for k in node if _INT_RE.match(k)))
            if last:
                node[name] = value
            else:
                child = node.get(name)
                if not isinstance(child, dict):
                    child = {}
                    node[name] = child
                node = child
    return result


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, list):
        return value
    return []


def _pick(obj: Mapping[str, Any], snake: str, camel: str) -> Any:
    return obj[snake] if snake in obj else obj.get(camel)


@functools.lru_cache(maxsize=256)
def _accept_problem(accept: str) -> bytes | None:
    """``RendererFactory::get``: ``None`` if JSON or XML can be rendered, else the 406 body."""
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        q = 1.0
        for p in params:
            if p.lower().startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if q > 0:
            ranked.append((-q, i, media.lower()))
    types = [m for _, _, m in sorted(ranked)] or ["*/*"]
    for media in types:
        for renderer in _RENDERER_TYPES:
            if media in (renderer, renderer.split("/")[0] + "/*", "*/*"):
                return None
    shown = ",".join(types)
    return _error(
        "Server cannot match any of the given Accept HTTP header media type(s) from the "
        f'request: "{shown}" with media types from the config of response renderer.'
    )


# --------------------------------------------------------------------------- searchCriteria


@dataclass(slots=True)
class _Criteria:
    groups: list[list[tuple[str | None, str, str]]]  # (field, value, condition)
    sorts: list[tuple[str, str]]
    page_size: int | None
    current_page: int | None
    echo: dict[str, Any]


def _criteria(query: Mapping[str, Any]) -> _Criteria:
    if "searchCriteria" in query:
        raw = query["searchCriteria"]
    elif "search_criteria" in query:
        raw = query["search_criteria"]
    else:
        raise _required(["searchCriteria"])
    if not isinstance(raw, dict):
        raw = {}
    groups: list[list[tuple[str | None, str, str]]] = []
    echo_groups: list[dict[str, Any]] = []
    for group in _as_list(_pick(raw, "filter_groups", "filterGroups")):
        filters: list[tuple[str | None, str, str]] = []
        echo_filters: list[dict[str, Any]] = []
        for flt in _as_list(group.get("filters") if isinstance(group, dict) else None):
            if not isinstance(flt, dict):
                continue
            name = flt.get("field")
            value = flt.get("value")
            cond = _pick(flt, "condition_type", "conditionType") or "eq"
            value_text = "" if value is None else str(value)
            filters.append((str(name) if name is not None else None, value_text, str(cond)))
            shown: dict[str, Any] = {}
            if name is not None:
                shown["field"] = name
            if value is not None:
                shown["value"] = value
            shown["condition_type"] = cond
            echo_filters.append(shown)
        groups.append(filters)
        echo_groups.append({"filters": echo_filters})
    echo: dict[str, Any] = {"filter_groups": echo_groups}
    sorts: list[tuple[str, str]] = []
    raw_sorts = _pick(raw, "sort_orders", "sortOrders")
    if raw_sorts is not None:
        echo_sorts: list[dict[str, Any]] = []
        for order in _as_list(raw_sorts):
            if not isinstance(order, dict) or order.get("field") is None:
                continue
            direction = str(order.get("direction") or "ASC").upper()
            if direction not in ("ASC", "DESC"):
                raise _fail(
                    400,
                    'Sort order direction "%1" is not allowed. Use "ASC" or "DESC".',
                    [order.get("direction")],
                )
            sorts.append((str(order["field"]), direction))
            echo_sorts.append({"field": order["field"], "direction": direction})
        echo["sort_orders"] = echo_sorts
    page_size = _pick(raw, "page_size", "pageSize")
    current_page = _pick(raw, "current_page", "currentPage")
    size = _to_int(page_size) if page_size not in (None, "") else None
    page = _to_int(current_page) if current_page not in (None, "") else None
    if size is not None:
        echo["page_size"] = size
    if page is not None:
        echo["current_page"] = page
    return _Criteria(groups, sorts, size, page, echo)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return str(value)


def _compare(actual: Any, wanted: str) -> int:
    """-1, 0, 1 like MySQL: numeric when both are numbers, else case-insensitive text."""
    a, b = _number(actual), _number(wanted)
    if a is not None and b is not None:
        return (a > b) - (a < b)
    x, y = _text(actual).casefold(), wanted.casefold()
    return (x > y) - (x < y)


@functools.lru_cache(maxsize=256)
def _like(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _field(item: Mapping[str, Any], name: str) -> Any:
    if name in item:
        return item[name]
    if name == "entity_id" and "id" in item:
        return item["id"]
    for attribute in item.get("custom_attributes") or ():
        if isinstance(attribute, dict) and attribute.get("attribute_code") == name:
            return attribute.get("value")
    return None


def _matches(actual: Any, value: str, cond: str) -> bool:
    if cond == "null":
        return actual is None
    if cond == "notnull":
        return actual is not None
    if actual is None:
        return False  # SQL: NULL compares to nothing
    if cond in ("eq", "neq"):
        return (_compare(actual, value) == 0) == (cond == "eq")
    if cond in ("like", "nlike"):
        return bool(_like(value).fullmatch(_text(actual))) == (cond == "like")
    if cond in ("in", "nin"):
        found = any(_compare(actual, v) == 0 for v in value.split(","))
        return found == (cond == "in")
    if cond in ("finset", "nfinset"):
        return (value in _text(actual).split(",")) == (cond == "finset")
    order = _compare(actual, value)
    if cond == "gt":
        return order > 0
    if cond in ("gteq", "moreq", "from"):
        return order >= 0
    if cond == "lt":
        return order < 0
    if cond in ("lteq", "to"):
        return order <= 0
    return order == 0  # unknown condition types behave as eq


def _search(items: Iterable[Mapping[str, Any]], criteria: _Criteria) -> tuple[list[Any], int]:
    selected = [
        item
        for item in items
        if all(
            any(
                name is not None and _matches(_field(item, name), value, cond)
                for name, value, cond in group
            )
            for group in criteria.groups
            if any(name is not None for name, _, _ in group)
        )
    ]
    for name, direction in reversed(criteria.sorts):
        values = [_field(item, name) for item in selected]
        numeric = all(_number(v) is not None for v in values if v is not None)

        def key(pair: tuple[Any, Mapping[str, Any]], numeric: bool = numeric) -> tuple[int, Any]:
            v = pair[0]
            if v is None:
                return (0, 0)
            return (1, _number(v)) if numeric else (1, _text(v).casefold())

        ordered = sorted(zip(values, selected, strict=True), key=key, reverse=direction == "DESC")
        selected = [item for _, item in ordered]
    total = len(selected)
    if criteria.page_size:
        size = criteria.page_size
        last_page = max(1, math.ceil(total / size))
        page = min(max(criteria.current_page or 1, 1), last_page)  # Magento: past the end = last
        selected = selected[(page - 1) * size : page * size]
    return selected, total


def _envelope(items: list[Any], criteria: _Criteria, total: int) -> dict[str, Any]:
    return {"items": items, "search_criteria": criteria.echo, "total_count": total}


# --------------------------------------------------------------------------- seed data


def _seed_products() -> list[dict[str, Any]]:
    rows = [
        ("MB-01", "Joust Duffle Bag", 34, 1, 4, 15, 1.0, "gear", "Black"),
        ("MB-04", "Strive Shoulder Pack", 32, 1, 4, 15, 1.0, "gear", "Black"),
        ("WB-04", "Overnight Duffle", 45, 1, 4, 15, 2.0, "gear", "Blue"),
        ("BAG/01", "Travel Bag With A Slash", 59.5, 1, 4, 15, 1.5, "gear", "Red"),
        ("MH01-XS-Black", "Chaz Kangeroo Hoodie-XS-Black", 52, 1, 1, 9, 1.0, "men", "Black"),
        ("WS12-M-Orange", "Radiant Tee-M-Orange", 22, 2, 1, 9, 0.5, "women", "Orange"),
    ]
    products: list[dict[str, Any]] = []
    for i, (sku, name, price, status, visibility, attr_set, weight, category, color) in enumerate(
        rows, start=1
    ):
        products.append(
            {
                "id": i,
                "sku": sku,
                "name": name,
                "attribute_set_id": attr_set,
                "price": price,
                "status": status,
                "visibility": visibility,
                "type_id": "simple",
                "created_at": f"2024-01-0{i} 10:00:00",
                "updated_at": f"2024-02-0{i} 10:00:00",
                "weight": weight,
                "extension_attributes": {
                    "website_ids": [1],
                    "category_links": [{"position": 0, "category_id": str(2 + i % 3)}],
                },
                "product_links": [],
                "options": [],
                "media_gallery_entries": [],
                "tier_prices": [],
                "custom_attributes": [
                    {"attribute_code": "url_key", "value": name.lower().replace(" ", "-")},
                    {"attribute_code": "category_gear", "value": category},
                    {"attribute_code": "color", "value": color},
                    {"attribute_code": "tax_class_id", "value": "2"},
                ],
            }
        )
    return products


_SEED_QTY: Final = {
    "MB-01": 100, "MB-04": 50, "WB-04": 0, "BAG/01": 7, "MH01-XS-Black": 12,
    "WS12-M-Orange": 3,
}  # fmt: skip


def _seed_customers() -> list[dict[str, Any]]:
    people = [
        (1, "roni_cost@example.com", "Veronica", "Costello", 1),
        (2, "john.doe@example.com", "John", "Doe", 1),
        (3, "wholesale@example.com", "Wanda", "Wholesale", 2),
    ]
    customers: list[dict[str, Any]] = []
    for cid, email, first, last, group in people:
        address = {
            "id": cid,
            "customer_id": cid,
            "region": {"region_code": "MI", "region": "Michigan", "region_id": 33},
            "region_id": 33,
            "country_id": "US",
            "street": [f"{cid}0 Main Street"],
            "telephone": "(555) 229-3326",
            "postcode": "49628-7978",
            "city": "Calder",
            "firstname": first,
            "lastname": last,
            "default_shipping": True,
            "default_billing": True,
        }
        customers.append(
            {
                "id": cid,
                "group_id": group,
                "default_billing": str(cid),
                "default_shipping": str(cid),
                "created_at": f"2024-01-0{cid} 09:00:00",
                "updated_at": f"2024-01-0{cid} 09:00:00",
                "created_in": "Default Store View",
                "email": email,
                "firstname": first,
                "lastname": last,
                "store_id": 1,
                "website_id": 1,
                "addresses": [address],
                "disable_auto_group_change": 0,
                "extension_attributes": {"is_subscribed": False},
            }
        )
    return customers


def _seed_orders() -> list[dict[str, Any]]:
    rows = [
        (1, 1, "processing", "MB-01", "Joust Duffle Bag", 34, 1),
        (2, 2, "pending", "BAG/01", "Travel Bag With A Slash", 59.5, 2),
        (3, 1, "complete", "MB-04", "Strive Shoulder Pack", 32, 3),
    ]
    customers = {c["id"]: c for c in _seed_customers()}
    orders: list[dict[str, Any]] = []
    for oid, cid, state, sku, name, price, qty in rows:
        customer = customers[cid]
        subtotal = price * qty
        orders.append(
            {
                "entity_id": oid,
                "increment_id": f"00000000{oid}",
                "state": state if state != "pending" else "new",
                "status": state,
                "store_id": 1,
                "customer_id": cid,
                "customer_email": customer["email"],
                "customer_firstname": customer["firstname"],
                "customer_lastname": customer["lastname"],
                "customer_group_id": customer["group_id"],
                "customer_is_guest": 0,
                "base_currency_code": "USD",
                "order_currency_code": "USD",
                "subtotal": subtotal,
                "shipping_amount": 5,
                "grand_total": subtotal + 5,
                "total_qty_ordered": qty,
                "created_at": f"2024-03-0{oid} 12:00:00",
                "updated_at": f"2024-03-0{oid} 12:30:00",
                "items": [
                    {
                        "item_id": oid,
                        "order_id": oid,
                        "sku": sku,
                        "name": name,
                        "product_type": "simple",
                        "qty_ordered": qty,
                        "price": price,
                        "row_total": subtotal,
                    }
                ],
                "billing_address": dict(customer["addresses"][0], address_type="billing"),
                "payment": {"method": "checkmo", "amount_ordered": subtotal + 5},
                "status_histories": [],
                "extension_attributes": {"shipping_assignments": []},
            }
        )
    return orders


# --------------------------------------------------------------------------- the app

_Handler = Callable[[_Call], object]


class MagentoStandin:
    """The raw ASGI app. See the module docstring for what it reproduces.

    Public state (mutable, for tests): ``products`` (SKU -> product), ``orders``
    (entity_id -> order), ``customers`` (id -> customer), ``source_items``
    ((sku, source_code) -> source item), ``hits`` and ``requests``.
    """

    def __init__(
        self,
        *,
        bearer_tokens: Iterable[str] = (),
        oauth1: Iterable[OAuth1Integration | tuple[str, str, str, str]] = (),
        customer_tokens: Mapping[str, int] | None = None,
        admin_users: Mapping[str, str] | None = None,
        customer_passwords: Mapping[str, str] | None = None,
        store_codes: Iterable[str] = ("default",),
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_recorded: int = DEFAULT_MAX_RECORDED,
        seed: bool = True,
        offloader_header: str = "X-Forwarded-Proto",
        two_factor: bool = False,
        admin_token_minutes: float = 60,
        clock: Callable[[], float] = time.time,
        carts: bool = False,
    ) -> None:
        self._bearer: set[str] = {t for t in bearer_tokens if t}
        self._offloader = offloader_header.lower().encode("latin-1")
        self.two_factor = two_factor
        self.admin_token_minutes = admin_token_minutes
        self.clock = clock
        self._jwt_key = secrets.token_bytes(32)  # signs this instance's admin JWTs
        self._nonces: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._oauth_by_key: dict[str, OAuth1Integration] = {}
        self._oauth_by_token: dict[str, OAuth1Integration] = {}
        for entry in oauth1:
            integration = (
                entry if isinstance(entry, OAuth1Integration) else OAuth1Integration(*entry)
            )
            self._oauth_by_key[integration.consumer_key] = integration
            self._oauth_by_token[integration.access_token] = integration
        self._consumer_ids = {key: i for i, key in enumerate(self._oauth_by_key, start=1)}
        self._customer_tokens: dict[str, int] = dict(customer_tokens or {})
        self._admin_users: dict[str, str] = dict(admin_users or {})
        # customer email -> password: POST /V1/integration/customer/token issues a token
        self._customer_passwords: dict[str, str] = dict(customer_passwords or {})
        self._admin_tokens: set[str] = set()
        self.store_codes: frozenset[str] = frozenset(store_codes) - {"admin", "all"}
        self.max_body_bytes = max_body_bytes
        self.hits: Counter[tuple[str, str]] = Counter()
        self.requests: deque[RecordedRequest] = deque(maxlen=max_recorded)
        self._sync, self._async, self._bulk, self.routes = _indexes()

        self.products: dict[str, dict[str, Any]] = {}
        self._sku_index: dict[str, str] = {}  # casefolded SKU -> SKU (MySQL collation)
        self.orders: dict[int, dict[str, Any]] = {}
        self.customers: dict[int, dict[str, Any]] = {}
        self.source_items: dict[tuple[str, str], dict[str, Any]] = {}
        self.guest_carts: set[str] = set()  # masked quote ids handed out
        if seed:
            for product in _seed_products():
                self._store_product(product)
            for sku, qty in _SEED_QTY.items():
                self.source_items[(sku, "default")] = {
                    "sku": sku, "source_code": "default", "quantity": qty, "status": int(qty > 0)
                }  # fmt: skip
            self.orders = {o["entity_id"]: o for o in _seed_orders()}
            self.customers = {c["id"]: c for c in _seed_customers()}
        self.graphql = GraphQLEndpoint(lambda: self.products, lambda: self.customers)
        self._next_product_id = max((p["id"] for p in self.products.values()), default=0) + 1
        self.carts = CartBook(
            find_product=self._find_product,
            orders=self.orders,
            customers=self.customers,
            clock=self.clock,
        )

        self._handlers: dict[tuple[str, str], _Handler] = {
            ("GET", "/V1/products"): self._products_list,
            ("POST", "/V1/products"): self._product_save,
            ("GET", "/V1/products/:sku"): self._product_get,
            ("PUT", "/V1/products/:sku"): self._product_save,
            ("DELETE", "/V1/products/:sku"): self._product_delete,
            ("GET", "/V1/orders"): self._orders_list,
            ("GET", "/V1/orders/:id"): self._order_get,
            ("POST", "/V1/orders/:id/cancel"): self._order_cancel,
            ("GET", "/V1/customers/:customerId"): self._customer_get,
            ("GET", "/V1/customers/me"): self._customer_me,
            ("GET", "/V1/customers/search"): self._customers_search,
            ("GET", "/V1/stockItems/:productSku"): self._stock_get,
            ("PUT", "/V1/products/:productSku/stockItems/:itemId"): self._stock_update,
            ("GET", "/V1/inventory/source-items"): self._source_items_list,
            ("POST", "/V1/inventory/source-items"): self._source_items_save,
            ("POST", "/V1/guest-carts"): self._guest_cart_create,
            ("POST", "/V1/integration/admin/token"): self._admin_token,
            ("POST", "/V1/integration/customer/token"): self._customer_token,
            ("POST", "/V1/integration/customer/revoke-customer-token"): self._customer_revoke,
            ("POST", "/V1/orders"): self._order_save,
            ("PUT", "/V1/orders/create"): self._order_save,
        }
        if carts:  # real quotes: unknown cart ids are 404, orders are placed (carts.py)
            self._handlers.update({
                ("GET", "/V1/guest-carts/:cartId"): self._guest_cart_get,
                ("GET", "/V1/guest-carts/:cartId/items"): self._guest_cart_items,
                ("POST", "/V1/guest-carts/:cartId/items"): self._guest_cart_add,
                ("PUT", "/V1/guest-carts/:cartId/order"): self._guest_cart_order,
                ("POST", "/V1/carts/mine"): self._mine_create,
                ("GET", "/V1/carts/mine"): self._mine_get,
                ("GET", "/V1/carts/mine/items"): self._mine_items,
                ("POST", "/V1/carts/mine/items"): self._mine_add,
                ("PUT", "/V1/carts/mine/order"): self._mine_order,
            })  # fmt: skip

    # ----------------------------------------------------------------- ASGI entry point

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif kind == "websocket":
            await receive()
            await send({"type": "websocket.close", "code": 1000})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        raw_path = raw_path.split(b"?", 1)[0]
        query: bytes = scope.get("query_string", b"")
        headers: list[tuple[bytes, bytes]] = scope["headers"]

        declared_length = -1
        for k, v in headers:
            if k == b"content-length":
                declared_length = int(v) if v.isdigit() else -1
                break
        body = b""
        length = 0
        too_large = declared_length > self.max_body_bytes
        if not too_large:
            body, length, too_large = await _read_body(receive, self.max_body_bytes)
        if too_large:
            status, payload = 413, _error(_MSG_TOO_LARGE)
        else:
            try:
                status, payload = self._respond(scope, method, raw_path, query, headers, body)
            except _Fail as failure:
                status, payload = failure.status, failure.body
        self.requests.append(
            {
                "method": method,
                "raw_path": raw_path,
                "query": query,
                "headers": [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
                "body_length": length,
                "body": body[:RECORDED_BODY_BYTES],
                "status": status,
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", _RESPONSE_HEADERS),
                    (b"content-length", str(len(payload)).encode()),
                    # What a web server in front of PHP adds; probes read Magento's clock here.
                    (b"date", formatdate(self.clock(), usegmt=True).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    # ----------------------------------------------------------------- the pipeline

    def _respond(
        self,
        scope: Scope,
        method: str,
        raw_path: bytes,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> tuple[int, bytes]:
        auth = content_type = host = forwarded_proto = accept = None
        for k, v in headers:
            if k == b"authorization":
                if auth is None:
                    auth = v.decode("latin-1")
            elif k == b"content-type":
                if content_type is None:
                    content_type = v.decode("latin-1")
            elif k == b"host":
                if host is None:
                    host = v.decode("latin-1")
            elif k == self._offloader:
                if forwarded_proto is None:
                    forwarded_proto = v.decode("latin-1")
            elif k == b"accept" and accept is None:
                accept = v.decode("latin-1")

        if accept:
            problem = _accept_problem(accept)
            if problem is not None:
                return 406, problem

        path = raw_path.decode("latin-1")
        parts = path.strip("/").split("/")
        if parts == ["graphql"]:  # GraphQL's front name (magento_standin.graphql)
            who = self._identify(auth, method, scope, host, forwarded_proto, path, query)
            self.hits[(method, "/graphql")] += 1
            return self.graphql.respond(
                method, query, content_type, body, (who.kind, who.customer_id)
            )
        if parts[0] != "rest":
            return 404, _error(_MSG_NO_ROUTE)
        if method not in _METHODS:
            return 405, _error(_MSG_METHOD % method)

        # PathProcessor: /rest/<store|all>/..., else the whole rest is the path.
        rest = "/".join(parts[1:]).lstrip("/")
        first, _, remainder = rest.partition("/")
        if first in self.store_codes:
            store, inner = first, "/" + remainder
        elif first == "all":
            store, inner = "admin", "/" + remainder
        else:
            store, inner = "default", "/" + rest

        # RequestProcessorPool.
        bulk = single = None
        if _SYNC_PATH_RE.match(inner):
            index, mode = self._sync, "sync"
        elif inner.lstrip("/").startswith(("schema", "async/schema", "async/bulk/schema")):
            return 200, self._schema(store, inner, auth, scope, host, forwarded_proto, path, query)
        elif method != "GET" and (bulk := _BULK_PATH_RE.match(inner)):
            index, mode, inner = self._bulk, "bulk", bulk.group(1)
        elif method != "GET" and (single := _ASYNC_PATH_RE.match(inner)):
            index, mode, inner = self._async, "async", single.group(1)
        else:
            if (
                first not in self.store_codes
                and first not in ("all", "async")
                and (_SYNC_PATH_RE.match("/" + remainder) or remainder.startswith("async/"))
            ):
                return UNKNOWN_STORE_ANSWER[0], _error(UNKNOWN_STORE_ANSWER[1])
            return 400, _error(_MSG_CANNOT_PROCESS)

        found = index.match(method, inner)
        if found is None:
            return 404, _error(_MSG_NO_ROUTE)
        route, params = found

        identity = _GUEST
        if route.acl != "anonymous":
            identity = self._identify(auth, method, scope, host, forwarded_proto, path, query)
            allowed = (
                identity.kind == "customer"
                if route.acl == "self"
                else (identity.kind in ("integration", "admin"))
            )
            if not allowed:
                return 401, _error(_MSG_DENIED, {"resources": ", ".join(route.resources)})
        if (route.method, route.url) in _SECURE_ROUTES and not _is_secure(scope, forwarded_proto):
            return 400, _error("Operation allowed only in HTTPS")

        decoded: Any = None
        if body and (method in ("POST", "PUT") or (mode == "bulk" and method == "DELETE")):
            decoded = _decode_body(content_type, body)

        if mode != "sync":
            return 202, self._accept_async(route, mode, params, decoded)

        query_params = _php_query(query.decode("latin-1")) if query else {}
        if "%customer_id%" in route.forced_params and identity.customer_id is not None:
            params["customerId"] = str(identity.customer_id)
        if method == "PUT" and isinstance(decoded, dict):
            decoded = _override_with_path_param(decoded, params)
        call = _Call(method, route, params, query_params, decoded, identity, store)
        handler = self._handlers.get((route.method, route.url))
        self.hits[(route.method, route.hit_key)] += 1
        try:
            result = handler(call) if handler is not None else self._generic(call)
        except CartError as exc:  # magento_standin.carts: Magento's answer, as data
            return exc.status, _error(exc.message, exc.parameters)
        return 200, _encode(result)

    def _identify(
        self,
        auth: str | None,
        method: str,
        scope: Scope,
        host: str | None,
        forwarded_proto: str | None,
        path: str,
        query: bytes,
    ) -> _Identity:
        """The user context chain: token (Bearer), then OAuth 1.0a, then guest."""
        if not auth:
            return _GUEST
        pieces = auth.split(" ")
        if len(pieces) == 2 and pieces[0].lower() == "bearer":
            token = pieces[1]
            if token in self._bearer:
                return _INTEGRATION
            if token in self._admin_tokens and self._admin_token_valid(token):
                return _ADMIN
            customer_id = self._customer_tokens.get(token)
            if customer_id is not None:
                return _Identity("customer", customer_id)
            return _GUEST
        if auth[:6].lower() != "oauth ":
            return _GUEST
        return self._verify_oauth(auth, method, scope, host, forwarded_proto, path, query)

    def _verify_oauth(
        self,
        auth: str,
        method: str,
        scope: Scope,
        host: str | None,
        forwarded_proto: str | None,
        path: str,
        query: bytes,
    ) -> _Identity:
        """``Framework/Oauth/Oauth.php::validateAccessTokenRequest``, in its order."""
        params = _parse_oauth_header(auth)
        version = params.get("oauth_version")
        if version is not None and version != "1.0":
            raise _fail(400, 'The "%1" Oauth version isn\'t supported.', [version])
        missing = [name for name in _OAUTH_REQUIRED if name not in params]
        if missing:
            raise _required(missing)
        if len(params["oauth_token"]) != _OAUTH_LENGTH:
            raise _fail(400, "The token length is invalid. Check the length and try again.")
        signature_method = params["oauth_signature_method"]
        if signature_method != "HMAC-SHA256":
            raise _fail(400, "Signature method %1 is not supported", [signature_method])
        consumer_key = params["oauth_consumer_key"]
        if len(consumer_key) != _OAUTH_LENGTH:
            raise _fail(401, "Consumer key is not the correct length")
        integration = self._oauth_by_key.get(consumer_key)
        if integration is None:
            raise _fail(401, "A consumer having the specified key does not exist")
        self._validate_nonce(consumer_key, params["oauth_nonce"], params["oauth_timestamp"])
        token_owner = self._oauth_by_token.get(params["oauth_token"])
        if token_owner is None:
            raise _fail(401, "Specified token does not exist")
        if token_owner is not integration:
            raise _fail(401, "Token is not associated with the specified consumer")
        scheme = "https" if _is_secure(scope, forwarded_proto) else "http"
        if host is None:
            server = scope.get("server") or ("localhost", None)
            host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
        signed = [(k, v) for k, v in params.items() if k != "oauth_signature"]
        signed.extend(parse_qsl(query.decode("latin-1"), keep_blank_values=True))
        try:
            base_uri = _base_string_uri(scheme, host, path)
        except ValueError:
            raise _fail(401, "The signature is invalid. Verify and try again.") from None
        expected = _oauth_signature(
            method, base_uri, signed, integration.consumer_secret, integration.access_token_secret
        )
        if not hmac.compare_digest(expected.encode(), params["oauth_signature"].encode()):
            raise _fail(401, "The signature is invalid. Verify and try again.")
        return _INTEGRATION

    def _validate_nonce(self, consumer_key: str, nonce: str, timestamp: str) -> None:
        """``Nonce/Generator::validateNonce``: a timestamp more than 10 minutes ahead of
        Magento's clock (or not a positive integer) is refused; a past one is not. A nonce
        is accepted once per consumer (kept in a bounded table here)."""
        try:
            value = int(timestamp)
        except ValueError:
            value = 0  # PHP's (int) cast of garbage
        if value <= 0 or value > self.clock() + _OAUTH_TIME_DEVIATION:
            raise _fail(400, _MSG_TIMESTAMP)
        key = (consumer_key, nonce)
        if key in self._nonces:
            raise _fail(401, _MSG_NONCE, [self._consumer_ids[consumer_key]])
        self._nonces[key] = None
        if len(self._nonces) > _MAX_NONCES:
            self._nonces.popitem(last=False)

    def _admin_token_valid(self, token: str) -> bool:
        """2.4.4+ admin tokens are JWTs; an expired one is swallowed (the caller is a
        guest), as ``ExpirationValidator`` does."""
        try:
            claims = jwt.decode(
                token,
                self._jwt_key,
                algorithms=["HS256"],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.PyJWTError:
            return False
        return bool(claims.get("exp", 0) > self.clock())

    def _accept_async(
        self, route: MagentoRoute, mode: str, params: Mapping[str, str], decoded: Any
    ) -> bytes:
        """``AsynchronousRequestProcessor``: publish (here: nothing) and answer 202."""
        operations: list[tuple[int | str, Any]]
        if mode == "bulk":
            if isinstance(decoded, list):
                entries: list[tuple[int | str, Any]] = list(enumerate(decoded))
            elif isinstance(decoded, dict):
                entries = list(decoded.items())
            else:
                entries = [(0, decoded)] if decoded is not None else []
            operations = [(k, v) for k, v in entries if isinstance(v, dict | list)]
        else:
            data = dict(decoded) if isinstance(decoded, dict) else {}
            data.update(params)
            operations = [(0, data)]
        items = [
            {
                "id": key,
                "data_hash": hashlib.sha256(
                    json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
                ).hexdigest(),
                "status": "accepted",
            }
            for key, data in operations
        ]
        self.hits[(route.method, route.hit_key)] += 1
        return _encode({"bulk_uuid": str(uuid.uuid4()), "request_items": items, "errors": False})

    def _schema(
        self,
        store: str,
        inner: str,
        auth: str | None,
        scope: Scope,
        host: str | None,
        forwarded_proto: str | None,
        path: str,
        query: bytes,
    ) -> bytes:
        """A small Swagger 2.0 document of the routes the caller may use."""
        try:
            identity = self._identify(auth, "GET", scope, host, forwarded_proto, path, query)
        except _Fail:
            identity = _GUEST
        paths: dict[str, dict[str, Any]] = {}
        for route in self.routes:
            allowed = route.acl == "anonymous" or (
                identity.kind == "customer"
                if route.acl == "self"
                else identity.kind in ("integration", "admin")
            )
            if not allowed:
                continue
            url = "/" + "/".join(
                p if p is not None else "{" + n + "}"
                for p, n in zip(route.parts, _names_for(route), strict=True)
            )
            paths.setdefault(url, {})[route.method.lower()] = {
                "tags": [route.module],
                "operationId": route.service.replace("\\", "").replace("::", "V1"),
                "responses": {"200": {"description": "200 Success."}},
            }
        prefix = "/async/bulk" if "bulk" in inner else "/async" if "async" in inner else ""
        return _encode(
            {
                "swagger": "2.0",
                "info": {"version": "2.4", "title": "Magento Open Source (stand-in)"},
                "host": host or "localhost",
                "basePath": f"/rest/{store}{prefix}",
                "schemes": ["https" if _is_secure(scope, forwarded_proto) else "http"],
                "paths": paths,
            }
        )

    # ----------------------------------------------------------------- products

    def _store_product(self, product: dict[str, Any]) -> None:
        self.products[product["sku"]] = product
        self._sku_index[product["sku"].casefold()] = product["sku"]

    def _find_product(self, sku: str) -> dict[str, Any] | None:
        product = self.products.get(sku)
        if product is None:
            stored = self._sku_index.get(sku.casefold())
            product = self.products.get(stored) if stored is not None else None
        return product

    def _stock_item(self, product: Mapping[str, Any]) -> dict[str, Any]:
        source = self.source_items.get((product["sku"], "default"))
        qty = source["quantity"] if source else 0
        in_stock = bool(source and source["status"])
        return {
            "item_id": product["id"],
            "product_id": product["id"],
            "stock_id": 1,
            "qty": qty,
            "is_in_stock": in_stock,
            "is_qty_decimal": False,
            "use_config_min_qty": True,
            "min_qty": 0,
            "min_sale_qty": 1,
            "max_sale_qty": 10000,
            "use_config_backorders": True,
            "backorders": 0,
            "manage_stock": True,
            "low_stock_date": None,
        }

    def _product_out(self, product: Mapping[str, Any], *, with_stock: bool) -> Mapping[str, Any]:
        """What the repository returns. Results are encoded at once, so no copies needed."""
        if not with_stock:
            return product
        extension = {**(product.get("extension_attributes") or {})}
        extension["stock_item"] = self._stock_item(product)
        return {**product, "extension_attributes": extension}

    def _products_list(self, call: _Call) -> object:
        criteria = _criteria(call.query)
        items, total = _search(self.products.values(), criteria)
        return _envelope(items, criteria, total)

    def _product_get(self, call: _Call) -> object:
        product = self._find_product(call.params["sku"])
        if product is None:
            raise _fail(404, _MSG_PRODUCT_404)
        return self._product_out(product, with_stock=True)

    def _product_delete(self, call: _Call) -> object:
        product = self._find_product(call.params["sku"])
        if product is None:
            raise _fail(404, _MSG_PRODUCT_404)
        del self.products[product["sku"]]
        self._sku_index.pop(product["sku"].casefold(), None)
        for key in [k for k in self.source_items if k[0] == product["sku"]]:
            del self.source_items[key]
        return True

    def _product_save(self, call: _Call) -> object:
        """``ProductRepositoryInterface::save``: create, or update the existing SKU."""
        body = call.body if isinstance(call.body, dict) else {}
        data = body.get("product")
        if data is None:
            raise _required(["product"])
        if not isinstance(data, dict):
            raise _fail(400, 'The "%1" value\'s type is invalid.', [_text(data)])
        sku = data.get("sku")
        if sku is None or str(sku).strip() == "":
            raise _required(["sku"])
        sku = str(sku)
        incoming = copy.deepcopy(data)
        extension = incoming.get("extension_attributes")
        stock = extension.pop("stock_item", None) if isinstance(extension, dict) else None
        now = _now()
        existing = self._find_product(sku)
        if existing is not None:
            product = existing
            attributes = {
                a.get("attribute_code"): a
                for a in product.get("custom_attributes") or []
                if isinstance(a, dict)
            }
            for a in incoming.pop("custom_attributes", None) or []:
                if isinstance(a, dict):
                    attributes[a.get("attribute_code")] = a
            if isinstance(extension, dict):
                merged = dict(product.get("extension_attributes") or {})
                merged.update(incoming.pop("extension_attributes"))
                product["extension_attributes"] = merged
            incoming.pop("id", None)
            incoming["sku"] = product["sku"]
            product.update(incoming)
            product["custom_attributes"] = list(attributes.values())
            product["updated_at"] = now
        else:
            product = {
                "id": self._next_product_id,
                "sku": sku,
                "attribute_set_id": 4,
                "status": 1,
                "visibility": 4,
                "type_id": "simple",
                "created_at": now,
                "updated_at": now,
                "extension_attributes": {"website_ids": [1]},
                "product_links": [],
                "options": [],
                "media_gallery_entries": [],
                "tier_prices": [],
                "custom_attributes": [],
            }
            self._next_product_id += 1
            incoming.pop("id", None)
            product.update(incoming)
            product["sku"] = sku
            self._store_product(product)
            self.source_items.setdefault(
                (sku, "default"), {"sku": sku, "source_code": "default", "quantity": 0, "status": 0}
            )
        if isinstance(stock, dict):
            self._apply_stock(product["sku"], stock)
        return self._product_out(product, with_stock=True)

    # ----------------------------------------------------------------- stock / MSI

    def _apply_stock(self, sku: str, stock: Mapping[str, Any]) -> None:
        source = self.source_items.setdefault(
            (sku, "default"), {"sku": sku, "source_code": "default", "quantity": 0, "status": 0}
        )
        if "qty" in stock:
            qty = _number(stock["qty"])
            source["quantity"] = (
                stock["qty"] if qty is None else (int(qty) if qty.is_integer() else qty)
            )
            source["status"] = int((qty or 0) > 0)
        if "is_in_stock" in stock:
            source["status"] = int(bool(stock["is_in_stock"]))

    def _stock_product(self, sku: str) -> dict[str, Any]:
        product = self._find_product(sku)
        if product is None:
            raise _fail(404, 'The Product with the "%1" SKU doesn\'t exist.', [sku])
        return product

    def _stock_get(self, call: _Call) -> object:
        return self._stock_item(self._stock_product(call.params["productSku"]))

    def _stock_update(self, call: _Call) -> object:
        product = self._stock_product(call.params["productSku"])
        body = call.body if isinstance(call.body, dict) else {}
        stock = body.get("stockItem", body.get("stock_item"))
        if not isinstance(stock, dict):
            raise _required(["stockItem"])
        self._apply_stock(product["sku"], stock)
        return product["id"]

    def _source_items_list(self, call: _Call) -> object:
        criteria = _criteria(call.query)
        items, total = _search(self.source_items.values(), criteria)
        return _envelope(items, criteria, total)

    def _source_items_save(self, call: _Call) -> object:
        body = call.body if isinstance(call.body, dict) else {}
        items = body.get("sourceItems", body.get("source_items"))
        if items is None:
            raise _required(["sourceItems"])
        errors = []
        valid: list[dict[str, Any]] = []
        for item in _as_list(items):
            if not isinstance(item, dict):
                continue
            for name in ("sku", "source_code"):
                if not str(item.get(name) or "").strip():
                    errors.append(
                        {"message": '"%field" can not be empty.', "parameters": {"field": name}}
                    )
            valid.append(item)
        if errors:
            raise _Fail(400, _error("Validation Failed", errors=errors))
        for item in valid:
            key = (str(item["sku"]), str(item["source_code"]))
            stored = self.source_items.setdefault(key, {"sku": key[0], "source_code": key[1]})
            stored["quantity"] = item.get("quantity", stored.get("quantity", 0))
            stored["status"] = _to_int(item.get("status", stored.get("status", 1)))
        return []

    # ----------------------------------------------------------------- orders, customers

    def _find_order(self, raw_id: str) -> dict[str, Any]:
        order = self.orders.get(_to_int(raw_id))
        if order is None:
            raise _fail(404, _MSG_ENTITY_404)
        return order

    def _orders_list(self, call: _Call) -> object:
        criteria = _criteria(call.query)
        items, total = _search(self.orders.values(), criteria)
        return _envelope(items, criteria, total)

    def _order_get(self, call: _Call) -> object:
        return self._find_order(call.params["id"])

    def _order_cancel(self, call: _Call) -> object:
        order = self._find_order(call.params["id"])
        if order["state"] in ("canceled", "complete", "closed"):
            return False
        order["state"] = order["status"] = "canceled"
        order["updated_at"] = _now()
        return True

    def _find_customer(self, customer_id: int) -> dict[str, Any]:
        customer = self.customers.get(customer_id)
        if customer is None:
            raise _fail(
                404, _MSG_NO_SUCH_ENTITY, {"fieldName": "customerId", "fieldValue": customer_id}
            )
        return customer

    def _customer_get(self, call: _Call) -> object:
        return self._find_customer(_to_int(call.params["customerId"]))

    def _customer_me(self, call: _Call) -> object:
        return self._find_customer(_to_int(call.params["customerId"]))

    def _customers_search(self, call: _Call) -> object:
        criteria = _criteria(call.query)
        items, total = _search(self.customers.values(), criteria)
        return _envelope(items, criteria, total)

    # ----------------------------------------------------------------- tokens

    def _credentials(self, call: _Call) -> tuple[str, str]:
        body = call.body if isinstance(call.body, dict) else {}
        merged = {**body, **call.query}
        missing = [n for n in ("username", "password") if merged.get(n) is None]
        if missing:
            raise _required(missing)
        username, password = merged["username"], merged["password"]
        empty = [n for n, v in (("username", username), ("password", password)) if v == ""]
        if empty:
            raise _required(empty)
        return str(username), str(password)

    def _admin_token(self, call: _Call) -> object:
        username, password = self._credentials(call)
        expected = self._admin_users.get(username)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            raise _fail(401, _MSG_SIGN_IN)
        if self.two_factor:
            # Magento_TwoFactorAuth's plugin: valid credentials, and still no token.
            raise _fail(401, _MSG_2FA, {"active_providers": ["google"]})
        now = self.clock()
        claims = {
            "uid": sorted(self._admin_users).index(username) + 1,
            "utypid": 2,  # UserContextInterface::USER_TYPE_ADMIN
            "iat": int(now),
            "exp": int(now + self.admin_token_minutes * 60),
            "jti": secrets.token_hex(8),
        }
        token = jwt.encode(claims, self._jwt_key, algorithm="HS256")
        self._admin_tokens.add(token)
        return token

    def _guest_cart_create(self, call: _Call) -> object:
        # GuestCartManagementInterface::createEmptyCart returns the masked quote id, a
        # 32-character string (Quote/Model/QuoteIdMask.php: Random::getUniqueHash()).
        masked = self.carts.create_guest()
        self.guest_carts.add(masked)
        return masked

    def _customer_token(self, call: _Call) -> object:
        # CustomerTokenService: a JWT (2.4.4+, Magento_JwtUserToken) for a customer whose
        # email and password match (customer_passwords), else the sign-in 401.
        username, password = self._credentials(call)
        expected = self._customer_passwords.get(username)
        customer = next((c for c in self.customers.values() if c["email"] == username), None)
        if (
            expected is None
            or customer is None
            or not hmac.compare_digest(expected.encode(), password.encode())
        ):
            raise _fail(401, _MSG_SIGN_IN)
        now = self.clock()
        claims = {
            "uid": customer["id"],
            "utypid": 3,  # UserContextInterface::USER_TYPE_CUSTOMER
            "iat": int(now),
            "exp": int(now + 3600),  # webapi/jwtauth/customer_expiration: 60 minutes
            "jti": secrets.token_hex(8),
        }
        token = jwt.encode(claims, self._jwt_key, algorithm="HS256", headers={"kid": "1"})
        self._customer_tokens[token] = customer["id"]
        return token

    def _customer_revoke(self, call: _Call) -> object:
        customer_id = call.identity.customer_id
        for token in [t for t, c in self._customer_tokens.items() if c == customer_id]:
            del self._customer_tokens[token]
        return True

    # ----------------------------------------------------------------- carts (carts.py)

    def _order_save(self, call: _Call) -> object:
        body = call.body if isinstance(call.body, dict) else {}
        return self.carts.save_order(body.get("entity"))

    def _guest_cart_get(self, call: _Call) -> object:
        return self.carts.guest(call.params["cartId"])

    def _guest_cart_items(self, call: _Call) -> object:
        return self.carts.guest(call.params["cartId"])["items"]

    def _guest_cart_add(self, call: _Call) -> object:
        return self.carts.add_item(self.carts.guest(call.params["cartId"]), call.body)

    def _guest_cart_order(self, call: _Call) -> object:
        return self.carts.place(self.carts.guest(call.params["cartId"]), call.body)

    def _customer_id(self, call: _Call) -> int:
        assert call.identity.customer_id is not None  # self routes: a customer, checked
        return call.identity.customer_id

    def _mine_create(self, call: _Call) -> object:
        return self.carts.create_mine(self._customer_id(call))

    def _mine_get(self, call: _Call) -> object:
        return self.carts.mine(self._customer_id(call), forced_cart=False)

    def _mine_items(self, call: _Call) -> object:
        return self.carts.mine(self._customer_id(call), forced_cart=True)["items"]

    def _mine_add(self, call: _Call) -> object:
        quote = self.carts.mine(self._customer_id(call), forced_cart=True)
        return self.carts.add_item(quote, call.body)

    def _mine_order(self, call: _Call) -> object:
        quote = self.carts.mine(self._customer_id(call), forced_cart=True)
        return self.carts.place(quote, call.body)

    # ----------------------------------------------------------------- everything else

    def _generic(self, call: _Call) -> object:
        route = call.route
        if call.method == "GET":
            if (
                route.service.endswith(("::getList", "::search"))
                and not route.names
                and not route.forced_params
                and route.url not in _NO_CRITERIA
            ):
                criteria = _criteria(call.query)
                return _envelope([], criteria, 0)
            return dict(call.params) if route.names else []
        if call.method == "DELETE":
            return True
        body = call.body
        if body is None:
            return True
        if isinstance(body, dict) and len(body) == 1:
            (inner,) = body.values()
            if isinstance(inner, dict):
                return inner
        return body


# --------------------------------------------------------------------------- small pieces


def _names_for(route: MagentoRoute) -> list[str]:
    names = iter(route.names)
    return [next(names) if p is None else "" for p in route.parts]


def _is_secure(scope: Scope, forwarded_proto: str | None) -> bool:
    """``PhpEnvironment/Request::isSecure``: TLS, or the offloader header is ``https``."""
    return scope.get("scheme") == "https" or forwarded_proto == "https"


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, int, bool]:
    """The whole body, its length, and whether it went past ``limit`` (then empty)."""
    message = await receive()
    chunk: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return (b"", len(chunk), True) if len(chunk) > limit else (chunk, len(chunk), False)
    chunks = [chunk]
    size = len(chunk)
    while True:
        if size > limit:
            return b"", size, True
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            break
    if size > limit:
        return b"", size, True
    return b"".join(chunks), size, False


def _decode_body(content_type: str | None, body: bytes) -> Any:
    """``Rest\\Request::getContentType`` and the JSON deserializer."""
    if not content_type:
        raise _fail(400, "Content-Type header is empty.")
    match = _CONTENT_TYPE_RE.match(content_type)
    if match is None:
        raise _fail(400, "Content-Type header is invalid.")
    charset = match.group(2)
    if charset is not None and charset.lower() != "utf-8":
        raise _fail(400, "UTF-8 is the only supported charset.")
    media = match.group(1)
    if media not in _JSON_TYPES:
        # XML bodies (application/xml, application/xhtml+xml) are not decoded here either.
        raise _fail(400, f"Server cannot understand Content-Type HTTP header media type {media}")
    try:
        decoded = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise _fail(400, "Decoding error.") from None
    # Rest\\Request::getBodyParams casts to a PHP array: null is [], a scalar [scalar].
    if decoded is None:
        return []
    return decoded if isinstance(decoded, dict | list) else [decoded]


def _reject_constant(name: str) -> Any:
    raise ValueError(name)  # PHP's json_decode knows no NaN or Infinity


def _override_with_path_param(body: dict[str, Any], params: Mapping[str, str]) -> dict[str, Any]:
    """``ParamsOverrider::overrideRequestBodyIdWithPathParam`` (PUT only): the last path
    parameter goes into the single top-level object when its data interface declares a
    setter for it (true of every core PUT route except the ones in
    ``_UNDECLARED_PATH_PARAMS``), else to the top level."""
    if not params:
        return body
    key, value = list(params.items())[-1]
    if value == "me":
        return body
    body = dict(body)
    if len(body) == 1:
        ((top, inner),) = body.items()
        if isinstance(inner, dict) and (top, key) not in _UNDECLARED_PATH_PARAMS:
            inner = dict(inner)
            _substitute(inner, key, value)
            body[top] = inner
            return body
    _substitute(body, key, value)
    return body


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _substitute(data: dict[str, Any], key: str, value: str) -> None:
    """``ParamsOverrider::substituteParameters``: the camelCase key if present, else snake."""
    camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key)
    data[camel if camel in data else _snake(key)] = value


# --------------------------------------------------------------------------- factory, CLI


def create_standin(
    *,
    bearer_tokens: Iterable[str] = (),
    oauth1: Iterable[OAuth1Integration | tuple[str, str, str, str]] = (),
    customer_tokens: Mapping[str, int] | None = None,
    admin_users: Mapping[str, str] | None = None,
    customer_passwords: Mapping[str, str] | None = None,
    store_codes: Iterable[str] = ("default",),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_recorded: int = DEFAULT_MAX_RECORDED,
    seed: bool = True,
    offloader_header: str = "X-Forwarded-Proto",
    two_factor: bool = False,
    admin_token_minutes: float = 60,
    clock: Callable[[], float] = time.time,
    carts: bool = False,
) -> MagentoStandin:
    """A fresh stand-in with its own data. Credentials: ``bearer_tokens`` are accepted as
    an integration (all ACL resources); ``oauth1`` integrations (or 4-tuples consumer key,
    consumer secret, access token, access token secret) sign with HMAC-SHA256;
    ``customer_tokens`` maps Bearer tokens to customer ids (``self`` routes);
    ``admin_users`` maps usernames to passwords for ``POST /V1/integration/admin/token``;
    ``customer_passwords`` maps customer emails to passwords for
    ``POST /V1/integration/customer/token`` (the token it issues works on ``self`` routes).
    ``offloader_header`` is Magento's ``web/secure/offloader_header``; ``two_factor``
    installs Magento_TwoFactorAuth's refusal of admin tokens; ``admin_token_minutes`` is
    ``webapi/jwtauth/admin_expiration``; ``clock`` is Magento's clock (token expiry, OAuth
    timestamps, the ``Date`` header); ``carts`` makes guest carts and the customer's cart
    real (items, order placement; an unknown cart id is Magento's 404) instead of the
    generic answers."""
    return MagentoStandin(
        bearer_tokens=bearer_tokens,
        oauth1=oauth1,
        customer_tokens=customer_tokens,
        admin_users=admin_users,
        customer_passwords=customer_passwords,
        store_codes=store_codes,
        max_body_bytes=max_body_bytes,
        max_recorded=max_recorded,
        seed=seed,
        offloader_header=offloader_header,
        two_factor=two_factor,
        admin_token_minutes=admin_token_minutes,
        clock=clock,
        carts=carts,
    )


def _env(name: str, parser: argparse.ArgumentParser) -> str:
    value = os.environ.get(name)
    if not value:
        parser.error(f"environment variable {name} is not set")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m magento_standin",
        description="A Magento 2.4.6 REST stand-in (secrets only via environment variables).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--bearer-token-env",
        action="append",
        default=[],
        metavar="NAME",
        help="accept the Bearer token held in environment variable NAME (repeatable)",
    )
    parser.add_argument(
        "--oauth1-env",
        action="append",
        default=[],
        metavar="PREFIX",
        help="accept the OAuth 1.0a integration in PREFIX_CONSUMER_KEY, PREFIX_CONSUMER_SECRET, "
        "PREFIX_ACCESS_TOKEN and PREFIX_ACCESS_TOKEN_SECRET (repeatable)",
    )
    parser.add_argument(
        "--store-code", action="append", default=None, help="a store view code (repeatable)"
    )
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    tokens = [_env(name, parser) for name in args.bearer_token_env]
    integrations: list[OAuth1Integration] = []
    for prefix in args.oauth1_env:
        try:
            integrations.append(
                OAuth1Integration(
                    consumer_key=_env(f"{prefix}_CONSUMER_KEY", parser),
                    consumer_secret=_env(f"{prefix}_CONSUMER_SECRET", parser),
                    access_token=_env(f"{prefix}_ACCESS_TOKEN", parser),
                    access_token_secret=_env(f"{prefix}_ACCESS_TOKEN_SECRET", parser),
                )
            )
        except ValueError as exc:
            parser.error(f"{prefix}: {exc}")
    app = create_standin(
        bearer_tokens=tokens,
        oauth1=integrations,
        store_codes=args.store_code or ("default",),
        max_body_bytes=args.max_body_bytes,
    )

    import uvicorn  # imported late: tests and the edge import this module without serving

    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        http="httptools",
        loop="uvloop",
        access_log=False,
        log_level=args.log_level,
        lifespan="on",
    )
