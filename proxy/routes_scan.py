"""``magento-edge routes scan --config PATH MAGENTO_ROOT``: the REST routes of a Magento
install (its own and its third-party modules') that no loaded policy maps or denies, and a
policy fragment that covers them, deny by default (SPEC §4.3).

Every ``etc/webapi.xml`` under ``MAGENTO_ROOT/app/code`` and ``MAGENTO_ROOT/vendor`` is
read (test fixtures under ``Test``/``tests`` folders are skipped), each route as Magento
declares it (``<route url method>``, ``<service class method>``, ``<resource ref>``). A
route is covered when a loaded policy decides it: the native mount's table (ACL classes
and the shared route table) or a v1-style Magento mount's table. A route that a policy
decides only through a variable segment where the module declares a literal
(``GET /V1/products/export`` caught by ``/products/{sku}``) is listed as *shadowed*:
Magento's router dispatches it to the module's own service, whose ACL may differ.

The fragment groups routes by their ACL resource, each entry denied with a reason naming
it; the operator replaces ``deny`` with the resource the ACL stands for. Routes whose ACL
is ``anonymous`` or ``self`` also get (commented) entries for the native policy's lists.

The files are the operator's own install, parsed with the standard library's expat-based
ElementTree (no external entities are resolved; expat bounds entity expansion).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .config import Config
from .native_policy import NativeRoute
from .policy import Route
from .routing import RouteTable

__all__ = ["ScanResult", "WebapiRoute", "read_webapi", "render", "scan"]

_SKIP_DIRS = frozenset({"Test", "Tests", "test", "tests", "dev"})


@dataclass(frozen=True, slots=True)
class WebapiRoute:
    method: str
    url: str  # as declared: /V1/acme/things/:id
    module: str
    service: str  # Class::method
    resources: tuple[str, ...]
    source: str  # the file, relative to the Magento root

    @property
    def path(self) -> str:
        """The url in policy form, after ``/V1``: ``/acme/things/{id}``."""
        tail = self.url.removeprefix("/V1").strip("/")
        parts = ["{" + p[1:] + "}" if p.startswith(":") else p for p in tail.split("/") if p]
        return "/" + "/".join(parts)

    @property
    def segments(self) -> tuple[str, ...]:
        tail = self.url.removeprefix("/V1").strip("/")
        return tuple(p for p in tail.split("/") if p)


@dataclass(frozen=True, slots=True)
class ScanResult:
    files: int
    routes: tuple[WebapiRoute, ...]
    uncovered: tuple[WebapiRoute, ...]
    shadowed: tuple[tuple[WebapiRoute, str], ...]  # (route, what decides it now)
    problems: tuple[str, ...]


def read_webapi(root: Path) -> tuple[list[WebapiRoute], int, list[str]]:
    """Every route of every ``etc/webapi.xml`` under app/code and vendor; problems are
    files that could not be read."""
    routes: list[WebapiRoute] = []
    problems: list[str] = []
    files = 0
    for top in ("app/code", "vendor"):
        base = root / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("webapi.xml")):
            rel = path.relative_to(root)
            if path.parent.name != "etc" or _SKIP_DIRS & set(rel.parts[:-1]):
                continue
            files += 1
            try:
                tree = ET.parse(path)  # noqa: S314 - the operator's own install, see docstring
            except (ET.ParseError, OSError) as exc:
                problems.append(f"{rel}: cannot read: {exc}")
                continue
            module = _module_name(path, rel)
            for node in tree.getroot().iter("route"):
                service = node.find("service")
                refs = tuple(
                    r.get("ref", "") for r in node.iter("resource") if r.get("ref")
                )  # fmt: skip
                url, method = node.get("url"), (node.get("method") or "").upper()
                if not url or not method:
                    problems.append(f"{rel}: a <route> without url or method")
                    continue
                routes.append(
                    WebapiRoute(
                        method=method,
                        url=url,
                        module=module,
                        service=(
                            f"{service.get('class', '')}::{service.get('method', '')}"
                            if service is not None
                            else ""
                        ),
                        resources=refs,
                        source=str(rel),
                    )
                )
    return routes, files, problems


def _module_name(path: Path, rel: Path) -> str:
    """``Vendor_Module``: from app/code/Vendor/Module, or the package's etc/module.xml."""
    parts = rel.parts
    if parts[:2] == ("app", "code") and len(parts) >= 5:
        return f"{parts[2]}_{parts[3]}"
    module_xml = path.parent / "module.xml"
    if module_xml.is_file():
        try:
            node = ET.parse(module_xml).getroot().find("module")  # noqa: S314 - as above
        except (ET.ParseError, OSError):
            node = None
        if node is not None and node.get("name"):
            return str(node.get("name"))
    return "/".join(parts[1:3])


