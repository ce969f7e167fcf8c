"""Step 2 of the request path on the Magento-native mount (sidecar mode, SPEC §4.3), the
data: ``[native]`` of a policy compiled into one route table per URL form.

A native request is decided the way Magento dispatches it: one table of every route the
edge knows, matched with Magento's own rule (:class:`proxy.routing.RouteTable`), whose
entries carry the route's ACL class:

    deny       the policy refuses it here (``[native] deny``), whatever the caller sends
    anonymous  Magento's ``anonymous`` ACL: forwarded with no credential at all
    self       Magento's ``self`` ACL: forwarded with the caller's own customer token
    edge       any other route: the shared route → resource table decides (a resource an
               edge token must grant, or that table's own ``deny``)

The ``edge`` entries come from another policy's route table (``[native] policy`` and
``table``: the v1 commerce mount's), read at load: one table for both mounts, not a copy.
An ACL-class entry takes the place of the shared table's entry of the same shape (the v1
mount denies guest and customer routes; here Magento's own ACL decides them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ._toml import ConfigError, Reader
from .policy import Mount, Route
from .rewrite import NO_REWRITE
from .routing import Pattern, PatternError, RouteTable, compile_pattern

__all__ = ["ACLClass", "NativePolicy", "NativeRoute", "load_native", "native_mounts"]

ACLClass = Literal["deny", "anonymous", "self", "edge"]
Form = Literal["plain", "bulk"]

_METHODS = ("GET", "POST", "PUT", "DELETE")  # Magento REST takes these four (contract §2.3)


@dataclass(frozen=True, slots=True)
class NativeRoute:
    """One entry of the native table: its ACL class, the route (resource, pattern) and,
    for ``anonymous``/``self``, the rate-limit tier (``None``: the surface's default)."""

    acl: ACLClass
    route: Route
    tier: str | None = None
    reason: str | None = None  # deny: why (shown to the caller)


@dataclass(frozen=True, slots=True)
class NativePolicy:
    """``[native]`` compiled: where the shared table came from, and the two tables."""

    shared_policy: Path
    shared_table: str
    resources: tuple[str, ...]
    entries: tuple[NativeRoute, ...]
    tables: Mapping[Form, RouteTable[NativeRoute]]

    def lookup(
        self, form: Form, method: str, segments: tuple[str, ...]
    ) -> tuple[NativeRoute, dict[str, str]] | None:
        return self.tables[form].lookup(method, segments)


def native_mounts() -> dict[tuple[str, str], Mount]:
    """The mounts a native decision forwards through, by (URL form, credential): the
    path prefix after ``/rest`` and the credential the forward carries. ``code`` is the
    store code of the path (checked against the store's ``store_codes``)."""
    shapes = {
        "v1": ("/rest/V1", "/rest/V1", "plain"),
        "code": ("/rest/{code}/V1", "/rest/{code}/V1", "plain"),
        "async": ("/rest/{code}/async/V1", "/rest/{code}/async/V1", "plain"),
        "bulk": ("/rest/{code}/async/bulk/V1", "/rest/{code}/async/bulk/V1", "bulk"),
    }
    out: dict[tuple[str, str], Mount] = {}
    for shape, (path, target, form) in shapes.items():
        for credential in ("store", "none", "caller"):
            out[(shape, credential)] = Mount(
                name=f"native:{shape}:{credential}",
                pattern=compile_pattern(path),
                upstream="magento",
                target=target,
                routes="native",
                form="bulk" if form == "bulk" else "plain",
                methods=None,
                auth=None,
                credential=credential,
            )
    return out


def load_native(
    r: Reader, d: Mapping[str, Any], path: Path, tier_names: set[str]
) -> NativePolicy | None:
    """``[native]`` of the policy at ``path`` (problems go to ``r``)."""
    t = r.table(dict(d), "native", "")
    r.unknown_keys(t, "native", ("policy", "table", "deny", "anonymous", "self"))
    rel = r.string(t, "policy", "native")
    table_name = r.string(t, "table", "native", "magento")
    shared: tuple[Route, ...] = ()
    resources: tuple[str, ...] = ()
    shared_path = (path.parent / rel).resolve() if rel else path
    if rel:
        shared, resources = _shared_table(r, shared_path, rel, table_name, path)
    entries: dict[tuple[str, str, str], tuple[str, NativeRoute]] = {}
    for acl in ("deny", "anonymous", "self"):
        for i, e in enumerate(_entries(r, t, acl)):
            w = f"native.{acl}[{i}]"
            entry = _load_entry(r, w, acl, i, e, tier_names)
            if entry is None:
                continue
            key = _shape(entry.route)
            if key in entries:
                other = entries[key][0]
                r.problem(
                    w,
                    f"{entry.route.method} {entry.route.pattern.text} is also {other} "
                    f"({r.where(other)}): one route, one decision",
                )
                continue
            entries[key] = (w, entry)
    if r.problems:
        return None
    native = [e for _, e in entries.values()]
    for route in shared:
        if _shape(route) in entries:
            continue  # Magento's ACL class decides it here (module docstring)
        # The native mount forwards Magento's own path as sent: the v1 mount's list
        # defaults and path rewrites are its own business.
        plain = dataclasses.replace(route, rewrite=NO_REWRITE, target=None)
        native.append(NativeRoute("deny" if route.deny else "edge", plain, reason=route.deny))
    return NativePolicy(
        shared_policy=shared_path,
        shared_table=table_name,
        resources=resources,
        entries=tuple(native),
        tables={"plain": _build(native, "plain"), "bulk": _build(native, "bulk")},
    )


def _shared_table(
    r: Reader, shared_path: Path, rel: str, table_name: str, own: Path
) -> tuple[tuple[Route, ...], tuple[str, ...]]:
    from .policy import load_policy  # a policy loading a policy: imported when used

    if shared_path == own.resolve():
        r.problem("native.policy", "names this file; name the policy whose table is shared")
        return (), ()
    try:
        surface = load_policy(shared_path, display=rel)
    except ConfigError as exc:
        r.problem("native.policy", f'"{rel}" does not load: ' + "; ".join(exc.problems[:3]))
        return (), ()
    if surface.native is not None:
        r.problem("native.policy", f'"{rel}" is itself a native policy: name the v1 policy')
        return (), ()
    routes = surface.tables.get(table_name)
    if routes is None:
        known = ", ".join(sorted(surface.tables)) or "none"
        r.problem("native.table", f'"{rel}" has no route table "{table_name}" (known: {known})')
        return (), ()
    return routes, surface.resources


def _entries(r: Reader, t: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    raw = t.get(key, [])
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        r.problem(f"native.{key}", "must be an array of { method, path } tables")
        return []
    return raw


def _load_entry(
    r: Reader, w: str, acl: str, index: int, e: dict[str, Any], tier_names: set[str]
) -> NativeRoute | None:
    known = ["method", "path", "summary"]
    known += ["reason"] if acl == "deny" else ["tier"] if acl == "anonymous" else []
    r.unknown_keys(e, w, known)
    method = r.string(e, "method", w, choices=_METHODS)
    text = r.string(e, "path", w)
    try:
        pattern: Pattern = compile_pattern(text)
    except PatternError as exc:
        r.problem(f"{w}.path", str(exc), near=text)
        return None
    reason = r.string(e, "reason", w) if acl == "deny" else None
    tier = r.string(e, "tier", w, None)
    if tier is not None and tier not in tier_names:
        known_tiers = ", ".join(sorted(tier_names)) or "none defined"
        r.problem(f"{w}.tier", f'unknown tier "{tier}" (known: {known_tiers})', near=tier)
    route = Route(
        table="native",
        index=index,
        method=method,
        pattern=pattern,
        resource=None,
        access=None,
        deny=reason,
        target=None,
        form="any",
        summary=r.string(e, "summary", w, ""),
    )
    return NativeRoute(acl, route, tier=tier, reason=reason)  # type: ignore[arg-type]


def _shape(route: Route) -> tuple[str, str, str]:
    """Method, pattern shape (variable names aside) and form: two entries with the same
    shape match the same requests."""
    return route.method, str(route.pattern.parts) + str(route.pattern.tail), route.form


def _build(entries: list[NativeRoute], form: Form) -> RouteTable[NativeRoute]:
    rows: list[tuple[str, Pattern, NativeRoute]] = []
    for entry in entries:
        route = entry.route
        if route.form not in ("any", form):
            continue
        pattern = route.pattern.bulk_form() if form == "bulk" else route.pattern
        rows.append((route.method, pattern, entry))
    return RouteTable(rows)
