"""Finding the line of a TOML file a mistake is on, so an error can say "file, line N: ...".

``tomllib`` parses to plain dictionaries and forgets where things were; this reads the text
again, line by line, and works out which table or key each line defines (its dotted path,
whether written as a ``[table]`` header, a ``dotted.key = value`` line, or an inline table).
"""

from __future__ import annotations

import tomllib
from typing import Any


def _dotted(line: str) -> tuple[str, ...]:
    """The path one line defines: ``[storage."a/*"]`` -> (storage, a/*); ``files.x = {...}``
    -> (files, x). Empty for a line that is not TOML on its own."""
    try:
        node: Any = tomllib.loads(line)
    except tomllib.TOMLDecodeError:
        return ()
    path: list[str] = []
    while isinstance(node, dict) and len(node) == 1:
        name, node = next(iter(node.items()))
        path.append(name)
    return tuple(path)


class TomlSource:
    """A TOML text with a name (its file), for errors that name the line."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.lines = text.splitlines()

    def line_of(self, *path: str) -> int:
        """The first line defining ``path`` (a table, a key, or something inside them); failing
        that, the line defining the longest part of it there is (the table it belongs in)."""
        header: tuple[str, ...] = ()
        best_length, best_line = 0, 1
        for number, line in enumerate(self.lines, 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("["):
                header = _dotted(stripped)
                absolute = header
            else:
                absolute = header + _dotted(stripped)
            if absolute[: len(path)] == path:
                return number
            shared = 0
            for mine, wanted in zip(absolute, path, strict=False):
                if mine != wanted:
                    break
                shared += 1
            if shared > best_length:
                best_length, best_line = shared, number
        return best_line

    def error(self, message: str, *path: str) -> str:
        """The one line an error prints: ``file, line N: message``."""
        return f"{self.name}, line {self.line_of(*path)}: {message}"
