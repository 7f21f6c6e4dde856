"""Filter inputs as the GraphQL surface reads them: an empty filter inside and/or/not is a
client's mistake, an empty top-level filter is no filter."""

from __future__ import annotations

from typing import Any

import pytest

from ..helpers import GraphQLClient

LIST = "query($f: ModelSongFilterInput) { listSongs(filter: $f) { items { id } } }"
UPDATE = """mutation($c: ModelSongConditionInput) {
  updateSong(input: {id: "s1", name: "Two"}, condition: $c) { version } }"""


@pytest.mark.parametrize(
    "empty",
    [
        {"and": [{}]},
        {"or": [{}]},
        {"not": {}},
        {"and": [{"name": {"eq": "One"}}, {}]},
        {"or": [{"name": {}}]},  # a field with no operator sets no condition either
        {"not": {"and": [{"name": {"eq": "One"}}, {"not": {}}]}},
    ],
    ids=["and", "or", "not", "and-beside-a-condition", "field-without-operator", "nested"],
)
async def test_an_empty_filter_inside_and_or_not_is_refused(
    client: GraphQLClient, empty: dict[str, Any]
) -> None:
    """Nothing to test is a client's mistake, not "match all" (nor, under ``not``, "match
    none"): MongoDB refuses an empty ``$and``, so it must never get one."""
    await client.data('mutation { createSong(input: {id: "s1", name: "One"}) { id } }')
    for query, variables in ((LIST, {"f": empty}), (UPDATE, {"c": empty})):
        error = await client.error(query, variables)
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert "sets no condition" in error["message"]


async def test_an_empty_top_level_filter_is_no_filter(client: GraphQLClient) -> None:
    await client.data('mutation { createSong(input: {id: "s1", name: "One"}) { id } }')
    data = await client.data(LIST, {"f": {}})
    assert data == {"listSongs": {"items": [{"id": "s1"}]}}
