"""Record CRUD over HTTP, for both models: versions, conflicts, conditions, null removal."""

from __future__ import annotations

import pytest

from ..helpers import GraphQLClient, Json, codes

pytestmark = pytest.mark.memory  # also run on the in-memory engines

SONG_FIELDS = "id name coverArtPath owner version createdAt updatedAt"
ALBUM_FIELDS = "id name imagePaths owner version createdAt updatedAt"

CREATE_SONG = f"""mutation($input: CreateSongInput!, $condition: ModelSongConditionInput) {{
  createSong(input: $input, condition: $condition) {{ {SONG_FIELDS} }} }}"""
GET_SONG = f"query($id: ID!) {{ getSong(id: $id) {{ {SONG_FIELDS} }} }}"
UPDATE_SONG = f"""mutation($input: UpdateSongInput!, $condition: ModelSongConditionInput) {{
  updateSong(input: $input, condition: $condition) {{ {SONG_FIELDS} }} }}"""
DELETE_SONG = f"""mutation($input: DeleteSongInput!, $condition: ModelSongConditionInput) {{
  deleteSong(input: $input, condition: $condition) {{ {SONG_FIELDS} }} }}"""
LIST_SONGS = "{ listSongs { items { id name version } } }"

CREATE_ALBUM = f"""mutation($input: CreatePhotoAlbumInput!) {{
  createPhotoAlbum(input: $input) {{ {ALBUM_FIELDS} }} }}"""
GET_ALBUM = f"query($id: ID!) {{ getPhotoAlbum(id: $id) {{ {ALBUM_FIELDS} }} }}"
UPDATE_ALBUM = f"""mutation($input: UpdatePhotoAlbumInput!) {{
  updatePhotoAlbum(input: $input) {{ {ALBUM_FIELDS} }} }}"""
DELETE_ALBUM = f"""mutation($input: DeletePhotoAlbumInput!) {{
  deletePhotoAlbum(input: $input) {{ {ALBUM_FIELDS} }} }}"""


async def test_song_lifecycle(client: GraphQLClient) -> None:
    created = (await client.data(CREATE_SONG, {"input": {"name": "Blue"}}))["createSong"]
    assert created["name"] == "Blue"
    assert created["version"] == 1
    assert created["coverArtPath"] is None
    assert created["createdAt"] == created["updatedAt"]
    assert created["createdAt"].endswith("Z")

    fetched = (await client.data(GET_SONG, {"id": created["id"]}))["getSong"]
    assert fetched == created

    updated = (
        await client.data(
            UPDATE_SONG,
            {"input": {"id": created["id"], "name": "Bluer", "coverArtPath": "images/x/cover.png"}},
        )
    )["updateSong"]
    assert updated["version"] == 2
    assert updated["name"] == "Bluer"
    assert updated["coverArtPath"] == "images/x/cover.png"
    assert updated["createdAt"] == created["createdAt"]
    assert updated["updatedAt"] >= created["updatedAt"]

    deleted = (await client.data(DELETE_SONG, {"input": {"id": created["id"]}}))["deleteSong"]
    assert deleted["version"] == 3
    assert deleted["name"] == "Bluer"

    assert (await client.data(GET_SONG, {"id": created["id"]}))["getSong"] is None
    assert (await client.data(LIST_SONGS))["listSongs"]["items"] == []


async def test_photo_album_lifecycle(client: GraphQLClient) -> None:
    created = (
        await client.data(
            CREATE_ALBUM,
            {"input": {"name": "Trip", "imagePaths": ["images/a.png", "images/b.png"]}},
        )
    )["createPhotoAlbum"]
    assert created["imagePaths"] == ["images/a.png", "images/b.png"]
    assert created["version"] == 1

    updated = (
        await client.data(
            UPDATE_ALBUM, {"input": {"id": created["id"], "imagePaths": ["images/c.png"]}}
        )
    )["updatePhotoAlbum"]
    assert updated["imagePaths"] == ["images/c.png"]
    assert updated["name"] == "Trip"
    assert updated["version"] == 2

    fetched = (await client.data(GET_ALBUM, {"id": created["id"]}))["getPhotoAlbum"]
    assert fetched == updated

    deleted = (
        await client.data(DELETE_ALBUM, {"input": {"id": created["id"], "expectedVersion": 2}})
    )["deletePhotoAlbum"]
    assert deleted["version"] == 3
    assert (await client.data(GET_ALBUM, {"id": created["id"]}))["getPhotoAlbum"] is None


async def test_client_chosen_id_and_duplicates(client: GraphQLClient) -> None:
    song = (await client.data(CREATE_SONG, {"input": {"id": "song-1", "name": "A"}}))["createSong"]
    assert song["id"] == "song-1"
    error = await client.error(CREATE_SONG, {"input": {"id": "song-1", "name": "B"}})
    assert error["extensions"]["code"] == "CONFLICT"
    assert (await client.data(GET_SONG, {"id": "song-1"}))["getSong"]["name"] == "A"


