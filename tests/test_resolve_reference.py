"""proxy.decide.resolve and proxy.routing.RouteTable: on the request path, mounts and routes
are matched inline (Surface.plan, routing.search: no match_prefix call per mount, no
_lookup_one per method, no Pattern.match call per candidate). The properties hold them to
a copy of the code they replaced, decision for decision and answer for answer (404/405/403/
501, their details and Allow lists), on the shipped policies and on random route tables
(tail routes and "*" methods, which the shipped policies do not have)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.decide import resolve
from proxy.errors import EdgeError, Forbidden, MethodNotAllowed, NotFound, RouteNotImplemented
from proxy.policy import Endpoint, Mount, Route, Surface, load_policy
from proxy.routing import Pattern, RouteTable, compile_pattern

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
# Every shipped policy resolve serves (magento.toml is a [native] one: proxy.native routes it)
SURFACES = {
    name: load_policy(ROOT / "policies" / name)
    for name in ("storeoncloud.toml", "storeicu.toml", "storefront.toml")
}
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "FOO"]


# -- the reference: routing as it was --------------------------------------------------------


def _ref_match(pattern: Pattern, segments: Sequence[str]) -> dict[str, str] | None:
    n = len(pattern.parts)
    if pattern.tail:
        if len(segments) < n:
            return None
    elif len(segments) != n:
        return None
    for i, literal in pattern.literals:
        if segments[i] != literal:
            return None
    values: dict[str, str] = {}
    for i, name in pattern.variables:
        seg = segments[i]
        if not seg:
            return None
        values[name] = seg
    if pattern.tail:
        values[pattern.names[-1]] = "/".join(segments[n - 1 :])
    return values


def _ref_match_prefix(pattern: Pattern, segments: Sequence[str]) -> dict[str, str] | None:
    if pattern.tail:
        return _ref_match(pattern, segments[: len(pattern.parts)])
    for i, literal in pattern.literals:
        if segments[i] != literal:
            return None
    values: dict[str, str] = {}
    for i, name in pattern.variables:
        seg = segments[i]
        if not seg:
            return None
        values[name] = seg
    return values


class _RefTable(Generic[T]):
    def __init__(self, entries: Iterable[tuple[str, Pattern, T]]) -> None:
        self._exact: dict[str, dict[tuple[str, ...], T]] = {}
        self._by_count: dict[str, dict[tuple[int, str | None], list[tuple[Pattern, T]]]] = {}
        self._by_first: dict[str, dict[int, dict[str | None, list[tuple[Pattern, T]]]]] = {}
        self._tails: dict[str, list[tuple[Pattern, T]]] = {}
        for method, pattern, value in entries:
            if pattern.tail:
                self._tails.setdefault(method, []).append((pattern, value))
                continue
            if pattern.literal_count == len(pattern.parts):
                self._exact.setdefault(method, {})[tuple(p or "" for p in pattern.parts)] = value
                continue
            key = (len(pattern.parts), pattern.parts[0] if pattern.parts else None)
            self._by_count.setdefault(method, {}).setdefault(key, []).append((pattern, value))
        for buckets in self._by_count.values():
            for bucket in buckets.values():
                bucket.sort(key=lambda pv: pv[0].sort_key.encode(), reverse=True)
        for tails in self._tails.values():
            tails.sort(key=lambda pv: (-len(pv[0].parts), pv[0].sort_key))
        for method, buckets in self._by_count.items():
            by_first = self._by_first[method] = {}
            for (n, first), bucket in buckets.items():
                by_first.setdefault(n, {})[first] = bucket

    def methods(self) -> set[str]:
        return set(self._by_count) | set(self._tails) | set(self._exact)

    def lookup(self, method: str, segments: Sequence[str]) -> tuple[T, dict[str, str]] | None:
        for m in (method, "*"):
            hit = self._lookup_one(m, segments)
            if hit is not None:
                return hit
        return None

    def _lookup_one(self, method: str, segments: Sequence[str]) -> tuple[T, dict[str, str]] | None:
        exact = self._exact.get(method)
        if exact is not None:
            value = exact.get(tuple(segments))
            if value is not None:
                return value, {}
        buckets = self._by_first.get(method)
        if buckets is not None:
            n = len(segments)
            by_first = buckets.get(n)
            if by_first is not None:
                for first in (segments[0] if n else None, None):
                    for pattern, value in by_first.get(first, ()):
                        found = _ref_match(pattern, segments)
                        if found is not None:
                            return value, found
        for pattern, value in self._tails.get(method, ()):
            found = _ref_match(pattern, segments)
            if found is not None:
                return value, found
        return None

    def allowed_methods(self, segments: Sequence[str]) -> list[str]:
        return sorted(m for m in self.methods() if m != "*" and self._lookup_one(m, segments))


_REF_TABLES: dict[tuple[str, str, str], _RefTable[Route]] = {}


def _ref_table(surface: Surface, mount: Mount) -> _RefTable[Route]:
    key = (surface.name, mount.routes, mount.form)
    if key not in _REF_TABLES:
        entries = [
            (r.method, r.pattern.bulk_form() if mount.form == "bulk" else r.pattern, r)
            for r in surface.tables[mount.routes]
            if r.form in ("any", mount.form)
        ]
        _REF_TABLES[key] = _RefTable(entries)
    return _REF_TABLES[key]


def _ref_resolve(surface: Surface, method: str, segments: Sequence[str]) -> tuple[Any, ...]:
    """resolve as it was, its Decision as a tuple."""
    inner = tuple(segments[len(surface.base_parts) :])
    trimmed = inner[:-1] if inner and inner[-1] == "" else inner
    n = len(trimmed)
    endpoints: tuple[Endpoint, ...] = tuple(e for e in surface.endpoints if e.pattern.fits(n))
    mounts = tuple(m for m in surface.mounts if len(m.pattern.parts) <= n)
    for endpoint in endpoints:
        if _ref_match(endpoint.pattern, trimmed) is not None:
            if method not in (endpoint.method, "HEAD" if endpoint.method == "GET" else ""):
                raise MethodNotAllowed(
                    f"{method} is not allowed here; use {endpoint.method}.",
                    headers={"Allow": endpoint.method},
                )
            return (surface, endpoint, None, None, {}, {}, (), None)
    for mount in mounts:
        mount_vars = _ref_match_prefix(mount.pattern, trimmed)
        if mount_vars is None:
            continue
        rest = inner[len(mount.pattern.parts) :]
        route_segments = rest[:-1] if rest and rest[-1] == "" else rest
        table = _ref_table(surface, mount)
        taken = mount.methods is None or method in mount.methods
        hit = table.lookup(method, route_segments) if taken else None
        if hit is None:
            allowed_methods = [
                m
                for m in table.allowed_methods(route_segments)
                if (mount.methods is None or m in mount.methods)
                and (other := table.lookup(m, route_segments)) is not None
                and other[0].deny is None
            ]
            if allowed_methods:
                allowed = ", ".join(allowed_methods)
                raise MethodNotAllowed(
                    f"{method} is not supported on this route (allowed: {allowed}).",
                    headers={"Allow": allowed},
                )
            raise NotFound(f"No route matches {method} {'/' + '/'.join(inner)} on this API.")
        route, route_vars = hit
        if route.deny is not None:
            raise Forbidden(f"This route is not available through the edge: {route.deny}")
        if route.rewrite.not_implemented is not None:
            raise RouteNotImplemented(route.rewrite.not_implemented)
        return (surface, None, mount, route, mount_vars, route_vars, rest, mount_vars.get("store"))
    raise NotFound(f"No route matches {method} {'/' + '/'.join(inner)} on this API.")


def _outcome(call: Any, surface: Surface, *args: Any) -> tuple[Any, ...]:
    """What was decided, short enough to read in a failure (no Surface repr)."""
    try:
        decided = tuple(call(surface, *args))
    except EdgeError as exc:
        return (type(exc).__name__, exc.detail, exc.headers, exc.extra)
    assert decided[0] is surface
    endpoint, mount, route = decided[1:4]
    return (
        endpoint and endpoint.handler,
        mount and mount.name,
        route and (route.table, route.index, route.method, route.pattern.text),
        *decided[4:],
    )


# -- paths: random ones, and ones built from the policy's own routes -------------------------

_VALUES = ["acme", "24-MB01", "a%2Fb", "1", "x", "mine", "V1", "async", "bulk", ""]


def _vocabulary(surface: Surface) -> list[str]:
    words = set(_VALUES) | set(surface.base_parts)
    patterns = [m.pattern for m in surface.mounts] + [e.pattern for e in surface.endpoints]
    for routes in surface.tables.values():
        for route in routes:
            patterns += [route.pattern, route.pattern.bulk_form()]
    for pattern in patterns:
        words |= {p for p in pattern.parts if p is not None}
    return sorted(words)


_VOCABULARY = {name: _vocabulary(s) for name, s in SURFACES.items()}


@st.composite
def _requests(draw: st.DrawFn) -> tuple[str, str, tuple[str, ...]]:
    name = draw(st.sampled_from(sorted(SURFACES)))
    surface = SURFACES[name]
    words = st.sampled_from(_VOCABULARY[name])
    values = st.sampled_from(_VALUES)
    methods = METHODS
    if draw(st.integers(0, 3)):  # a mount and one of its routes, variables filled in
        mount = draw(st.sampled_from(surface.mounts))
        route = draw(st.sampled_from(surface.tables[mount.routes]))
        route_pattern = route.pattern.bulk_form() if mount.form == "bulk" else route.pattern
        parts = [*mount.pattern.parts, *route_pattern.parts]
        inner = [p if p is not None else draw(values) for p in parts]
        methods = [*METHODS, *[route.method] * len(METHODS)]  # its own half the time
        if route_pattern.tail:
            inner += draw(st.lists(values, max_size=2))
        for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):  # then a few changes, or none
            change = draw(st.sampled_from(["set", "drop", "add"]))
            if change == "add" or not inner:
                inner.insert(draw(st.integers(0, len(inner))), draw(words))
            elif change == "drop":
                del inner[draw(st.integers(0, len(inner) - 1))]
            else:
                inner[draw(st.integers(0, len(inner) - 1))] = draw(words)
    else:
        inner = draw(st.lists(words, max_size=9))
    if draw(st.booleans()):
        inner.append("")  # a trailing slash
    base = list(surface.base_parts) if draw(st.integers(0, 9)) else draw(st.lists(words))
    method = draw(st.sampled_from(methods))
    return name, method, tuple(base + inner)


@settings(max_examples=3000, deadline=None)
@given(_requests())
def test_resolve_decides_as_the_code_it_replaced(
    case: tuple[str, str, tuple[str, ...]],
) -> None:
    name, method, segments = case
    surface = SURFACES[name]
    assert _outcome(resolve, surface, method, segments) == _outcome(
        _ref_resolve, surface, method, segments
    )
    # a list as well as a tuple (resolve takes any sequence)
    assert _outcome(resolve, surface, method, list(segments)) == _outcome(
        _ref_resolve, surface, method, segments
    )


@pytest.mark.parametrize("name", sorted(SURFACES))
def test_every_shipped_route_resolves_as_before(name: str) -> None:
    surface = SURFACES[name]
    for mount in surface.mounts:
        for route in surface.tables[mount.routes]:
            pattern = route.pattern.bulk_form() if mount.form == "bulk" else route.pattern
            parts = [*mount.pattern.parts, *pattern.parts]
            path = (*surface.base_parts, *(p if p is not None else "acme" for p in parts))
            for method in (*METHODS, route.method):
                for segments in (path, (*path, "")):
                    assert _outcome(resolve, surface, method, segments) == _outcome(
                        _ref_resolve, surface, method, segments
                    )


# -- random route tables ---------------------------------------------------------------------

_SEGMENT = st.sampled_from(["a", "b", "{x}"])
_ROUTE_METHODS = st.sampled_from(["GET", "POST", "*"])
_PATH_SEGMENT = st.sampled_from(["a", "b", "c", ""])


@st.composite
def _pattern(draw: st.DrawFn) -> Pattern:
    parts = draw(st.lists(_SEGMENT, max_size=3))
    # each variable once, named by its position
    out = [f"{{v{i}}}" if part.startswith("{") else part for i, part in enumerate(parts)]
    if out and out[-1].startswith("{") and draw(st.booleans()):
        out[-1] = out[-1][:-1] + ":path}"
    return compile_pattern("/" + "/".join(out))


@st.composite
def _table_and_paths(draw: st.DrawFn) -> tuple[list[tuple[str, Pattern]], list[list[str]]]:
    routes = draw(st.lists(st.tuples(_ROUTE_METHODS, _pattern()), max_size=12))
    paths = draw(st.lists(st.lists(_PATH_SEGMENT, max_size=4), min_size=1, max_size=8))
    for _, pattern in routes:  # and each route's own, variables filled in
        path = [p if p is not None else draw(_PATH_SEGMENT) for p in pattern.parts]
        paths.append(path + draw(st.lists(_PATH_SEGMENT, max_size=2)) if pattern.tail else path)
    return routes, paths


@settings(max_examples=1000, deadline=None)
@given(_table_and_paths())
def test_lookup_finds_what_the_code_it_replaced_found(
    case: tuple[list[tuple[str, Pattern]], list[list[str]]],
) -> None:
    routes, paths = case
    entries = [(method, pattern, i) for i, (method, pattern) in enumerate(routes)]
    table, ref = RouteTable(entries), _RefTable(entries)
    assert table.methods() == ref.methods()
    for path in paths:
        for segments in (path, tuple(path)):
            assert table.allowed_methods(segments) == ref.allowed_methods(segments)
            for method in ("GET", "POST", "PUT", "*"):
                assert table.lookup(method, segments) == ref.lookup(method, segments)
