"""HTTP as clients expect it: media types, GET, GraphiQL, limits, masking, database outages."""

from __future__ import annotations

import gc
import logging
import tracemalloc
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from graphql import get_introspection_query
from starlette.applications import Starlette

from graphql_files.api.engine.execution import MAX_CACHED_QUERY, entry_weight
from graphql_files.app import create_app
from graphql_files.services.records import Records
from graphql_files.settings import MIB

from ..helpers import FULL_ACCESS, GraphQLClient, make_settings, schema_of

GRAPHQL_RESPONSE = "application/graphql-response+json"
CREATE = 'mutation { createSong(input: {id: "s1", name: "A"}) { id } }'


async def song_count(client: GraphQLClient) -> int:
    return len((await client.data("{ listSongs { items { id } } }"))["listSongs"]["items"])


async def test_graphql_response_json_success(client: GraphQLClient) -> None:
    response = await client.post(
        "{ listSongs { items { id } } }", headers={"accept": GRAPHQL_RESPONSE}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == GRAPHQL_RESPONSE
    assert response.json() == {"data": {"listSongs": {"items": []}}}


@pytest.mark.parametrize(
    "query",
    ["{ listSongs { nosuch } }", "{ listSongs {", '{ listSongs(limit: "x") { nextToken } }'],
)
async def test_request_errors_are_4xx_without_data(client: GraphQLClient, query: str) -> None:
    response = await client.post(query, headers={"accept": GRAPHQL_RESPONSE})
    assert response.status_code == 400
    assert response.headers["content-type"] == GRAPHQL_RESPONSE
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # legacy application/json: 200, and still no data
    legacy = await client.post(query, headers={"accept": "application/json"})
    assert legacy.status_code == 200
    assert legacy.headers["content-type"] == "application/json"
    assert "data" not in legacy.json()


async def test_bad_variables_are_request_errors(client: GraphQLClient) -> None:
    response = await client.post(
        "query($l: Int) { listSongs(limit: $l) { nextToken } }",
        {"l": "ten"},
        headers={"accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_field_errors_keep_200_and_data(client: GraphQLClient) -> None:
    response = await client.post(
        'mutation { deleteSong(input: {id: "missing"}) { id } }',
        headers={"accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"deleteSong": None}
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert body["errors"][0]["path"] == ["deleteSong"]


async def test_accept_negotiation(client: GraphQLClient) -> None:
    either = await client.post(
        "{ listSongs { nextToken } }", headers={"accept": f"application/json, {GRAPHQL_RESPONSE}"}
    )
    assert either.headers["content-type"] == GRAPHQL_RESPONSE
    anything = await client.post("{ listSongs { nextToken } }", headers={"accept": "*/*"})
    assert anything.headers["content-type"] == "application/json"
    refused = await client.post("{ listSongs { nextToken } }", headers={"accept": "text/csv"})
    assert refused.status_code == 406
    assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_get_runs_queries_but_not_mutations(client: GraphQLClient) -> None:
    response = await client.http.get("/graphql", params={"query": "{ listSongs { nextToken } }"})
    assert response.status_code == 200
    assert response.json() == {"data": {"listSongs": {"nextToken": None}}}
    refused = await client.http.get("/graphql", params={"query": CREATE})
    assert refused.status_code in (400, 405)
    assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await song_count(client) == 0


async def test_graphiql_on_a_browser_get(client: GraphQLClient) -> None:
    response = await client.http.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


async def test_malformed_bodies(client: GraphQLClient) -> None:
    bad_json = await client.http.post(
        "/graphql", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert bad_json.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    plain = await client.http.post(
        "/graphql", content=b"{ a }", headers={"content-type": "text/plain"}
    )
    assert plain.status_code == 400
    assert plain.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_body_limit_declared_and_streamed(client: GraphQLClient) -> None:
    big_name = "x" * (1024 * 1024)
    response = await client.post(CREATE.replace('"A"', f'"{big_name}"'))
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"

    # no Content-Length: the limit is counted as the body streams in
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "' + b" " * 600_000
        yield b" " * 600_000 + b'{ listSongs { nextToken } }"}'

    streamed = await client.http.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert streamed.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert await song_count(client) == 0


def nested_type_query(levels: int) -> str:
    inner = "name"
    for _ in range(levels):
        inner = f"ofType {{ {inner} }}"
    return f'{{ __type(name: "Song") {{ fields {{ type {{ {inner} }} }} }} }}'


async def test_depth_limit_counts_introspection(client: GraphQLClient) -> None:
    error = await client.error(nested_type_query(20))
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "limit is 15" in error["message"]
    ok = await client.data(nested_type_query(5))
    assert ok["__type"]["fields"]


async def test_depth_limit_follows_fragments(client: GraphQLClient) -> None:
    query = (
        "query Deep { __schema { types { ...F } } } "
        + "fragment F on __Type { fields { type { ...G } } } "
        + "fragment G on __Type { "
        + "ofType { " * 12
        + "name"
        + " }" * 12
        + " }"
    )
    error = await client.error(query)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "Deep is nested" in error["message"]


async def test_full_introspection_query_is_allowed(client: GraphQLClient) -> None:
    data = await client.data(
        get_introspection_query(descriptions=True, input_value_deprecation=True)
    )
    names = {t["name"] for t in data["__schema"]["types"]}
    assert {"Song", "PhotoAlbum", "ModelSongFilterInput", "ModelSongConnection"} <= names


async def test_alias_limit(client: GraphQLClient) -> None:
    query = "{ " + " ".join(f"a{n}: listSongs {{ nextToken }}" for n in range(31)) + " }"
    error = await client.error(query)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "aliases" in error["message"]


async def test_token_limit(client: GraphQLClient) -> None:
    query = "{ listSongs { " + "nextToken " * 6000 + "} }"
    error = await client.error(query)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "tokens" in error["message"]


async def test_prepared_operations_are_reused(
    client: GraphQLClient, starlette_app: Starlette
) -> None:
    schema = schema_of(starlette_app)
    query = "query CacheProbe { listSongs(limit: 7) { nextToken } }"
    await client.data(query)
    hits, misses = schema.prepared.hits, schema.prepared.misses
    for _ in range(3):
        await client.data(query)
    assert schema.prepared.hits == hits + 3
    assert schema.prepared.misses == misses  # parsed and validated once


async def test_a_request_error_is_answered_alike_and_never_kept(
    client: GraphQLClient, starlette_app: Starlette
) -> None:
    schema = schema_of(starlette_app)
    kept = len(schema.prepared)
    answers = [await client.error("{ listSongs { nosuchfield } }") for _ in range(3)]
    assert answers[0] == answers[1] == answers[2]
    assert answers[0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "nosuchfield" in answers[0]["message"]
    assert len(schema.prepared) == kept


async def test_no_caller_can_fill_the_prepared_cache(
    client: GraphQLClient, starlette_app: Starlette
) -> None:
    """Issue 20.2: 300 unauthenticated 1 MiB requests (a comment, one astral character) took the
    server from 145 MB to 2.59 GB: about 8 MB kept each, so 24 of them would keep about 190 MB
    (tracemalloc makes each slow: 24 are enough). Now nothing past 64 KiB of text, and no
    request error, is kept, and what is kept is bounded in bytes."""
    schema = schema_of(starlette_app)
    anonymous = {"x-api-key": "", "authorization": ""}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(12):
            big = f"{{ __typename }} #😀<i>{n}" + "x" * 1_040_000
            await client.post(big, headers=anonymous)
            await client.post(big.replace("__typename", "nosuchfield"), headers=anonymous)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 20 * MIB, f"{kept / MIB:.0f} MiB kept after 24 requests of 4 MiB of text each"
    assert all(len(query) <= MAX_CACHED_QUERY for query, _ in schema.prepared._entries)

    schema.prepared.max_bytes = 20 * entry_weight("{ a: __typename }")
    for n in range(100):  # distinct small queries that validate: the oldest make way
        await client.data(f"{{ a{n}: __typename }}")
    assert schema.prepared.bytes <= schema.prepared.max_bytes
    assert len(schema.prepared) <= 20


async def test_unexpected_errors_are_masked_and_logged(
    client: GraphQLClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(self: Records, *args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(Records, "get", broken)  # fault injection: a bug in a service
    with caplog.at_level(logging.ERROR, logger="graphql_files.errors"):
        error = await client.error('{ getSong(id: "x") { id } }')
    assert error["message"] == "Internal server error"
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}
    assert "secret" not in str(error)
    assert any("secret internals" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_database_unreachable(s3_endpoint: str, bucket: str) -> None:
    settings = make_settings(
        s3_endpoint,
        bucket,
        mongodb_uri="mongodb://127.0.0.1:9/?directConnection=true",
        mongodb_timeout_ms=300,
    )
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=FULL_ACCESS
        ) as http:
            client = GraphQLClient(http)
            for query in ('{ getSong(id: "x") { id } }', "{ listSongs { nextToken } }", CREATE):
                error = await client.error(query)
                assert error["extensions"]["code"] == "DATABASE_UNAVAILABLE"
                assert "Traceback" not in error["message"]
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["mongodb"] != "ok"
            assert ready.json()["s3"] == "ok"
            assert (await http.get("/healthz")).status_code == 200


async def test_readyz_when_everything_answers(client: GraphQLClient) -> None:
    response = await client.http.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert (body["ready"], body["mongodb"], body["s3"]) == (True, "ok", "ok")
    assert body["events"]["backend"] == "in process"
