"""Step 1 of the request path: which surface and version a request addresses (by its host
and base path), and where that version stands on the calendar.

    host + path → match()   the surfaces that name the request's host first, then the
                            hostless ones; within each, the longest base path (a surface's
                            own or one of its ``[[versions]]``)
                → enter()   a version's dates against the edge's clock:
                              before ``deprecation``   served, no lifecycle headers
                              from ``deprecation``     served with ``Deprecation: @<epoch>``
                                                       (RFC 9745), ``Sunset`` (RFC 8594) and
                                                       ``Link: <link>; rel="deprecation"``
                              from ``sunset``          410 ``VERSION_RETIRED`` with the link
                            and the path rebased onto the surface's own base path, so a
                            version is served by exactly the same mounts and routes.

Dates are ``YYYY-MM-DD`` (UTC midnight) or full RFC 3339 date-times (TOML dates and
offset date-times too); :func:`parse_when` is what the policy loader validates them with.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import re
from collections.abc import Iterable, MutableSequence, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import Gone

if TYPE_CHECKING:
    from .policy import Surface, Version

__all__ = [
    "Base",
    "enter",
    "host_problem",
    "index",
    "lifecycle_headers",
    "match",
    "normalize_host",
    "parse_when",
    "shared_hosts",
]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# RFC 3339 §5.6 date-time: seconds and an offset are required (``fromisoformat`` alone
# would also take "2025-01-01T10:00" or "20250101", which are not RFC 3339).
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
# A DNS name (labels of letters, digits and hyphens) or an IPv4/IPv6 literal.
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


class Base(NamedTuple):
    """One base path a request can start with, and what serves it."""

    parts: tuple[str, ...]
    surface: Surface
    version: Version | None  # None: the surface's own base path
    hosts: frozenset[str]  # empty: every host
    # a path outside the base path served as this one ([graphql] root): the request's path
    # is ``rebase`` + what follows ``parts``
    rebase: tuple[str, ...] | None = None


def index(surfaces: Iterable[Surface]) -> tuple[Base, ...]:
    """Every base path of ``surfaces``, in the order :func:`match` tries them: surfaces
    that name hosts first (a white-labelled domain is theirs), then longest base path."""
    bases = [Base(s.base_parts, s, None, s.hosts) for s in surfaces]
    bases += [Base(v.base_parts, s, v, s.hosts) for s in surfaces for v in s.versions]
    bases += [
        Base(s.graphql.root_parts, s, None, s.hosts, s.base_parts + s.graphql.parts)
        for s in surfaces
        if s.graphql is not None and s.graphql.root_parts
    ]
    return tuple(sorted(bases, key=lambda b: (not b.hosts, -len(b.parts))))


def match(bases: Sequence[Base], segments: Sequence[str], host: str) -> Base | None:
    """The base ``segments`` (the whole raw path) start with on ``host`` (a ``Host`` or
    trusted ``X-Forwarded-Host`` value, port and case ignored)."""
    normalized: str | None = None
    for base in bases:
        if base.hosts:
            if normalized is None:  # only paid for when some surface names hosts
                normalized = normalize_host(host)
            if normalized not in base.hosts:
                continue
        n = len(base.parts)
        if tuple(segments[:n]) == base.parts:
            return base
    return None


def host_surface(bases: Sequence[Base], host: str) -> Surface | None:
    """The surface that owns ``host`` when a path matched none (its error style answers
    the 404): the first naming the host, else the first naming no host."""
    normalized = normalize_host(host)
    for base in bases:
        if not base.hosts or normalized in base.hosts:
            return base.surface
    return None


def enter(
    base: Base, segments: Sequence[str], now: float, answer_headers: MutableSequence[Any]
) -> tuple[str, ...]:
    """Apply ``base``'s version lifecycle at ``now``: raise 410 from its sunset on, add its
    headers to every answer from its deprecation on; return the path on the surface's own
    base path."""
    version = base.version
    assert version is not None  # the edge calls this for version bases only
    if version.deprecation is None or now >= version.deprecation:
        answer_headers.extend(version.headers)
    if version.sunset is not None and now >= version.sunset:
        raise Gone(
            f"API version {version.name} was retired on {_iso(version.sunset)}; "
            f"migrate to {base.surface.base_path} ({version.link}).",
            extra={"version": version.name, "sunset": _iso(version.sunset), "link": version.link},
        )
    return base.surface.base_parts + tuple(segments[len(base.parts) :])


def lifecycle_headers(
    deprecation: float | None, sunset: float | None, link: str | None
) -> tuple[tuple[bytes, bytes], ...]:
    """The headers a deprecated version's answers carry (computed once, at load)."""
    out: list[tuple[bytes, bytes]] = []
    if deprecation is not None:
        out.append((b"deprecation", f"@{int(deprecation)}".encode()))
    if sunset is not None:
        out.append((b"sunset", email.utils.formatdate(sunset, usegmt=True).encode()))
    if link is not None:
        out.append((b"link", f'<{link}>; rel="deprecation"'.encode("latin-1")))
    return tuple(out)


def parse_when(value: object) -> float | str:
    """Epoch seconds of a policy date, or why it is not one."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            return "a date-time needs an offset (Z or +hh:mm): it is read as UTC nowhere"
        return value.timestamp()
    if isinstance(value, dt.date):
        return _midnight(value)
    if not isinstance(value, str):
        return "must be a date: YYYY-MM-DD (UTC midnight) or an RFC 3339 date-time"
    try:
        if _DATE.fullmatch(value):
            return _midnight(dt.date.fromisoformat(value))
        if _DATE_TIME.fullmatch(value):
            return dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        return f'"{value}" is not a valid date ({exc})'
    return f'"{value}" must be YYYY-MM-DD (UTC midnight) or an RFC 3339 date-time'


def normalize_host(host: str) -> str:
    """``API.Store.icu:8443`` → ``api.store.icu``; ``[::1]:80`` → ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def host_problem(host: str) -> str | None:
    """Why ``host`` cannot be a surface's host name, or None (it is already lower-case)."""
    if host.startswith("[") or ":" in host:
        return None if _is_ipv6(host.strip("[]")) else f'"{host}" is not a host name'
    labels = host.rstrip(".").split(".")
    if not host or not all(_LABEL.fullmatch(label) for label in labels):
        return f'"{host}" is not a host name (no scheme, port, path or wildcard)'
    return None


def shared_hosts(a: frozenset[str], b: frozenset[str]) -> str | None:
    """Where two surfaces' host sets meet, in words; None when they are disjoint."""
    if not a and not b:
        return "on every host (neither declares [surface] hosts)"
    if not a or not b:
        named = sorted(a or b)
        return f'on host "{named[0]}" (a surface without hosts claims every host)'
    common = sorted(a & b)
    return f'on host "{common[0]}"' if common else None


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _midnight(day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
