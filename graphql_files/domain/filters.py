"""Amplify's model filters as a small tree, run two ways.

The GraphQL layer builds the tree from a filter input (``api.filtering``); the records service
turns it into a MongoDB query (``services.queries``, for list queries and conditional writes);
``matches`` evaluates it against a ``Record`` in Python (for subscription filters and for
``condition`` on create). Both follow MongoDB's semantics, so a filter means the same thing in a
query and in a subscription:

- a missing field fails every positive operator and passes ``ne``, ``notContains``, ``notIn``;
- on a list field (``imagePaths``) an operator holds when it holds for any element, except
  ``ne``/``notIn`` (no element equal) and ``contains``/``notContains`` (element membership, as
  DynamoDB's ``contains`` on a list);
- strings compare by code point (MongoDB's binary UTF-8 order is the same order).

User values are only ever values: field names come from the model spec, and strings used in
``contains``/``beginsWith`` are escaped before they become regular expressions.

Operators: ``eq ne le lt ge gt contains notContains between beginsWith attributeExists in
notIn``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

MAX_FILTER_DEPTH = 8
MAX_FILTER_CONDITIONS = 100


@dataclass(frozen=True)
class Cond:
    field: str
    op: str
    value: Any
    is_list: bool


@dataclass(frozen=True)
class And:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    part: Node


Node = Cond | And | Or | Not


class Fields(Protocol):
    """Anything whose fields a filter can read (a ``Record``)."""

    def field_value(self, name: str) -> Any: ...


# --- Python -------------------------------------------------------------------------------

_SCALAR_TESTS: Mapping[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "le": lambda a, b: a <= b,
    "lt": lambda a, b: a < b,
    "ge": lambda a, b: a >= b,
    "gt": lambda a, b: a > b,
    "between": lambda a, b: b[0] <= a <= b[1],
    "beginsWith": lambda a, b: isinstance(a, str) and a.startswith(b),
    "contains": lambda a, b: isinstance(a, str) and b in a,
    "in": lambda a, b: a in b,
}
# Operators that hold when their positive twin holds for no element (and on a missing field).
_NEGATIONS = {"ne": "eq", "notIn": "in", "notContains": "contains"}


def _comparable(a: Any, b: Any) -> bool:
    # MongoDB never matches across types (a string is neither < nor > an int).
    probe = b[0] if isinstance(b, list | tuple) and b else b
    return isinstance(a, str) == isinstance(probe, str)


def _holds(op: str, value: Any, operand: Any, is_list: bool) -> bool:
    if is_list and op == "contains":
        return operand in value
    test = _SCALAR_TESTS[op]
    elements = value if is_list else [value]
    return any(_comparable(e, operand) and test(e, operand) for e in elements)


def _cond_matches(c: Cond, record: Fields) -> bool:
    value = record.field_value(c.field)
    if c.op == "attributeExists":
        return (value is not None) == bool(c.value)
    if c.op in _NEGATIONS:
        return value is None or not _holds(_NEGATIONS[c.op], value, c.value, c.is_list)
    return value is not None and _holds(c.op, value, c.value, c.is_list)


def matches(node: Node | None, record: Fields) -> bool:
    """Does ``record`` satisfy the tree? ``None`` matches everything."""
    if node is None:
        return True
    if isinstance(node, Cond):
        return _cond_matches(node, record)
    if isinstance(node, And):
        return all(matches(p, record) for p in node.parts)
    if isinstance(node, Or):
        return any(matches(p, record) for p in node.parts)
    return not matches(node.part, record)


def fingerprint(node: Node | None) -> str:
    """A stable text form of a tree, to bind a ``nextToken`` to the query that made it."""
    return repr(node)
