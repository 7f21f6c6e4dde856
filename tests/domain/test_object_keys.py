"""Object keys: what a valid key is, where a record's files live, and the file names uploads
are stored under."""

from __future__ import annotations

import re

import pytest

from graphql_files.domain.object_keys import (
    MAX_FILE_NAME,
    check_key,
    in_folder,
    new_attachment_key,
    record_folder,
    safe_file_name,
)
from graphql_files.errors import BadUserInput


@pytest.mark.parametrize(
    "key", ["a", "images/x.png", "images/a b/ü+x.png", "x" * 1024, "é" * 512, "a/.../b"]
)
def test_valid_keys_are_returned_as_they_are(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("", "path must not be empty"),
        ("x" * 1025, "path is longer than 1024 bytes"),
        ("é" * 513, "path is longer than 1024 bytes"),  # bytes, not characters
        ("a\x00", "path contains control characters"),
        ("a\nb", "path contains control characters"),
        ("a\x7fb", "path contains control characters"),
        ("/images/x.png", "path must not start with '/'"),
        ("images//x.png", "path has an empty segment ('//' or a trailing '/')"),
        ("images/", "path has an empty segment ('//' or a trailing '/')"),
        ("images/./x.png", "path must not contain '.' or '..' segments"),
        ("images/../x.png", "path must not contain '.' or '..' segments"),
        ("..", "path must not contain '.' or '..' segments"),
    ],
)
def test_invalid_keys_are_bad_user_input(key: str, says: str) -> None:
    with pytest.raises(BadUserInput) as refused:
        check_key(key)
    assert refused.value.message == says


@pytest.mark.parametrize("prefix", ["", "images", "images/", "images/Song/s1/"])
def test_a_folder_may_be_empty_or_end_in_a_slash(prefix: str) -> None:
    assert check_key(prefix, folder=True) == prefix


@pytest.mark.parametrize("prefix", ["/images/", "images//", "images/../", "images/./x/"])
def test_a_folder_is_otherwise_a_key(prefix: str) -> None:
    with pytest.raises(BadUserInput):
        check_key(prefix, folder=True)


def test_the_error_names_what_was_checked() -> None:
    with pytest.raises(BadUserInput, match=r"^Song\.coverArtPath must not start with '/'$"):
        check_key("/x", what="Song.coverArtPath")


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        (None, "file"),
        ("", "file"),
        ("...", "file"),
        ("cover.png", "cover.png"),
        ("my cover (1).png", "my-cover-1-.png"),
        ("héllo wörld.JPG", "hello-world.JPG"),  # accents dropped, case kept
        ("../../etc/passwd", "passwd"),  # folders, POSIX or Windows, are dropped
        ("C:\\Users\\x\\evil.exe", "evil.exe"),
        (".hidden", "hidden"),
        ("日本.jpg", "file.jpg"),  # nothing safe left of the stem: the extension stays
        ("-_-.png", "file.png"),
        ("x.tar.gz", "x.tar.gz"),
    ],
)
def test_file_names_are_made_safe(name: str | None, safe: str) -> None:
    assert safe_file_name(name) == safe


def test_a_long_name_keeps_its_extension() -> None:
    safe = safe_file_name("a" * 200 + ".png")
    assert len(safe) == MAX_FILE_NAME
    assert safe == "a" * (MAX_FILE_NAME - 4) + ".png"


def test_a_long_name_without_a_short_extension_is_cut() -> None:
    assert safe_file_name("a" * 200) == "a" * MAX_FILE_NAME
    assert safe_file_name("a" * 200 + "." + "b" * 11) == ("a" * 200 + "." + "b" * 11)[:100]


def test_a_record_owns_a_folder_per_model() -> None:
    assert record_folder("images/", "Song", "s1") == "images/Song/s1/"
    assert record_folder("images/", "PhotoAlbum", "s1") == "images/PhotoAlbum/s1/"
    assert record_folder("", "Song", "s1") == "Song/s1/"


@pytest.mark.parametrize("record_id", ["..", ".", ""])
def test_a_record_id_that_is_no_folder_name_is_refused(record_id: str) -> None:
    with pytest.raises(BadUserInput, match=r"^record folder "):
        record_folder("images/", "Song", record_id)


def test_each_upload_gets_a_new_key_in_the_folder() -> None:
    first = new_attachment_key("images/Song/s1/", "my cover.png")
    second = new_attachment_key("images/Song/s1/", "my cover.png")
    assert first != second  # a replacement never overwrites what a reader may be reading
    for key in (first, second):
        assert re.fullmatch(r"images/Song/s1/[0-9a-f]{32}-my-cover\.png", key), key
    assert new_attachment_key("images/Song/s1/", None).endswith("-file")


@pytest.mark.parametrize(
    ("key", "inside"),
    [
        ("images/Song/s1/x.png", True),
        ("images/Song/s1/deep/x.png", True),
        ("images/Song/s1/", False),  # the folder itself holds no file
        ("images/Song/s10/x.png", False),
        ("images/Song/x.png", False),
    ],
)
def test_in_folder(key: str, inside: bool) -> None:
    assert in_folder(key, "images/Song/s1/") is inside
