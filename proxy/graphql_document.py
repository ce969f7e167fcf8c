"""Step 2c of the request path on a ``/graphql`` path, first half: which GraphQL
operations an HTTP request carries (SPEC §4.4). Bytes in, parsed operations out; nothing
here knows a caller or a policy (:mod:`proxy.graphql` decides).

    GET ?query=&variables=&operationName=   one document
    POST application/json                   one {"query", "variables", "operationName"}
                                            object, or a non-empty array of them (a batch)

Every document is parsed by graphql-core and reduced to what the decision needs: each
operation's type, its top-level fields (through fragments spread or inlined at the top)
and its size as executed (depth, aliases, fields; a fragment counts every time it is
spread, each fragment computed once). Storefronts send the same few documents with other
variables, so each distinct document is analysed once: the analyses are kept by the
document's SHA-256 in a bounded LRU (a flood of distinct documents only evicts).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple
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

from .types import Access

__all__ = ["GraphQLRequest", "Operation", "Refusal", "printable", "read_request"]

_PARAMS = ("query", "variables", "operationName")


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


class Refusal(NamedTuple):
    """Answer ``status`` with ``message``; nothing is forwarded. ``required``: the
    resource and access a token lacked (403), for the RFC 6750 challenge."""

    status: int
    message: str
    required: tuple[str, Access] | None = None


def read_request(
    method: str,
    query_string: bytes,
    content_type: str | None,
    body: bytes,
    *,
    max_bytes: int,
    max_tokens: int,
) -> list[GraphQLRequest] | Refusal:
    """The operation requests of one HTTP request, parsed: at most ``max_bytes`` of body
    (or GET ``query``), at most ``max_tokens`` tokens per document."""
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
        one = _document(query, params.get("operationName"), max_bytes, max_tokens)
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
    if len(body) > max_bytes:
        return Refusal(413, f"A GraphQL request may be at most {max_bytes} bytes.")
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
        one = _body_request(item, max_bytes, max_tokens)
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


def _body_request(item: Any, max_bytes: int, max_tokens: int) -> GraphQLRequest | Refusal:
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
    return _document(query, name, max_bytes, max_tokens)


def _document(
    query: str, operation_name: str | None, max_bytes: int, max_tokens: int
) -> GraphQLRequest | Refusal:
    encoded = query.encode()
    if len(encoded) > max_bytes:
        return Refusal(413, f"A GraphQL document may be at most {max_bytes} bytes.")
    # Storefronts send the same few documents with other variables: each distinct
    # document is parsed once (graphql-core's parser costs ~0.7 ms per KiB, README
    # "GraphQL"). Keyed by digest, bounded: a flood of distinct documents only evicts.
    key = hashlib.sha256(encoded).digest() + max_tokens.to_bytes(8)
    analysis = _ANALYSED.get(key)
    if analysis is None:
        analysis = _analyse(query, max_tokens)
        _ANALYSED[key] = analysis
    if isinstance(analysis, Refusal):
        return analysis
    names, operations = analysis
    if operation_name is not None and operation_name not in names:
        return Refusal(400, f'No operation named "{printable(operation_name)}" in the document.')
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


class _Stats(NamedTuple):
    fields: int
    aliases: int
    depth: int


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
        return Refusal(400, f'Unknown fragment "{printable(name)}".')
    if name in active:
        return Refusal(400, f'Fragment "{printable(name)}" spreads itself.')
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
                return Refusal(400, f'Unknown fragment "{printable(name)}".')
            inner = _top_fields(fragment.selection_set, fragments, seen)
            if isinstance(inner, Refusal):
                return inner
            out.extend(inner)
    return out


def printable(value: str) -> str:
    return value if value.isascii() and value.isprintable() and len(value) <= 64 else "(invalid)"
