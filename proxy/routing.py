"""Step 2a of the request path: match a raw, already-split path against compiled patterns.

Patterns are written ``/products/{sku}/media/{entryId}``; a last segment ``{name:path}``
swallows one or more remaining segments. Matching works on *raw* segments (still
percent-encoded), so ``%2F`` inside a SKU is data inside one segment, never a separator.

A :class:`RouteTable` decides the way Magento's own REST router does
(``Webapi/Controller/Rest/Router.php``): an exact literal match wins; otherwise, among
routes of the method with the same number of segments whose literal segments match, the
**last** in byte-sorted order of the Magento-form URL (``:var``) wins, which makes literal
segments beat variables. Deciding scope the way the upstream dispatches is what keeps a
token from reaching a route its permissions do not cover.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Pattern", "PatternError", "RouteTable", "compile_pattern", "search"]

_VAR = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(?::(path))?\}$")

T = TypeVar("T")


class PatternError(ValueError):
    """A pattern in a policy file cannot be compiled."""


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled path pattern. ``parts[i]`` is a literal segment or ``None`` (variable)."""

    text: str
    parts: tuple[str | None, ...]
    names: tuple[str, ...]
    tail: bool  # the last variable swallows the rest of the path
    sort_key: str  # Magento-form URL, for last-match-wins ordering
    literals: tuple[tuple[int, str], ...]  # (index, literal), checked first
    variables: tuple[tuple[int, str], ...]  # (index, name) of single-segment variables

    @property
    def literal_count(self) -> int:
        return sum(1 for p in self.parts if p is not None)

    def fits(self, n: int) -> bool:
        """Whether a path of ``n`` segments has the length this pattern matches."""
        return n >= len(self.parts) if self.tail else n == len(self.parts)

    def match_prefix(self, segments: Sequence[str]) -> dict[str, str] | None:
        """:meth:`match` on ``segments[:len(parts)]`` (a mount's prefix), without the
        slice; ``segments`` must have at least that many."""
        if self.tail:
            return self.match(segments[: len(self.parts)])
        for i, literal in self.literals:
            if segments[i] != literal:
                return None
        values: dict[str, str] = {}
        for i, name in self.variables:
            seg = segments[i]
            if not seg:
                return None
            values[name] = seg
        return values

    def match(self, segments: Sequence[str]) -> dict[str, str] | None:
        n = len(self.parts)
        if self.tail:
            if len(segments) < n:
                return None
        elif len(segments) != n:
            return None
        # Literals first: most candidates fail on one, before any dict is built.
        for i, literal in self.literals:
            if segments[i] != literal:
                return None
        values: dict[str, str] = {}
        for i, name in self.variables:
            seg = segments[i]
            if not seg:
                return None
            values[name] = seg
        if self.tail:
            values[self.names[-1]] = "/".join(segments[n - 1 :])
        return values

    def bulk_form(self) -> Pattern:
        """Magento's async bulk URLs replace ``:param`` with ``by<Param>``
        (``WebapiAsync/Model/BulkServiceConfig.php``)."""
        out: list[str] = []
        names = iter(self.names)
        last = len(self.parts) - 1
        for i, part in enumerate(self.parts):
            if part is None:
                name = next(names)
                if self.tail and i == last:
                    out.append("{" + name + ":path}")  # a tail stays a tail
                else:
                    out.append("by" + name[:1].upper() + name[1:])
            else:
                out.append(part)
        return compile_pattern("/" + "/".join(out))


def compile_pattern(text: str) -> Pattern:
    if not text.startswith("/"):
        raise PatternError(f'pattern "{text}" must start with "/"')
    stripped = text.strip("/")
    raw_parts = stripped.split("/") if stripped else []
    parts: list[str | None] = []
    names: list[str] = []
    key: list[str] = []
    tail = False
    for i, part in enumerate(raw_parts):
        if not part:
            raise PatternError(f'pattern "{text}" has an empty segment')
        m = _VAR.match(part)
        if m:
            name, kind = m.group(1), m.group(2)
            if name in names:
                raise PatternError(f'pattern "{text}" repeats the variable "{name}"')
            if kind == "path":
                if i != len(raw_parts) - 1:
                    raise PatternError(
                        f'pattern "{text}": {{{name}:path}} must be the last segment'
                    )
                tail = True
            parts.append(None)
            names.append(name)
            key.append(":" + name)
        elif "{" in part or "}" in part:
            raise PatternError(f'pattern "{text}": bad variable segment "{part}"')
        elif part in (".", "..") or "%" in part or "\\" in part:
            raise PatternError(f'pattern "{text}": segment "{part}" is not a plain literal')
        else:
            parts.append(part)
            key.append(part)
    literals = tuple((i, p) for i, p in enumerate(parts) if p is not None)
    variables = tuple(zip([i for i, p in enumerate(parts) if p is None], names, strict=True))
    return Pattern(
        text,
        tuple(parts),
        tuple(names),
        tail,
        "/".join(key),
        literals,
        variables[:-1] if tail else variables,  # a tail variable is filled separately
    )


