"""Magento's ``/graphql`` for the stand-in: a few storefront fields, executed for real by
graphql-core on a small slice of Magento 2.4's schema (type and field names as Magento's
``schema.graphqls`` spell them).

Reproduced (file names are Magento's, SPEC contract §2.6):

* ``GET /graphql?query=...&variables=...&operationName=...`` for queries; a mutation over
  GET is ``Mutation requests allowed only for POST requests``
  (``HttpRequestValidator/HttpVerbValidator.php``). POST must be ``application/json``,
  else ``Request content type must be application/json`` (``ContentTypeValidator.php``).
* Errors are answered as GraphQL answers are, 200 with ``{"errors": [{"message",
  "extensions": {"category"}, "locations", "path"}]}``; ``customer`` and ``customerCart``
  without a customer token: ``The current customer isn't authorized.`` with category
  ``graphql-authorization`` (``CustomerGraphQl/Model/Resolver/Customer.php``).
* The caller is who the REST side says (bearer integration/admin/customer tokens, OAuth).

Not Magento: core 2.4 has no batching, and answers a JSON array with an error; the stand-in
answers a batch entry by entry (as servers that batch do), so the edge's batch checks can be
exercised end to end. Every request is recorded by the app like any other.

Fields: queries ``products(search, filter: {sku: {eq, in}}, pageSize, currentPage)``,
``storeConfig``, ``cmsPage(identifier)``, ``cart(cart_id)``, ``customer``, ``customerCart``;
mutations ``createEmptyCart``, ``addProductsToCart(cartId, cartItems)``.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from graphql import (
    GraphQLError,
    GraphQLSchema,
    OperationType,
    build_schema,
    graphql_sync,
    parse,
)
from graphql.language import OperationDefinitionNode

__all__ = ["GraphQLEndpoint"]

_SDL = """
type Query {
  products(search: String, filter: ProductAttributeFilterInput, pageSize: Int = 20,
           currentPage: Int = 1): Products
  storeConfig: StoreConfig
  cmsPage(identifier: String): CmsPage
  cart(cart_id: String!): Cart
  customer: Customer
  customerCart: Cart!
}
type Mutation {
  createEmptyCart(input: createEmptyCartInput): String
  addProductsToCart(cartId: String!, cartItems: [CartItemInput!]!): AddProductsToCartOutput
}
input createEmptyCartInput { cart_id: String }
input CartItemInput { sku: String!, quantity: Float! }
input ProductAttributeFilterInput { sku: FilterEqualTypeInput }
input FilterEqualTypeInput { eq: String, in: [String] }
type Products { items: [ProductInterface], total_count: Int, page_info: SearchResultPageInfo }
type SearchResultPageInfo { current_page: Int, page_size: Int, total_pages: Int }
interface ProductInterface { id: Int, uid: ID!, sku: String, name: String }
type SimpleProduct implements ProductInterface { id: Int, uid: ID!, sku: String, name: String }
type StoreConfig { store_code: ID, store_name: String, locale: String,
                   base_currency_code: String, base_url: String }
