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


async def test_instants_compare_as_instants_whichever_form_the_client_writes(
    client: GraphQLClient,
) -> None:
    """DateTime values are stored as AWSDateTime text (``...T12:00:00.000Z``); a filter's
    instant is written the same way first, so ``eq`` matches ``+00:00`` or no-milliseconds
    forms, and an offset compares by time, not by text."""
    made = await client.data(
        'mutation { createSong(input: {id: "s1", name: "One"}) { createdAt } }'
    )
    created = made["createSong"]["createdAt"]
    assert created.endswith("Z")
    variants = [created, created.replace("Z", "+00:00"), created.replace(".", ",")]
    if created[19:23] == ".000":
        variants += [created[:19] + "Z", created[:19] + "+00:00"]
    for written in variants:
        body = await client.data(LIST, {"f": {"createdAt": {"eq": written}}})
        assert [i["id"] for i in body["listSongs"]["items"]] == ["s1"], written
    later_elsewhere = "2999-01-01T00:00:00.000+14:00"  # before ...T10:00Z of the day before
    body = await client.data(LIST, {"f": {"createdAt": {"lt": later_elsewhere}}})
    assert [i["id"] for i in body["listSongs"]["items"]] == ["s1"]
    body = await client.data(LIST, {"f": {"createdAt": {"beginsWith": created[:4]}}})
    assert [i["id"] for i in body["listSongs"]["items"]] == ["s1"]  # text operators keep text

    for bad in ("yesterday", "2026-01-31T12:00:00"):  # not an instant; no time zone
        error = await client.error(LIST, {"f": {"createdAt": {"gt": bad}}})
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert "createdAt.gt" in error["message"]
