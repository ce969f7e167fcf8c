"""JSON Schemas for :mod:`proxy.openapi`: the edge's own bodies, Magento's error shape, the
request bodies of the Magento services the route table names, and what a path segment may
hold.

The body schemas say what Magento reads (its top-level keys are the service method's
parameter names, ``ServiceInputProcessor``), never more than the edge checks or Magento
refuses: the edge streams bodies unread, so a stricter schema would document a refusal
nobody makes.
"""

from __future__ import annotations

from typing import Any

from .errors import ErrorStyle

__all__ = [
    "IDEMPOTENCY_KEY",
    "INTEGER_PATH_PARAMETERS",
    "SEGMENT_VALUE",
    "edge_error_schema",
    "leak_report_schemas",
    "magento_error_schema",
    "request_body_for",
    "stores_schema",
]

# A path parameter's value, as the client means it (before percent-encoding it): what
# proxy.paths accepts once it is encoded. Not empty, not "." or ".." (alone or as a piece
# between "/"), no control character or backslash, and no "%" that starts an escape (the
# edge decodes escapes within a segment again, to see what a second decoder would: "%41"
# inside a value is "A" to it). ECMAScript syntax (JSON Schema), also valid in Python.
SEGMENT_VALUE = r"^(?!\.\.?(?:/|$))(?!.*/\.\.?(?:/|$))(?:[^\x00-\x1F\x7F\\%]|%(?![0-9A-Fa-f]{2}))+$"

# Path parameters Magento's service signature types ``int`` (a non-integer is its 400 "The
# ... value's type is invalid"): the order and customer reads and an order's cancel.
INTEGER_PATH_PARAMETERS: dict[str, tuple[str, ...]] = {
    "OrderRepositoryInterface::get": ("id",),
    "OrderManagementInterface::cancel": ("id",),
    "CustomerRepositoryInterface::getById": ("customerId",),
}

IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Makes a write safely retryable: the first answer is recorded and "
    "replayed for retries with the same key and request. Visible ASCII, 1 to 255 "
    'characters (an RFC 8941 string, "...", is the same key).',
    "schema": {"type": "string", "maxLength": 255, "pattern": r"^[!#-~]{1,255}$"},
}

_OBJECT: dict[str, Any] = {"type": "object"}


def edge_error_schema(style: ErrorStyle) -> dict[str, Any]:
    if style == "problem":
        return {
            "type": "object",
            "description": "RFC 9457 problem details, for answers the edge gives itself.",
            "required": ["type", "title", "status", "detail", "request_id"],
            "properties": {
                "type": {"type": "string", "format": "uri-reference"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "request_id": {"type": "string"},
                "required": {"type": "string", "description": "The missing permission."},
                "parameter": {"type": "string", "description": "The query parameter at fault."},
            },
        }
    return {
        "type": "object",
        "description": "The envelope: the edge's own errors and Magento's JSON errors alike.",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "request_id"],
                "properties": {
                    "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
                    "message": {"type": "string"},
                    "details": {"type": "object"},
                    "request_id": {"type": "string"},
                },
            }
        },
    }


def magento_error_schema() -> dict[str, Any]:
    """Magento's REST error body (``Framework/Webapi/Rest/Response::_renderMessages``)."""
    return {
        "type": "object",
        "description": "Magento's own error, verbatim: `message` is a template whose `%name` "
        "or `%1` placeholders are filled from `parameters`.",
        "properties": {
            "message": {"type": "string"},
            "parameters": {"type": ["object", "array"]},
            "errors": {"type": "array", "items": _OBJECT},
            "code": {"type": "integer"},
            "trace": {"type": "string"},
        },
    }


def stores_schema(store_ids: list[str]) -> dict[str, Any]:
    store_id: dict[str, Any] = {"type": "string"}
    if store_ids:
        store_id["enum"] = store_ids
    return {
        "type": "object",
        "required": ["stores"],
        "properties": {
            "stores": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "name", "environment", "permissions"],
                    "properties": {
                        "id": store_id,
                        "name": {"type": "string"},
                        "environment": {"type": "string", "enum": ["live", "sandbox"]},
                        "permissions": {
                            "type": "array",
                            "items": {"type": "string", "pattern": "^[^:]+:(read|write)$"},
                        },
                    },
                },
            }
        },
    }


def leak_report_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """GitHub secret scanning's report and feedback formats (proxy.leaks)."""
    report = {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["token", "type"],
            "properties": {
                "token": {"type": "string"},
                "type": {"type": "string"},
                "url": {"type": "string"},
                "source": {"type": "string"},
            },
        },
    }
    feedback = {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["token_hash", "token_type", "label"],
            "properties": {
                "token_hash": {"type": "string"},
                "token_type": {"type": "string"},
                "label": {"type": "string", "enum": ["true_positive", "false_positive"]},
            },
        },
    }
    return report, feedback