type CmsPage { identifier: String, title: String, content: String }
type Customer { firstname: String, lastname: String, email: String }
type CartItem { uid: ID!, quantity: Float!, product: ProductInterface! }
type Cart { id: ID!, email: String, items: [CartItem], total_quantity: Float! }
type CartUserInputError { code: String!, message: String! }
type AddProductsToCartOutput { cart: Cart!, user_errors: [CartUserInputError!]! }
"""

_ALNUM = string.ascii_letters + string.digits
_UNAUTHORIZED = "The current customer isn't authorized."


def _schema() -> GraphQLSchema:
    schema = build_schema(_SDL)
    product = schema.get_type("ProductInterface")
    product.resolve_type = lambda *_: "SimpleProduct"  # type: ignore[union-attr]
    return schema


def _customer_out(customer_id: int, record: Mapping[str, Any] | None) -> dict[str, Any]:
    record = record or {}
    return {
        "firstname": record.get("firstname", "Veronica"),
        "lastname": record.get("lastname", "Costello"),
        "email": record.get("email", f"customer{customer_id}@example.com"),
    }


def _error(message: str, category: str) -> dict[str, Any]:
    return {"message": message, "extensions": {"category": category}}


class GraphQLEndpoint:
    """The ``/graphql`` front name of one stand-in. ``products``: the stand-in's catalog
    (SKU -> product); ``identity``: (kind, customer_id) of the caller, from the app."""

    def __init__(
        self,
        products: Callable[[], Mapping[str, Mapping[str, Any]]],
        customers: Callable[[], Mapping[int, Mapping[str, Any]]] = dict,
    ) -> None:
        self._products = products
        self._customers = customers  # id -> Magento's customer record (REST's customers/me)
        self._schema = _schema()
        self.carts: dict[str, dict[str, Any]] = {}  # masked id -> {"customer", "items"}
        self.calls = 0

    def _customer(self, customer_id: int) -> dict[str, Any]:
        """The customer behind the token, as REST's ``customers/me`` shows it."""
        return _customer_out(customer_id, self._customers().get(customer_id))

    def respond(
        self,
        method: str,
        query: bytes,
        content_type: str | None,
        body: bytes,
        identity: tuple[str, int | None],
    ) -> tuple[int, bytes]:
        self.calls += 1
        if method == "GET":
            params = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))
            try:
                variables = json.loads(params["variables"]) if "variables" in params else None
            except ValueError:
                return 200, _dump({"errors": [_error("Invalid variables", "graphql-input")]})
            payload: Any = {
                "query": params.get("query", ""),
                "variables": variables,
                "operationName": params.get("operationName"),
            }
        elif method == "POST":
            media = (content_type or "").partition(";")[0].strip().lower()
            if media != "application/json":
                message = "Request content type must be application/json"
                return 200, _dump({"errors": [_error(message, "graphql-input")]})
            try:
                payload = json.loads(body or b"null")
            except ValueError:
                return 200, _dump({"errors": [_error("Unable to parse the request", "graphql")]})
        else:
            return 405, _dump({"errors": [_error(f"{method} is not supported", "graphql")]})
        if isinstance(payload, list):
            return 200, _dump([self._one(method, item, identity) for item in payload])
        return 200, _dump(self._one(method, payload, identity))

    def _one(self, method: str, payload: Any, identity: tuple[str, int | None]) -> dict[str, Any]:
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return {"errors": [_error("Syntax Error: Unexpected <EOF>", "graphql")]}
        source = payload["query"]
        if method == "GET":
            try:
                document = parse(source)
            except GraphQLError as exc:
                return {"errors": [_error(exc.message, "graphql")]}
            if any(
                isinstance(d, OperationDefinitionNode) and d.operation is OperationType.MUTATION
                for d in document.definitions
            ):
                message = "Mutation requests allowed only for POST requests"
                return {"errors": [_error(message, "graphql-input")]}
        variables = payload.get("variables")
        result = graphql_sync(
            self._schema,
            source,
            root_value=self._root(identity),
            variable_values=variables if isinstance(variables, dict) else None,
            operation_name=payload.get("operationName"),
        )
        out: dict[str, Any] = {}
        if result.errors:
            out["errors"] = [
                {**e.formatted, "extensions": e.extensions or {"category": "graphql"}}
                for e in result.errors
            ]
        if result.data is not None:
            out["data"] = result.data
        return out

    # -- resolvers: graphql-core calls a root value's callables with (info, **args) ------

    def _root(self, identity: tuple[str, int | None]) -> dict[str, Any]:
        kind, customer_id = identity

        def need_customer() -> int:
            if kind != "customer" or customer_id is None:
                raise GraphQLError(_UNAUTHORIZED, extensions={"category": "graphql-authorization"})
            return customer_id

        def products(info: Any, **args: Any) -> dict[str, Any]:
            items = list(self._products().values())
            search = (args.get("search") or "").lower()
            if search:
                items = [p for p in items if search in str(p.get("name", "")).lower()]
            sku = (args.get("filter") or {}).get("sku") or {}
            if sku.get("eq") is not None:
                items = [p for p in items if str(p.get("sku")).lower() == sku["eq"].lower()]
            if sku.get("in") is not None:
                wanted = {str(s).lower() for s in sku["in"]}
                items = [p for p in items if str(p.get("sku")).lower() in wanted]
            size = max(1, int(args.get("pageSize") or 20))
            page = max(1, int(args.get("currentPage") or 1))
            total = len(items)
            return {
                "items": [_product(p) for p in items[(page - 1) * size : page * size]],
                "total_count": total,
                "page_info": {
                    "current_page": page,
                    "page_size": size,
                    "total_pages": max(1, -(-total // size)),
                },
            }

        def cart_out(masked: str) -> dict[str, Any]:
            cart = self.carts[masked]
            return {
                "id": masked,
                "email": cart.get("email"),
                "items": cart["items"],
                "total_quantity": sum(i["quantity"] for i in cart["items"]),
            }

        def find_cart(masked: str) -> str:
            cart = self.carts.get(masked)
            if cart is None:
                raise GraphQLError(
                    f'Could not find a cart with ID "{masked}"',
                    extensions={"category": "graphql-no-such-entity"},
                )
            if cart["customer"] is not None and cart["customer"] != customer_id:
                raise GraphQLError(
                    f'The current user cannot perform operations on cart "{masked}"',
                    extensions={"category": "graphql-authorization"},
                )
            return masked

        def create_empty_cart(info: Any, **args: Any) -> str:
            masked = "".join(
                secrets.choice(string.ascii_letters + string.digits) for _ in range(32)
            )
            owner = customer_id if kind == "customer" else None
            self.carts[masked] = {"customer": owner, "items": []}
            return masked

        def add_products(info: Any, cartId: str, cartItems: list[Any]) -> dict[str, Any]:
            masked = find_cart(cartId)
            catalog = {str(k).lower(): p for k, p in self._products().items()}
            errors = []
            for item in cartItems:
                product = catalog.get(str(item["sku"]).lower())
                if product is None:
                    errors.append(
                        {
                            "code": "PRODUCT_NOT_FOUND",
                            "message": f'Could not find a product with SKU "{item["sku"]}"',
                        }
                    )
                    continue
                self.carts[masked]["items"].append(
                    {
                        "uid": str(len(self.carts[masked]["items"]) + 1),
                        "quantity": item["quantity"],
                        "product": _product(product),
                    }
                )
            return {"cart": cart_out(masked), "user_errors": errors}

        def customer_cart(info: Any) -> dict[str, Any]:
            owner = need_customer()
            for masked, cart in self.carts.items():
                if cart["customer"] == owner:
                    return cart_out(masked)
            masked = create_empty_cart(info)
            return cart_out(masked)

        return {
            "products": products,
            "storeConfig": lambda info: {
                "store_code": "default",
                "store_name": "Default Store View",
                "locale": "en_US",
                "base_currency_code": "USD",
                "base_url": "http://magento.test/",
            },
            "cmsPage": lambda info, identifier=None: {
                "identifier": identifier or "home",
                "title": "Home Page",
                "content": "<p>CMS homepage content goes here.</p>",
            },
            "cart": lambda info, cart_id: cart_out(find_cart(cart_id)),
            "customer": lambda info: self._customer(need_customer()),
            "customerCart": customer_cart,
            "createEmptyCart": create_empty_cart,
            "addProductsToCart": add_products,
        }


def _product(p: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": p.get("id"), "uid": str(p.get("id")), "sku": p.get("sku"), "name": p.get("name")}


def _dump(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()
