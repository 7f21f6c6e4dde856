"""Hostile HTTP input: each gets a 4xx GraphQL error with a code, never a 500 or a traceback."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from graphql_files.app import create_app
from graphql_files.services.wiring import Services

from ..helpers import FULL_ACCESS, PNG, PREFLIGHT, GraphQLClient, Json, make_settings

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON_BODY = {"content-type": "application/json"}
FILTER_QUERY = "query($f: ModelSongFilterInput) { listSongs(filter: $f) { items { id } } }"
UPLOAD = """mutation($f: Upload!) {
  uploadFile(input: {path: "images/a.png", file: $f}) { path } }"""


def nested_objects(levels: int) -> str:
    """``levels`` objects inside one another, as JSON text (json.dumps would recurse)."""
    return '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1)


def refusal(response: httpx.Response, status: int = 400, code: str = "BAD_USER_INPUT") -> str:
    """The message of a request refused before execution, after checking its shape."""
    assert response.status_code == status, response.text
    body: Json = response.json()
    assert "data" not in body, body
    assert [e["extensions"]["code"] for e in body["errors"]] == [code], body
    message: str = body["errors"][0]["message"]
    return message


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Refusals are not bugs: nothing may be logged at ERROR level while they are answered."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@pytest.mark.parametrize(
    "body", [b"null", b'"just a string"', b"[]", b'[{"query": "{ a }"}]', b"42"]
)
async def test_a_body_that_is_not_a_json_object(client: GraphQLClient, body: bytes) -> None:
    for accept in (GRAPHQL_RESPONSE, "application/json"):
        response = await client.http.post(
            "/graphql", content=body, headers={**JSON_BODY, "accept": accept}
        )
        assert "must be a JSON object" in refusal(response)


async def test_a_body_that_is_not_utf8(client: GraphQLClient) -> None:
    response = await client.http.post("/graphql", content=b"\xff\xfe{", headers=JSON_BODY)
    assert "JSON" in refusal(response)


async def test_deeply_nested_json_is_refused_naming_the_limit(client: GraphQLClient) -> None:
    brackets = await client.http.post("/graphql", content=b"[" * 100_000, headers=JSON_BODY)
    assert "64" in refusal(brackets)

    variables = '{"f": ' + nested_objects(3000) + "}"
    body = '{"query": ' + json.dumps(FILTER_QUERY) + ', "variables": ' + variables + "}"
    posted = await client.http.post("/graphql", content=body, headers=JSON_BODY)
    assert "64" in refusal(posted)

    got = await client.http.get("/graphql", params={"query": FILTER_QUERY, "variables": variables})
    assert "64" in refusal(got)


async def test_the_json_depth_limit_is_a_setting(s3_endpoint: str, bucket: str) -> None:
    settings = make_settings(s3_endpoint, bucket, max_json_depth=6)
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=FULL_ACCESS
        ) as http:

            async def post(filter_json: str) -> httpx.Response:
                body = (
                    f'{{"query": {json.dumps(FILTER_QUERY)}, "variables": {{"f": {filter_json}}}}}'
                )
                return await http.post("/graphql", content=body, headers=JSON_BODY)

            # the body, "variables", "f", "and", its item, "name": six levels, the limit
            within = await post('{"and": [{"name": {"eq": "x"}}]}')
            assert within.status_code == 200, within.text
            assert within.json() == {"data": {"listSongs": {"items": []}}}
            over = await post('{"and": [{"name": {"between": ["a", "b"]}}]}')
            assert "nested deeper than 6" in refusal(over)


def upload_operations(variables: Json) -> str:
    return json.dumps({"query": UPLOAD, "variables": variables})


@pytest.mark.parametrize(
    ("operations", "files_map", "says"),
    [
        ('{"query": "{ __typename }"}', "[1,2]", "map"),
        ('{"query": "{ __typename }"}', '{"0": [1]}', "map"),
        ('{"query": "{ __typename }"}', '{"0": "variables.f"}', "map"),
        ('{"query": "{ __typename }"}', '{"9": ["variables.f"]}', "9"),
        ("null", "{}", "operations"),
        ('"a string"', "{}", "operations"),
        ("[" * 100_000, "{}", "64"),
        (upload_operations({"f": None}), '{"0": ["variables.f.0.1"]}', "variables.f.0.1"),
        (upload_operations({"f": [None]}), '{"0": ["variables.f.0.1"]}', "variables.f.0.1"),
        (upload_operations({"f": [None]}), '{"0": ["variables.f.5"]}', "variables.f.5"),
        (upload_operations({"f": None}), '{"0": ["variables.g.x"]}', "variables.g.x"),
        (upload_operations({"f": None}), '{"0": ["query"]}', "query"),
    ],
)
async def test_malformed_multipart_requests(
    client: GraphQLClient, operations: str, files_map: str, says: str
) -> None:
    response = await client.http.post(
        "/graphql",
        data={"operations": operations, "map": files_map},
        files={"0": ("a.png", PNG, "image/png")},
        headers=PREFLIGHT,
    )
    assert says in refusal(response)


@pytest.mark.parametrize(
    "accept",
    [
        "application/json",
        GRAPHQL_RESPONSE,
        'multipart/mixed;boundary="graphql";subscriptionSpec=1.0,application/json',
    ],
)
async def test_subscriptions_over_http_are_refused(client: GraphQLClient, accept: str) -> None:
    response = await client.post("subscription { onCreateSong { id } }", headers={"accept": accept})
    assert "websocket" in refusal(response)
    got = await client.http.get(
        "/graphql",
        params={"query": "subscription { onCreateSong { id } }"},
        headers={"accept": accept},
    )
    assert "websocket" in refusal(got)


async def test_queries_and_mutations_still_run_over_http(client: GraphQLClient) -> None:
    created = await client.data('mutation { createSong(input: {id: "s1", name: "A"}) { id } }')
    assert created == {"createSong": {"id": "s1"}}
    listed = await client.http.get("/graphql", params={"query": "{ listSongs { items { id } } }"})
    assert listed.json() == {"data": {"listSongs": {"items": [{"id": "s1"}]}}}


async def test_error_messages_do_not_echo_unbounded_input(client: GraphQLClient) -> None:
    huge = "image/" + "a" * 100_000
    for content_type in (huge, "x" * 100_000):
        error = await client.error(
            "mutation($t: String!) { createUploadUrl("
            'input: {path: "images/a.png", contentType: $t, size: 10}) { url } }',
            {"t": content_type},
        )
        assert len(json.dumps(error)) < 1000, error["message"][:200]
        assert error["extensions"]["code"] in ("BAD_USER_INPUT", "UNSUPPORTED_MEDIA_TYPE")


ATTACH_UPLOAD = """mutation($f: Upload!) {
  attachSongCoverArt(input: {songId: "s", file: $f}) { version } }"""


@pytest.mark.parametrize("value", ["hello", {}, [1, 2], 7, True], ids=repr)
@pytest.mark.parametrize("query", [UPLOAD, ATTACH_UPLOAD], ids=["uploadFile", "workflow"])
async def test_an_upload_variable_holds_only_a_file_part(
    client: GraphQLClient, services: Services, query: str, value: object
) -> None:
    """Issue 20.6: a JSON value in an ``Upload!`` variable reached the resolver and answered
    INTERNAL_SERVER_ERROR with a traceback in the log."""
    await client.data('mutation { createSong(input: {id: "s", name: "n"}) { id } }')
    body = await client.run(query, {"f": value})
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"], body
    assert "multipart" in body["errors"][0]["message"]
    song = await client.data('{ getSong(id: "s") { version coverArtPath } }')
    assert song["getSong"] == {"version": 1, "coverArtPath": None}
    assert [o.path async for o in services.files.iterate("")] == []


@pytest.mark.parametrize("literal", ['"abc"', "{a: 1}", "[1, 2]", "3"])
async def test_an_upload_cannot_be_written_in_the_query(
    client: GraphQLClient, literal: str
) -> None:
    body = await client.run(
        f'mutation {{ uploadFile(input: {{path: "images/a.png", file: {literal}}}) {{ path }} }}'
    )
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"], body
