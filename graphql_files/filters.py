"""Amplify's model filters: parsed once into a small tree, then run two ways.

``to_mongo`` turns a tree into a MongoDB query (for list queries and conditional writes);
``matches`` evaluates the same tree against a ``Record`` in Python (for subscription filters and
for ``condition`` on create). Both follow MongoDB's semantics, so a filter means the same thing
in a query and in a subscription:

- a missing field fails every positive operator and passes ``ne``, ``notContains``, ``notIn``;
- on a list field (``imagePaths``) an operator holds when it holds for any element, except
  ``ne``/``notIn`` (no element equal) and ``contains``/``notContains`` (element membership, as
  DynamoDB's ``contains`` on a list);
- strings compare by code point (MongoDB's binary UTF-8 order is the same order).

User values are only ever values: field names come from the model spec, and strings used in
``contains``/``beginsWith`` are escaped before they become regular expressions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from strawberry.types.unset import UNSET, UnsetType

from .errors import BadUserInput
from .models import Kind, ModelSpec

MAX_FILTER_DEPTH = 8
MAX_FILTER_CONDITIONS = 100

# Python attribute of the GraphQL operator input -> operator name used below.
OPERATORS: Mapping[str, str] = {
    "eq": "eq",
    "ne": "ne",
    "le": "le",
    "lt": "lt",
    "ge": "ge",
    "gt": "gt",
    "contains": "contains",
    "not_contains": "notContains",
    "between": "between",
    "begins_with": "beginsWith",
    "attribute_exists": "attributeExists",
    "in_": "in",
    "not_in": "notIn",
}


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


def _given(value: object) -> bool:
    return not isinstance(value, UnsetType)


class _Parser:
    def __init__(self, model: ModelSpec, what: str) -> None:
        self.model = model
        self.what = what
        self.count = 0

    def fail(self, message: str) -> BadUserInput:
        return BadUserInput(f"invalid {self.what}: {message}")

    def node(self, obj: Any, depth: int, within: str | None = None) -> Node:
        """The tree of one filter object; ``within`` names the ``and``/``or``/``not`` it is
        in. There it must set a condition: an empty one would mean "match all" under ``and``
        and ``or`` but "match none" under ``not``, which is a client's mistake, not a wish
        (and MongoDB refuses an empty ``$and``). At the top, ``{}`` is no filter."""
        if depth > MAX_FILTER_DEPTH:
            raise self.fail(f"nested deeper than {MAX_FILTER_DEPTH} levels")
        parts: list[Node] = []
        for spec in self.model.filterable:
            field_input = getattr(obj, spec.name, UNSET)
            if field_input is None or not _given(field_input):
                continue
            parts.extend(self.conditions(spec.name, spec.kind, field_input))
        for attr, combine in (("and_", And), ("or_", Or)):
            children = getattr(obj, attr, UNSET)
            if children is None or not _given(children):
                continue
            name = attr.rstrip("_")
            if not children:
                raise self.fail(f"'{name}' needs at least one filter")
            parts.append(combine(tuple(self.node(child, depth + 1, name) for child in children)))
        negated = getattr(obj, "not_", UNSET)
        if negated is not None and _given(negated):
            parts.append(Not(self.node(negated, depth + 1, "not")))
        if not parts and within is not None:
            raise self.fail(
                f"a filter inside '{within}' sets no condition: give it one, or leave it out"
            )
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def conditions(self, field: str, kind: Kind, field_input: Any) -> list[Cond]:
        found: list[Cond] = []
        for attr, op in OPERATORS.items():
            value = getattr(field_input, attr, UNSET)
            if not _given(value):
                continue
            if value is None:
                raise self.fail(
                    f"{field}.{op} is null; to test for a missing field use attributeExists: false"
                )
            if op == "between" and len(value) != 2:
                raise self.fail(f"{field}.between takes exactly two values, got {len(value)}")
            if op in ("in", "notIn") and not value:
                raise self.fail(f"{field}.{op} needs at least one value")
            found.append(Cond(field, op, value, kind is Kind.STRING_LIST))
        self.count += len(found)
        if self.count > MAX_FILTER_CONDITIONS:
            raise self.fail(f"more than {MAX_FILTER_CONDITIONS} conditions")
        return found


def parse(model: ModelSpec, obj: Any, *, what: str = "filter") -> Node | None:
    """Turn a generated ``Model*FilterInput``/``ConditionInput`` object into a tree.

    ``None``/unset gives ``None`` (no constraint). Bad shapes raise ``BadUserInput``.
    """
    if obj is None or not _given(obj):
        return None
    node = _Parser(model, what).node(obj, 1)
    return None if node == And(()) else node


# --- MongoDB ------------------------------------------------------------------------------

_COMPARE = {"eq": "$eq", "ne": "$ne", "le": "$lte", "lt": "$lt", "ge": "$gte", "gt": "$gt"}


def _mongo_field(name: str) -> str:
    return "_id" if name == "id" else name


def _cond_to_mongo(c: Cond) -> dict[str, Any]:
    field = _mongo_field(c.field)
    if c.op in _COMPARE:
        return {field: {_COMPARE[c.op]: c.value}}
    if c.op == "between":
        bounds = {"$gte": c.value[0], "$lte": c.value[1]}
        return {field: {"$elemMatch": bounds} if c.is_list else bounds}
    if c.op == "contains":
        return {field: c.value if c.is_list else re.compile(re.escape(c.value))}
    if c.op == "notContains":
        return {field: {"$ne": c.value} if c.is_list else {"$not": re.compile(re.escape(c.value))}}
    if c.op == "beginsWith":
        return {field: re.compile("^" + re.escape(c.value))}
    if c.op == "attributeExists":
        return {field: {"$exists": bool(c.value)}}
    if c.op == "in":
        return {field: {"$in": list(c.value)}}
    if c.op == "notIn":
        return {field: {"$nin": list(c.value)}}
    raise AssertionError(f"unknown operator {c.op}")


def to_mongo(node: Node | None) -> dict[str, Any]:
    """The MongoDB query for a tree; ``{}`` for no constraint."""
    if node is None:
        return {}
    if isinstance(node, Cond):
        return _cond_to_mongo(node)
    if isinstance(node, And):
        return {"$and": [to_mongo(p) for p in node.parts]}
    if isinstance(node, Or):
        return {"$or": [to_mongo(p) for p in node.parts]}
    return {"$nor": [to_mongo(node.part)]}


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
