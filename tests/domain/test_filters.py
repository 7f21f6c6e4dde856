"""Filters mean the same in MongoDB and in Python (subscriptions use the Python side)."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mongomock_motor import AsyncMongoMockClient

from graphql_files.domain import filters
from graphql_files.domain.declaration import PHOTO_ALBUM
from graphql_files.domain.filters import And, Cond, Node, Not, Or
from graphql_files.domain.models import Record
from graphql_files.services import queries

WORDS = ["", "a", "ab", "b", "ba", "B", "é", "a.b", "images/x", "images/y"]
DOCS: list[dict[str, Any]] = [
    {"_id": "r1", "name": "a", "imagePaths": ["images/x", "ab"]},
    {"_id": "r2", "name": "ab"},
    {"_id": "r3", "name": "B", "imagePaths": []},
    {"_id": "r4", "name": "é", "imagePaths": ["b"]},
    {"_id": "r5", "name": "a.b", "imagePaths": ["images/y"], "owner": "u1"},
]
for index, doc in enumerate(DOCS):
    doc.update(
        version=index + 1,
        createdAt=f"2026-01-0{index + 1}T00:00:00.000Z",
        updatedAt="2026-02-01T00:00:00.000Z",
    )

STRING_OPS = [
    "eq",
    "ne",
    "le",
    "lt",
    "ge",
    "gt",
    "contains",
    "notContains",
    "beginsWith",
    "in",
    "notIn",
]


def conditions() -> st.SearchStrategy[Node]:
    word = st.sampled_from(WORDS)
    string_cond = st.builds(
        lambda field, op, value, pair: Cond(
            field, op, [value, pair] if op in ("in", "notIn") else value, field == "imagePaths"
        ),
        st.sampled_from(["id", "name", "owner", "imagePaths"]),
        st.sampled_from(STRING_OPS),
        word,
        word,
    )
    between = st.builds(
        lambda f, lo, hi: Cond(f, "between", sorted([lo, hi]), f == "imagePaths"),
        st.sampled_from(["name", "imagePaths"]),
        word,
        word,
    )
    exists = st.builds(
        lambda f, v: Cond(f, "attributeExists", v, f == "imagePaths"),
        st.sampled_from(["owner", "imagePaths"]),
        st.booleans(),
    )
    version = st.builds(
        lambda op, v: Cond("version", op, v, False),
        st.sampled_from(["eq", "ne", "le", "lt", "ge", "gt"]),
        st.integers(0, 6),
    )
    return st.one_of(string_cond, between, exists, version)


trees = st.recursive(
    conditions(),
    lambda children: st.one_of(
        st.builds(lambda parts: And(tuple(parts)), st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda parts: Or(tuple(parts)), st.lists(children, min_size=1, max_size=3)),
        st.builds(Not, children),
    ),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees)
def test_mongodb_and_python_agree(tree: Node) -> None:
    async def in_mongodb() -> set[str]:
        client: AsyncMongoMockClient[dict[str, Any]] = AsyncMongoMockClient()
        collection = client["db"]["albums"]
        await collection.insert_many([dict(d) for d in DOCS])
        return {d["_id"] async for d in collection.find(queries.to_mongo(tree))}

    in_python = {
        d["_id"] for d in DOCS if filters.matches(tree, Record.from_document(PHOTO_ALBUM, d))
    }
    assert asyncio.run(in_mongodb()) == in_python
