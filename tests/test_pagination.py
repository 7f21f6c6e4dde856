"""``nextToken``s: anything this server did not issue is ``BAD_USER_INPUT``, never a crash."""

from __future__ import annotations

import base64

import pytest

from graphql_files.domain import pagination
from graphql_files.errors import BadUserInput

from .helpers import GraphQLClient

DEEP = base64.urlsafe_b64encode(b"[" * 100_000).decode().rstrip("=")
DEEP_OBJECTS = base64.urlsafe_b64encode(b'{"c":' * 50_000).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [DEEP, DEEP_OBJECTS, "%%", "bm90IGpzb24", "W10", "eyJjIjoxfQ"],
    ids=["deep-arrays", "deep-objects", "not-base64", "not-json", "a-list", "no-fields"],
)
def test_a_token_this_server_did_not_issue_is_bad_user_input(token: str) -> None:
    with pytest.raises(BadUserInput, match="malformed nextToken"):
        pagination.decode(token, "query")


def test_a_token_round_trips() -> None:
    position = pagination.Position(created_at="2026-01-01T00:00:00.000Z", record_id="s1")
    assert pagination.decode(pagination.encode(position, "query"), "query") == position


async def test_a_deeply_nested_token_is_refused_over_graphql(client: GraphQLClient) -> None:
    for query in (
        "query($t: String) { listSongs(nextToken: $t) { nextToken } }",
        'query($t: String) { listFiles(input: {path: "images/", nextToken: $t}) { nextToken } }',
    ):
        error = await client.error(query, {"t": DEEP})
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert error["message"] == "malformed nextToken"
