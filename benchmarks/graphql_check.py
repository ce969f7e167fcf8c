"""What the GraphQL check costs per request: proxy.graphql.check() (JSON body read, every
document parsed by graphql-core, limits, every top-level field looked up) under the shipped
v3 policy's [graphql] settings, for documents of the sizes storefronts send.

    .venv/bin/python benchmarks/graphql_check.py [--rounds 5] [-n 2000]

Each case twice: a document seen before (its parse cached: storefronts repeat a few
documents with other variables) and one seen for the first time (graphql-core parses it).
CPU time (``time.process_time``) per call, median over rounds after a warm-up; bounded by
``--rounds`` x ``-n`` per case. It prints, it does not judge.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from proxy.graphql import Allowed, Caller, check  # noqa: E402
from proxy.graphql_document import _ANALYSED  # noqa: E402
from proxy.policy import load_policy  # noqa: E402

# A category page as a PWA storefront asks for it (~1.3 KB: fragments, variables, aliases).
CATEGORY_PAGE = """
query CategoryPage($id: String!, $pageSize: Int!, $currentPage: Int!) {
  categoryList(filters: {category_uid: {eq: $id}}) { uid name url_path ...Breadcrumbs }
  products(filter: {category_uid: {eq: $id}}, pageSize: $pageSize, currentPage: $currentPage) {
    total_count
    page_info { current_page total_pages }
    items { ...ProductCard }
    aggregations { attribute_code label options { label value count } }
  }
  storeConfig { store_code base_currency_code product_url_suffix }
}
fragment Breadcrumbs on CategoryInterface {
  breadcrumbs { category_uid category_name category_url_path }
}
fragment ProductCard on ProductInterface {
  uid sku name url_key
  small_image { url label }
  price_range {
    minimum_price { final_price { value currency } regular_price { value currency } }
    maximum_price { final_price { value currency } }
  }
  ... on ConfigurableProduct { configurable_options { attribute_code values { uid label } } }
}
"""
SMALL = "{ storeConfig { store_code locale } }"
ADD_TO_CART = (
    "mutation($c: String!, $i: [CartItemInput!]!) { addProductsToCart(cartId: $c, "
    "cartItems: $i) { cart { total_quantity items { uid quantity product { sku } } } "
    "user_errors { code message } } }"
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("-n", type=int, default=2000, help="calls per round and case")
    args = p.parse_args()
    settings = load_policy(HERE.parent / "policies" / "storeicu.toml").graphql
    assert settings is not None
    partner = Caller("edge", {"products": "read", "orders": "write"}, partner=True)
    variables = {"id": "MTI=", "pageSize": 12, "currentPage": 1}
    cases = {
        "small query (POST, 48 B)": ("POST", b"", json.dumps({"query": SMALL}).encode()),
        "category page (POST, ~1.3 KB)": (
            "POST",
            b"",
            json.dumps({"query": CATEGORY_PAGE, "variables": variables}).encode(),
        ),
        "add to cart mutation (POST)": (
            "POST",
            b"",
            json.dumps({"query": ADD_TO_CART, "variables": {"c": "x", "i": []}}).encode(),
        ),
        "batch of 3 (POST)": (
            "POST",
            b"",
            json.dumps(
                [{"query": SMALL}, {"query": CATEGORY_PAGE}, {"query": ADD_TO_CART}]
            ).encode(),
        ),
        "category page (GET)": ("GET", urlencode({"query": CATEGORY_PAGE}).encode(), b""),
    }
    print(f"proxy.graphql.check(), CPU µs per request (median of {args.rounds} x {args.n})")
    for name, (method, query, body) in cases.items():
        verdict = check(method, query, "application/json", body, settings, partner, guests=False)
        assert isinstance(verdict, Allowed), (name, verdict)
        for _ in range(200):  # warm-up
            check(method, query, "application/json", body, settings, partner, guests=False)
        size = len(body) or len(query)
        for cold in (False, True):
            n = args.n // 10 if cold else args.n  # a parse costs ~100x a cached check
            per_round = []
            for _ in range(args.rounds):
                t0 = time.process_time()
                for _ in range(n):
                    if cold:
                        _ANALYSED.clear()  # as a document seen for the first time
                    check(method, query, "application/json", body, settings, partner, guests=False)
                per_round.append((time.process_time() - t0) / n * 1e6)
            lo, hi = min(per_round), max(per_round)
            label = f"{name}, {'first time' if cold else 'seen before'}"
            median = statistics.median(per_round)
            print(f"  {label:46} {median:7.1f} µs  ({lo:.1f}-{hi:.1f}; {size} B)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
