"""magento-edge: a small, fast ASGI edge in front of Magento 2."""

__all__: list[str] = []
__version__ = "0.1.0"
