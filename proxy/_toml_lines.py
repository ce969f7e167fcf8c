"""Where each key of a TOML document is written: key path → line, for error messages.

``tomllib`` keeps no positions and no parser in the standard library does, so this walks
the text once more. It only ever sees documents ``tomllib`` has already accepted, which lets
it stay small: it tells keys, strings, arrays, inline tables and comments apart, and skips
everything else. Paths are spelled the way the loaders name problems: ``stores.acme.
credential.kind``, ``routes.magento[12].resource``, ``mounts[0].path`` (the n-th ``[[mounts]]``).
"""

from __future__ import annotations

import re
import tomllib
from bisect import bisect_right

__all__ = ["key_lines", "syntax_error_at"]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_AT = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]#=]*)")
_KEY = re.compile(r"^\s*([A-Za-z0-9_.\-\"' ]+?)\s*=")


def key_lines(text: str) -> dict[str, int]:
    """The line (1-based) of every key, table header and array element in ``text``."""
    return _Scanner(text).run()


def syntax_error_at(text: str, error: tomllib.TOMLDecodeError) -> tuple[int | None, str, str]:
    """(line, key path there or "", message without its position) of a syntax error."""
    message = str(error)
    m = _AT.search(message)
    if m is None:  # pragma: no cover - tomllib always says where
        return None, "", message
    lines = text.splitlines()
    if m.group(1) is None:  # unclosed at the end: the last line that says anything
        line = max((i for i, s in enumerate(lines, 1) if s.strip()), default=1)
        message = f"{message[: m.start()]} (at end of file)"
    else:
        line = int(m.group(1))
        message = f"{message[: m.start()]} (column {m.group(2)})"
    table = ""
    for number, content in enumerate(lines[:line], 1):
        header = _HEADER.match(content)
        if header:
            table = _dotted(header.group(1))
            if number == line:
                return line, table, message
    key = _KEY.match(lines[line - 1]) if line <= len(lines) else None
    path = ".".join(p for p in (table, _dotted(key.group(1)) if key else "") if p)
    return line, path, message


def _dotted(raw: str) -> str:
    return ".".join(part.strip().strip("\"'") for part in raw.split("."))


class _Scanner:
    def __init__(self, text: str) -> None:
        self.t = text
        self.i = 0
        self.n = len(text)
        self.lines: dict[str, int] = {}
        self._starts = [0, *(m.end() for m in re.finditer("\n", text))]
        self._arrays: dict[str, int] = {}  # [[array]] path -> index of its latest table

    def line(self, pos: int) -> int:
        return bisect_right(self._starts, pos)

    def run(self) -> dict[str, int]:
        current = ""
        while True:
            self.skip(newlines=True)
            if self.i >= self.n:
                return self.lines
            start = self.i
            if self.t[self.i] == "[":
                double = self.t.startswith("[[", self.i)
                self.i += 2 if double else 1
                parts = self.key()
                self.i = self.t.index("]", self.i) + (2 if double else 1)
                current = self.resolve(parts[:-1], start)
                current = _join(current, parts[-1])
                if double:
                    index = self._arrays.get(current, -1) + 1
                    self._arrays[current] = index
                    self.lines.setdefault(current, self.line(start))
                    current = f"{current}[{index}]"
                self.lines[current] = self.line(start)
            else:
                self.pair(current)

    def resolve(self, parts: list[str], pos: int) -> str:
        """A header's parent path, with the index of the latest table of any array in it."""
        path = ""
        for part in parts:
            path = _join(path, part)
            if path in self._arrays:
                path = f"{path}[{self._arrays[path]}]"
            self.lines.setdefault(path, self.line(pos))
        return path

    def pair(self, table: str) -> None:
        start = self.i
        parts = self.key()
        path = table
        for part in parts[:-1]:
            path = _join(path, part)
            self.lines.setdefault(path, self.line(start))
        path = _join(path, parts[-1])
        self.lines[path] = self.line(start)
        self.skip()
        self.i += 1  # "="
        self.skip()
        self.value(path)

    def key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip()
            c = self.t[self.i]
            if c in "\"'":
                start = self.i
                self.string()
                raw = self.t[start : self.i]
                parts.append(str(tomllib.loads(f"k = {raw}")["k"]))
            else:
                start = self.i
                while self.i < self.n and self.t[self.i] in _BARE:
                    self.i += 1
                parts.append(self.t[start : self.i])
            self.skip()
            if self.i < self.n and self.t[self.i] == ".":
                self.i += 1
                continue
            return parts

    def value(self, path: str) -> None:
        c = self.t[self.i]
        if c in "\"'":
            self.string()
        elif c == "[":
            self.i += 1
            index = 0
            while True:
                self.skip(newlines=True)
                if self.t[self.i] == "]":
                    self.i += 1
                    return
                element = f"{path}[{index}]"
                self.lines[element] = self.line(self.i)
                self.value(element)
                self.skip(newlines=True)
                if self.t[self.i] == ",":
                    self.i += 1
                    index += 1
        elif c == "{":
            self.i += 1
            while True:
                self.skip(newlines=True)
                if self.t[self.i] == "}":
                    self.i += 1
                    return
                self.pair(path)
                self.skip(newlines=True)
                if self.t[self.i] == ",":
                    self.i += 1
        else:  # number, boolean, date: up to the next delimiter
            while self.i < self.n and self.t[self.i] not in ",]}#\n":
                self.i += 1

    def string(self) -> None:
        t, i = self.t, self.i
        quote = t[i]
        if t.startswith(quote * 3, i):
            end = t.find(quote * 3, i + 3) if quote == "'" else _basic_end(t, i + 3, '"""')
            end += 3
            for _ in range(2):  # up to two quotes of the content may precede the closer
                if end < self.n and t[end] == quote:
                    end += 1
            self.i = end
        elif quote == "'":
            self.i = t.index("'", i + 1) + 1
        else:
            self.i = _basic_end(t, i + 1, '"') + 1

    def skip(self, *, newlines: bool = False) -> None:
        t = self.t
        while self.i < self.n:
            c = t[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.i += 1
            elif c == "#":
                end = t.find("\n", self.i)
                self.i = self.n if end < 0 else end
            else:
                return


def _basic_end(text: str, i: int, closer: str) -> int:
    """Index of ``closer`` ending a basic string whose content starts at ``i``."""
    while not text.startswith(closer, i):
        i += 2 if text[i] == "\\" else 1
    return i


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
