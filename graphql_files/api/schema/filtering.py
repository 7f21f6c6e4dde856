"""Amplify's filter inputs (``ModelSongFilterInput`` ...) turned into the domain's filter tree.

The inputs are strawberry objects whose Python attributes differ from their GraphQL names
(``and_``, ``not_``, ``in_``, ``not_contains``) and whose unset fields are ``UNSET``; only this
module reads them. Limits (depth, number of conditions, empty combinators) are checked here,
where the client's shape is still in view.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from strawberry import UNSET

from ...domain.filters import MAX_FILTER_CONDITIONS, MAX_FILTER_DEPTH, And, Cond, Node, Not, Or
from ...domain.models import FieldType, ModelSpec
from ...errors import BadUserInput
from ..engine._compat import UnsetType
from .types import instant_text

# Operators that compare whole instants (beginsWith and contains work on the text).
_INSTANT_OPERATORS = frozenset({"eq", "ne", "le", "lt", "ge", "gt", "between", "in", "notIn"})

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
            parts.extend(self.conditions(spec.name, spec.type, field_input))
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

    def conditions(self, field: str, kind: FieldType, field_input: Any) -> list[Cond]:
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
            if kind.name == "DateTime" and op in _INSTANT_OPERATORS:
                value = self.instants(field, op, value)
            found.append(Cond(field, op, _stored(value), kind.is_list))
        self.count += len(found)
        if self.count > MAX_FILTER_CONDITIONS:
            raise self.fail(f"more than {MAX_FILTER_CONDITIONS} conditions")
        return found

    def instants(self, field: str, op: str, value: Any) -> Any:
        """DateTime values are stored as AWSDateTime text (``2026-01-31T12:00:00.000Z``):
        an instant compared with them is written the same way first, so ``eq`` finds it
        whichever ISO-8601 form the client wrote it in, and ``lt``/``gt`` order by time."""
        if isinstance(value, list):
            return [self.instants(field, op, item) for item in value]
        try:
            return instant_text(value)
        except ValueError as exc:
            raise self.fail(f"{field}.{op}: {exc}") from None


def parse(model: ModelSpec, obj: Any, *, what: str = "filter") -> Node | None:
    """Turn a generated ``Model*FilterInput``/``ConditionInput`` object into a tree.

    ``None``/unset gives ``None`` (no constraint). Bad shapes raise ``BadUserInput``.
    """
    if obj is None or not _given(obj):
        return None
    node = _Parser(model, what).node(obj, 1)
    return None if node == And(()) else node


def _stored(value: Any) -> Any:
    """A filter's value as records store it: an enum member by its name."""
    if isinstance(value, list):
        return [_stored(item) for item in value]
    return value.value if isinstance(value, enum.Enum) else value
