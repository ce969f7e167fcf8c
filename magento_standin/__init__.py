"""A Magento 2.4.6 REST stand-in: the upstream the tests, the demo and the benchmarks put
behind the edge. Not the product (that is :mod:`proxy`); the app is :mod:`magento_standin.app`
and ``python -m magento_standin`` serves it alone.
"""

from .app import MagentoStandin, OAuth1Integration, create_standin, load_routes

# What the demo and the tests use; the rest (route records, answers) is in .app.
__all__ = ["MagentoStandin", "OAuth1Integration", "create_standin", "load_routes"]
