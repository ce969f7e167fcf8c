"""Step 2c of the request path on a ``/graphql`` path: which GraphQL operations a request
carries, and whether this caller may send them (SPEC §4.4). Pure and mount-agnostic: bytes
and a caller in, a verdict out; the v3 surface (:mod:`proxy.graphql_edge`) and the native
mount both call it, and nothing here reads a socket.

    HTTP request → read_request()   GET ?query=&variables=&operationName=, or a POST
                                    application/json body: one object or a batch (array);
                                    every document parsed by graphql-core, limits applied
                 → decide()         every top-level field of every operation looked up in
                                    the policy's [graphql.fields]: Allowed(credential) or
                                    Refusal(status, message)

A policy classifies each top-level field as ``anonymous`` (a guest may call it), ``self``
(only with the caller's own Magento customer token) or a resource (an edge token granting
it: read for a query, write for a mutation). A field the policy does not name is refused.

Every operation of every document is checked, whatever ``operationName`` selects: the
upstream runs one of them, and checking all means no choice of the upstream's can run an
unchecked one (an ``operationName`` naming no operation is a 400, as the GraphQL spec
says). Fields reached through fragments (spread or inline) count as the fields they
select, directives such as ``@skip`` notwithstanding: the edge checks what could run.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple
from urllib.parse import parse_qsl

import orjson
from cachetools import LRUCache
from graphql.error import GraphQLError
from graphql.language import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    parse,
)

from ._toml import Reader
from .grants import grants_allow
from .types import Access

if TYPE_CHECKING:
    from .policy import Mount, Route

__all__ = [
    "ANONYMOUS",
    "SELF",
    "Allowed",
    "Caller",
    "GraphQLRequest",
    "GraphQLSettings",
    "Operation",
    "Refusal",
    "check",
    "decide",
    "load_graphql",
    "read_request",
]

ANONYMOUS = "anonymous"  # a guest may call it (native mount: no token, no credential)
SELF = "self"  # only with the caller's own Magento customer token
_INTROSPECTION = frozenset({"__schema", "__type"})
_PARAMS = ("query", "variables", "operationName")
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")  # a GraphQL Name (spec §2.1.9)
Credential = Literal["none", "customer", "store"]
CallerKind = Literal["none", "customer", "edge"]


@dataclass(frozen=True, slots=True)
class GraphQLSettings:
    """A policy's ``[graphql]`` table, compiled."""

    path: str  # relative to the surface's base path
    parts: tuple[str, ...]
    fields: Mapping[str, str]  # top-level field -> "anonymous" | "self" | a resource
    max_depth: int
    max_aliases: int
    max_fields: int
    max_bytes: int
    introspection: bool
    # What the edge forwards a checked request as (built by proxy.policy): the store's
    # Magento ``/graphql``, with no route-level resource (decide() is the check).
    mount: Mount | None = None
    route: Route | None = None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sends the request, as the mount established it. ``customer``: a Magento
    customer token the native mount passes through untouched (never on v3); ``edge``: a
    personal access token or a partner JWT (``partner``) with its grants on this store."""

    kind: CallerKind
    grants: Mapping[str, Access] = field(default_factory=dict)
    partner: bool = False


class Operation(NamedTuple):
    """One operation of a parsed document, as the decision needs it: its type, its
    top-level fields (through top-level fragments) and its size as executed."""

    kind: Literal["query", "mutation", "subscription"]
    fields: tuple[str, ...]
    depth: int
    aliases: int
    selected: int  # fields as executed (every fragment spread counted)


class GraphQLRequest(NamedTuple):
    """One operation request (a batch has several): its document's operations."""

    operations: tuple[Operation, ...]
    operation_name: str | None


class Allowed(NamedTuple):
    """Forward, with ``credential``: ``none`` (Magento sees a guest), ``customer`` (the
    caller's own token untouched) or ``store`` (the store's Magento credential)."""

    credential: Credential
    fields: tuple[str, ...]  # the top-level fields checked, in order (for logs)