# A bucketed route as search matches it: the literals left to check (index, literal; the
# bucket's first one is known, the deepest first: siblings differ at their end), the
# single-segment variables (index, name), the value.
_Entry = tuple[tuple[tuple[int, str], ...], tuple[tuple[int, str], ...], T]
# One method's routes, as RouteTable.lookup searches them: (literal path -> value for the
# exact rule, segment count -> first literal or None -> [_Entry] with the winner first,
# tail routes longest literal prefix first).
_Finder = tuple[
    dict[tuple[str, ...], T],
    dict[int, dict[str | None, list[_Entry[T]]]],
    list[tuple[Pattern, T]],
]


class RouteTable(Generic[T]):
    """Routes (pattern, method, value) indexed for Magento's matching rule."""

    def __init__(self, entries: Iterable[tuple[str, Pattern, T]]) -> None:
        # method -> literal path -> value, for the exact-match rule
        exact: dict[str, dict[tuple[str, ...], T]] = {}
        # method -> (segment count, first literal or None) -> [(pattern, value)], sorted so
        # the winner comes first. Keying on the first literal is Magento's own narrowing
        # (it only considers routes that share the path's leading segments).
        by_count: dict[str, dict[tuple[int, str | None], list[tuple[Pattern, T]]]] = {}
        tails: dict[str, list[tuple[Pattern, T]]] = {}
        for method, pattern, value in entries:
            if pattern.tail:
                tails.setdefault(method, []).append((pattern, value))
                continue
            if pattern.literal_count == len(pattern.parts):
                # An all-literal pattern matches only its own segments, which the exact
                # lookup answers first; keeping it out of the buckets saves a failed
                # match per sibling on every request (products/types vs products/{sku}).
                exact.setdefault(method, {})[tuple(p or "" for p in pattern.parts)] = value
                continue
            key = (len(pattern.parts), pattern.parts[0] if pattern.parts else None)
            by_count.setdefault(method, {}).setdefault(key, []).append((pattern, value))
        for buckets in by_count.values():
            for bucket in buckets.values():
                # Magento: ksort(SORT_STRING), every candidate is tried and the last match
                # wins; sorting descending and taking the first match is the same choice.
                bucket.sort(key=lambda pv: pv[0].sort_key.encode(), reverse=True)
        for method_tails in tails.values():
            # Longest literal prefix first.
            method_tails.sort(key=lambda pv: (-len(pv[0].parts), pv[0].sort_key))
        self._methods = set(by_count) | set(tails) | set(exact)
        self._finders: dict[str, _Finder[T]] = {}
        for method in self._methods:
            by_n: dict[int, dict[str | None, list[_Entry[T]]]] = {}
            for (n, first), bucket in by_count.get(method, {}).items():
                by_n.setdefault(n, {})[first] = [
                    (tuple(lv for lv in p.literals[::-1] if lv[0]), p.variables, value)
                    for p, value in bucket
                ]
            for by_first in by_n.values():
                # A literal first segment sorts after ":var", so its bucket is tried first,
                # then the variable-first one: joined once here, one bucket per lookup.
                variable_first = by_first.get(None, [])
                for first in by_first:
                    if first is not None:
                        by_first[first] = by_first[first] + variable_first
            self._finders[method] = (exact.get(method, {}), by_n, tails.get(method, []))
        # method -> its finder then the "*" one: what lookup searches, in order
        star = (self._finders["*"],) if "*" in self._finders else ()
        self.chains: dict[str, tuple[_Finder[T], ...]] = {
            method: (finder, *star) for method, finder in self._finders.items() if method != "*"
        }
        self.star = star  # what a method without routes of its own searches

    def methods(self) -> set[str]:
        return set(self._methods)

    def lookup(self, method: str, segments: Sequence[str]) -> tuple[T, dict[str, str]] | None:
        return search(self.chains.get(method, self.star), tuple(segments))

    def _lookup_one(self, method: str, segments: Sequence[str]) -> tuple[T, dict[str, str]] | None:
        finder = self._finders.get(method)
        return None if finder is None else search((finder,), tuple(segments))

    def allowed_methods(self, segments: Sequence[str]) -> list[str]:
        """Methods that would match ``segments`` (for 405 vs 404)."""
        return sorted(m for m in self.methods() if m != "*" and self._lookup_one(m, segments))


def search(
    finders: tuple[_Finder[T], ...], segments: tuple[str, ...]
) -> tuple[T, dict[str, str]] | None:
    """The first route of ``finders`` (one method's each, in order) matching ``segments``:
    ``search(table.chains.get(method, table.star), segments)`` is ``table.lookup(method,
    segments)`` without its call, for a tuple ``segments``.
    Patterns are matched inline: a call per candidate costs more than the match (every
    request)."""
    for exact, by_n, tails in finders:
        value = exact.get(segments)
        if value is not None:
            return value, {}
        by_first = by_n.get(len(segments))
        if by_first is not None:  # only for n >= 1: a pattern with a variable has a part
            bucket = by_first.get(segments[0])
            if bucket is None:
                bucket = by_first.get(None)
            if bucket is not None:
                for literals, variables, value in bucket:
                    # Pattern.match inlined: the bucket fixes the length and first literal
                    for i, literal in literals:
                        if segments[i] != literal:
                            break
                    else:
                        values: dict[str, str] = {}
                        for i, name in variables:
                            seg = segments[i]
                            if not seg:  # a variable never matches an empty segment
                                break
                            values[name] = seg
                        else:
                            return value, values
        if tails:  # (most tables have none: no iterator for nothing)
            for pattern, value in tails:
                found = pattern.match(segments)
                if found is not None:
                    return value, found
    return None
