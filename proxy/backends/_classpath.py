"""An operator's own backend, named in config as ``"package.module:Class"``.

The class is imported when the config is loaded (so ``check`` refuses a bad one with the
config's ``file:line: key.path:``) and again when the backend is opened. It must provide
every method of the kind's Protocol, as coroutine functions where the Protocol's are, and
be constructible with no arguments: it reads its own settings (environment variables,
its own files), because a key the edge hands to no one is a key the edge must not accept.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

__all__ = ["is_class_path", "load_class"]


def is_class_path(value: str) -> bool:
    """A backend name with ``:`` is a class path; the built-in names have none."""
    return ":" in value


def load_class(path: str, protocol: type) -> type[Any]:
    """Import the class at ``path`` and check it against ``protocol``; every problem is a
    ``ValueError`` whose message can follow ``file:line: key.path:``."""
    module_name, _, attr = path.partition(":")
    if not _dotted(module_name) or not _dotted(attr):
        raise ValueError(f'"{path}" is not a class path (package.module:Class)')
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as exc:  # whatever the operator's module raises is a config problem
        raise ValueError(
            f'"{path}": cannot import {module_name} ({type(exc).__name__}: {exc})'
        ) from None
    for part in attr.split("."):
        found = getattr(found, part, None)
        if found is None:
            raise ValueError(f'"{path}": module {module_name} has no {attr}')
    if not isinstance(found, type):
        raise ValueError(f'"{path}" is not a class')
    wrong = [name for name, is_async in _members(protocol) if not _provides(found, name, is_async)]
    if wrong:
        raise ValueError(
            f'"{path}" does not implement {protocol.__name__}: '
            f"missing or not async: {', '.join(wrong)}"
        )
    try:
        inspect.signature(found).bind()
    except TypeError:
        raise ValueError(f'"{path}" must be constructible with no arguments') from None
    except ValueError:  # pragma: no cover - a signature inspect cannot read (C classes)
        pass
    return found


def _dotted(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def _members(protocol: type) -> list[tuple[str, bool]]:
    """The Protocol's public methods (its own and inherited Protocols'), each with whether
    it is ``async def``."""
    seen: dict[str, bool] = {}
    for klass in reversed(protocol.__mro__):
        if klass is object or not getattr(klass, "_is_protocol", False):
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_") and inspect.isfunction(value):
                seen[name] = inspect.iscoroutinefunction(value)
    return sorted(seen.items())


def _provides(cls: type, name: str, is_async: bool) -> bool:
    member = getattr(cls, name, None)
    if not callable(member):
        return False
    return inspect.iscoroutinefunction(member) if is_async else True
