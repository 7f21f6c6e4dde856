"""The GraphQL layer's one JSON codec, for everything on the wire (HTTP bodies, GET variables,
multipart ``operations``, websocket frames, results): orjson, UTF-8 only as RFC 8259 requires,
compact; and JSON nested past ``MAX_JSON_DEPTH`` refused wherever it arrives (Python's parser
raises ``RecursionError`` on deep enough input, and graphql-core's variable coercion recurses
too)."""

from __future__ import annotations

from typing import Any

import orjson

JsonContainer = dict[str, Any] | list[Any]


class JsonTooDeep(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels is refused (MAX_JSON_DEPTH)")


def decode(data: str | bytes, max_depth: int) -> Any:
    """A client's JSON; ``ValueError`` when it is not JSON (or not UTF-8), ``JsonTooDeep``
    past ``max_depth``."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):  # orjson's own cap, far past ours
            raise JsonTooDeep(max_depth) from exc
        raise
    if nests_deeper(value, max_depth):
        raise JsonTooDeep(max_depth)
    return value


def encode(value: object) -> bytes:
    """Compact JSON, as UTF-8."""
    return orjson.dumps(value)


def encode_text(value: object) -> str:
    """Compact JSON, as text (a websocket's text frame)."""
    return orjson.dumps(value).decode()


def encode_key(value: object) -> str:
    """JSON with sorted keys, anything else as its ``repr``: a stable key for equal values."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=repr).decode()


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
