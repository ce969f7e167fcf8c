"""Quotes (carts) and order placement for the stand-in: guest carts by masked id
(``/V1/guest-carts/:cartId...``, anonymous), a customer's active cart (``/V1/carts/mine...``,
self), and orders saved by an integration (``POST /V1/orders``, ``PUT /V1/orders/create``).

Shapes and texts follow Magento 2.4.6 (``Quote/Api/Data/CartInterface``,
``CartItemInterface``, ``GuestCartManagementInterface::placeOrder`` returning the order id
as an integer, ``NoSuchEntityException``'s ``No such entity with %fieldName =
%fieldValue``, ``ParamOverriderCartId``'s ``Current customer does not have an active
cart.``). The text for placing an empty cart is the stand-in's own wording, not verified
on the wire. Totals are plain sums (no tax, shipping or rules).

Pure data: :class:`CartError` carries Magento's status, message and parameters; the app
renders it (no import of the app here, so no cycle).
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = ["CartBook", "CartError"]

_NO_SUCH_ENTITY = "No such entity with %fieldName = %fieldValue"
_NO_ACTIVE_CART = "Current customer does not have an active cart."
_PRODUCT_404 = "The product that was requested doesn't exist. Verify the product and try again."
_EMPTY_CART = "The cart is empty: add an item before placing the order."
_REQUIRED = '"%fieldName" is required. Enter and try again.'
_ALNUM = string.ascii_letters + string.digits


class CartError(Exception):
    """A Magento error answer: ``status``, ``message`` (a template), ``parameters``."""

    def __init__(
        self,
        status: int,
        message: str,
        parameters: Mapping[str, Any] | list[Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        # named (%fieldName) or positional (%1) parameters, as Magento's answer has them
        self.parameters = (
            list(parameters) if isinstance(parameters, list) else dict(parameters or {})
        )


class CartBook:
    """Every quote of one stand-in, with the product and order tables it shares."""

    def __init__(
        self,
        *,
        find_product: Callable[[str], dict[str, Any] | None],
        orders: dict[int, dict[str, Any]],
        customers: Mapping[int, dict[str, Any]],
        clock: Callable[[], float],
    ) -> None:
        self._find_product = find_product
        self.orders = orders
        self._customers = customers
        self._clock = clock
        self.quotes: dict[int, dict[str, Any]] = {}
        self.masked: dict[str, int] = {}  # masked (guest) cart id -> quote id
        self.active: dict[int, int] = {}  # customer id -> active quote id
        self._next_quote = 1
        self._next_item = 1

    # -- quotes ----------------------------------------------------------------------

    def create_guest(self) -> str:
        """``POST /V1/guest-carts``: the masked id (32 characters, QuoteIdMask)."""
        masked = "".join(secrets.choice(_ALNUM) for _ in range(32))
        self.masked[masked] = self._new_quote(None)
        return masked

    def create_mine(self, customer_id: int) -> int:
        """``POST /V1/carts/mine``: the customer's active quote id (created if none)."""
        quote_id = self.active.get(customer_id)
        if quote_id is None:
            quote_id = self.active[customer_id] = self._new_quote(customer_id)
        return quote_id

    def guest(self, masked: str) -> dict[str, Any]:
        quote_id = self.masked.get(masked)
        if quote_id is None or not self.quotes[quote_id]["is_active"]:
            raise CartError(404, _NO_SUCH_ENTITY, {"fieldName": "cartId", "fieldValue": masked})
        return self.quotes[quote_id]

    def mine(self, customer_id: int, *, forced_cart: bool) -> dict[str, Any]:
        """The customer's active quote; ``forced_cart``: a route whose ``%cart_id%`` the
        overrider fills (its own text when there is none)."""
        quote_id = self.active.get(customer_id)
        if quote_id is None:
            if forced_cart:
                raise CartError(404, _NO_ACTIVE_CART)
            raise CartError(
                404, _NO_SUCH_ENTITY, {"fieldName": "customerId", "fieldValue": customer_id}
            )
        return self.quotes[quote_id]

    def add_item(self, quote: dict[str, Any], body: Any) -> dict[str, Any]:
        """``POST .../items`` with ``{"cartItem": {"sku", "qty"}}``."""
        item = body.get("cartItem") if isinstance(body, dict) else None
        if not isinstance(item, dict) or not item.get("sku"):
            field = "cartItem" if not isinstance(item, dict) else "sku"
            raise CartError(400, _REQUIRED, {"fieldName": field})
        product = self._find_product(str(item["sku"]))
        if product is None:
            raise CartError(404, _PRODUCT_404)
        qty = item.get("qty", 1)
        if not isinstance(qty, int | float) or isinstance(qty, bool) or qty <= 0:
            raise CartError(400, "The requested qty is not available")
        line = {
            "item_id": self._next_item,
            "sku": product["sku"],
            "qty": qty,
            "name": product.get("name", ""),
            "price": product.get("price", 0),
            "product_type": product.get("type_id", "simple"),
            "quote_id": str(quote["id"]),
        }
        self._next_item += 1
        quote["items"].append(line)
        quote["items_count"] = len(quote["items"])
        quote["items_qty"] = sum(i["qty"] for i in quote["items"])
        return line

    def place(self, quote: dict[str, Any], body: Any) -> int:
        """``PUT .../order``: the new order's id; the quote is no longer active."""
        if not quote["items"]:
            raise CartError(400, _EMPTY_CART)
        customer = self._customers.get(quote["customer_id"] or -1)
        email = None
        if isinstance(body, dict) and isinstance(body.get("email"), str):
            email = body["email"]
        method = "checkmo"
        payment = body.get("paymentMethod") if isinstance(body, dict) else None
        if isinstance(payment, dict) and isinstance(payment.get("method"), str):
            method = payment["method"]
        subtotal = sum(i["price"] * i["qty"] for i in quote["items"])
        entity = {
            "customer_id": customer["id"] if customer else None,
            "customer_email": customer["email"] if customer else email,
            "customer_is_guest": 0 if customer else 1,
            "subtotal": subtotal,
            "grand_total": subtotal,
            "total_qty_ordered": sum(i["qty"] for i in quote["items"]),
            "quote_id": quote["id"],
            "items": [_order_item(i) for i in quote["items"]],
            "payment": {"method": method, "amount_ordered": subtotal},
        }
        quote["is_active"] = False
        if quote["customer_id"] is not None:
            self.active.pop(quote["customer_id"], None)
        return int(self.save_order(entity)["entity_id"])

    # -- orders ------------------------------------------------------------------------

    def save_order(self, entity: Any) -> dict[str, Any]:
        """``OrderRepositoryInterface::save``: a new order (no ``entity_id``) or an update."""
        if not isinstance(entity, dict):
            raise CartError(400, _REQUIRED, {"fieldName": "entity"})
        items = entity.get("items", [])
        if not isinstance(items, list):  # Magento's deserializer: OrderItemInterface[]
            raise CartError(400, 'The "%1" value\'s type is invalid.', ["items"])
        now = datetime.fromtimestamp(self._clock(), UTC).strftime("%Y-%m-%d %H:%M:%S")
        raw_id = entity.get("entity_id")
        if raw_id is not None and isinstance(raw_id, int) and raw_id in self.orders:
            order = self.orders[raw_id]
            order.update({k: v for k, v in entity.items() if k != "entity_id"})
            order["updated_at"] = now
            return order
        order_id = max(self.orders, default=0) + 1
        order = {
            "state": "new",
            "status": "pending",
            "store_id": 1,
            "base_currency_code": "USD",
            "order_currency_code": "USD",
            "items": [],
            "status_histories": [],
            **entity,
            "entity_id": order_id,
            "increment_id": f"{order_id:09d}",
            "created_at": now,
            "updated_at": now,
        }
        for n, item in enumerate(items, start=1):
            if isinstance(item, dict):
                item.setdefault("item_id", order_id * 1000 + n)
                item["order_id"] = order_id
        self.orders[order_id] = order
        return order

    def _new_quote(self, customer_id: int | None) -> int:
        quote_id = self._next_quote
        self._next_quote += 1
        self.quotes[quote_id] = {
            "id": quote_id,
            "is_active": True,
            "customer_id": customer_id,
            "customer_is_guest": customer_id is None,
            "items": [],
            "items_count": 0,
            "items_qty": 0,
            "currency": {"base_currency_code": "USD", "quote_currency_code": "USD"},
        }
        return quote_id


def _order_item(line: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "sku": line["sku"],
        "name": line["name"],
        "qty_ordered": line["qty"],
        "price": line["price"],
        "row_total": line["price"] * line["qty"],
        "product_type": line["product_type"],
    }
