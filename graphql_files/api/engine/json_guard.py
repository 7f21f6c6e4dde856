"""JSON nested past ``MAX_JSON_DEPTH`` is refused wherever it arrives (bodies, GET variables,
multipart ``operations``, websocket frames): Python's parser raises ``RecursionError`` on deep
enough input, and graphql-core's variable coercion recurses too."""

from __future__ import annotations

from typing import Any

JsonContainer = dict[str, Any] | list[Any]


class JsonTooDeep(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels is refused (MAX_JSON_DEPTH)")


def nests_deeper(value: object, limit: int) -> bool:
    """Whether objects and arrays in ``value`` nest more than ``limit`` deep. A loop, not
    recursion: deep nesting is what this guards against."""
    stack: list[tuple[JsonContainer, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False
