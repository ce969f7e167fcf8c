"""Loading TOML with errors that name the file, the line and the key path:
``config.toml:12: stores.acme.magento_url: ...`` (the line of the key, or of the nearest
table that holds it when the key is missing; see :mod:`proxy._toml_lines`).

Validation collects every problem instead of stopping at the first, so ``magento-edge
check`` can show an operator all of them at once.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from ._toml_lines import key_lines, syntax_error_at

__all__ = ["ConfigError", "Reader"]

_REQUIRED: Final = object()


class ConfigError(Exception):
    """A configuration or policy file is invalid. ``problems`` lists every message."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class Reader:
    """Typed access to one parsed TOML document; problems are collected, not raised."""

    def __init__(self, path: Path, display: str | None = None) -> None:
        self.path = path
        self.display = display or str(path)
        self.problems: list[str] = []
        self.lines: dict[str, int] = {}
        try:
            self.text = path.read_text(encoding="utf-8")
        except OSError as exc:
            self.text = ""
            self.data: dict[str, Any] = {}
            self.problems.append(f"{self.display}: cannot read: {exc.strerror or exc}")
            return
        except UnicodeDecodeError:
            self.text = ""
            self.data = {}
            self.problems.append(f"{self.display}: not UTF-8 text")
            return
        try:
            self.data = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as exc:
            self.data = {}
            line, key, message = syntax_error_at(self.text, exc)
            where = f"{self.display}:{line}" if line else self.display
            self.problems.append(f"{where}: {key + ': ' if key else ''}invalid TOML: {message}")
            return
        self.lines = key_lines(self.text)

    # -- reporting ------------------------------------------------------------------

    def problem(self, key: str, message: str, *, near: object = None) -> None:
        line = self._line_of(key, near)
        where = f"{self.display}:{line}" if line else self.display
        self.problems.append(f"{where}: {key}: {message}")

    def where(self, key: str) -> str:
        """``file:line`` of ``key``, to name a second place in a message."""
        line = self.line_of(key)
        return f"{self.display}:{line}" if line else self.display

    def line_of(self, key: str) -> int | None:
        """The line of ``key``, or of the nearest enclosing key or table in the file."""
        path = key
        while path:
            line = self.lines.get(path)
            if line is not None:
                return line
            path = _parent(path)
        return None

    def _line_of(self, key: str, near: object) -> int | None:
        line = self.line_of(key)
        if line is not None:
            return line
        # Not a key path of this file (a problem in a file it names): best effort, the
        # line that holds ``near`` (a bad value) or the last key name.
        needles: list[str] = []
        if isinstance(near, str) and near:
            needles.append(f'"{near}"')
        last = re.sub(r"\[\d+\]$", "", key.rsplit(".", 1)[-1])
        if last:
            needles.append(last)
        lines = self.text.splitlines()
        for needle in needles:
            hits = [i for i, text in enumerate(lines, 1) if needle in text]
            if len(hits) == 1:
                return hits[0]
            if hits and near is not None:
                # Prefer a line that also names the key.
                both = [i for i in hits if last and last in lines[i - 1]]
                if len(both) == 1:
                    return both[0]
        return None

    # -- typed getters --------------------------------------------------------------

    def table(self, parent: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
        value = parent.get(key, {})
        if not isinstance(value, dict):
            self.problem(_join(where, key), f"must be a table, got {_kind(value)}")
            return {}
        return value

    def named_tables(
        self, parent: Mapping[str, Any], key: str, where: str
    ) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """``[key.NAME]`` tables as ``(NAME, key path, table)``; a ``NAME`` that is not a
        table is a problem and skipped."""
        for name, value in self.table(parent, key, where).items():
            path = f"{_join(where, key)}.{name}"
            if isinstance(value, dict):
                yield name, path, value
            else:
                self.problem(path, "must be a table")

    def array_of_tables(
        self, parent: Mapping[str, Any], key: str, where: str
    ) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """``[[key]]`` entries as ``(index, key path, table)``; anything else is a problem."""
        raw = parent.get(key, [])
        path = _join(where, key)
        if not isinstance(raw, list):
            self.problem(path, "must be an array of tables")
            return
        for i, value in enumerate(raw):
            if isinstance(value, dict):
                yield i, f"{path}[{i}]", value
            else:
                self.problem(f"{path}[{i}]", "must be a table")

    def string(
        self,
        parent: Mapping[str, Any],
        key: str,
        where: str,
        default: Any = _REQUIRED,
        *,
        choices: Iterable[str] | None = None,
    ) -> Any:
        path, value, done = self._lookup(parent, key, where, default, missing="")
        if done or value is None:
            return value
        if not isinstance(value, str):
            self.problem(path, f"must be a string, got {_kind(value)}")
            return default if default is not _REQUIRED else ""
        if choices is not None:
            allowed = list(choices)
            if value not in allowed:
                self.problem(
                    path, f'unknown value "{value}" (known: {", ".join(allowed)})', near=value
                )
                return default if default is not _REQUIRED else allowed[0]
        return value

    def number(
        self,
        parent: Mapping[str, Any],
        key: str,
        where: str,
        default: Any = _REQUIRED,
        *,
        minimum: float | None = None,
        integer: bool = False,
    ) -> Any:
        path, value, done = self._lookup(parent, key, where, default, missing=0)
        if done:
            return value
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if not is_number or (integer and not isinstance(value, int)):
            wanted = "an integer" if integer else "a number"
            self.problem(path, f"must be {wanted}, got {_kind(value)}")
            return default if default is not _REQUIRED else 0
        if minimum is not None and value < minimum:
            self.problem(path, f"must be at least {minimum}, got {value}")
        return value

    def _lookup(
        self, parent: Mapping[str, Any], key: str, where: str, default: Any, *, missing: Any
    ) -> tuple[str, Any, bool]:
        """``(key path, value, done)``: done when the value is the default (nothing to
        check) or required and absent (a problem, ``missing`` stands in)."""
        value = parent.get(key, default)
        path = _join(where, key)
        if value is _REQUIRED:
            self.problem(path, "is required")
            return path, missing, True
        return path, value, value is default

    def boolean(self, parent: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
        value = parent.get(key, default)
        if not isinstance(value, bool):
            self.problem(_join(where, key), f"must be true or false, got {_kind(value)}")
            return default
        return value

    def strings(
        self, parent: Mapping[str, Any], key: str, where: str, default: list[str] | None = None
    ) -> list[str]:
        value = parent.get(key, default if default is not None else [])
        path = _join(where, key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.problem(path, "must be a list of strings")
            return []
        return list(value)

    def unknown_keys(self, table: Mapping[str, Any], where: str, known: Iterable[str]) -> None:
        """Typos in key names are the most common config bug: refuse them."""
        allowed = set(known)
        for key in table:
            if key not in allowed:
                hint = ", ".join(sorted(allowed))
                self.problem(_join(where, key), f"unknown key (known: {hint})")


def _parent(path: str) -> str:
    """``a.b[3]`` → ``a.b``; ``a.b`` → ``a``; ``a`` → ``""``."""
    if path.endswith("]") and "[" in path:
        return path[: path.rindex("[")]
    return path.rpartition(".")[0]


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)
