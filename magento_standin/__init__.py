"""A Magento 2.4.6 REST stand-in: the upstream the tests, the demo and the benchmarks put
behind the edge. Not the product (that is :mod:`proxy`); the app is :mod:`magento_standin.app`
and ``python -m magento_standin`` serves it alone.
"""

from .app import (
    UNKNOWN_STORE_ANSWER,
    MagentoRoute,
    MagentoStandin,
    OAuth1Integration,
    RecordedRequest,
    create_standin,
    load_routes,
    main,
)

__all__ = [
    "UNKNOWN_STORE_ANSWER",
    "MagentoRoute",
    "MagentoStandin",
    "OAuth1Integration",
    "RecordedRequest",
    "create_standin",
    "load_routes",
    "main",
]
