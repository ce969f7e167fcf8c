"""Operation ids and summaries for :mod:`proxy.openapi`: what a person would write.

A Magento route's id comes from its service contract (the policy's summary names it):
``ProductRepositoryInterface::get`` → ``get_product``, ``::getList`` → ``list_products``,
``::deleteById`` → ``delete_product_by_id``, ``SourceItemsSaveInterface::execute`` →
``save_source_items``. A route without one (the partner API's) is named by its REST shape:
``GET /products`` → ``list_products``, ``POST /products`` → ``create_product``,
``GET /products/{id}`` → ``get_product``, ``POST /carts/{id}/checkout`` → ``checkout_cart``.

Ids must be unique in a document and stable across releases, so a collision is resolved
by what tells the operations apart, the same way every time and for every party to it
(adding a route never renames one that did not collide): first the path parameters
(``save_product`` and ``save_product_by_sku``), then the method, then the whole path.
Never a running number.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

__all__ = ["endpoint_id", "humanize", "path_id", "qualify", "service_id", "service_of"]

_SERVICE = re.compile(r"\b([A-Z][A-Za-z0-9]*)::([a-z][A-Za-z0-9]*)\b")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
# Words naming a service's role, not the thing it serves.
_ROLES = ("Repository", "Management", "Manager", "Storage", "Provider", "Service", "Acquirer")
# An ``execute`` service named "<thing><verb>" (SourceItemsSave) reads verb first.
_TRAILING_VERBS = frozenset({"save", "delete", "assign", "unassign", "transfer"})
_ENDPOINT_IDS = {
    "stores": "list_stores",
    "openapi": "get_openapi_document",
    "leaked_tokens": "report_leaked_tokens",
}
_ITEM_VERBS = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete",
               "POST": "post", "HEAD": "head", "OPTIONS": "options"}  # fmt: skip
_COLLECTION_VERBS = {"GET": "list", "POST": "create", "PUT": "replace", "PATCH": "update",
                     "DELETE": "delete", "HEAD": "head", "OPTIONS": "options"}  # fmt: skip


def service_of(summary: str) -> str | None:
    """``Class::method`` named in a route's summary, if any."""
    found = _SERVICE.search(summary)
    return f"{found.group(1)}::{found.group(2)}" if found else None


def endpoint_id(handler: str) -> str:
    return _ENDPOINT_IDS.get(handler, handler)


def service_id(service: str, method: str = "") -> str:
    """``ProductRepositoryInterface::get`` → ``get_product``."""
    cls, _, func = service.partition("::")
    entity = cls.removesuffix("Interface")
    for role in _ROLES:
        if entity.endswith(role) and entity != role:
            entity = entity.removesuffix(role)
            break
    things = _snake(entity).split("_")
    if func == "execute":
        if things[0] in _TRAILING_VERBS or len(things) == 1:
            return "_".join(things)
        if things[-1] in _TRAILING_VERBS:
            return "_".join([things[-1], *things[:-1]])
        return "_".join(things)
    verb, *rest = _snake(func).split("_")
    if rest == ["list"]:
        return "_".join(["list", *things[:-1], _plural(things[-1])])
    if not rest or rest[0] == "by":
        return "_".join([verb, *things, *rest])
    missing = [w for w in things if w not in rest and _plural(w) not in rest]
    return "_".join([verb, *missing, *rest])


def path_id(method: str, path: str) -> str:
    """A REST-shaped id for a route no service names (``GET /products`` → ``list_products``)."""
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts:
        return _COLLECTION_VERBS.get(method, method.lower()) + "_root"
    last_is_item = parts[-1].startswith("{")
    words: list[str] = []
    for i, part in enumerate(parts):
        if part.startswith("{"):
            continue
        followed_by_item = i + 1 < len(parts) and parts[i + 1].startswith("{")
        word = _snake(part.replace("-", "_").replace(".", "_"))
        words.append(
            _singular(word) if followed_by_item or (last_is_item and i == len(parts) - 2) else word
        )
    if last_is_item:
        return "_".join([_ITEM_VERBS.get(method, method.lower()), *words])
    *parents, last = words
    before_is_item = len(parts) >= 2 and parts[-2].startswith("{")
    if before_is_item or (parents and method == "POST" and _is_action(last)):
        # An action on an item or a collection: POST /carts/{id}/checkout, /bulk/products/import
        return "_".join([last, *parents])
    verb = _COLLECTION_VERBS.get(method, method.lower())
    if verb == "create":
        return "_".join([verb, *parents, _singular(last)])
    return "_".join([verb, *parents, last])


def humanize(operation_id: str) -> str:
    """``get_product_by_sku`` → ``Get product by sku``."""
    text = operation_id.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def qualify(items: Sequence[tuple[str, tuple[str, ...], str]]) -> list[str]:
    """Unique ids for ``(base, path parameters, "suffix\\0method\\0path")``, in order."""
    parts = [[*extra.split("\x00"), "", ""] for _, _, extra in items]
    suffixes = [p[0] for p in parts]
    methods = [p[1].lower() for p in parts]
    paths = [p[2] for p in parts]

    def by(i: int) -> str:
        return items[i][0] + _by(items[i][1])

    def by_method(i: int) -> str:
        return by(i) + (f"_{methods[i]}" if methods[i] else "")

    def whole_path(i: int) -> str:
        words = re.findall(r"[A-Za-z0-9]+", paths[i])
        return "_".join([methods[i] or "call", *(_snake(w) for w in words)])

    def within(i: int) -> str:  # the same service under two prefixes (products/, eav/)
        words = re.findall(r"[A-Za-z0-9]+", paths[i].split("{")[0])
        return items[i][0] + ("_in_" + _snake(words[0]) if words else "")

    names = [base + suffix for (base, _, _), suffix in zip(items, suffixes, strict=True)]
    for step in (by, by_method, within, whole_path):
        counts = Counter(names)
        names = [step(i) + suffixes[i] if counts[n] > 1 else n for i, n in enumerate(names)]
    return names


def _by(params: tuple[str, ...]) -> str:
    return "_by_" + "_and_".join(_snake(p) for p in params) if params else ""


def _is_action(word: str) -> bool:
    return word in {"import", "export", "checkout", "search", "cancel", "hold", "unhold",
                    "move", "notify", "emails", "refund", "ship", "invoice"}  # fmt: skip


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "ch", "sh")):
        return word if word.endswith("s") else word + "es"
    if word.endswith("y") and word[-2:-1] not in ("a", "e", "o", "u"):
        return word[:-1] + "ies"
    return word + "s"


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word