def scan(config: Config, root: Path) -> ScanResult:
    routes, files, problems = read_webapi(root)
    tables = _tables(config)
    uncovered: list[WebapiRoute] = []
    shadowed: list[tuple[WebapiRoute, str]] = []
    for route in routes:
        if not route.url.startswith("/V1/"):
            continue  # the native and commerce mounts serve /V1 only
        found = _decided_by(tables, route)
        if found is None:
            uncovered.append(route)
        elif (where := _shadowing(found, route)) is not None:
            shadowed.append((route, where))
    return ScanResult(
        files=files,
        routes=tuple(routes),
        uncovered=tuple(uncovered),
        shadowed=tuple(shadowed),
        problems=tuple(problems),
    )


_Table = RouteTable[Route] | RouteTable[NativeRoute]


def _tables(config: Config) -> list[_Table]:
    out: list[_Table] = []
    for surface in config.surfaces:
        if surface.native is not None:
            out.append(surface.native.tables["plain"])
            continue
        for mount in surface.mounts:
            v1 = mount.target.rstrip("/").endswith("/V1")
            if mount.upstream == "magento" and mount.form == "plain" and v1:
                out.append(surface.table_for(mount))
    return out


def _decided_by(tables: Iterable[_Table], route: WebapiRoute) -> Route | None:
    # A declared ":var" is looked up as that literal text: only a policy variable (or the
    # same ":var" spelling, which no policy has) matches it, as for any value.
    segments = route.segments
    for table in tables:
        hit = table.lookup(route.method, segments)
        if hit is None:
            continue
        value = hit[0]
        found = value.route if isinstance(value, NativeRoute) else value
        if found.target is None:  # a rewritten route lands elsewhere: not this one
            return found
    return None


def _shadowing(found: Route, route: WebapiRoute) -> str | None:
    for declared, policy in zip(route.segments, found.pattern.parts, strict=False):
        if policy is None and not declared.startswith(":"):
            verdict = f"deny ({found.deny})" if found.deny else f"resource {found.resource}"
            return f"{found.method} {found.pattern.text} → {verdict}"
    return None


def render(result: ScanResult, root: Path) -> str:
    """The report and the fragment, as TOML comments and entries."""
    lines = [
        f"# magento-edge routes scan of {root}: {len(result.routes)} routes in "
        f"{result.files} webapi.xml files; {len(result.uncovered)} not covered by any "
        f"loaded policy, {len(result.shadowed)} shadowed.",
    ]
    lines += [f"# problem: {p}" for p in result.problems]
    if result.shadowed:
        lines.append("#")
        lines.append("# Shadowed: Magento dispatches these to the module's own service, but a")
        lines.append("# policy route with a variable decides them. Add an entry of their own:")
        for route, where in result.shadowed:
            lines.append(f"#   {route.method} {route.url} ({route.module}) now: {where}")
    todo = [*result.uncovered, *(r for r, _ in result.shadowed)]
    if not todo:
        lines.append("# Every route is mapped or denied by a loaded policy.")
        return "\n".join(lines) + "\n"
    lines += [
        "#",
        "# Paste the entries into the shared route table (policies/storeoncloud.toml,",
        "# [routes] magento = [...], read by the v1 commerce mount and the native mount).",
        "# Each is denied until you pick a resource for its ACL: replace",
        '# deny = "..." with resource = "RESOURCE" (and access = "read" for a read-only POST).',
    ]
    by_acl: dict[str, list[WebapiRoute]] = {}
    for route in todo:
        by_acl.setdefault(", ".join(route.resources) or "(no ACL)", []).append(route)
    for acl, routes in sorted(by_acl.items()):
        lines.append("")
        lines.append(f"# -- {acl} ({len(routes)} route{'s' if len(routes) != 1 else ''})")
        for route in sorted(routes, key=lambda r: (r.path, r.method)):
            reason = f"not reviewed: {acl} ({route.module})"
            lines.append(
                f"{{ method = {_q(route.method)}, path = {_q(route.path)}, "
                f"deny = {_q(reason)}, summary = {_q(_short(route.service))} }},"
            )
    guest = [r for r in todo if r.resources in (("anonymous",), ("self",))]
    if guest:
        lines += [
            "",
            "# Magento lets guests (anonymous) or the customer (self) call these. To forward",
            "# them on the native mount as Magento's ACL says, add them to [native] anonymous",
            "# or self in policies/magento.toml (an entry there takes the place of the one",
            "# above on that mount):",
        ]
        for route in guest:
            entry = f"{{ method = {_q(route.method)}, path = {_q(route.path)} }},"
            lines.append(f"# {route.resources[0]}: {entry}")
    return "\n".join(lines) + "\n"


def _q(text: str) -> str:
    return json.dumps(text)  # a TOML basic string (JSON's escapes are TOML's)


def _short(service: str) -> str:
    cls, _, method = service.partition("::")
    return f"{cls.rsplit(chr(92), 1)[-1]}::{method}" if method else cls
