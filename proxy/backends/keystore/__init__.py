"""Key stores: where tokens and accounts live (``[keystore] backend``).

``sqlite`` (:mod:`.sqlite`, the default: one file, no server), ``redis`` (:mod:`.redis`,
shared by replicas), or ``"package.module:Class"`` (an operator's own :class:`KeyStore`).
The request path reads through :class:`~.cached.CachedKeyStore`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..._toml import ConfigError
from .._classpath import is_class_path, load_class
from .base import AccountRecord, Grants, KeyLookup, KeyStore, TokenRecord

if TYPE_CHECKING:
    from ...config import Config

__all__ = [
    "BACKENDS",
    "AccountRecord",
    "Grants",
    "KeyLookup",
    "KeyStore",
    "TokenRecord",
    "open_keystore",
]

BACKENDS = ("sqlite", "redis")


def open_keystore(config: Config) -> KeyStore:
    """The configured key store; Redis (or the operator's module) is imported only here."""
    backend = config.keystore_backend
    if is_class_path(backend):
        try:
            store: KeyStore = load_class(backend, KeyStore)()
        except ValueError as exc:  # load_config checked it; the module changed since
            raise ConfigError([f"{config.source}: keystore.backend: {exc}"]) from None
        return store
    if backend == "redis":
        try:
            from .redis import RedisKeyStore

            return RedisKeyStore(config.keystore_url or "", prefix=config.keystore_prefix)
        except ImportError:
            raise ConfigError(
                [
                    f'{config.source}: keystore.backend: "redis" needs the redis package '
                    "(pip install 'magento-edge[redis]')"
                ]
            ) from None
    if config.keystore_path is None:  # pragma: no cover - load_config sets it for sqlite
        raise ConfigError([f"{config.source}: keystore.path: not set"])
    from .sqlite import SQLiteKeyStore

    return SQLiteKeyStore(config.keystore_path)