@pytest.mark.parametrize("bad_id", ["", "a/b", "x" * 129, "tab\there", "nul\x00"])
async def test_bad_client_ids_are_refused(client: GraphQLClient, bad_id: str) -> None:
    error = await client.error(CREATE_SONG, {"input": {"id": bad_id, "name": "A"}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert (await client.data(LIST_SONGS))["listSongs"]["items"] == []


async def test_null_in_update_removes_the_field(client: GraphQLClient) -> None:
    song = (
        await client.data(CREATE_SONG, {"input": {"name": "A", "coverArtPath": "images/s/a.png"}})
    )["createSong"]
    updated = (await client.data(UPDATE_SONG, {"input": {"id": song["id"], "coverArtPath": None}}))[
        "updateSong"
    ]
    assert updated["coverArtPath"] is None
    assert updated["name"] == "A"
    # a required field cannot be removed, and the refusal changes nothing
    error = await client.error(UPDATE_SONG, {"input": {"id": song["id"], "name": None}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert (await client.data(GET_SONG, {"id": song["id"]}))["getSong"]["version"] == 2


async def test_expected_version_conflict_changes_nothing(client: GraphQLClient) -> None:
    song = (await client.data(CREATE_SONG, {"input": {"name": "A"}}))["createSong"]
    await client.data(UPDATE_SONG, {"input": {"id": song["id"], "name": "B", "expectedVersion": 1}})

    stale = await client.error(
        UPDATE_SONG, {"input": {"id": song["id"], "name": "C", "expectedVersion": 1}}
    )
    assert stale["extensions"]["code"] == "CONFLICT"
    assert stale["extensions"]["currentVersion"] == 2

    stale_delete = await client.error(
        DELETE_SONG, {"input": {"id": song["id"], "expectedVersion": 1}}
    )
    assert stale_delete["extensions"] == {"code": "CONFLICT", "currentVersion": 2}

    current = (await client.data(GET_SONG, {"id": song["id"]}))["getSong"]
    assert (current["name"], current["version"]) == ("B", 2)


async def test_conditions_guard_writes(client: GraphQLClient) -> None:
    song = (await client.data(CREATE_SONG, {"input": {"name": "A"}}))["createSong"]
    refused = await client.error(
        UPDATE_SONG,
        {"input": {"id": song["id"], "name": "B"}, "condition": {"name": {"eq": "not A"}}},
    )
    assert refused["extensions"]["code"] == "CONFLICT"
    assert refused["extensions"]["currentVersion"] == 1

    accepted = await client.data(
        UPDATE_SONG,
        {
            "input": {"id": song["id"], "name": "B"},
            "condition": {"name": {"beginsWith": "A"}, "version": {"eq": 1}},
        },
    )
    assert accepted["updateSong"]["version"] == 2

    refused_delete = await client.error(
        DELETE_SONG,
        {"input": {"id": song["id"]}, "condition": {"coverArtPath": {"attributeExists": True}}},
    )
    assert refused_delete["extensions"]["code"] == "CONFLICT"
    assert (await client.data(GET_SONG, {"id": song["id"]}))["getSong"]["name"] == "B"


async def test_create_condition_is_checked_against_no_record(client: GraphQLClient) -> None:
    ok = await client.data(
        CREATE_SONG, {"input": {"name": "A"}, "condition": {"name": {"attributeExists": False}}}
    )
    assert ok["createSong"]["name"] == "A"
    refused = await client.error(
        CREATE_SONG, {"input": {"name": "B"}, "condition": {"name": {"eq": "B"}}}
    )
    assert refused["extensions"]["code"] == "CONFLICT"
    assert len((await client.data(LIST_SONGS))["listSongs"]["items"]) == 1


async def test_unknown_ids_answer_not_found(client: GraphQLClient) -> None:
    """Mutations on a missing record are NOT_FOUND; a get is null with no error (AppSync's
    answer, which Amplify's clients expect)."""
    requests: list[tuple[str, Json]] = [
        (UPDATE_SONG, {"input": {"id": "nope", "name": "x"}}),
        (DELETE_SONG, {"input": {"id": "nope"}}),
        (DELETE_ALBUM, {"input": {"id": "nope", "expectedVersion": 3}}),
    ]
    for query, variables in requests:
        body = await client.run(query, variables)
        assert codes(body) == ["NOT_FOUND"], body
        assert next(iter(body["data"].values())) is None
    for query in (GET_SONG, GET_ALBUM):
        assert await client.run(query, {"id": "nope"}) == {
            "data": {"getSong" if query == GET_SONG else "getPhotoAlbum": None}
        }


async def test_operator_looking_strings_are_stored_literally(client: GraphQLClient) -> None:
    for name in ['{"$gt": ""}', ".*", "$where", "a.b"]:
        await client.data(CREATE_SONG, {"input": {"name": name}})
    await client.data(CREATE_SONG, {"input": {"name": "other"}})
    for name in ['{"$gt": ""}', ".*"]:
        found = await client.data(
            "query($f: ModelSongFilterInput) { listSongs(filter: $f) { items { name } } }",
            {"f": {"name": {"eq": name}}},
        )
        assert [i["name"] for i in found["listSongs"]["items"]] == [name]
    contains = await client.data(
        "query($f: ModelSongFilterInput) { listSongs(filter: $f) { items { name } } }",
        {"f": {"name": {"contains": ".*"}}},
    )
    assert [i["name"] for i in contains["listSongs"]["items"]] == [".*"]


async def test_oversized_values_are_refused(client: GraphQLClient) -> None:
    error = await client.error(CREATE_SONG, {"input": {"name": "x" * 1025}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    error = await client.error(CREATE_ALBUM, {"input": {"name": "a", "imagePaths": ["p"] * 1001}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert (await client.data(LIST_SONGS))["listSongs"]["items"] == []
