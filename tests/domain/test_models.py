"""The record models as data: ids, the values a record may hold, and records to and from their
stored documents."""

from __future__ import annotations

import re
from typing import Any

import pytest

from graphql_files.domain.declaration import BUILTIN, PHOTO_ALBUM, SONG, parse_declaration
from graphql_files.domain.models import (
    MAX_ID_LENGTH,
    MAX_LIST_LENGTH,
    MAX_STRING_LENGTH,
    ModelSpec,
    Record,
    check_record_id,
    check_values,
    paths_in,
    words,
)
from graphql_files.errors import BadUserInput

# Models beside the two built-in ones, to exercise what they do not have: a list field that
# names no files, an enum, several file fields.
DECLARED = parse_declaration(
    """
[enums.Mood]
values = ["HAPPY", "SAD"]

[models.Tagged]
fields.name = "String!"
fields.tags = "[String!]"
fields.mood = "Mood"
files.files = { many = "filePaths", singular = "File" }
files.cover = { one = "coverPath" }
""",
    "test models",
)
TAGGED = DECLARED.model("Tagged")


@pytest.mark.parametrize("record_id", ["s1", "a b", "é", "...", "x" * MAX_ID_LENGTH])
def test_valid_ids(record_id: str) -> None:
    assert check_record_id(record_id) == record_id


@pytest.mark.parametrize(
    "record_id", ["", ".", "..", "a/b", "/", "a\x00", "a\nb", "a\x7f", "x" * (MAX_ID_LENGTH + 1)]
)
def test_ids_that_cannot_be_a_folder_name_are_refused(record_id: str) -> None:
    with pytest.raises(BadUserInput, match="ids are 1-128 characters"):
        check_record_id(record_id)


def test_an_invalid_id_is_quoted_short() -> None:
    with pytest.raises(BadUserInput) as refused:
        check_record_id("x" * 100_000)
    assert "(100000 characters)" in refused.value.message
    assert len(refused.value.message) < 300


@pytest.mark.parametrize(
    ("model", "values"),
    [
        (SONG, {"name": "x" * MAX_STRING_LENGTH}),
        (SONG, {"coverArtPath": None}),  # an optional field removed
        (SONG, {"coverArtPath": "images/Song/s1/x.png"}),
        (PHOTO_ALBUM, {"imagePaths": None}),
        # the number of files is the records service's limit, not this check's
        (PHOTO_ALBUM, {"imagePaths": [f"images/p/{n}.png" for n in range(MAX_LIST_LENGTH + 1)]}),
        (TAGGED, {"tags": ["t"] * MAX_LIST_LENGTH}),
        (TAGGED, {"mood": "SAD"}),
    ],
)
def test_values_a_record_may_hold(model: ModelSpec, values: dict[str, Any]) -> None:
    check_values(model, values)


@pytest.mark.parametrize(
    ("model", "values", "says"),
    [
        (SONG, {"name": None}, "Song.name is required and cannot be null"),
        (SONG, {"name": "x" * (MAX_STRING_LENGTH + 1)}, "Song.name values are at most 1024"),
        (SONG, {"coverArtPath": "/abs.png"}, "Song.coverArtPath must not start with '/'"),
        (
            PHOTO_ALBUM,
            {"imagePaths": ["images/a.png", "images//b.png"]},
            "PhotoAlbum.imagePaths has an empty segment",
        ),
        (
            PHOTO_ALBUM,
            {"imagePaths": ["images/" + "x" * MAX_STRING_LENGTH]},
            "PhotoAlbum.imagePaths values are at most 1024",
        ),
        (TAGGED, {"tags": ["t"] * (MAX_LIST_LENGTH + 1)}, "Tagged.tags holds at most 1000"),
        (TAGGED, {"mood": "ANGRY"}, "Tagged.mood must be one of HAPPY, SAD"),
        (TAGGED, {"coverPath": "../x"}, "Tagged.coverPath must not contain '.' or '..'"),
    ],
)
def test_values_no_record_should_hold(model: ModelSpec, values: dict[str, Any], says: str) -> None:
    with pytest.raises(BadUserInput, match=f"^{re.escape(says)}"):
        check_values(model, values)


def test_a_field_is_found_among_the_models_and_the_system_fields() -> None:
    assert SONG.field("coverArtPath").type.sdl == "String"
    assert PHOTO_ALBUM.field("imagePaths").type.sdl == "[String!]"
    assert SONG.field("version").type.sdl == "Int!"
    with pytest.raises(KeyError):
        SONG.field("imagePaths")
    assert [f.name for f in SONG.filterable] == [
        "id",
        "name",
        "coverArtPath",
        "owner",
        "version",
        "createdAt",
        "updatedAt",
    ]
    assert BUILTIN.by_enum["PHOTO_ALBUM"] is PHOTO_ALBUM


@pytest.mark.parametrize(
    ("model", "values", "paths"),
    [
        (SONG, {"name": "x"}, ()),
        (SONG, {"coverArtPath": "images/a.png"}, ("images/a.png",)),
        (PHOTO_ALBUM, {"imagePaths": []}, ()),
        (
            PHOTO_ALBUM,
            {"imagePaths": ["images/a.png", "images/b.png"]},
            ("images/a.png", "images/b.png"),
        ),
        # several file fields: every key, in the declaration's order
        (TAGGED, {"filePaths": ["a", "b"], "coverPath": "c", "tags": ["t"]}, ("a", "b", "c")),
    ],
)
def test_the_paths_a_record_names(
    model: ModelSpec, values: dict[str, Any], paths: tuple[str, ...]
) -> None:
    assert paths_in(model, values) == paths


def test_a_record_round_trips_through_its_document() -> None:
    document = {
        "_id": "a1",
        "name": "Album",
        "imagePaths": ["images/a.png"],
        "owner": "alice",
        "version": 3,
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-02T00:00:00.000Z",
    }
    record = Record.from_document(PHOTO_ALBUM, document)
    assert (record.id, record.owner, record.version) == ("a1", "alice", 3)
    assert record.file_paths == ("images/a.png",)
    assert record.to_document() == document
    assert record.field_value("id") == "a1"
    assert record.field_value("createdAt") == "2026-01-01T00:00:00.000Z"
    assert record.field_value("name") == "Album"


def test_unset_and_null_fields_are_absent_from_a_record() -> None:
    document = {
        "_id": "s1",
        "name": "Song",
        "coverArtPath": None,
        "version": 1,
        "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-01-01T00:00:00.000Z",
    }
    record = Record.from_document(SONG, document)
    assert record.values == {"name": "Song"}
    assert record.owner is None
    assert record.field_value("coverArtPath") is None
    assert record.field_value("owner") is None
    assert "owner" not in record.to_document()
    assert "coverArtPath" not in record.to_document()


@pytest.mark.parametrize(
    ("name", "spoken"),
    [
        ("coverArt", "cover art"),
        ("PhotoAlbum", "photo album"),
        ("images", "images"),
        ("HTTPServer", "http server"),
    ],
)
def test_names_become_words_for_descriptions(name: str, spoken: str) -> None:
    assert words(name) == spoken
