"""Step 2c of the request path on a ``/graphql`` path: which GraphQL operations a request
carries, and whether this caller may send them (SPEC §4.4). Pure and mount-agnostic: bytes
and a caller in, a verdict out; the v3 surface (:mod:`proxy.graphql_edge`) and the native
mount both call it, and nothing here reads a socket.

    HTTP request → read_request()   GET ?query=&variables=&operationName=, or a POST
                                    application/json body: one object or a batch (array);
                                    every document parsed by graphql-core
                                    (proxy.graphql_document)
                 → decide()         limits (depth, aliases, fields), then every top-level
                                    field of every operation looked up in
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

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from . import graphql_document
from ._toml import Reader
from .grants import grants_allow
from .graphql_document import GraphQLRequest, Operation, Refusal, printable
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
    # top-level field -> a rate-limit tier of the policy, for callers without an edge token
    # (guests and customers, limited per client address; native policies only)
    tiers: Mapping[str, str] = field(default_factory=dict)
    # ``root``: also served at this path from the host's root, outside the base path (the
    # partner document's ``POST https://api.store.icu/graphql``); (): under the base only
    root_parts: tuple[str, ...] = ()
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


class Allowed(NamedTuple):
    """Forward, with ``credential``: ``none`` (Magento sees a guest), ``customer`` (the
    caller's own token untouched) or ``store`` (the store's Magento credential)."""

    credential: Credential
    fields: tuple[str, ...]  # the top-level fields checked, in order (for logs)


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


def read_request(
    method: str,
    query_string: bytes,
    content_type: str | None,
    body: bytes,
    settings: GraphQLSettings,
) -> list[GraphQLRequest] | Refusal:
    """The operation requests of one HTTP request, parsed, within the policy's limits
    (:mod:`proxy.graphql_document`). The parser stops at 10 tokens per allowed field: a
    first-seen document costs CPU in proportion to its tokens, and a legitimate one has a
    few per field."""
    return graphql_document.read_request(
        method,
        query_string,
        content_type,
        body,
        max_bytes=settings.max_bytes,
        max_tokens=10 * settings.max_fields,
    )


# -- the decision ---------------------------------------------------------------------------


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
    names = tuple(name for op in operations for name in op.fields)
    credential: Credential = "customer" if caller.kind == "customer" else "none"
    if caller.kind == "edge" and (
        # Where guests are served, what Magento serves a guest goes out as a guest's, an
        # edge token or not (as the native mount's anonymous REST routes): the store's
        # credential only for fields a grant opened.
        not guests or any(settings.fields.get(name) not in (None, ANONYMOUS) for name in names)
    ):
        credential = "store"
    return Allowed(credential, names)


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
        return Refusal(403, f'The {kind} field "{printable(name)}" is not available here.')
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


# -- the policy's [graphql] table ---------------------------------------------------------

# Magento's own limits (GraphQl/etc/di.xml) are queryDepth 20, queryComplexity 300.
_DEFAULTS = {"max_depth": 20, "max_aliases": 30, "max_fields": 300, "max_bytes": 32768}


def _plain_path(r: Reader, key: str, path: object) -> tuple[str, ...]:
    """``/a/b`` → ``("a", "b")``; a problem on ``r`` (and ``()``) for anything else."""
    if not isinstance(path, str) or not path.startswith("/") or path == "/":
        r.problem(key, f'"{path}" must be a path such as "/graphql"', near=path)
        return ()
    parts = tuple(path.strip("/").split("/"))
    if any(not p or p in (".", "..") or "{" in p or "%" in p for p in parts):
        r.problem(key, f'"{path}" must be plain segments (no variables)')
        return ()
    return parts


def load_graphql(
    r: Reader, d: Mapping[str, Any], known: set[str], tier_names: set[str] | None = None
) -> GraphQLSettings | None:
    """``[graphql]`` of a policy (absent: the surface serves no GraphQL). Problems are
    reported on ``r`` with file, key and line like every other policy key. ``tier_names``:
    the policy's rate-limit tiers where ``[graphql.tiers]`` applies (a native policy, whose
    guests are limited per address); None refuses the key."""
    if "graphql" not in d:
        return None
    g = r.table(d, "graphql", "")
    allowed = ("path", "root", "fields", "introspection", *_DEFAULTS)
    r.unknown_keys(g, "graphql", (*allowed, "tiers") if tier_names is not None else allowed)
    path = r.string(g, "path", "graphql", "/graphql")
    parts = _plain_path(r, "graphql.path", path)
    root_parts: tuple[str, ...] = ()
    if "root" in g:
        root_parts = _plain_path(r, "graphql.root", r.string(g, "root", "graphql", ""))
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
    tiers: dict[str, str] = {}
    if tier_names is not None and "tiers" in g:
        for name, tier in r.table(g, "tiers", "graphql").items():
            where = f"graphql.tiers.{name}"
            if name not in fields:
                r.problem(where, f'"{name}" is not a field of [graphql.fields]', near=name)
            elif not isinstance(tier, str) or tier not in tier_names:
                names = ", ".join(sorted(tier_names))
                r.problem(where, f'"{tier}" is not a rate-limit tier (known: {names})')
            else:
                tiers[name] = tier
    return GraphQLSettings(
        path=path,
        parts=parts,
        fields=fields,
        introspection=r.boolean(g, "introspection", "graphql", False),
        tiers=tiers,
        root_parts=root_parts,
        **limits,
    )
