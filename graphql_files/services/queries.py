"""MongoDB query documents: the only place that knows how MongoDB spells a filter.

``to_mongo`` turns the domain's filter tree into a query (list queries, conditional writes).
"""

from __future__ import annotations

import re
from typing import Any

from ..domain.filters import And, Cond, Node, Or

_COMPARE = {"eq": "$eq", "ne": "$ne", "le": "$lte", "lt": "$lt", "ge": "$gte", "gt": "$gt"}


def _mongo_field(name: str) -> str:
    return "_id" if name == "id" else name


def _regex(pattern: str) -> dict[str, str]:
    """A regular expression as MongoDB spells it canonically. A compiled pattern as a field's
    value is a shorthand some servers do not honour on indexed fields (SecantusDB matched
    nothing with it), and mongomock-motor reads both alike."""
    return {"$regex": pattern}


def _cond_to_mongo(c: Cond) -> dict[str, Any]:
    field = _mongo_field(c.field)
    if c.op in _COMPARE:
        return {field: {_COMPARE[c.op]: c.value}}
    if c.op == "between":
        bounds = {"$gte": c.value[0], "$lte": c.value[1]}
        return {field: {"$elemMatch": bounds} if c.is_list else bounds}
    if c.op == "contains":
        return {field: c.value if c.is_list else _regex(re.escape(c.value))}
    if c.op == "notContains":
        return {field: {"$ne": c.value} if c.is_list else {"$not": _regex(re.escape(c.value))}}
    if c.op == "beginsWith":
        return {field: _regex("^" + re.escape(c.value))}
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
