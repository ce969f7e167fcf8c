"""``GET {base_path}/openapi.json``: an OpenAPI 3.1 document of what the edge does with the
config it runs (issue #17), generated from the policy and that config.

- **Paths and methods** are exactly those answered: a route denied by the policy, a mount
  whose upstream is not configured (``[upstreams]``) and an endpoint that is not set up
  (leak reports without ``[secret_scanning]``) are left out; a mount that takes some methods
  only (Magento's async paths) documents only those, and a 405's ``Allow`` names the same.
- **Path parameters** carry a ``pattern`` of what :mod:`proxy.paths` accepts once a client
  percent-encodes the value (:data:`SEGMENT_VALUE`), so a schema-valid request is never a
  400; ``storeId`` is an enum of the configured store ids (any other is a 404) and
  ``GET /stores`` links to every operation that needs nothing else, for stateful clients.
- **Responses**: every answer the edge can give itself (problem+json on v1, the envelope on
  v3) with its headers (rate limits, ``Retry-After``, ``WWW-Authenticate``, ``Allow``,
  ``Idempotent-Replayed``); Magento's own answers pass through verbatim, said once in
  ``info.description`` with Magento's error shape (``MagentoError``).
- **Operation ids** are what a person would write, derived from Magento's service contract
  in the route's summary (``ProductRepositoryInterface::get`` → ``get_product``; async and
  bulk forms suffixed ``_async``/``_bulk``) or, for routes of the partner API, from the
  path's REST shape (``GET /products`` → ``list_products``); colliding ids are qualified by
  their path parameters and method, never numbered (:mod:`proxy._openapi_names`).

On a JWT surface (``auth.kind = "jwt"``, the partner API) the scheme is OAuth 2.0: its
flows carry ``auth.token_url`` (client credentials) and ``auth.authorization_url``
(authorization code) with every scope of ``[auth.scopes]``, and each operation lists the
scopes any one of which grants it. Without a token URL OpenAPI has no flow to put the
scopes in: the scheme is then HTTP bearer (``bearerFormat: JWT``) and the scopes are the
operations' required role names (OpenAPI 3.1 §4.8.30). ``list = "page"`` routes take
``page``/``limit``; ``[[versions]]`` are further servers, marked deprecated with their dates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from ._openapi_names import endpoint_id, humanize, path_id, qualify, service_id, service_of
from ._openapi_schemas import (
    IDEMPOTENCY_KEY,
    INTEGER_PATH_PARAMETERS,
    SEGMENT_VALUE,
    edge_error_schema,
    leak_report_schemas,
    magento_error_schema,
    request_body_for,
    stores_schema,
)
from .auth_jwt import scopes_granting
from .decide import required_access
from .policy import Endpoint, Mount, Route, Surface, Version

if TYPE_CHECKING:
    from .config import Config
    from .graphql import GraphQLSettings

__all__ = ["SEGMENT_VALUE", "build", "openapi_document"]

_ANY_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_WRITES = ("POST", "PUT", "PATCH", "DELETE")
_VARIABLE = re.compile(r"\{[^}]+\}")
_cache: dict[tuple[int, int], bytes] = {}

# What each edge answer means, by status (components.responses); the keys are the
# response names operations refer to.
_EDGE_ANSWERS: dict[str, tuple[str, str]] = {
    "400": ("BadRequest", "The path, a header, the query or the body is malformed."),
    "401": ("Unauthorized", "Missing, malformed, unknown, expired or revoked token."),
    "403": ("Forbidden", "The token lacks the permission named, or the route is denied."),
    "404": ("NotFound", "No such route, or the store is not available to this token."),
    "405": ("MethodNotAllowed", "The path exists; Allow lists the methods it takes."),
    "409": ("Conflict", "A request with this Idempotency-Key is still in flight."),
    "410": ("Gone", "This version of the API is retired (a deprecated server's sunset)."),
    "413": ("ContentTooLarge", "The body is over the edge's limit for this request."),
    "415": ("UnsupportedMediaType", "GraphQL over POST takes application/json only."),
    "422": ("UnprocessableContent", "This Idempotency-Key was used for another request."),
    "429": ("TooManyRequests", "Over the rate limit or the daily quota; see Retry-After."),
    "501": ("NotImplemented", "This route has no Magento equivalent."),
    "502": ("BadGateway", "The upstream refused or broke the connection."),
    "503": ("ServiceUnavailable", "A backend, the upstream's pool or its credential is "
            "unavailable (or not configured); Retry-After says when to retry, if known."),
    "504": ("GatewayTimeout", "The upstream did not answer in time."),
}  # fmt: skip


def openapi_document(surface: Surface, config: Config | None = None) -> bytes:
    key = (id(surface), id(config))
    doc = _cache.get(key)
    if doc is None:
        doc = orjson.dumps(build(surface, config))
        _cache.clear()  # one config at a time; a reload builds anew
        _cache[key] = doc
    return doc


def build(surface: Surface, config: Config | None = None) -> dict[str, Any]:
    """The document for ``surface`` as ``config`` runs it (without a config: every mount
    and endpoint of the policy, and store ids unconstrained)."""
    scheme_name, scheme = _security_scheme(surface)
    doc = _Document(surface, config, scheme_name)
    for endpoint in surface.endpoints:
        if doc.serves_endpoint(endpoint):
            doc.add_endpoint(endpoint)
    # OpenAPI 3.1 §4.8.8: paths that differ only in parameter names are the same path.
    # Magento names one position differently across methods (categories/:categoryId vs
    # categories/:id), so the first name seen for a shape is used for all of them.
    canonical: dict[str, str] = {}
    for mount in surface.mounts:
        if not doc.serves_mount(mount):
            continue
        seen_ops: set[tuple[str, str]] = set()
        for route in surface.tables[mount.routes]:
            if route.deny is not None or route.form not in ("any", mount.form):
                continue
            pattern = route.pattern.bulk_form() if mount.form == "bulk" else route.pattern
            # A route "/" is the mount's own path (POST /webhooks, not /webhooks/).
            path = _oas_path(mount.pattern.text.rstrip("/") + pattern.text.rstrip("/") or "/")
            path = canonical.setdefault(_VARIABLE.sub("{}", path), path)
            methods = _ANY_METHODS if route.method == "*" else (route.method,)
            for method in methods:
                if mount.methods is not None and method not in mount.methods:
                    continue
                if (path, method) in seen_ops:
                    continue
                seen_ops.add((path, method))
                doc.add_route(mount, route, method, path)
    if surface.graphql is not None:  # issue #16: [graphql], decided per top-level field
        doc.add_graphql(surface.graphql)
    doc.add_aliases()
    doc.finish()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": surface.title,
            "version": surface.version,
            "description": _description(surface),
        },
        "servers": [{"url": surface.base_path}, *(_server(v) for v in surface.versions)],
        "security": [{scheme_name: []}],
        "tags": doc.tags(),
        "paths": doc.paths,
        "components": _components(surface, scheme_name, scheme, doc.store_ids),
    }


class _Document:
    """The paths as they are collected, and what naming them needs at the end."""

    def __init__(self, surface: Surface, config: Config | None, scheme: str) -> None:
        self.surface = surface
        self.config = config
        self.scheme = scheme
        self.store_ids = sorted(config.stores) if config is not None else []
        self.paths: dict[str, dict[str, Any]] = {}
        # operation → (base id, qualifiers in the order they are tried), named in finish()
        self._names: list[tuple[dict[str, Any], str, tuple[str, ...], str]] = []
        self._tags: dict[str, str] = {}
        self._by_route: dict[tuple[str, str, int, str], dict[str, Any]] = {}
        # (operation on a literal path, the route's own operation, the literals it binds)
        self._aliases: list[tuple[dict[str, Any], dict[str, Any], list[str]]] = []

    # -- what the config serves ----------------------------------------------------------

    def serves_endpoint(self, endpoint: Endpoint) -> bool:
        if endpoint.handler == "leaked_tokens" and self.config is not None:
            return bool(self.config.secret_scanning_keys)  # 404 otherwise
        return True

    def serves_mount(self, mount: Mount) -> bool:
        if mount.upstream == "magento" or self.config is None:
            return bool(self.config is None or self.config.stores)
        return mount.upstream in self.config.upstreams  # 503 upstream_not_configured

    # -- operations ---------------------------------------------------------------------

    def add_endpoint(self, endpoint: Endpoint) -> None:
        path = _oas_path(endpoint.pattern.text)
        # A handler without a builder of its own (a new one) is documented generically.
        op = _ENDPOINT_OPERATIONS.get(endpoint.handler, _generic_operation)(self, endpoint)
        op.setdefault("summary", endpoint.summary or humanize(endpoint_id(endpoint.handler)))
        if not endpoint.auth:
            op["security"] = []
        self._name(op, endpoint_id(endpoint.handler), (), "")
        self.paths.setdefault(path, {})[endpoint.method.lower()] = op

    def add_route(self, mount: Mount, route: Route, method: str, path: str) -> None:
        surface = self.surface
        names = _path_names(path)
        service = service_of(route.summary)
        renamed: dict[str, str] = {n: n for n in route.pattern.names}
        if service is None:
            service, renamed = self._service_elsewhere(route, method)
        integers: set[str] = set()
        own = mount.pattern.text.rstrip("/") + route.pattern.text
        if not _mount_suffix(mount) and path.count("/") == own.count("/"):
            # the route's own path (not a literal path it answers through a variable)
            typed = {renamed.get(n) for n in INTEGER_PATH_PARAMETERS.get(service or "", ())}
            offset = len(names) - len(route.pattern.names)
            integers = {names[offset + i] for i, n in enumerate(route.pattern.names) if n in typed}
        params = [self._path_parameter(name, name in integers) for name in names]
        suffix = _mount_suffix(mount)
        route_path = route.pattern.text
        if (route.summary and "::" in route.summary) or (not route.summary and service):
            base = service_id(service or "", method) if service else path_id(method, path)
        else:
            base = path_id(method, path)
        tag = route.resource or mount.name
        self._tags.setdefault(tag, f"{tag} (resource {tag})" if route.resource else tag)
        if route.rewrite.not_implemented is not None:  # proxy.rewrite: answered 501 at the edge
            op: dict[str, Any] = {
                "summary": route.summary or humanize(base),
                "description": route.rewrite.not_implemented,
                "tags": [tag],
                "security": [],
                "parameters": params,
                # 400: a path proxy.paths refuses is refused before the route is known
                "responses": {"400": _ref("BadRequest"), "501": _ref("NotImplemented")},
            }
            self._name(
                op, base, tuple(n for n in names if n != "storeId"), suffix, method, route_path
            )
            self.paths.setdefault(path, {})[method.lower()] = op
            return
        access = required_access(mount, route, method)  # issue #14: async mounts need write
        if route.rewrite.list == "page":
            params.extend(_page_parameters(surface))
        keyed = method in _WRITES
        if keyed:
            params.append({"$ref": "#/components/parameters/IdempotencyKey"})
        ok = "202" if "/async/" in mount.target + "/" else "200"
        responses: dict[str, Any] = {
            ok: {
                "description": "Magento's answer, verbatim (its own status and body)."
                if mount.upstream == "magento"
                else f"The {mount.upstream} service's answer, verbatim.",
                "headers": _answer_headers(surface, replay=keyed),
                "content": {"application/json": {"schema": {}}},
            },
            "default": _ref("UpstreamAnswer"),
        }
        for status in ("400", "401", "403", "404", "429", "502", "503", "504"):
            responses[status] = _ref(_EDGE_ANSWERS[status][0])
        if keyed:
            for status in ("409", "413", "422"):
                responses[status] = _ref(_EDGE_ANSWERS[status][0])
        summary = route.summary if route.summary and "::" not in route.summary else ""
        description = []
        if service:
            target = route.target or route.pattern.text
            description.append(
                f"Magento's `{service}` (`{route.rewrite.target_method or method} "
                f"{mount.target}{target}`)."
            )
        description.append(f"Needs `{route.resource}:{access}`.")
        op = {
            "summary": summary or humanize(base) + _SUFFIX_WORDS.get(suffix, ""),
            "description": " ".join(description),
            "tags": [tag],
            "x-required-permission": f"{route.resource}:{access}",
            "parameters": params,
            "responses": responses,
        }
        if surface.auth == "jwt" and route.resource is not None:
            # Any one of these scopes grants the route (OR of requirements).
            granting = scopes_granting(surface, route.resource, access)
            op["x-required-scopes"] = granting
            if granting:
                op["security"] = [{self.scheme: [name]} for name in granting]
        if method in ("POST", "PUT", "PATCH"):
            op["requestBody"] = request_body_for(
                service,
                queued=bool(suffix),
                bulk=suffix == "_bulk",
                path_sets_id=method == "PUT" and bool(route.pattern.names),
            )
        qualifiers = tuple(n for n in names if n != "storeId")
        self._name(op, base, qualifiers, suffix, method, route_path)
        self.paths.setdefault(path, {})[method.lower()] = op
        self._by_route[(mount.name, route.table, route.index, method)] = op

    def add_graphql(self, settings: GraphQLSettings) -> None:
        """``[graphql]``'s path: GET (queries) and POST, decided per top-level field."""
        surface = self.surface
        path = "/" + "/".join(settings.parts)
        by_field: dict[str, Any] = {}
        for name, rule in sorted(settings.fields.items()):
            if rule in ("anonymous", "self"):
                by_field[name] = rule
            elif surface.auth == "jwt":
                by_field[name] = {
                    "query": scopes_granting(surface, rule, "read"),
                    "mutation": scopes_granting(surface, rule, "write"),
                }
            else:
                by_field[name] = {"query": f"{rule}:read", "mutation": f"{rule}:write"}
        root = "/" + "/".join(settings.root_parts) if settings.root_parts else None
        description = (
            "Magento's GraphQL (its `/graphql`), checked by the edge before anything is sent: "
            "the document is parsed; every top-level field of every operation must be named "
            "in `x-graphql-fields` and granted to the token (a query needs read, a mutation "
            "write); `anonymous` fields need any valid token of the store, `self` fields are "
            f"refused here; at most {settings.max_depth} levels, {settings.max_aliases} "
            f"aliases, {settings.max_fields} fields and {settings.max_bytes} bytes; "
            f"introspection {'allowed' if settings.introspection else 'refused'}. Magento's "
            "answer comes back as it is (GraphQL errors arrive with 200)."
            + (f" Also served at `{root}` from the host's root." if root else "")
        )
        responses: dict[str, Any] = {
            "200": {
                "description": "Magento's GraphQL answer, verbatim.",
                "headers": _answer_headers(surface, replay=False),
                "content": {"application/json": {"schema": _GRAPHQL_ANSWER}},
            },
            "default": _ref("UpstreamAnswer"),
        }
        for status in ("400", "401", "403", "405", "413", "429", "502", "503", "504"):
            responses[status] = _ref(_EDGE_ANSWERS[status][0])
        common = {
            "tags": ["graphql"],
            "description": description,
            "x-graphql-fields": by_field,
            "x-graphql": True,
        }
        get = {
            **common,
            "summary": "GraphQL query (GET)",
            "parameters": [
                {"name": "query", "in": "query", "required": True, "schema": {"type": "string"}},
                {"name": "variables", "in": "query", "schema": {"type": "string"},
                 "description": "A JSON object, as text."},
                {"name": "operationName", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": responses,
        }  # fmt: skip
        post = {
            **common,
            "summary": "GraphQL query or mutation (POST)",
            "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                _GRAPHQL_REQUEST,
                                {"type": "array", "minItems": 1, "items": _GRAPHQL_REQUEST},
                            ]
                        }
                    }
                },
            },
            "responses": {
                **responses,
                "200": {**responses["200"], "headers": _answer_headers(surface, replay=True)},
                **{s: _ref(_EDGE_ANSWERS[s][0]) for s in ("409", "415", "422")},
            },
        }
        self._tags.setdefault("graphql", "graphql")
        self._name(get, "graphql_query", (), "")
        self._name(post, "graphql", (), "")
        self.paths[path] = {"get": get, "post": post}

    def add_aliases(self) -> None:
        """A method a literal path answers through another route's variable: Magento
        routes ``PUT products/attribute-sets/groups`` to the save of attribute set
        "groups" (``PUT products/attribute-sets/{attributeSetId}``), so that path item has
        a PUT too, and a 405's ``Allow`` there names it (OpenAPI matches a literal path
        before a templated one)."""
        surface = self.surface
        for path in list(self.paths):
            segments = (*surface.base_parts, *_sample(path))
            for method in _ANY_METHODS:
                if method.lower() in self.paths[path]:
                    continue
                hit = _answering(surface, method, segments)
                if hit is None:
                    continue
                mount, route, bound = hit
                target = self._by_route.get((mount.name, route.table, route.index, method))
                if target is None or not self.serves_mount(mount):
                    continue
                self.add_route(mount, route, method, path)
                alias = self.paths[path][method.lower()]
                self._names.pop()  # named after its route's operation in finish()
                del self._by_route[(mount.name, route.table, route.index, method)]
                self._by_route[(mount.name, route.table, route.index, method)] = target
                self._aliases.append((alias, target, list(bound.values())))
                typed = INTEGER_PATH_PARAMETERS.get(service_of(route.summary) or "", ())
                if not _mount_suffix(mount) and any(
                    k in typed and not v.isdigit() for k, v in bound.items()
                ):
                    # Magento refuses the literal where its service takes an int: this URL
                    # answers its 400 "value's type is invalid", whatever is sent.
                    for status in ("200", "202"):
                        alias["responses"].pop(status, None)
                    alias["x-never-succeeds"] = True
                    alias["description"] = (
                        "Magento answers 400 here: it reads "
                        + ", ".join(f"`{v}`" for v in bound.values())
                        + " as a whole number and refuses it. "
                        + alias["description"]
                    )

    def _service_elsewhere(self, route: Route, method: str) -> tuple[str | None, dict[str, str]]:
        """The Magento service a route without one in its summary lands on, from another
        loaded policy's table (the partner API's POST /products is Magento's
        ``ProductRepositoryInterface::save``), and that route's variable names → this
        route's (``customerId`` → ``id``)."""
        if self.config is None or route.target is None:
            return None, {}
        upstream = route.rewrite.target_method or method
        segments = tuple(p for p in route.target.strip("/").split("/"))
        targets = [s[1:-1] for s in segments if s.startswith("{") and s.endswith("}")]
        for surface in self.config.surfaces:
            for routes in surface.tables.values():
                for other in routes:
                    if other.method != upstream or other.form == "bulk":
                        continue
                    if _same_shape(other, segments):
                        names = dict(zip(other.pattern.names, targets, strict=True))
                        return service_of(other.summary), names
        return None, {}

    def _path_parameter(self, name: str, integer: bool = False) -> dict[str, Any]:
        if name == "storeId":
            schema: dict[str, Any] = {"type": "string"}
            if self.store_ids:
                # Any other id is a 404: the enum says so, and gives stateless clients
                # (and fuzzers) ids that reach Magento.
                schema["enum"] = self.store_ids
            return {
                "name": name,
                "in": "path",
                "required": True,
                "description": "A store id of this edge's config (GET /stores lists "
                "those your token reaches).",
                "schema": schema,
                **({"example": self.store_ids[0]} if self.store_ids else {}),
            }
        if integer:
            return {
                "name": name,
                "in": "path",
                "required": True,
                "description": "A whole number (Magento's service takes an int).",
                "schema": {"type": "integer"},
            }
        param: dict[str, Any] = {
            "name": name,
            "in": "path",
            "required": True,
            "description": "Sent percent-encoded; a `/` inside a value (a SKU such as "
            "`BAG/01`) travels as `%2F` and stays data.",
            "schema": {"type": "string", "pattern": SEGMENT_VALUE},
        }
        if name.lower().endswith("sku"):
            param["examples"] = {"slash": {"value": "BAG/01"}}
        return param

    def _name(
        self,
        op: dict[str, Any],
        base: str,
        qualifiers: tuple[str, ...],
        suffix: str,
        method: str = "",
        path: str = "",
    ) -> None:
        self._names.append((op, base, qualifiers, f"{suffix}\0{method}\0{path}"))

    def finish(self) -> None:
        named = qualify([(base, quals, extra) for _, base, quals, extra in self._names])
        order: list[tuple[str, dict[str, Any]]] = []
        for (op, *_), name in zip(self._names, named, strict=True):
            op["operationId"] = name
            order.append((name, op))
        for alias, target, bound in self._aliases:
            words = "_".join(re.findall(r"[a-z0-9]+", "_".join(bound).lower())) or "literal"
            alias["operationId"] = f"{target['operationId']}_for_{words}"
            shown = ", ".join(f"`{b}`" for b in bound)
            alias["summary"] = f"{target['summary']} ({shown})"
            alias["description"] = (
                f"The same operation as `{target['operationId']}`, with {shown} where its "
                f"path has a parameter: Magento routes this URL there. " + alias["description"]
            )
        for op in self.paths.values():
            for method in list(op):
                op[method] = {"operationId": op[method].pop("operationId"), **op[method]}
        self._link_stores()
        self._link_created()

    def _link_stores(self) -> None:
        """``GET /stores`` → every operation whose only path parameter is the store (the
        stateful phase of a fuzzer, a person exploring: start from a store you reach)."""
        stores_op = self.paths.get("/stores", {}).get("get")
        if stores_op is None:
            return
        links: dict[str, Any] = {}
        for _path, _method, op in self.operations():
            names = {p.get("name") for p in op.get("parameters", []) if p.get("in") == "path"}
            if names == {"storeId"} and "501" not in op["responses"]:
                links[op["operationId"]] = {
                    "operationId": op["operationId"],
                    "parameters": {"path.storeId": "$response.body#/stores/0/id"},
                }
        if links:
            stores_op["responses"]["200"]["links"] = links

    def _link_created(self) -> None:
        """A create (``POST /products``) → what reads, changes or deletes the item it made
        (``/products/{sku}``), with the id taken from the answer."""
        for path, item in self.paths.items():
            create = item.get("post")
            if create is None or "501" in create["responses"]:
                continue
            field = _CREATED_ID.get(path.rsplit("/", 1)[-1])
            if field is None:
                continue
            for sub_path, sub_item in self.paths.items():
                if (
                    not sub_path.startswith(path + "/{")
                    or sub_path.count("/") != path.count("/") + 1
                ):
                    continue
                name = sub_path.rsplit("{", 1)[1].rstrip("}")
                ok = next(s for s in create["responses"] if s != "default")
                links = create["responses"][ok].setdefault("links", {})
                for op in sub_item.values():
                    if "501" in op["responses"]:
                        continue
                    params = {f"path.{name}": "$response.body" + field}
                    if "{storeId}" in path:
                        params["path.storeId"] = "$request.path.storeId"
                    links[op["operationId"]] = {
                        "operationId": op["operationId"],
                        "parameters": params,
                    }

    def operations(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for path, item in self.paths.items():
            for method, op in item.items():
                yield path, method, op

    def tags(self) -> list[dict[str, str]]:
        return [{"name": name} for name in sorted(self._tags)]


# What identifies the item a create answers with: the path's collection → JSON pointer
# into Magento's answer ("" is the whole body: a guest cart's id is a JSON string).
_CREATED_ID = {"products": "#/sku", "carts": "", "guest-carts": "", "customers": "#/id",
               "pages": "#/id", "cmsPage": "#/id", "orders": "#/entity_id"}  # fmt: skip
_SUFFIX_WORDS = {"_async": " (asynchronous)", "_bulk": " (bulk, asynchronous)"}


def _mount_suffix(mount: Mount) -> str:
    if mount.form == "bulk" or "/async/bulk" in mount.target:
        return "_bulk"
    if "/async" in mount.target:
        return "_async"
    return ""


def _sample(path: str) -> list[str]:
    """A URL of ``path`` with a value in each parameter no literal segment spells."""
    return ["0" if p.startswith("{") else p for p in path.strip("/").split("/") if p]


def _answering(
    surface: Surface, method: str, segments: tuple[str, ...]
) -> tuple[Mount, Route, dict[str, str]] | None:
    """The mount route ``method`` on ``segments`` reaches, as proxy.decide.resolve routes
    it (a denied route is a 403: not answered), and the literal values its variables take."""
    inner = segments[len(surface.base_parts) :]
    if any(e.pattern.match(inner) is not None for e in surface.endpoints):
        return None
    for mount in surface.mounts:
        n = len(mount.pattern.parts)
        if len(inner) < n or mount.pattern.match(inner[:n]) is None:
            continue
        if mount.methods is not None and method not in mount.methods:
            return None
        hit = surface.table_for(mount).lookup(method, inner[n:])
        if hit is None or hit[0].deny is not None:
            return None
        route, values = hit
        return mount, route, {k: v for k, v in values.items() if v != "0"}
    return None


def _same_shape(route: Route, segments: tuple[str, ...]) -> bool:
    parts = route.pattern.parts
    if len(parts) != len(segments) or route.pattern.tail:
        return False
    for part, seg in zip(parts, segments, strict=True):
        is_var = seg.startswith("{") and seg.endswith("}")
        if (part is None) != is_var or (part is not None and part != seg):
            return False
    return True


# -- edge endpoints --------------------------------------------------------------------
# One builder per policy handler: a new handler (the partner API's /graphql) is one entry.


def _stores_operation(doc: _Document, endpoint: Endpoint) -> dict[str, Any]:
    surface = doc.surface
    return {
        "tags": ["stores"],
        "description": "Answered at the edge from config and the token's grants.",
        "responses": {
            "200": {
                "description": "The stores, in the token's order, with its effective "
                "permissions on each.",
                "headers": _answer_headers(surface, replay=False),
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/StoreList"}}
                },
            },
            **{s: _ref(_EDGE_ANSWERS[s][0]) for s in ("400", "401", "429", "503")},
        },
    }