# Request bodies Magento validates before its service runs, exactly: a schema-valid body
# is one Magento takes, and a body it refuses violates the schema (contract.md §2.5,
# ServiceInputProcessor). Other services: any JSON, described by their parameter names.
# A SKU is any value but null or a blank string (Magento casts scalars to string).
_SKU: dict[str, Any] = {
    "type": ["string", "number", "integer", "boolean", "array", "object"],
    # Not blank (Magento's own check); no control character, backslash or dot segment: the
    # edge refuses those in a path (proxy.paths), so such a product could never be read
    # back, updated or deleted through it.
    "pattern": "^(?!\\.\\.?(?:/|$))(?!.*/\\.\\.?(?:/|$))(?=.*\\S)[^\\x00-\\x1F\\x7F\\\\]+$",
    "description": "The product's SKU (it travels in later paths: no control characters "
    "or backslashes, and no `.` or `..` between slashes).",
}
_PRODUCT = {
    "type": "object",
    "description": "sku, name, price, attribute_set_id, type_id, status, visibility, weight, "
    "extension_attributes, custom_attributes, ...",
}
_SAVE_PRODUCT: dict[str, Any] = {
    "type": "object",
    "description": "The parameters of Magento's ProductRepositoryInterface::save: `product` "
    "and optionally `saveOptions`.",
    "required": ["product"],
    "properties": {"product": {**_PRODUCT, "required": ["sku"], "properties": {"sku": _SKU}}},
}
# MSI source items (SourceItemsSaveInterface::execute): every object among them needs a sku
# and a source_code that are not empty once cast to text, and a status Magento reads as an
# int; `sourceItems` is a list, or an object whose values are the items (a PHP array).
_FILLED: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": "\\S"},
        {"type": "number", "not": {"const": 0}},
        {"const": True},
        {"type": "array", "minItems": 1},
        {"type": "object", "minProperties": 1},
    ]
}
_SOURCE_ITEM: dict[str, Any] = {
    "if": {"type": "object"},
    "then": {
        "required": ["sku", "source_code"],
        "properties": {
            "sku": _FILLED,
            "source_code": _FILLED,
            "quantity": {"description": "The quantity at this source."},
            "status": {
                "description": "1 in stock, 0 out of stock.",
                "anyOf": [
                    {"type": "integer"},
                    {"type": "boolean"},
                    {"type": "string", "pattern": "^-?[0-9]+$"},
                ],
            },
        },
    },
}
_SAVE_SOURCE_ITEMS: dict[str, Any] = {
    "type": "object",
    "description": "The parameters of Magento's SourceItemsSaveInterface::execute: "
    "`sourceItems`, objects with sku, source_code, quantity and status.",
    "required": ["sourceItems"],
    "properties": {
        "sourceItems": {
            "type": ["array", "object", "string", "number", "integer", "boolean"],
            "items": _SOURCE_ITEM,
            "additionalProperties": _SOURCE_ITEM,  # an object: its values are the items
        }
    },
}
# OrderRepositoryInterface::save (POST orders, PUT orders/create): Magento refuses the call
# without `entity`, and its `items` must be a list of order items.
_SAVE_ORDER: dict[str, Any] = {
    "type": "object",
    "description": "The parameters of Magento's OrderRepositoryInterface::save: `entity`, "
    "the order (Sales OrderInterface); without `entity_id`, a new order.",
    "required": ["entity"],
    "properties": {
        "entity": {
            "type": "object",
            "properties": {
                "entity_id": {"type": "integer", "minimum": 1},
                "items": {"type": "array", "items": {"type": "object"}},
            },
        }
    },
}
_BODIES: dict[str, dict[str, Any]] = {
    "OrderRepositoryInterface::save": _SAVE_ORDER,
    "ProductRepositoryInterface::save": _SAVE_PRODUCT,
    "SourceItemsSaveInterface::execute": _SAVE_SOURCE_ITEMS,
}
# PUT products/{sku}: Magento writes the path's SKU into a body's single top-level object
# (ParamsOverrider), so a body of `product` alone needs no sku of its own.
_SAVE_PRODUCT_BY_SKU: dict[str, Any] = {
    "type": "object",
    "description": _SAVE_PRODUCT["description"] + " With `product` alone, its sku is the path's.",
    "required": ["product"],
    "properties": {"product": _PRODUCT},
    "anyOf": [{"maxProperties": 1}, {"properties": _SAVE_PRODUCT["properties"]}],
}
# The parameter names of other services the contract records, for the description.
_NAMES = {
    "AccountManagementInterface::createAccount": "`customer`, `password`, `redirectUrl`",
    "CustomerRepositoryInterface::save": "`customer`, `passwordHash`",
    "OrderRepositoryInterface::save": "`entity`",
    "StockRegistryInterface::updateStockItemBySku": "`stockItem`",
    "SourceItemsSaveInterface::execute": "`sourceItems` (sku, source_code, quantity, status)",
    "CategoryRepositoryInterface::save": "`category`",
    "PageRepositoryInterface::save": "`page`",
    "BlockRepositoryInterface::save": "`block`",
}


def request_body_for(
    service: str | None, *, queued: bool, bulk: bool, path_sets_id: bool
) -> dict[str, Any]:
    """The ``requestBody`` of a write to ``service``. ``queued``: Magento's async and bulk
    APIs accept the body and validate it when the queued operation runs; ``bulk`` takes a
    JSON array of bodies, one per operation; ``path_sets_id``: a PUT whose last path
    parameter Magento writes into the body."""
    known = None if queued else _BODIES.get(service or "")
    if known is not None and path_sets_id and service == "ProductRepositoryInterface::save":
        known = _SAVE_PRODUCT_BY_SKU
    if known is not None:  # Magento refuses the call without these parameters
        return {"required": True, "content": {"application/json": {"schema": known}}}
    if known is None:
        names = _NAMES.get(service or "")
        about = f"The parameters of Magento's {service}" if service else "The upstream's body"
        about += f" ({names})" if names else ""
        about += (
            ": a JSON array, one body per operation." if bulk else ", as JSON; Magento checks it."
        )
        known = {"description": about}
    return {"required": False, "content": {"application/json": {"schema": known}}}
