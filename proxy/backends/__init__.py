"""Pluggable backends, one folder per kind, each with its Protocol in ``base.py``, one module
per implementation, and the factory that picks one by its config name in ``__init__.py``:

    keystore/     base (KeyLookup, KeyStore), sqlite, redis, cached   open_keystore
    ratelimit/    base (RateLimiter, GCRA), memory, redis             open_limiter
    idempotency/  base (IdempotencyStore), memory, redis              open_idempotency_store

Every factory also takes ``"package.module:Class"`` for an operator's own implementation
(:mod:`._classpath`). Redis is imported only when a Redis backend is selected
(:mod:`._redis` opens it the same way for every kind).
"""
