"""magento-edge: a small, fast ASGI edge in front of Magento 2.

The request path, one module per step: ``paths`` → ``decide`` (routing) → ``auth`` →
``ratelimit`` → ``decide`` (grants) → ``idempotency`` → ``upstream``; ``edge`` runs them in
order and ``errors`` renders what the edge answers itself.
"""

from ._toml import ConfigError
from .config import Config, load_config
from .edge import Edge
from .errors import EdgeError
from .policy import Surface, load_policy
from .server import build_app

__all__ = [
    "Config",
    "ConfigError",
    "Edge",
    "EdgeError",
    "Surface",
    "build_app",
    "load_config",
    "load_policy",
]
__version__ = "0.1.0"