class Refusal(NamedTuple):
    """Answer ``status`` with ``message``; nothing is forwarded. ``required``: the
    resource and access a token lacked (403), for the RFC 6750 challenge."""

    status: int
    message: str
    required: tuple[str, Access] | None = None


def check(
    method: str,
    query_string: bytes,
    content_type: str | None,
    body: bytes,
    settings: GraphQLSettings,
    caller: Caller,
    *,
    guests: bool,
) -> Allowed | Refusal:
    """:func:`read_request` then :func:`decide`: the whole check of one HTTP request."""
    requests = read_request(method, query_string, content_type, body, settings)
    if isinstance(requests, Refusal):
        return requests
    return decide(requests, settings, caller, method=method, guests=guests)


# -- reading the HTTP request ---------------------------------------------------------------


def read_request(
    method: str,
    query_string: bytes,
    content_type: str | None,
    body: bytes,
    settings: GraphQLSettings,
) -> list[GraphQLRequest] | Refusal:
    """The operation requests of one HTTP request, parsed, within the policy's limits."""
    params = _query_params(query_string)
    if isinstance(params, Refusal):
        return params
    if method in ("GET", "HEAD"):
        query = params.get("query")
        if query is None:
            return Refusal(400, "A GraphQL GET request needs a query parameter: ?query=...")
        variables = params.get("variables")
        if variables is not None:
            try:
                decoded = orjson.loads(variables)
            except orjson.JSONDecodeError:
                return Refusal(400, "The variables parameter must be a JSON object.")
            if decoded is not None and not isinstance(decoded, dict):
                return Refusal(400, "The variables parameter must be a JSON object.")
        one = _document(query, params.get("operationName"), settings)
        return one if isinstance(one, Refusal) else [one]
    if method != "POST":
        return Refusal(405, "GraphQL takes GET (queries) or POST.")
    if params:
        # Magento reads a POST's operation from its body only; a second one in the query
        # string is ambiguous whichever way a server reads it.
        return Refusal(400, "A GraphQL POST carries its query in the body, not the URL.")
    media = (content_type or "").partition(";")[0].strip().lower()
    if media != "application/json":
        # Magento's ContentTypeValidator takes nothing else ("Request content type must be
        # application/json"); converting application/graphql would rewrite the body.
        return Refusal(415, "A GraphQL POST must be Content-Type: application/json.")
    if len(body) > settings.max_bytes:
        return Refusal(413, f"A GraphQL request may be at most {settings.max_bytes} bytes.")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Refusal(400, "The body is not valid JSON.")
    if isinstance(payload, dict):
        items: list[Any] = [payload]
    elif isinstance(payload, list) and payload:
        items = payload
    else:
        return Refusal(400, "The body must be a GraphQL request object or a non-empty array.")
    out: list[GraphQLRequest] = []
    for i, item in enumerate(items):
        where = f"Batch entry {i}: " if isinstance(payload, list) else ""
        one = _body_request(item, settings)
        if isinstance(one, Refusal):
            return one._replace(message=where + one.message)
        out.append(one)
    return out


