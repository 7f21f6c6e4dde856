"""The lean execution path answers exactly as the paths it replaces: strawberry's extension
runner (request errors), strawberry's HTTP view (the JSON fast path), and graphql-core's own
field completion (the executor's inline leaves and objects)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import strawberry
from graphql import ASTValidationRule
from pymongo import AsyncMongoClient
from starlette.applications import Starlette
from strawberry.extensions import AddValidationRules, MaxTokensLimiter
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.file_uploads import Upload
from strawberry.schema.config import StrawberryConfig
from strawberry.types.execution import PreExecutionError

from graphql_files.adapters.mongo import Collection
from graphql_files.api.engine import execution
from graphql_files.api.engine._compat import StrawberryGraphQLCoreExecutionContext
from graphql_files.api.engine.budget import start_budget
from graphql_files.api.engine.cost import query_cost_rule
from graphql_files.api.engine.error_shaping import shape
from graphql_files.api.engine.execution import LeanSchema, PreparedCache
from graphql_files.api.engine.validation import depth_limit_rule
from graphql_files.api.http.view import GraphQLView
from graphql_files.api.schema.build import build_schema, root_types
from graphql_files.api.schema.types import DATETIME_SCALAR, UPLOAD_SCALAR
from graphql_files.domain.declaration import BUILTIN, PHOTO_ALBUM, SONG
from graphql_files.services.records import Records
from graphql_files.services.wiring import Services
from graphql_files.settings import Settings

from ..helpers import GraphQLClient, client_of, make_settings, schema_of
from ..stores import SessionStores

LIST = "{ listSongs { nextToken } }"
# Operations refused before execution, and why; each is sent as it is to both paths.
REQUEST_ERRORS: dict[str, dict[str, Any]] = {
    "syntax": {"query": "{ listSongs {"},
    "unknown field": {"query": "{ listSongs { nosuch } }"},
    "too deep": {
        "query": "{ __schema { types { fields { type { ofType { ofType { ofType { "
        "ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } } }"
    },
    "aliases": {
        "query": "{ " + " ".join(f"a{i}: listSongs {{ nextToken }}" for i in range(40)) + " }"
    },
    "tokens": {"query": "{ listSongs { " + "nextToken " * 6000 + "} }"},
    "cost": {
        "query": "{ listPhotoAlbums(limit: 1000) { items { images { properties { size } } } } }"
    },
    "unknown operation": {"query": "query A " + LIST, "operationName": "B"},
    "no operation": {"query": "fragment F on Query { listSongs { nextToken } }"},
    "variables": {
        "query": "query($l: Int) { listSongs(limit: $l) { nextToken } }",
        "variables": {"l": "many"},
    },
    "missing variable": {"query": "query($l: Int!) { listSongs(limit: $l) { nextToken } }"},
}


class StrawberrysExecution(StrawberryGraphQLCoreExecutionContext):
    """strawberry's own executor, with nothing of ours but the per-file budget the resolvers
    spend from (started for each execution, as ours starts it)."""

    limit = 20_000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        start_budget(self.limit)

    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        start_budget(self.limit)
        return executor


def reference_schema(settings: Settings) -> strawberry.Schema:
    """The schema as strawberry alone would run it: its own runner and executor (none of the
    engine's code: no prepared operations, no compiled queries, no inline completion), with
    the token limit and our rules as extensions."""
    roots = root_types(BUILTIN)
    rules: list[type[ASTValidationRule]] = [
        depth_limit_rule(settings.max_query_depth),
        max_aliases_rule(settings.max_aliases),
        query_cost_rule(settings.max_query_cost),
    ]
    return strawberry.Schema(
        query=roots.query,
        mutation=roots.mutation,
        subscription=roots.subscription,
        extensions=[
            lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
            lambda: AddValidationRules(rules),
        ],
        execution_context_class=type(
            "Reference", (StrawberrysExecution,), {"limit": settings.max_file_work}
        ),
        config=StrawberryConfig(scalar_map={datetime: DATETIME_SCALAR, Upload: UPLOAD_SCALAR}),
    )


def test_a_lean_schema_refuses_extensions_it_would_skip(settings: Settings) -> None:
    roots = root_types(BUILTIN)
    with pytest.raises(ValueError, match="extensions"):
        LeanSchema(query=roots.query, extensions=[lambda: MaxTokensLimiter(max_token_count=5)])


@pytest.mark.parametrize("case", [*REQUEST_ERRORS, "missing query"])
async def test_request_errors_are_strawberrys(settings: Settings, case: str) -> None:
    lean = build_schema(settings)
    reference = reference_schema(settings)
    request = REQUEST_ERRORS.get(case, {"query": None})

    async def settled(schema: strawberry.Schema) -> Any:
        try:
            result = await schema.execute(
                request["query"],
                variable_values=request.get("variables"),
                operation_name=request.get("operationName"),
            )
        except Exception as exc:
            return ("raised", type(exc).__name__, str(exc))
        return (result.data, [shape(e).formatted for e in result.errors or ()])

    assert await settled(lean) == await settled(reference)


@pytest.mark.parametrize(
    "query",
    [
        "subscription { onUpdateSong { nosuch } }",
        "subscription {",
        "query { listSongs { nextToken } }",
        "subscription S { onUpdateSong { id } }",
    ],
)
async def test_websocket_refusals_are_strawberrys(settings: Settings, query: str) -> None:
    """What a websocket handler gets first from ``subscribe``: the same kind of result (a
    ``PreExecutionError`` is sent as an ``error`` message) with the same errors."""

    async def first(schema: strawberry.Schema) -> Any:
        stream = await schema.subscribe(query, operation_name="T" if "S " in query else None)
        result = await anext(aiter(stream))
        await stream.aclose()
        return (
            isinstance(result, PreExecutionError),
            [shape(e).formatted for e in result.errors or ()],
        )

    assert await first(build_schema(settings)) == await first(reference_schema(settings))


# --- the HTTP fast path and strawberry's own path --------------------------------------------


HTTP_CASES: dict[str, tuple[bytes, dict[str, str]]] = {
    **{name: (json.dumps(body).encode(), {}) for name, body in REQUEST_ERRORS.items()},
    "bad json": (b'{"query": ', {}),
    "not utf-8": (b'{"query": "\xff"}', {}),
    "an array": (b'[{"query": "{ listSongs { nextToken } }"}]', {}),
    "a number": (b"5", {}),
    "too deep json": (
        b'{"query": "{ listSongs { nextToken } }", "variables": {"a": '
        + b"[" * 300
        + b"]" * 300
        + b"}}",
        {},
    ),
    "query not a string": (b'{"query": 5}', {}),
    "variables not an object": (b'{"query": "{ listSongs { nextToken } }", "variables": [1]}', {}),
    "extensions not an object": (b'{"query": "{ listSongs { nextToken } }", "extensions": 1}', {}),
    "operationName not a string": (
        b'{"query": "query A { listSongs { nextToken } }", "operationName": ["A"]}',
        {},
    ),
    "no query": (b"{}", {}),
    "a subscription": (b'{"query": "subscription { onUpdateSong { id } }"}', {}),
    "not found": (
        b'{"query": "mutation { updateSong(input: {id: \\"nope\\", name: \\"x\\"}) { id } }"}',
        {},
    ),
    "ok": (json.dumps({"query": LIST}).encode(), {}),
    "graphql-response+json": (
        json.dumps(REQUEST_ERRORS["unknown field"]).encode(),
        {"accept": "application/graphql-response+json"},
    ),
    "no credentials": (json.dumps({"query": LIST}).encode(), {"x-api-key": "wrong"}),
}


@contextmanager
def strawberrys_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every request through strawberry's ``run`` instead of the fast path."""
    with monkeypatch.context() as patch:
        patch.setattr(GraphQLView, "_takes_fast_path", lambda self, method, headers: False)
        yield


@pytest.mark.parametrize("case", HTTP_CASES)
async def test_the_fast_path_answers_as_strawberrys(
    client: GraphQLClient, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    body, headers = HTTP_CASES[case]
    taken = 0
    run_json = GraphQLView._run_json

    async def counted(self: GraphQLView, request: Any, media_type: str) -> Any:
        nonlocal taken
        taken += 1
        return await run_json(self, request, media_type)

    monkeypatch.setattr(GraphQLView, "_run_json", counted)

    async def answer() -> tuple[int, str, Any]:
        response = await client.http.post(
            "/graphql", content=body, headers={"content-type": "application/json", **headers}
        )
        return response.status_code, response.headers["content-type"], response.json()

    fast = await answer()
    assert taken == 1  # the fast path did answer
    with strawberrys_path(monkeypatch):
        slow = await answer()
    assert taken == 1
    assert fast == slow
    if case != "ok":
        assert fast[2]["errors"], fast


async def test_an_unexpected_error_is_masked_alike_on_both_paths(
    client: GraphQLClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: Records, *args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(Records, "get", broken)
    fast = await client.run('{ getSong(id: "x") { id } }')
    with strawberrys_path(monkeypatch):
        slow = await client.run('{ getSong(id: "x") { id } }')
    assert fast == slow
    assert fast["errors"][0]["extensions"] == {"code": "INTERNAL_SERVER_ERROR"}


# --- inline completion and graphql-core's own ------------------------------------------------


@contextmanager
def graphql_cores_completion(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every operation through graphql-core's executor and its own field completion: none
    compiled (documents prepared afresh, none compiled)."""
    with monkeypatch.context() as patch:
        patch.setattr(execution, "compile_query", lambda *args: None)
        patch.setattr(PreparedCache, "get", lambda cache, query, name: cache._prepare(query, name))
        yield


@contextmanager
def compiled_runs(schema: LeanSchema) -> Iterator[list[str]]:
    """The path each execution took, in order (``LeanSchema.paths``)."""
    runs: list[str] = []
    before = Counter(schema.paths)
    yield runs
    for path, count in (schema.paths - before).items():
        runs += [path] * count


async def seed_anomalies(services: Services) -> None:
    """Stored documents no write of ours makes: a missing required name, a version that is
    no Int, files the storage rules refuse to sign."""
    stamp = "2026-01-01T00:00:00.000Z"
    songs = services.records.collection(SONG)
    await songs.insert_one(
        {"_id": "nameless", "version": 1, "createdAt": stamp, "updatedAt": stamp}
    )
    await songs.insert_one(
        {
            "_id": "bad-version",
            "name": "x",
            "version": "two",
            "createdAt": stamp,
            "updatedAt": stamp,
        }
    )
    await songs.insert_one(
        {
            "_id": "fine",
            "name": "ok",
            "coverArtPath": "images/Song/fine/a.png",
            "version": 3,
            "createdAt": stamp,
            "updatedAt": stamp,
        }
    )
    albums = services.records.collection(PHOTO_ALBUM)
    await albums.insert_one(
        {
            "_id": "mixed",
            "name": "m",
            "imagePaths": ["images/a/1.png", "private/b/2.png", "images/c/3.png"],
            "version": 1,
            "createdAt": stamp,
            "updatedAt": stamp,
        }
    )


# lists, arguments from variables, input objects and enums, fragments, awaited fields
LISTS = [
    "query($e: Int) { listPhotoAlbums { items { images { path url(expiresIn: $e) { url } } } } }",
    '{ listPhotoAlbums(filter: {name: {eq: "m"}}, sortDirection: DESC) { items { id } } }',
    "{ __typename listSongs(limit: 2) { items { id ...S } nextToken } } "
    "fragment S on Song { id name version }",
    "{ listSongs { items { ... on Song { name } ... { coverArt { path } } } } }",
    "{ listSongs { items { coverArt { path properties { size } } } } }",
]

ANOMALIES = [
    '{ getSong(id: "nameless") { id name } }',
    '{ getSong(id: "nameless") { id } }',
    '{ getSong(id: "none") { id name } }',
    '{ getSong(id: "fine") { __typename id n: name coverArtPath version createdAt updatedAt } }',
    '{ a: getSong(id: "fine") { id } b: getSong(id: "nameless") { name } }',
    '{ getSong(id: "fine") { coverArt { __typename path url(expiresIn: 60) { url } } } }',
    '{ getSong(id: "fine") { coverArt { properties { size } } } }',
    '{ getSong(id: "fine") { id ... on Song { name } } }',
    '{ getSong(id: "fine") { id name @include(if: false) } }',
    '{ getSong(id: "bad-version") { id version } }',
    "{ listSongs { items { id name version coverArt { path url { url expiresAt } } } } }",
    '{ getPhotoAlbum(id: "mixed") { images { path url { url expiresAt } } } }',
    '{ getPhotoAlbum(id: "mixed") { images { url(expiresIn: 0) { url } } } }',
    '{ getPhotoAlbum(id: "mixed") { images { a: url { url } b: url { expiresAt } } } }',
    '{ getSong(id: "fine") { coverArt { url { url u2: url expiresAt } } } }',
    '{ getSong(id: "fine") { coverArt { url { __typename url } } } }',
    *LISTS,
]


# queries of plain fields, answered by the compiled walk to the end, their errors included
COMPILED = {
    '{ getSong(id: "fine") { __typename id n: name coverArtPath version createdAt updatedAt } }',
    '{ getSong(id: "nameless") { id name } }',  # a null in a non-null field
    '{ getSong(id: "bad-version") { id version } }',  # a value its type refuses
    '{ getPhotoAlbum(id: "mixed") { images { path url { url expiresAt } } } }',  # refusals
    '{ a: getSong(id: "fine") { id } b: getSong(id: "nameless") { name } }',
    "{ listSongs { items { id name version coverArt { path url { url expiresAt } } } } }",
    *LISTS,
}


@pytest.mark.parametrize("query", ANOMALIES)
async def test_lean_completion_answers_as_graphql_core(
    client: GraphQLClient,
    services: Services,
    starlette_app: Starlette,
    monkeypatch: pytest.MonkeyPatch,
    query: str,
) -> None:
    await seed_anomalies(services)
    with compiled_runs(schema_of(starlette_app)) as runs:
        lean = await client.run(query)
    with graphql_cores_completion(monkeypatch):
        plain = await client.run(query)
    # URLs signed a second apart differ: compare them by shape, the rest exactly
    assert redact(lean) == redact(plain)
    if query in COMPILED:
        assert runs == ["compiled"]  # decided once: errors and all, nothing runs twice


def redact(value: Any) -> Any:
    """An answer without what changes from one second to the next: signed URLs (they carry the
    second they were signed in) and the instants they expire at, under any alias."""
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str) and "X-Amz-Signature=" in value:
        return "<signed>"
    if isinstance(value, str) and _soon(value):
        return "<instant>"
    return value


def _soon(text: str) -> bool:
    """Whether ``text`` is an instant within a day of now (an expiry; seeded instants are
    fixed, long ago)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return moment.tzinfo is not None and abs(moment - datetime.now(UTC)) < timedelta(days=1)


# mutations, compiled: fields one after another, refusals and nulls as graphql-core's
MUTATIONS = [
    'mutation { createSong(input: {id: "m1", name: "a"}) { id name version coverArt { path } } }',
    'mutation { updateSong(input: {id: "m1", name: "b", expectedVersion: 9}) { id } }',
    'mutation { a: updateSong(input: {id: "m1", name: "c"}) { __typename name version } '
    'b: deleteSong(input: {id: "none"}) { id } c: createSong(input: {id: "m1", '
    'name: "again"}) { id } }',
    "mutation($i: UpdateSongInput!) { updateSong(input: $i) { name version updatedAt } "
    'removeFile(path: "images/Song/m1/gone.png") }',
    'mutation { deleteSong(input: {id: "m1", deleteFiles: true}) { id version } '
    'createPhotoAlbum(input: {id: "m2", name: "x", imagePaths: ["images/PhotoAlbum/m2/1.png"]}) '
    "{ images { path url { expiresAt } properties { size } } } }",
]


async def test_mutations_answer_as_graphql_core(
    client: GraphQLClient,
    services: Services,
    starlette_app: Starlette,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same mutations, on the same records, compiled and through graphql-core's own
    executor: the same answers, errors and all (the records are removed in between)."""
    variables = {"i": {"id": "m1", "name": "d", "expectedVersion": 2}}

    async def answers() -> list[Any]:
        found = [redact(await client.run(m, variables)) for m in MUTATIONS]
        for model in (SONG, PHOTO_ALBUM):
            await services.records.collection(model).delete_many({})
        return found

    with compiled_runs(schema_of(starlette_app)) as runs:
        lean = await answers()
    assert runs == ["compiled"] * len(MUTATIONS)
    with graphql_cores_completion(monkeypatch):
        plain = await answers()
    assert lean == plain
    codes = [[e["extensions"]["code"] for e in body.get("errors", ())] for body in lean]
    assert codes == [[], ["CONFLICT"], ["NOT_FOUND", "CONFLICT"], [], []], lean


async def test_a_refused_url_is_reported_once(client: GraphQLClient, services: Services) -> None:
    """The inline path calls a resolver once, error or not (graphql-core's path is used only
    for what it has not resolved)."""
    await seed_anomalies(services)
    body = await client.run('{ getPhotoAlbum(id: "mixed") { images { path url { url } } } }')
    errors = body["errors"]
    assert [e["path"] for e in errors] == [["getPhotoAlbum", "images", 1, "url"]]
    assert errors[0]["extensions"]["code"] in ("FORBIDDEN", "UNAUTHENTICATED")
    images = body["data"]["getPhotoAlbum"]["images"]
    assert images[1]["url"] is None
    assert images[0]["url"]["url"].startswith("http")
    assert images[2]["url"]["url"].startswith("http")


async def test_a_query_whose_database_is_down_is_answered_once(
    stores: SessionStores, s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine decides once: with MongoDB not answering, a compiled query (``getSong``) is
    answered DATABASE_UNAVAILABLE after one database timeout, as graphql-core's path answers
    ``listSongs`` (before, the compiled path caught the error and graphql-core ran the query
    again: 1.01 s for getSong, 0.50 s for listSongs, with a 0.3 s timeout). The fault is the
    real server's own (SecantusDB's ``configureFailPoint``: every find blocks for a second)."""
    settings = make_settings(s3_endpoint, bucket, mongodb_timeout_ms=300)
    finds: list[str] = []
    real_find_one, real_find = Collection.find_one, Collection.find

    async def find_one(self: Collection, query: Any) -> Any:
        finds.append(self.name)
        return await real_find_one(self, query)

    async def find(self: Collection, query: Any, **options: Any) -> Any:
        finds.append(self.name)
        return await real_find(self, query, **options)

    assert stores.mongodb_uri is not None, "this test needs a MongoDB server with test commands"
    admin: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stores.mongodb_uri)
    async with client_of(settings) as client:
        await client.data('mutation { createSong(input: {id: "s", name: "n"}) { id } }')
        monkeypatch.setattr(Collection, "find_one", find_one)
        monkeypatch.setattr(Collection, "find", find)
        blocked = {"failCommands": ["find"], "blockConnection": True, "blockTimeMS": 1000}
        await admin.admin.command(
            {"configureFailPoint": "failCommand", "mode": "alwaysOn", "data": blocked}
        )
        try:
            for query in ('{ getSong(id: "s") { id name } }', "{ listSongs { items { id } } }"):
                finds.clear()
                body = await client.run(query)
                assert [e["extensions"]["code"] for e in body["errors"]] == [
                    "DATABASE_UNAVAILABLE"
                ], body
                assert finds == ["songs"], f"{query}: {finds}"  # asked once, not twice
        finally:
            await admin.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
            await admin.close()
