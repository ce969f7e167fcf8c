"""Step 5b of the request path: the method and query a route sends upstream.

A policy route may change what reaches the upstream beyond its path (``target``):

* ``target_method``: the upstream method (``POST /api/v3/orders`` → ``PUT
  /V1/orders/create``). The body streams unchanged.
* ``list``: the route lands on a Magento ``getList`` route, which answers 400 without
  ``searchCriteria`` and an unbounded list without ``searchCriteria[pageSize]``.

  - ``"criteria"`` (the v1 commerce gateway: clients speak Magento's syntax, and SPEC §4.1
    pins its query as forwarded byte for byte): a query without any ``searchCriteria``
    gets ``searchCriteria[pageSize]=<the policy's default>&searchCriteria[currentPage]=1``
    appended, so a plain list call works and is bounded; a query with criteria is the
    client's own and is forwarded untouched.
  - ``"page"`` (the v3 API): ``page`` (default 1) and ``limit`` (default
    ``[lists] default_page_size``, at most ``max_page_size``) become
    ``searchCriteria[currentPage]`` / ``searchCriteria[pageSize]``; anything else,
    ``searchCriteria[...]`` included, is forwarded byte for byte (Magento ignores what it
    does not know; ``fields`` keeps working). A bad ``page``/``limit``, or one that
    contradicts the client's own ``searchCriteria`` page, is a 400 with nothing sent.

* ``not_implemented``: answered 501 at the edge (:func:`proxy.decide.resolve`).

:func:`upstream_call` is the one place that decides the upstream method and query: the
OAuth 1.0a signature (which covers both) and the request sent are built from its answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote_plus

from ._toml import Reader
from .errors import BadRequest

__all__ = ["ListMode", "Lists", "RouteRewrite", "load_lists", "load_route_rewrite", "upstream_call"]

ListMode = Literal["criteria", "page"]

_READ = frozenset({"GET", "HEAD"})
# Magento accepts camelCase or snake_case input names (ServiceInputProcessor's fallback).
_CRITERIA = ("searchCriteria", "search_criteria")
_CRITERIA_TABLE = tuple(c + "[" for c in _CRITERIA)
_PAGE_SIZE = frozenset(f"{c}[{k}]" for c in _CRITERIA for k in ("pageSize", "page_size"))
_CURRENT_PAGE = frozenset(f"{c}[{k}]" for c in _CRITERIA for k in ("currentPage", "current_page"))
_MAX_PAGE = 2**31 - 1  # Magento's page numbers are PHP ints fed to SQL OFFSET


@dataclass(frozen=True, slots=True)
class Lists:
    """``[lists]`` of a policy: page sizes for Magento list routes."""

    default_page_size: int = 50
    max_page_size: int = 250


@dataclass(frozen=True, slots=True)
class RouteRewrite:
    """What a route changes beyond its path; all ``None``: method and query unchanged."""

    target_method: str | None = None
    list: ListMode | None = None
    not_implemented: str | None = None

    @property
    def changes_request(self) -> bool:
        return self.target_method is not None or self.list is not None


NO_REWRITE = RouteRewrite()


def load_lists(r: Reader, d: Mapping[str, Any]) -> Lists:
    t = r.table(dict(d), "lists", "")
    r.unknown_keys(t, "lists", ("default_page_size", "max_page_size"))
    max_size = r.number(t, "max_page_size", "lists", 250, integer=True, minimum=1)
    default = r.number(t, "default_page_size", "lists", min(50, max_size), integer=True, minimum=1)
    if isinstance(default, int) and isinstance(max_size, int) and default > max_size:
        r.problem("lists.default_page_size", f"must be at most max_page_size ({max_size})")
    return Lists(default_page_size=default, max_page_size=max_size)


def load_route_rewrite(
    r: Reader, w: str, e: Mapping[str, Any], method: str, methods: tuple[str, ...]
) -> RouteRewrite:
    """The route keys of this step (``target_method``, ``list``, ``not_implemented``),
    checked; the caller has listed them as known keys."""
    entry = dict(e)
    not_implemented = entry.get("not_implemented")
    if not_implemented is not None and (
        not isinstance(not_implemented, str) or not not_implemented
    ):
        r.problem(f"{w}.not_implemented", "must be a non-empty string giving the reason")
        not_implemented = None
    if not_implemented is not None:
        # Answered at the edge: keys that describe a forward would look like one.
        for key in ("resource", "access", "target", "target_method", "list", "deny"):
            if key in entry:
                r.problem(f"{w}.{key}", "a not_implemented route is never forwarded: drop this")
        return RouteRewrite(not_implemented=not_implemented)
    target_method = r.string(entry, "target_method", w, None, choices=methods)
    if target_method is not None:
        if method == "*":
            r.problem(f"{w}.target_method", 'needs a route with one method, not "*"')
        elif method in _READ and target_method not in _READ and entry.get("access") != "write":
            # Access follows the client's method: a read would reach an upstream write.
            r.problem(
                f"{w}.target_method",
                f"{method} needs only read access; rewriting it to {target_method} needs "
                'access = "write" on the route',
            )
    list_mode: ListMode | None = r.string(entry, "list", w, None, choices=("criteria", "page"))
    if list_mode is not None and (target_method or method) != "GET":
        r.problem(f"{w}.list", "Magento list routes are GET routes")
    if target_method is None and list_mode is None:
        return NO_REWRITE  # the one plain instance: the edge tells it by identity
    return RouteRewrite(target_method=target_method, list=list_mode)


def upstream_call(rewrite: RouteRewrite, method: str, query: str, lists: Lists) -> tuple[str, str]:
    """The method and raw query (latin-1 text, no ``?``) to send upstream; 400 on a bad
    ``page``/``limit``."""
    if rewrite.target_method is not None:
        method = rewrite.target_method
    if rewrite.list is None:
        return method, query
    kept: list[str] = []
    has_criteria = has_size = has_page = False
    page = limit = None
    for item in query.split("&") if query else ():
        if not item:
            continue
        raw_name = item.partition("=")[0]
        name = unquote_plus(raw_name, encoding="latin-1")
        if rewrite.list == "page" and name in ("page", "limit"):
            value = item.partition("=")[2]
            if name == "page":
                if page is not None:
                    raise _bad("page", "is given twice")
                page = _whole(name, value, _MAX_PAGE)
            else:
                if limit is not None:
                    raise _bad("limit", "is given twice")
                limit = _whole(name, value, lists.max_page_size)
            continue
        has_criteria = has_criteria or name in _CRITERIA or name.startswith(_CRITERIA_TABLE)
        has_size = has_size or name in _PAGE_SIZE
        has_page = has_page or name in _CURRENT_PAGE
        kept.append(item)
    if rewrite.list == "criteria" and has_criteria:
        return method, query
    if limit is not None and has_size:
        raise _bad("limit", "and searchCriteria[pageSize] are both given; send one")
    if page is not None and has_page:
        raise _bad("page", "and searchCriteria[currentPage] are both given; send one")
    if limit is None and not has_size:
        limit = lists.default_page_size
    if page is None and not has_page:
        page = 1
    if limit is not None:
        kept.append(f"searchCriteria[pageSize]={limit}")
    if page is not None:
        kept.append(f"searchCriteria[currentPage]={page}")
    return method, "&".join(kept)


def _whole(name: str, raw: str, most: int) -> int:
    value = unquote_plus(raw, encoding="latin-1")
    # Plain digits only: no sign, no spaces, no exponent, no leading "+".
    if not value.isascii() or not value.isdigit() or len(value) > 10 or not 1 <= int(value) <= most:
        shown = value if value.isascii() and value.isprintable() and len(value) <= 20 else "…"
        raise _bad(name, f'must be a whole number from 1 to {most}, got "{shown}"')
    return int(value)


def _bad(name: str, what: str) -> BadRequest:
    return BadRequest(f"The query parameter {name} {what}.", extra={"parameter": name})
