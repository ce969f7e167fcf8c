"""Policy entries that shadow or contradict one another (SPEC §2), refused at load with
both places named: ``file:line: key: ... other (file:line) ...``.

What the edge does with a path (:func:`proxy.decide.resolve`) fixes what counts:
endpoints are tried first, in file order; then mounts, most specific first (more literal
segments, then more segments), without falling through; then the mount's route table,
which mirrors Magento's dispatch (a literal segment beats a variable) and tries the
request's method before ``*``. Precedence by specificity is the design and is not
reported. Reported is what no specificity explains: an endpoint or an earlier mount that
takes every path of a route, two entries of equal standing that match the same request,
and a ``*`` route that disagrees with a method's route on a path both match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .routing import Pattern

if TYPE_CHECKING:
    from ._toml import Reader
    from .policy import Endpoint, Mount, Route

__all__ = ["check_shadowing", "mount_order"]

Shape = tuple[tuple[str | None, ...], bool]  # segments (None: a variable), tail


def mount_order(mount: Mount) -> tuple[int, int]:
    """The order :func:`proxy.decide.resolve` tries mounts in (a stable sort key)."""
    return (-mount.pattern.literal_count, -len(mount.pattern.parts))


def check_shadowing(
    r: Reader,
    endpoints: Sequence[tuple[int, Endpoint]],
    mounts: Sequence[tuple[int, Mount]],
    tables: Mapping[str, tuple[Route, ...]],
) -> None:
    ordered = sorted(mounts, key=lambda im: mount_order(im[1]))
    _endpoint_pairs(r, endpoints)
    _mount_pairs(r, ordered)
    for name, form in sorted({(m.routes, m.form) for _, m in mounts if m.routes in tables}):
        _route_pairs(r, name, form, tables[name])
    _hidden_routes(r, endpoints, ordered, tables)
    _unused(r, mounts, tables)


def _shape(pattern: Pattern) -> Shape:
    return pattern.parts, pattern.tail


def _overlap(a: Shape, b: Shape) -> bool:
    """Whether some path matches both."""
    (pa, ta), (pb, tb) = a, b
    if ta and tb:
        n = max(len(pa), len(pb))
    elif ta or tb:
        shorter, longer = (pa, pb) if ta else (pb, pa)  # the tail's side needs no more
        if len(longer) < len(shorter):
            return False
        n = len(longer)
    elif len(pa) != len(pb):
        return False
    else:
        n = len(pa)
    for i in range(n):
        x = pa[i] if i < len(pa) else None
        y = pb[i] if i < len(pb) else None
        if x is not None and y is not None and x != y:
            return False
    return True


def _covers(prefix: tuple[str | None, ...], shape: Shape) -> bool:
    """Whether every path matching ``shape`` starts with a match of ``prefix``."""
    parts = shape[0]
    if len(parts) < len(prefix):
        return False
    return all(p is None or p == parts[i] for i, p in enumerate(prefix))


def _view(route: Route, form: str) -> Pattern:
    return route.pattern.bulk_form() if form == "bulk" else route.pattern


def _joined(mount: Mount, pattern: Pattern) -> Shape:
    return mount.pattern.parts + pattern.parts, pattern.tail


def _text(mount: Mount, pattern: Pattern) -> str:
    return mount.pattern.text.rstrip("/") + ("" if pattern.text == "/" else pattern.text)


def _reachable(route: Route, mount: Mount, form: str) -> bool:
    """Through ``mount``: in its form, and a method it accepts (others are 405 by design)."""
    if route.form not in ("any", form):
        return False
    return mount.methods is None or route.method == "*" or route.method in mount.methods


def _decision(route: Route) -> str:
    if route.deny is not None:
        return f'denied ("{route.deny}")'
    access = f":{route.access}" if route.access else ""
    target = f" -> {route.target}" if route.target else ""
    return f"{route.resource}{access}{target}"


def _endpoint_pairs(r: Reader, endpoints: Sequence[tuple[int, Endpoint]]) -> None:
    for k, (j, later) in enumerate(endpoints):
        for i, earlier in endpoints[:k]:
            if _overlap(_shape(earlier.pattern), _shape(later.pattern)):
                r.problem(
                    f"endpoints[{j}]",
                    f"{later.pattern.text} is also matched by endpoints[{i}] "
                    f"({r.where(f'endpoints[{i}]')}, {earlier.pattern.text}), which is tried "
                    "first: endpoints are tried in file order",
                )


def _mount_pairs(r: Reader, ordered: Sequence[tuple[int, Mount]]) -> None:
    for k, (j, later) in enumerate(ordered):
        for i, earlier in ordered[:k]:
            if mount_order(earlier) != mount_order(later):
                continue  # the more specific one wins where both match: by design
            a, b = sorted(((i, earlier), (j, later)), key=lambda im: im[0])
            if not _overlap(_shape(a[1].pattern), _shape(b[1].pattern)):
                continue
            other = f"mounts[{a[0]}] ({r.where(f'mounts[{a[0]}]')}"
            if a[1].pattern.parts == b[1].pattern.parts:
                r.problem(
                    f"mounts[{b[0]}].path",
                    f"duplicates {other}, {a[1].pattern.text}): only the first is ever reached",
                )
            else:
                r.problem(
                    f"mounts[{b[0]}].path",
                    f"{b[1].pattern.text} and {other}, {a[1].pattern.text}) match some "
                    "paths alike with the same specificity: file order would decide",
                )


def _route_pairs(r: Reader, table: str, form: str, routes: tuple[Route, ...]) -> None:
    seen: dict[tuple[str, Shape], Route] = {}
    stars: list[tuple[Route, Pattern]] = []
    methods: list[tuple[Route, Pattern]] = []
    for route in routes:
        if route.form not in ("any", form):
            continue
        pattern = _view(route, form)
        key = (route.method, _shape(pattern))
        first = seen.setdefault(key, route)
        same_entry = first.form == route.form and _shape(first.pattern) == _shape(route.pattern)
        if first is not route and not same_entry:  # same form and shape: named already
            _conflict(r, table, first, route, f"{route.method} {pattern.text} ({form} form)")
        (stars if route.method == "*" else methods).append((route, pattern))
    for star, star_pattern in stars:
        for route, pattern in methods:
            if _decision(star) != _decision(route) and _overlap(
                _shape(star_pattern), _shape(pattern)
            ):
                a, b = sorted((star, route), key=lambda x: x.index)
                _conflict(
                    r,
                    table,
                    a,
                    b,
                    f"{route.method} {pattern.text} and * {star_pattern.text} "
                    "(the method's route is tried first, whatever the specificity)",
                )


def _conflict(r: Reader, table: str, first: Route, second: Route, what: str) -> None:
    here, there = f"routes.{table}[{second.index}]", f"routes.{table}[{first.index}]"
    if _decision(first) == _decision(second):
        verdict = "duplicates"
    elif (first.deny is None) != (second.deny is None):
        verdict = "is both mapped and denied with"
    else:
        verdict = "contradicts"
    r.problem(
        here,
        f"{verdict} {there} ({r.where(there)}): both match {what}; "
        f"{_decision(second)} here, {_decision(first)} there",
    )


def _hidden_routes(
    r: Reader,
    endpoints: Sequence[tuple[int, Endpoint]],
    ordered: Sequence[tuple[int, Mount]],
    tables: Mapping[str, tuple[Route, ...]],
) -> None:
    for k, (m, mount) in enumerate(ordered):
        for route in tables.get(mount.routes, ()):
            if not _reachable(route, mount, mount.form):
                continue
            pattern = _view(route, mount.form)
            shape = _joined(mount, pattern)
            key = f"routes.{mount.routes}[{route.index}]"
            through = f"mounts[{m}] ({r.where(f'mounts[{m}]')})"
            for e, endpoint in endpoints:
                if _overlap(_shape(endpoint.pattern), shape):
                    r.problem(
                        key,
                        f"{route.method} {_text(mount, pattern)} through {through} is also "
                        f"matched by endpoints[{e}] ({r.where(f'endpoints[{e}]')}, "
                        f"{endpoint.pattern.text}): endpoints are tried before any mount",
                    )
            for i, earlier in ordered[:k]:
                # Same standing as this mount: named once by _mount_pairs, not per route.
                if mount_order(earlier) != mount_order(mount) and _covers(
                    earlier.pattern.parts, shape
                ):
                    r.problem(
                        key,
                        f"{route.method} {_text(mount, pattern)} through {through} is "
                        f"unreachable: mounts[{i}] ({r.where(f'mounts[{i}]')}, "
                        f"{earlier.pattern.text}) takes every such path first",
                    )


def _unused(
    r: Reader, mounts: Sequence[tuple[int, Mount]], tables: Mapping[str, tuple[Route, ...]]
) -> None:
    """A table no mount reads, or a form-specific route no mount of that form reads, loads
    but never decides anything."""
    forms: dict[str, set[str]] = {}
    for _, mount in mounts:
        forms.setdefault(mount.routes, set()).add(mount.form)
    # A mount naming a table that does not exist is a typo named already: the table it
    # meant would be reported unused too.
    typo = any(name not in tables for name in forms)
    for name, routes in tables.items():
        if name not in forms:
            if not typo:
                r.problem(f"routes.{name}", "no mount uses this route table")
            continue
        for route in routes:
            if route.form != "any" and route.form not in forms[name]:
                r.problem(
                    f"routes.{name}[{route.index}].form",
                    f'no mount with form = "{route.form}" uses routes.{name}',
                )
