"""The error helpers: what a message may quote of a user's input."""

from __future__ import annotations

from graphql_files.errors import excerpt


def test_a_short_value_is_quoted_whole() -> None:
    assert excerpt("image/png") == "'image/png'"


def test_a_long_value_is_cut_with_its_length() -> None:
    quoted = excerpt("x" * 100_000)
    assert quoted == "'" + "x" * 80 + "…' (100000 characters)"
    assert excerpt("abcdef", limit=3) == "'abc…' (6 characters)"


def test_control_characters_are_escaped() -> None:
    assert excerpt("a\r\nb\x00") == "'a\\r\\nb\\x00'"
