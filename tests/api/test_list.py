"""listSongs/listPhotoAlbums: every filter operator, pagination, sorting, and bad arguments
(nextTokens this server did not issue, listFiles' too)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ..helpers import DEEP_NEXT_TOKEN, GraphQLClient

LIST_SONGS = """query($filter: ModelSongFilterInput, $limit: Int, $nextToken: String,
                     $sortDirection: ModelSortDirection) {
  listSongs(filter: $filter, limit: $limit, nextToken: $nextToken, sortDirection: $sortDirection) {
    items { id name coverArtPath version } nextToken } }"""
LIST_ALBUMS = """query($filter: ModelPhotoAlbumFilterInput, $limit: Int, $nextToken: String) {
  listPhotoAlbums(filter: $filter, limit: $limit, nextToken: $nextToken) {
    items { id name imagePaths } nextToken } }"""
CREATE_SONG = "mutation($i: CreateSongInput!) { createSong(input: $i) { id version } }"
UPDATE_SONG = "mutation($i: UpdateSongInput!) { updateSong(input: $i) { id version } }"
CREATE_ALBUM = "mutation($i: CreatePhotoAlbumInput!) { createPhotoAlbum(input: $i) { id } }"


async def seed_songs(client: GraphQLClient) -> None:
    """ids s1..s5; s2 has cover art; s3 is at version 3."""
    songs = [
        ("s1", "alpha", None),
        ("s2", "beta", "images/s2/b.png"),
        ("s3", "gamma", None),
        ("s4", "alphabet", None),
        ("s5", "Delta", "images/s5/d.png"),
    ]
    for song_id, name, path in songs:
        values: dict[str, Any] = {"id": song_id, "name": name}
        if path:
            values["coverArtPath"] = path
        await client.data(CREATE_SONG, {"i": values})
    for _ in range(2):
        await client.data(UPDATE_SONG, {"i": {"id": "s3", "name": "gamma"}})


async def ids(client: GraphQLClient, where: dict[str, Any]) -> list[str]:
    data = await client.data(LIST_SONGS, {"filter": where})
    return sorted(item["id"] for item in data["listSongs"]["items"])


CASES: list[tuple[dict[str, Any], list[str]]] = [
    ({"name": {"eq": "alpha"}}, ["s1"]),
    ({"name": {"ne": "alpha"}}, ["s2", "s3", "s4", "s5"]),
    ({"name": {"lt": "beta"}}, ["s1", "s4", "s5"]),  # "Delta" < "alpha": code point order
    ({"name": {"le": "beta"}}, ["s1", "s2", "s4", "s5"]),
    ({"name": {"gt": "beta"}}, ["s3"]),
    ({"name": {"ge": "beta"}}, ["s2", "s3"]),
    ({"name": {"between": ["alpha", "beta"]}}, ["s1", "s2", "s4"]),
    ({"name": {"contains": "pha"}}, ["s1", "s4"]),
    ({"name": {"notContains": "pha"}}, ["s2", "s3", "s5"]),
    ({"name": {"beginsWith": "al"}}, ["s1", "s4"]),
    ({"coverArtPath": {"attributeExists": True}}, ["s2", "s5"]),
    ({"coverArtPath": {"attributeExists": False}}, ["s1", "s3", "s4"]),
    ({"coverArtPath": {"ne": "images/s2/b.png"}}, ["s1", "s3", "s4", "s5"]),
    ({"id": {"eq": "s3"}}, ["s3"]),
    ({"id": {"between": ["s2", "s4"]}}, ["s2", "s3", "s4"]),
    ({"id": {"beginsWith": "s"}}, ["s1", "s2", "s3", "s4", "s5"]),
    ({"version": {"eq": 3}}, ["s3"]),
    ({"version": {"ne": 1}}, ["s3"]),
    ({"version": {"gt": 1}}, ["s3"]),
    ({"version": {"ge": 1}}, ["s1", "s2", "s3", "s4", "s5"]),
    ({"version": {"lt": 3}}, ["s1", "s2", "s4", "s5"]),
    ({"version": {"le": 2}}, ["s1", "s2", "s4", "s5"]),
    ({"version": {"between": [2, 5]}}, ["s3"]),
    ({"createdAt": {"beginsWith": "20"}}, ["s1", "s2", "s3", "s4", "s5"]),
    ({"createdAt": {"lt": "2000-01-01T00:00:00.000Z"}}, []),
    ({"owner": {"eq": "tester"}}, ["s1", "s2", "s3", "s4", "s5"]),  # the signed-in creator
    ({"owner": {"attributeExists": False}}, []),
    ({"and": [{"name": {"beginsWith": "al"}}, {"name": {"ne": "alpha"}}]}, ["s4"]),
    ({"or": [{"name": {"eq": "beta"}}, {"version": {"eq": 3}}]}, ["s2", "s3"]),
    ({"not": {"name": {"beginsWith": "al"}}}, ["s2", "s3", "s5"]),
    ({"name": {"beginsWith": "al"}, "not": {"name": {"eq": "alpha"}}}, ["s4"]),
    (
        {
            "or": [
                {"and": [{"name": {"contains": "a"}}, {"version": {"gt": 1}}]},
                {"not": {"or": [{"name": {"lt": "b"}}, {"name": {"gt": "b"}}]}},
            ]
        },
        ["s3"],
    ),
    ({}, ["s1", "s2", "s3", "s4", "s5"]),
]


@pytest.mark.parametrize(("where", "expected"), CASES, ids=[json.dumps(w) for w, _ in CASES])
async def test_every_operator(
    client: GraphQLClient, where: dict[str, Any], expected: list[str]
) -> None:
    await seed_songs(client)
    assert await ids(client, where) == expected


async def test_list_field_operators(client: GraphQLClient) -> None:
    albums = {"a1": ["images/a1/x.png", "images/a1/y.png"], "a2": ["images/a2/z.png"], "a3": None}
    for album_id, paths in albums.items():
        values: dict[str, Any] = {"id": album_id, "name": album_id}
        if paths is not None:
            values["imagePaths"] = paths
        await client.data(CREATE_ALBUM, {"i": values})

    async def album_ids(where: dict[str, Any]) -> list[str]:
        data = await client.data(LIST_ALBUMS, {"filter": where})
        return sorted(i["id"] for i in data["listPhotoAlbums"]["items"])

    assert await album_ids({"imagePaths": {"contains": "images/a1/y.png"}}) == ["a1"]
    assert await album_ids({"imagePaths": {"notContains": "images/a1/y.png"}}) == ["a2", "a3"]
    assert await album_ids({"imagePaths": {"eq": "images/a2/z.png"}}) == ["a2"]
    assert await album_ids({"imagePaths": {"beginsWith": "images/a1/"}}) == ["a1"]
    assert await album_ids({"imagePaths": {"attributeExists": False}}) == ["a3"]
    assert await album_ids({"imagePaths": {"between": ["images/a1/y", "images/a2/zz"]}}) == [
        "a1",
        "a2",
    ]


async def test_pagination_visits_every_record_exactly_once(client: GraphQLClient) -> None:
    created = set()
    for n in range(23):
        created.add(
            (await client.data(CREATE_SONG, {"i": {"name": f"song {n}"}}))["createSong"]["id"]
        )
    for direction in ("ASC", "DESC"):
        seen: list[str] = []
        token = None
        pages = 0
        while True:
            data = await client.data(
                LIST_SONGS, {"limit": 5, "nextToken": token, "sortDirection": direction}
            )
            page = data["listSongs"]
            seen.extend(item["id"] for item in page["items"])
            pages += 1
            token = page["nextToken"]
            if token is None:
                break
        assert pages == 5
        assert len(seen) == len(created) == len(set(seen))
        assert set(seen) == created


async def test_sort_direction_orders_by_creation(client: GraphQLClient) -> None:
    for name in ("first", "second", "third"):
        await client.data(CREATE_SONG, {"i": {"name": name}})
    ascending = await client.data(LIST_SONGS, {"sortDirection": "ASC"})
    descending = await client.data(LIST_SONGS, {"sortDirection": "DESC"})
    names = [i["name"] for i in ascending["listSongs"]["items"]]
    assert names == ["first", "second", "third"]
    assert [i["name"] for i in descending["listSongs"]["items"]] == names[::-1]


async def test_pages_are_stable_when_records_change_between_requests(
    client: GraphQLClient,
) -> None:
    for n in range(6):
        await client.data(CREATE_SONG, {"i": {"id": f"p{n}", "name": f"n{n}"}})
    first = (await client.data(LIST_SONGS, {"limit": 3}))["listSongs"]
    # a record of the first page is deleted, a new one is added: nothing is skipped or repeated
    await client.data('mutation { deleteSong(input: {id: "p0"}) { id } }')
    await client.data(CREATE_SONG, {"i": {"id": "p6", "name": "late"}})
    second = await client.data(LIST_SONGS, {"limit": 10, "nextToken": first["nextToken"]})
    rest = [i["id"] for i in second["listSongs"]["items"]]
    assert [i["id"] for i in first["items"]] == ["p0", "p1", "p2"]
    assert rest == ["p3", "p4", "p5", "p6"]


async def test_default_limit_is_100(client: GraphQLClient) -> None:
    for n in range(101):
        await client.data(CREATE_SONG, {"i": {"name": f"{n}"}})
    page = (await client.data(LIST_SONGS))["listSongs"]
    assert len(page["items"]) == 100
    assert page["nextToken"] is not None


@pytest.mark.parametrize("limit", [0, -1, 1001, 5000])
async def test_limit_out_of_range(client: GraphQLClient, limit: int) -> None:
    error = await client.error(LIST_SONGS, {"limit": limit})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "limit" in error["message"]


@pytest.mark.parametrize(
    "token", ["garbage", "eyJ4IjogMX0", "", "!!!", "eyJjIjoxLCJpIjoyLCJxIjozfQ"]
)
async def test_malformed_next_token(client: GraphQLClient, token: str) -> None:
    error = await client.error(LIST_SONGS, {"nextToken": token})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "nextToken" in error["message"]


async def test_a_deeply_nested_token_is_refused(client: GraphQLClient) -> None:
    for query in (
        "query($t: String) { listSongs(nextToken: $t) { nextToken } }",
        'query($t: String) { listFiles(input: {path: "images/", nextToken: $t}) { nextToken } }',
    ):
        error = await client.error(query, {"t": DEEP_NEXT_TOKEN})
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert error["message"] == "malformed nextToken"


async def test_next_token_is_bound_to_its_query(client: GraphQLClient) -> None:
    for n in range(3):
        await client.data(CREATE_SONG, {"i": {"name": f"x{n}"}})
    token = (await client.data(LIST_SONGS, {"limit": 1}))["listSongs"]["nextToken"]
    error = await client.error(
        LIST_SONGS, {"limit": 1, "nextToken": token, "filter": {"name": {"eq": "x1"}}}
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "different query" in error["message"]
    assert "listSongs" not in error["message"]


@pytest.mark.parametrize(
    "where",
    [
        {"name": {"between": ["a"]}},
        {"name": {"between": ["a", "b", "c"]}},
        {"and": []},
        {"or": []},
        {"name": {"eq": None}},
    ],
)
async def test_invalid_filters(client: GraphQLClient, where: dict[str, Any]) -> None:
    error = await client.error(LIST_SONGS, {"filter": where})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"


@pytest.mark.parametrize(
    "where",
    [
        {"nosuchfield": {"eq": "a"}},
        {"name": {"eq": 5}},
        {"version": {"eq": "x"}},
        {"name": {"regex": ".*"}},
    ],
)
async def test_filters_the_schema_rejects(client: GraphQLClient, where: dict[str, Any]) -> None:
    response = await client.post(LIST_SONGS, {"filter": where})
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
    assert "data" not in body


async def test_deeply_nested_filter_is_refused(client: GraphQLClient) -> None:
    where: dict[str, Any] = {"name": {"eq": "a"}}
    for _ in range(10):
        where = {"not": where}
    error = await client.error(LIST_SONGS, {"filter": where})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "deeper" in error["message"]
