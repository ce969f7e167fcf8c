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


# The request bodies of Magento services whose parameters the shared contract records
# (magento/contract.md §2.5): parameter name → schema. Other services: a JSON object.
_SERVICE_BODIES: dict[str, dict[str, Any]] = {
    "ProductRepositoryInterface::save": {
        "product": {
            "type": "object",
            "description": "sku, name, price, attribute_set_id, type_id, status, visibility, "
            "weight, extension_attributes, custom_attributes, ...",
            "properties": {
                "sku": {"type": "string"},
                "name": {"type": "string"},
                "price": {"type": "number"},
                "attribute_set_id": {"type": "integer"},
                "type_id": {"type": "string"},
                "status": {"type": "integer"},
                "visibility": {"type": "integer"},
                "weight": {"type": "number"},
            },
        },
        "saveOptions": {"type": "boolean"},
    },
    "AccountManagementInterface::createAccount": {
        "customer": _OBJECT,
        "password": {"type": "string"},
        "redirectUrl": {"type": "string"},
    },
    "CustomerRepositoryInterface::save": {"customer": _OBJECT, "passwordHash": {"type": "string"}},
    "OrderRepositoryInterface::save": {"entity": _OBJECT},
    "StockRegistryInterface::updateStockItemBySku": {"stockItem": _OBJECT},
    "SourceItemsSaveInterface::execute": {"sourceItems": {"type": "array", "items": _OBJECT}},
    "CategoryRepositoryInterface::save": {"category": _OBJECT},
    "PageRepositoryInterface::save": {"page": _OBJECT},
    "BlockRepositoryInterface::save": {"block": _OBJECT},
}


# The parameter Magento refuses the call without ("%fieldName" is required), by service.
_REQUIRED = {
    "ProductRepositoryInterface::save": ["product"],
    "AccountManagementInterface::createAccount": ["customer"],
    "CustomerRepositoryInterface::save": ["customer"],
    "OrderRepositoryInterface::save": ["entity"],
    "StockRegistryInterface::updateStockItemBySku": ["stockItem"],
    "SourceItemsSaveInterface::execute": ["sourceItems"],
    "CategoryRepositoryInterface::save": ["category"],
    "PageRepositoryInterface::save": ["page"],
    "BlockRepositoryInterface::save": ["block"],
}


def request_body_for(service: str | None, *, bulk: bool) -> dict[str, Any]:
    """The ``requestBody`` of a write to ``service``. Where the service's parameters are
    not recorded, any JSON (the edge streams it unread and Magento decides); a bulk call
    takes a JSON array of bodies, one per operation (Magento's async bulk API)."""
    known = _SERVICE_BODIES.get(service or "")
    if known is None or bulk:
        about = f"Magento's {service} parameters" if service else "The upstream's parameters"
        schema: dict[str, Any] = {
            "description": about + (", one JSON object per operation in a JSON array."
                                    if bulk else ", as a JSON object.")
        }  # fmt: skip
    else:
        schema = {
            "type": "object",
            "description": f"The parameters of Magento's {service}.",
            "required": _REQUIRED.get(service or "", []),
            "properties": known,
        }
        if service == "ProductRepositoryInterface::save":
            schema["properties"] = {
                **known,
                "product": {**known["product"], "required": ["sku"]},
            }
    return {"required": False, "content": {"application/json": {"schema": schema}}}