def _query_params(query_string: bytes) -> dict[str, str] | Refusal:
    """The GraphQL parameters of the URL. A repeated one, or one a PHP server would read
    as the same name (``query[]``), is refused: the edge and Magento must see one query."""
    if not query_string:
        return {}
    try:
        pairs = parse_qsl(query_string.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return Refusal(400, "The query string is not UTF-8.")
    out: dict[str, str] = {}
    for name, value in pairs:
        base = name.partition("[")[0].replace(".", "_").replace(" ", "_")
        if base in _PARAMS:
            if name != base or base in out:
                return Refusal(400, f"The {base} parameter must be given once, as plain text.")
            out[base] = value
    return out


def _body_request(item: Any, settings: GraphQLSettings) -> GraphQLRequest | Refusal:
    if not isinstance(item, dict):
        return Refusal(400, "A GraphQL request must be a JSON object.")
    query = item.get("query")
    if not isinstance(query, str):
        return Refusal(400, 'A GraphQL request needs "query" as a string.')
    variables = item.get("variables")
    if variables is not None and not isinstance(variables, dict):
        return Refusal(400, '"variables" must be a JSON object.')
    name = item.get("operationName")
    if name is not None and not isinstance(name, str):
        return Refusal(400, '"operationName" must be a string.')
    return _document(query, name, settings)


def _document(
    query: str, operation_name: str | None, settings: GraphQLSettings
) -> GraphQLRequest | Refusal:
    encoded = query.encode()
    if len(encoded) > settings.max_bytes:
        return Refusal(413, f"A GraphQL document may be at most {settings.max_bytes} bytes.")
    # Storefronts send the same few documents with other variables: each distinct
    # document is parsed once (graphql-core's parser costs ~0.7 ms per KiB, README
    # "GraphQL"). Keyed by digest, bounded: a flood of distinct documents only evicts.
    # The parser stops at 10 tokens per allowed field: a first-seen document costs CPU in
    # proportion to its tokens, and a legitimate one has a few per field.
    max_tokens = 10 * settings.max_fields
    key = hashlib.sha256(encoded).digest() + max_tokens.to_bytes(8)
    analysis = _ANALYSED.get(key)
    if analysis is None:
        analysis = _analyse(query, max_tokens)
        _ANALYSED[key] = analysis
    if isinstance(analysis, Refusal):
        return analysis
    names, operations = analysis
    if operation_name is not None and operation_name not in names:
        return Refusal(400, f'No operation named "{_printable(operation_name)}" in the document.')
    return GraphQLRequest(operations, operation_name)


_KINDS: dict[OperationType, Literal["query", "mutation", "subscription"]] = {
    OperationType.QUERY: "query",
    OperationType.MUTATION: "mutation",
    OperationType.SUBSCRIPTION: "subscription",
}
_ANALYSED: LRUCache[bytes, tuple[frozenset[str | None], tuple[Operation, ...]] | Refusal] = (
    LRUCache(maxsize=4096)
)


def _analyse(
    query: str, max_tokens: int
) -> tuple[frozenset[str | None], tuple[Operation, ...]] | Refusal:
    """The document's operation names and operations, or why it cannot be sent."""
    try:
        document = parse(
            query, no_location=True, allow_empty_selection_sets=False, max_tokens=max_tokens
        )
    except GraphQLError as exc:
        if "Document contains more than" in exc.message:
            return Refusal(400, f"The GraphQL document has more than {max_tokens} tokens.")
        return Refusal(400, f"GraphQL syntax error: {exc.message}")
    except RecursionError:
        return Refusal(400, "The GraphQL document is nested too deeply.")
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    names: set[str | None] = set()
    operations: list[Operation] = []
    for op in document.definitions:
        if not isinstance(op, OperationDefinitionNode):
            continue
        names.add(op.name.value if op.name else None)
        stats = _stats(op.selection_set, fragments, {}, set())
        if isinstance(stats, Refusal):
            return stats
        top = _top_fields(op.selection_set, fragments, set())
        if isinstance(top, Refusal):
            return top
        kind = _KINDS[op.operation]
        operations.append(Operation(kind, tuple(top), stats.depth, stats.aliases, stats.fields))
    if not operations:
        return Refusal(400, "The GraphQL document has no operation.")
    return frozenset(names), tuple(operations)


# -- the decision ---------------------------------------------------------------------------


class _Stats(NamedTuple):
    fields: int
    aliases: int
    depth: int


def decide(
    requests: Sequence[GraphQLRequest],
    settings: GraphQLSettings,
    caller: Caller,
    *,
    method: str,
    guests: bool,
) -> Allowed | Refusal:
    """Whether ``caller`` may send every operation of ``requests``, and with which
    credential. ``guests``: ``anonymous`` fields pass without a token (the native mount);
    without guests (the v3 surface) they need a token, though no particular grant."""
    operations = [op for request in requests for op in request.operations]
    for op in operations:  # shape and limits first: nothing here depends on the caller
        refusal = _shape(op, settings, method)
        if refusal is not None:
            return refusal
    for op in operations:
        access: Access = "write" if op.kind == "mutation" else "read"
        for name in op.fields:
            refusal = _field_verdict(name, access, settings, caller, guests=guests)
            if refusal is not None:
                return refusal
    credential: Credential = (
        "store" if caller.kind == "edge" else "customer" if caller.kind == "customer" else "none"
    )
    return Allowed(credential, tuple(name for op in operations for name in op.fields))


def _shape(op: Operation, settings: GraphQLSettings, method: str) -> Refusal | None:
    if op.kind == "subscription":
        return Refusal(400, "Subscriptions are not served: Magento's GraphQL has none.")
    if op.kind == "mutation" and method in ("GET", "HEAD"):
        return Refusal(405, "A mutation must be sent with POST.")
    if op.depth > settings.max_depth:
        return Refusal(400, f"The query is {op.depth} levels deep; at most {settings.max_depth}.")
    if op.aliases > settings.max_aliases:
        return Refusal(400, f"The query uses {op.aliases} aliases; at most {settings.max_aliases}.")
    if op.selected > settings.max_fields:
        return Refusal(
            400, f"The query selects {op.selected} fields; at most {settings.max_fields}."
        )
    return None


def _stats(
    selection_set: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    memo: dict[str, _Stats],
    active: set[str],
) -> _Stats | Refusal:
    """Fields, aliases and depth as executed: a fragment counts every time it is spread
    (each fragment computed once, so a document cannot make this exponential)."""
    if selection_set is None:
        return _Stats(0, 0, 0)
    fields = aliases = depth = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            inner = _stats(selection.selection_set, fragments, memo, active)
            if isinstance(inner, Refusal):
                return inner
            fields += 1 + inner.fields
            aliases += inner.aliases + (selection.alias is not None)
            depth = max(depth, 1 + inner.depth)
            continue
        if isinstance(selection, InlineFragmentNode):
            inner = _stats(selection.selection_set, fragments, memo, active)
        else:
            assert isinstance(selection, FragmentSpreadNode)
            inner = _spread_stats(selection.name.value, fragments, memo, active)
        if isinstance(inner, Refusal):
            return inner
        fields += inner.fields
        aliases += inner.aliases
        depth = max(depth, inner.depth)
    return _Stats(fields, aliases, depth)


def _spread_stats(
    name: str,
    fragments: Mapping[str, FragmentDefinitionNode],
    memo: dict[str, _Stats],
    active: set[str],
) -> _Stats | Refusal:
    found = memo.get(name)
    if found is not None:
        return found
    fragment = fragments.get(name)
    if fragment is None:
        return Refusal(400, f'Unknown fragment "{_printable(name)}".')
    if name in active:
        return Refusal(400, f'Fragment "{_printable(name)}" spreads itself.')
    active.add(name)
    inner = _stats(fragment.selection_set, fragments, memo, active)
    active.discard(name)
    if not isinstance(inner, Refusal):
        memo[name] = inner
    return inner


def _top_fields(
    selection_set: SelectionSetNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    seen: set[str],
) -> list[str] | Refusal:
    """The operation's top-level field names (not aliases), through top-level fragments.
    Cycles and unknown fragments were refused by :func:`_stats` already."""
    out: list[str] = []
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            out.append(selection.name.value)
        elif isinstance(selection, InlineFragmentNode):
            inner = _top_fields(selection.selection_set, fragments, seen)
            if isinstance(inner, Refusal):
                return inner
            out.extend(inner)
        else:
            assert isinstance(selection, FragmentSpreadNode)
            name = selection.name.value
            if name in seen:
                continue  # its fields are listed already
            seen.add(name)
            fragment = fragments.get(name)
            if fragment is None:
                return Refusal(400, f'Unknown fragment "{_printable(name)}".')
            inner = _top_fields(fragment.selection_set, fragments, seen)
            if isinstance(inner, Refusal):
                return inner
            out.extend(inner)
    return out


def _field_verdict(
    name: str, access: Access, settings: GraphQLSettings, caller: Caller, *, guests: bool
) -> Refusal | None:
    if name == "__typename":
        return None
    if name in _INTROSPECTION:
        if not settings.introspection:
            return Refusal(403, "Introspection (__schema, __type) is not available here.")
        rule: str | None = ANONYMOUS
    else:
        rule = settings.fields.get(name)
    kind = "mutation" if access == "write" else "query"
    if rule is None:
        return Refusal(403, f'The {kind} field "{_printable(name)}" is not available here.')
    if rule == ANONYMOUS:
        if guests or caller.kind == "edge":
            return None
        return Refusal(401, f'The {kind} field "{name}" needs an access token.')
    if rule == SELF:
        if caller.kind == "customer":
            return None
        if caller.kind == "edge":
            who = "a partner token" if caller.partner else "an edge token"
            return Refusal(
                403,
                f'The {kind} field "{name}" acts for a logged-in customer: send it with the '
                f"customer's own Magento token, not {who}.",
            )
        return Refusal(
            401, f'The {kind} field "{name}" needs the customer\'s own Magento customer token.'
        )
    if caller.kind != "edge":
        return Refusal(401, f'The {kind} field "{name}" needs an access token granting {rule}.')
    if not grants_allow(caller.grants, rule, access):
        return Refusal(
            403, f'The {kind} field "{name}" needs {rule}:{access}.', required=(rule, access)
        )
    return None


def _printable(value: str) -> str:
    return value if value.isascii() and value.isprintable() and len(value) <= 64 else "(invalid)"


# -- the policy's [graphql] table ---------------------------------------------------------

# Magento's own limits (GraphQl/etc/di.xml) are queryDepth 20, queryComplexity 300.
_DEFAULTS = {"max_depth": 20, "max_aliases": 30, "max_fields": 300, "max_bytes": 32768}


def load_graphql(r: Reader, d: Mapping[str, Any], known: set[str]) -> GraphQLSettings | None:
    """``[graphql]`` of a policy (absent: the surface serves no GraphQL). Problems are
    reported on ``r`` with file, key and line like every other policy key."""
    if "graphql" not in d:
        return None
    g = r.table(d, "graphql", "")
    r.unknown_keys(g, "graphql", ("path", "fields", "introspection", *_DEFAULTS))
    path = r.string(g, "path", "graphql", "/graphql")
    parts: tuple[str, ...] = ()
    if not isinstance(path, str) or not path.startswith("/") or path == "/":
        r.problem("graphql.path", f'"{path}" must be a path such as "/graphql"', near=path)
    else:
        parts = tuple(path.strip("/").split("/"))
        if any(not p or p in (".", "..") or "{" in p or "%" in p for p in parts):
            r.problem("graphql.path", f'"{path}" must be plain segments (no variables)')
    limits = {
        key: r.number(g, key, "graphql", default, integer=True, minimum=1)
        for key, default in _DEFAULTS.items()
    }
    fields: dict[str, str] = {}
    table = r.table(g, "fields", "graphql")
    if not table:
        r.problem("graphql.fields", "must name at least one field (unnamed fields are refused)")
    choices = ", ".join([ANONYMOUS, SELF, *sorted(known)])
    for name, rule in table.items():
        where = f"graphql.fields.{name}"
        if not _NAME.fullmatch(name) or name.startswith("__"):
            r.problem(where, "must be a GraphQL field name", near=name)
        elif not isinstance(rule, str) or (rule not in (ANONYMOUS, SELF) and rule not in known):
            r.problem(where, f'"{rule}" is not a resource of this policy (known: {choices})')
        else:
            fields[name] = rule
    return GraphQLSettings(
        path=path,
        parts=parts,
        fields=fields,
        introspection=r.boolean(g, "introspection", "graphql", False),
        **limits,
    )
