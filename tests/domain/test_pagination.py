"""``nextToken``s: anything this server did not issue is ``BAD_USER_INPUT``, never a crash."""

from __future__ import annotations

import base64

import pytest

from graphql_files.domain import pagination
from graphql_files.errors import BadUserInput

from ..helpers import DEEP_NEXT_TOKEN

DEEP_OBJECTS = base64.urlsafe_b64encode(b'{"c":' * 50_000).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [DEEP_NEXT_TOKEN, DEEP_OBJECTS, "%%", "bm90IGpzb24", "W10", "eyJjIjoxfQ"],
    ids=["deep-arrays", "deep-objects", "not-base64", "not-json", "a-list", "no-fields"],
)
def test_a_token_this_server_did_not_issue_is_bad_user_input(token: str) -> None:
    with pytest.raises(BadUserInput, match="malformed nextToken"):
        pagination.decode(token, "query")


def test_a_token_round_trips() -> None:
    position = pagination.Position(created_at="2026-01-01T00:00:00.000Z", record_id="s1")
    assert pagination.decode(pagination.encode(position, "query"), "query") == position


def test_a_token_is_bound_to_its_query() -> None:
    token = pagination.encode(pagination.Position("2026-01-01T00:00:00.000Z", "s1"), "query A")
    with pytest.raises(BadUserInput, match="belongs to a different query"):
        pagination.decode(token, "query B")


@pytest.mark.parametrize(("limit", "used"), [(None, 100), (1, 1), (1000, 1000)])
def test_limits_within_range(limit: int | None, used: int) -> None:
    assert pagination.check_limit(limit) == used


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_limits_out_of_range(limit: int) -> None:
    with pytest.raises(BadUserInput, match=f"limit must be between 1 and 1000, got {limit}"):
        pagination.check_limit(limit)