def _openapi_operation(doc: _Document, endpoint: Endpoint) -> dict[str, Any]:
    return {
        "tags": ["meta"],
        "responses": {
            "200": {
                "description": "This document.",
                "headers": _answer_headers(doc.surface, replay=False),
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            **{s: _ref(_EDGE_ANSWERS[s][0]) for s in ("400", "429", "503")},
        },
    }


def _leaks_operation(doc: _Document, endpoint: Endpoint) -> dict[str, Any]:
    report, feedback = leak_report_schemas()
    headers = [
        ("Github-Public-Key-Identifier", "The id of the key that signed the body."),
        ("Github-Public-Key-Signature", "Base64 DER ECDSA P-256 SHA-256 signature of the body."),
    ]
    return {
        "tags": ["meta"],
        "description": "Verified against [secret_scanning] keys: unsigned 400, unknown "
        "key or bad signature 403. Every token named that this edge issued is revoked.",
        "parameters": [
            {
                "name": n,
                "in": "header",
                "required": True,
                "description": d,
                "schema": {"type": "string", "minLength": 1},
            }
            for n, d in headers
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": report}}},
        "responses": {
            "200": {
                "description": "GitHub's feedback format: one entry per token reported.",
                "headers": _answer_headers(doc.surface, replay=False),
                "content": {"application/json": {"schema": feedback}},
            },
            **{s: _ref(_EDGE_ANSWERS[s][0]) for s in ("400", "403", "413", "429", "503")},
        },
    }


def _generic_operation(doc: _Document, endpoint: Endpoint) -> dict[str, Any]:
    statuses = ("400", "401", "403", "429", "503") if endpoint.auth else ("400", "429", "503")
    op: dict[str, Any] = {
        "tags": [endpoint.handler],
        "responses": {
            "200": {
                "description": "Answered at the edge.",
                "headers": _answer_headers(doc.surface, replay=False),
                "content": {"application/json": {"schema": {}}},
            },
            **{s: _ref(_EDGE_ANSWERS[s][0]) for s in statuses},
        },
    }
    if endpoint.method in ("POST", "PUT", "PATCH"):
        op["requestBody"] = {"content": {"application/json": {"schema": {}}}}
    return op


_ENDPOINT_OPERATIONS: Mapping[str, Callable[[_Document, Endpoint], dict[str, Any]]] = {
    "stores": _stores_operation,
    "openapi": _openapi_operation,
    "leaked_tokens": _leaks_operation,
}


# -- components ------------------------------------------------------------------------


def _components(
    surface: Surface, scheme_name: str, scheme: dict[str, Any], store_ids: list[str]
) -> dict[str, Any]:
    media = "application/problem+json" if surface.error_style == "problem" else "application/json"
    magento = surface.error_style == "problem"  # envelope surfaces rewrite Magento's errors
    responses: dict[str, Any] = {}
    for status, (name, about) in _EDGE_ANSWERS.items():
        content: dict[str, Any] = {media: {"schema": {"$ref": "#/components/schemas/Error"}}}
        if magento and status not in ("405", "409", "410", "413", "422", "429", "501"):
            # The same status can be Magento's own answer (a 404 for an unknown SKU); one
            # schema for both media types, as SDK generators read one per status.
            either = {
                "anyOf": [
                    {"$ref": "#/components/schemas/Error"},
                    {"$ref": "#/components/schemas/MagentoError"},
                ]
            }
            content = {media: {"schema": either}, "application/json": {"schema": either}}
        headers: dict[str, Any] = {"X-Request-Id": _header_ref("X-Request-Id")}
        headers.update({n: _header_ref(n) for n in _rate_headers(surface)})
        if status in ("429", "503"):
            headers["Retry-After"] = (
                {
                    **_header_ref("Retry-After"),
                }
                if status == "503"
                else {"$ref": "#/components/headers/Retry-After-Required"}
            )
        if status == "401":
            headers["WWW-Authenticate"] = _header_ref("WWW-Authenticate")
        if status == "403" and surface.auth == "jwt":
            headers["WWW-Authenticate"] = _header_ref("WWW-Authenticate")
        if status == "405":
            headers["Allow"] = _header_ref("Allow")
        if status in ("400", "404", "409", "422"):
            headers["Idempotent-Replayed"] = _header_ref("Idempotent-Replayed")
        responses[name] = {"description": about, "headers": headers, "content": content}
    responses["UpstreamAnswer"] = {
        "description": "Any other status is the upstream's own answer, verbatim.",
        "headers": _answer_headers(surface, replay=True),
        "content": {"application/json": {"schema": {}}},
    }
    schemas: dict[str, Any] = {
        "Error": edge_error_schema(surface.error_style),
        "StoreList": stores_schema(store_ids),
    }
    if magento:
        schemas["MagentoError"] = magento_error_schema()
    return {
        "securitySchemes": {scheme_name: scheme},
        "schemas": schemas,
        "headers": {
            "X-Request-Id": {"description": "Correlates logs.", "schema": {"type": "string"}},
            "Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}},
            "Retry-After-Required": {
                "description": "Seconds to wait.",
                "required": True,
                "schema": {"type": "integer"},
            },
            "WWW-Authenticate": {
                "description": "RFC 6750: Bearer, with error and scope when known.",
                "schema": {"type": "string"},
            },
            "Allow": {
                "description": "The methods this path takes.",
                "required": True,
                "schema": {"type": "string"},
            },
            "Idempotent-Replayed": {
                "description": "true when this answer is a replay of a recorded one.",
                "schema": {"type": "string", "enum": ["true"]},
            },
            **_rate_headers(surface),
        },
        "parameters": {"IdempotencyKey": IDEMPOTENCY_KEY},
        "responses": responses,
    }


def _description(surface: Surface) -> str:
    if surface.error_style == "problem":
        magento = (
            "Magento's own answers (its statuses, bodies and errors) pass through verbatim: "
            "a Magento error is `application/json` shaped like `MagentoError` "
            '(`{"message": "...", "parameters": {...}}`, `%name` placeholders left for the '
            "client to fill). Errors the edge gives itself are RFC 9457 "
            "`application/problem+json` (`Error`)."
        )
    else:
        magento = (
            "Magento's own answers pass through verbatim, except its JSON errors (up to 64 "
            "KiB), which are rewritten into this API's envelope (`Error`): `message` with "
            "Magento's placeholders filled, `code` from the status, and Magento's original "
            "fields under `details.magento`."
        )
    return (
        f"{magento} Every answer after authentication carries the rate-limit headers. "
        "A method a path does not take is a 405 whose `Allow` header lists those it does. "
        "Writes take an `Idempotency-Key`: a retry with the same key and request replays "
        "the first answer (`Idempotent-Replayed: true`); 409 while the first is in flight, "
        "422 for the same key with another request."
    )


def _rate_headers(surface: Surface) -> dict[str, Any]:
    names = (
        ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
        if surface.header_style == "ratelimit"
        else ("X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset")
    )
    docs = (
        "Requests allowed in the current window (the token bucket's burst).",
        "Requests left before the limit applies.",
        "Seconds until the bucket is full again."
        if surface.header_style == "ratelimit"
        else "When the bucket is full again, in Unix epoch seconds.",
    )
    return {
        n: {"description": d, "schema": {"type": "integer"}}
        for n, d in zip(names, docs, strict=True)
    }


def _answer_headers(surface: Surface, *, replay: bool) -> dict[str, Any]:
    headers = {name: _header_ref(name) for name in [*_rate_headers(surface), "X-Request-Id"]}
    if replay:
        headers["Idempotent-Replayed"] = _header_ref("Idempotent-Replayed")
    return headers


def _security_scheme(surface: Surface) -> tuple[str, dict[str, Any]]:
    jwt = surface.jwt
    if surface.auth != "jwt" or jwt is None:
        return "bearerAuth", {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal access token: soc_pat_live_... or soc_pat_test_...",
        }
    scopes = {
        name: ", ".join(f"{res}:{acc}" for res, acc in grants).replace("*:", "every resource:")
        or "grants nothing"
        for name, grants in surface.scopes.items()
    }
    about = (
        "An OAuth 2.0 access token (a JWT, RFC 9068) issued for one store (its store_id "
        "claim); its scope claim decides what it may call."
    )
    if jwt.token_url is None:
        return "oauth2", {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": f"{about} Scopes: " + "; ".join(f"{n} ({g})" for n, g in scopes.items()),
        }
    flows: dict[str, Any] = {"clientCredentials": {"tokenUrl": jwt.token_url, "scopes": scopes}}
    if jwt.authorization_url is not None:
        flows["authorizationCode"] = {
            "authorizationUrl": jwt.authorization_url,
            "tokenUrl": jwt.token_url,
            "scopes": scopes,
        }
    return "oauth2", {"type": "oauth2", "description": about, "flows": flows}


def _server(version: Version) -> dict[str, Any]:
    """An earlier version: served like this one until its sunset (proxy.versions)."""
    dates = []
    if version.deprecation is not None:
        dates.append(f"deprecated since {_iso(version.deprecation)}")
    if version.sunset is not None:
        dates.append(f"retired from {_iso(version.sunset)} (410 VERSION_RETIRED)")
    server: dict[str, Any] = {
        "url": version.base_path,
        "description": f"{version.name}: " + ("; ".join(dates) or "an alias of this version"),
    }
    if dates:
        server["x-deprecated"] = True
        for key, value in (
            ("x-deprecation", _iso(version.deprecation)),
            ("x-sunset", _iso(version.sunset)),
            ("x-link", version.link),
        ):
            if value is not None:
                server[key] = value
    return server


def _oas_path(text: str) -> str:
    # The store is "storeId" in the document (SPEC §4.1), whatever the policy calls it.
    return text.replace(":path}", "}").replace("{store}", "{storeId}")


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _page_parameters(surface: Surface) -> list[dict[str, Any]]:
    lists = surface.lists
    return [
        {
            "name": "page",
            "in": "query",
            "required": False,
            "description": "The page, from 1 (Magento's searchCriteria[currentPage]).",
            "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1, "default": 1},
        },
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "description": "Items per page (Magento's searchCriteria[pageSize]).",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": lists.max_page_size,
                "default": lists.default_page_size,
            },
        },
    ]


_GRAPHQL_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["query"],
    "properties": {
        "query": {"type": "string", "description": "A GraphQL document."},
        "variables": {"type": ["object", "null"]},
        "operationName": {"type": ["string", "null"]},
    },
}
_GRAPHQL_ANSWER: dict[str, Any] = {
    "type": ["object", "array"],
    "description": "{data, errors} (an array of them for a batch).",
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/responses/{name}"}


def _header_ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/headers/{name}"}


def _iso(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
