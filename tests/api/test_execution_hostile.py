"""Counter-examples hunted on the lean paths: random selections answered by the lean schema and
by strawberry's own (graphql-core's executor, strawberry's resolver wrappers and extension
runner) must agree, whatever a client selects, aliases, spreads or skips."""

from __future__ import annotations

import asyncio
import gc
import json
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry
from asgi_lifespan import LifespanManager
from graphql import OperationDefinitionNode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette

from graphql_files.api.engine import budget
from graphql_files.api.http.view import GraphQLView
from graphql_files.api.schema.build import build_schema
from graphql_files.app import create_app
from graphql_files.domain.declaration import PHOTO_ALBUM, SONG
from graphql_files.services.wiring import Services
from graphql_files.settings import Settings

from ..helpers import (
    API_KEY,
    FULL_ACCESS,
    GraphQLClient,
    drop_test_database,
    make_settings,
    schema_of,
    services_in,
)
from .test_execution import graphql_cores_completion, redact, reference_schema, seed_anomalies


def view_of(app: Starlette) -> GraphQLView:
    body_limit: Any = app.routes[0].app  # type: ignore[attr-defined]
    view: GraphQLView = body_limit.app
    return view


@contextmanager
def strawberrys_schema(app: Starlette, settings: Settings) -> Iterator[None]:
    """Requests executed by a plain strawberry schema (the schema as it was before the lean
    path), through strawberry's own view."""
    view = view_of(app)
    lean, fast = view.schema, GraphQLView._takes_fast_path
    view.schema = reference_schema(settings)
    GraphQLView._takes_fast_path = lambda self, method, headers: False  # type: ignore[method-assign]
    try:
        yield
    finally:
        view.schema = lean
        GraphQLView._takes_fast_path = fast  # type: ignore[method-assign]


# --- random selections ----------------------------------------------------------------------

# aliases that merge a field with itself (valid) far more often than they clash (refused)
ALIASES = st.sampled_from(["", "", "", "", "", "a_{}: ", "b_{}: ", "{}: ", "a: "])
SIGNED_URL = ["url", "expiresAt", "__typename"]
URL_ARGS = st.shared(  # one per operation: fields of one name with other arguments conflict
    st.sampled_from(
        [
            "",
            "(expiresIn: 60)",
            "(expiresIn: 0)",
            '(contentDisposition: "inline")',
            "(expiresIn: $e)",
        ]
    ),
    key="url arguments",
)
DIRECTIVES = st.sampled_from(
    ["", "", "", " @include(if: true)", " @skip(if: true)", " @include(if: $yes)"]
)


@st.composite
def selection(draw: st.DrawFn, type_name: str, depth: int = 0) -> str:
    fields = draw(st.lists(field(type_name, depth), min_size=1, max_size=5))
    return "{ " + " ".join(fields) + " }"


@st.composite
def field(draw: st.DrawFn, type_name: str, depth: int) -> str:
    directive = draw(DIRECTIVES)
    leaves, objects = TYPES[type_name]
    names = [*leaves, *objects]
    name = draw(st.sampled_from(names))
    alias = draw(ALIASES).format(name)
    if name in objects and depth < 3:
        inner, args = objects[name]
        arguments = draw(URL_ARGS) if args else ""
        text = f"{alias}{name}{arguments}{directive} {draw(selection(inner, depth + 1))}"
    elif name in objects:
        text = "__typename"
    else:
        text = f"{alias}{name}{directive}"
    if draw(st.integers(0, 5)) == 0:  # now and then inside an inline fragment
        condition = draw(st.sampled_from(["", f"on {type_name} "]))
        text = f"... {condition}{draw(DIRECTIVES).strip()} {{ {text} }}"
    return text


TYPES: dict[str, tuple[list[str], dict[str, tuple[str, bool]]]] = {
    "Song": (
        ["id", "name", "coverArtPath", "owner", "version", "createdAt", "__typename"],
        {"coverArt": ("FileRef", False)},
    ),
    "PhotoAlbum": (
        ["id", "name", "imagePaths", "version", "updatedAt", "__typename"],
        {"images": ("FileRef", False)},
    ),
    "FileRef": (["path", "__typename"], {"url": ("SignedUrl", True)}),
    "SignedUrl": (SIGNED_URL, {}),
    "ModelSongConnection": (["nextToken", "__typename"], {"items": ("Song", False)}),
    "ModelPhotoAlbumConnection": (["nextToken"], {"items": ("PhotoAlbum", False)}),
}
ROOTS = st.sampled_from(
    [
        ('getSong(id: "fine")', "Song"),
        ('getSong(id: "nameless")', "Song"),
        ('getSong(id: "bad-version")', "Song"),
        ('getSong(id: "private")', "Song"),
        ("getSong(id: $id)", "Song"),
        ('getPhotoAlbum(id: "mixed")', "PhotoAlbum"),
        ('getPhotoAlbum(id: "empty")', "PhotoAlbum"),
        ("listSongs(limit: 3)", "ModelSongConnection"),
        ("listPhotoAlbums", "ModelPhotoAlbumConnection"),
    ]
)


@st.composite
def operations(draw: st.DrawFn) -> str:
    roots = []
    for n in range(draw(st.integers(1, 3))):
        root, type_name = draw(ROOTS)
        alias = f"r{n}: " if n else draw(ALIASES).format(root.partition("(")[0])
        roots.append(f"{alias}{root} {draw(selection(type_name))}")
    body = " ".join(roots)
    used = [d for name, d in DECLARATIONS.items() if f"${name})" in body]
    return f"query{'(' + ', '.join(used) + ')' if used else ''} {{ {body} }}"


DECLARATIONS = {"id": "$id: ID!", "e": "$e: Int", "yes": "$yes: Boolean!"}


VARIABLES = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["fine", "nameless", "mixed", "none"]),
        "e": st.sampled_from([None, 30, 0]),
        "yes": st.booleans(),
    }
)


async def seed(services: Services) -> None:
    await seed_anomalies(services)
    stamp = "2026-01-01T00:00:00.000Z"
    await services.records.collection(SONG).insert_one(
        {
            "_id": "private",
            "name": "p",
            "coverArtPath": "private/x/a.png",
            "version": 1,
            "createdAt": stamp,
            "updatedAt": stamp,
        }
    )
    await services.records.collection(PHOTO_ALBUM).insert_one(
        {"_id": "empty", "name": "e", "version": 1, "createdAt": stamp, "updatedAt": stamp}
    )


def nulled_ancestor(data: Any, path: list[Any]) -> list[Any] | None:
    """The first field above the end of ``path`` that the answer holds as null, if any."""
    value = data
    for depth, key in enumerate(path[:-1]):
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
        if value is None:
            return path[: depth + 1]
    return None


async def answer(client: GraphQLClient, body: dict[str, Any], headers: dict[str, str]) -> Any:
    """The answer, its errors in path order: errors come in the order their fields completed,
    which changes with the turns records wait for (the spec leaves the order open). Errors
    below a field that a null made null are one entry for that field: which of its other
    fields finished, and failed, before the null reached it depends on those turns too (a
    signed URL refused beside a null in a non-null field was there in one run, not the next)."""
    response = await client.http.post("/graphql", json=body, headers=headers)
    payload = response.json()
    if isinstance(payload.get("errors"), list):
        kept, nulled = [], []
        for error in payload["errors"]:
            above = nulled_ancestor(payload.get("data"), error.get("path") or [])
            if above is None:
                kept.append(error)
            elif {"nulled": above} not in nulled:
                nulled.append({"nulled": above})
        kept.sort(key=lambda e: json.dumps(e.get("path")) + e.get("message", ""))
        payload["errors"] = kept + sorted(nulled, key=json.dumps)
    return response.status_code, response.headers["content-type"], redact(payload)


@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    query=operations(),
    variables=VARIABLES,
    caller=st.sampled_from(["full", "key"]),
    turns=st.sampled_from(["as they come", "every record waits"]),
)
async def test_random_selections_answer_as_strawberrys(
    client: GraphQLClient,
    services: Services,
    starlette_app: Starlette,
    settings: Settings,
    query: str,
    variables: dict[str, Any],
    caller: str,
    turns: str,
) -> None:
    """``turns``: whether records are deferred to later turns of the event loop, as they are
    once an execution has worked ``TURN_SECONDS`` (a large page, or a loaded machine)."""
    if not await services.records.collection(SONG).find_one({"_id": "fine"}):
        await seed(services)
    headers = {} if caller == "full" else {"authorization": "", **API_KEY}
    used = {k: v for k, v in variables.items() if f"${k})" in query}
    body = {"query": query, "variables": used}
    turn_seconds = budget.TURN_SECONDS
    budget.TURN_SECONDS = -1.0 if turns == "every record waits" else turn_seconds
    try:
        lean = await answer(client, body, headers)
        again = await answer(client, body, headers)  # prepared, plans shared: the same answer
        with strawberrys_schema(starlette_app, settings):
            reference = await answer(client, body, headers)
    finally:
        budget.TURN_SECONDS = turn_seconds
    assert lean == reference, query
    assert again == reference, query


LIST = "{ listSongs { nextToken } }"
TWO = "query A { listSongs { nextToken } } query B { listSongs { items { id } } }"
BY_ID = "query($id: ID!) { getSong(id: $id) { id } }"
GQL = {"accept": "application/graphql-response+json"}


def odd(body: dict[str, Any] | bytes, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (raw, headers or {})


# Requests a client may send, each answered by both paths (the "Application/JSON" and
# "two operations, no name" cases answered differently before).
ODD_REQUESTS: dict[str, tuple[bytes, dict[str, str]]] = {
    "empty operationName": odd({"query": LIST, "operationName": ""}),
    "two operations, no name": odd({"query": TWO}),
    "two operations, named": odd({"query": TWO, "operationName": "B"}),
    "anonymous and named, no name": odd({"query": "{ listSongs { nextToken } } " + TWO}),
    "query then mutation, no name": odd(
        {"query": 'query A { listSongs { nextToken } } mutation B { removeFile(path: "x") }'}
    ),
    "mutation then query, no name": odd(
        {"query": 'mutation B { removeFile(path: "x") } query A { listSongs { nextToken } }'}
    ),
    "blank query": odd({"query": "   "}),
    "empty query": odd({"query": ""}),
    "null id": odd({"query": BY_ID, "variables": {"id": None}}),
    "huge int": odd(
        {
            "query": "query($l: Int) { listSongs(limit: $l) { nextToken } }",
            "variables": {"l": 2**64},
        }
    ),
    "float id": odd({"query": BY_ID, "variables": {"id": 1.5}}),
    "int id": odd({"query": BY_ID, "variables": {"id": 7}}),
    "unknown variable": odd({"query": BY_ID, "variables": {"id": "fine", "x": 1}}),
    "bom": odd(b'\xef\xbb\xbf{"query": "{ listSongs { nextToken } }"}'),
    "upper content type": odd({"query": LIST}, {"content-type": "Application/JSON"}),
    "charset": odd({"query": LIST}, {"content-type": "application/json; charset=utf-8"}),
    "latin-1 charset": odd({"query": LIST}, {"content-type": "application/json; charset=latin-1"}),
    "nul in query": odd({"query": LIST + "\u0000"}),
    "mutation": odd({"query": 'mutation { createSong(input: {name: "x", id: "odd"}) { id } }'}),
    "mutation refused": odd(
        {"query": 'mutation { createSong(input: {name: "x"}) { id } }'}, {"x-api-key": ""}
    ),
    "persisted query": odd({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "a"}}}),
    "accept both": odd(
        {"query": LIST}, {"accept": "application/json, application/graphql-response+json;q=0.9"}
    ),
    "accept gql, request error": odd({"query": "{ nosuch }"}, GQL),
    "accept gql, field error": odd({"query": '{ getSong(id: "nameless") { name } }'}, GQL),
    "accept gql, variables": odd({"query": BY_ID}, GQL),
    "accept html": odd({"query": LIST}, {"accept": "text/html"}),
    "accept star": odd({"query": LIST}, {"accept": "*/*"}),
    "typename at the root": odd({"query": '{ __typename getSong(id: "fine") { id } }'}),
    "introspection": odd({"query": '{ __type(name: "Song") { name fields { name } } }'}),
}


@pytest.mark.parametrize("case", ODD_REQUESTS)
async def test_odd_requests_answer_as_strawberrys(
    client: GraphQLClient,
    services: Services,
    starlette_app: Starlette,
    settings: Settings,
    case: str,
) -> None:
    await seed(services)
    body, headers = ODD_REQUESTS[case]

    async def send() -> Any:
        response = await client.http.post(
            "/graphql", content=body, headers={"content-type": "application/json", **headers}
        )
        try:
            payload = redact(response.json())
        except ValueError:
            payload = response.text
        return response.status_code, response.headers.get("content-type"), payload

    lean = await send()
    if "mutation" in case:
        await services.records.collection(SONG).delete_many({"_id": "odd"})
    with strawberrys_schema(starlette_app, settings):
        reference = await send()
    assert lean == reference


def operations_alive() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is OperationDefinitionNode)


async def test_documents_the_prepared_cache_let_go_are_not_kept_alive(
    client: GraphQLClient, starlette_app: Starlette
) -> None:
    """The prepared-operation LRU bounds how many documents the server keeps; the plans shared
    across executions must not keep the ones it let go (each holds its source and every
    token: a few MiB for a large one)."""
    schema = schema_of(starlette_app)
    schema.prepared.maxsize = 4
    await client.data('{ getSong(id: "warm-up") { id } }')
    before = operations_alive()
    for n in range(40):  # distinct documents of plain fields, each executed
        await client.data(f"{{ listSongs {{ items {{ id }} nextToken }} s{n}: __typename }}")
    assert operations_alive() - before <= schema.prepared.maxsize


async def test_a_document_of_several_operations_streams_its_first_as_strawberry_does(
    settings: Settings,
) -> None:
    """Over a websocket too: with no operation name, strawberry runs the first operation."""
    query = "query B { __typename } subscription A { onUpdateSong { id } }"

    async def first(schema: strawberry.Schema) -> Any:
        stream = await schema.stream(query)
        result: Any = await anext(aiter(stream))
        await stream.aclose()
        return type(result).__name__, result.data, [e.message for e in result.errors or ()]

    assert await first(build_schema(settings)) == await first(reference_schema(settings))


# --- values a leaf type refuses ---------------------------------------------------------------

GAUGES = """\
[models.Gauge]
fields.level = "Float!"
fields.spare = "Float"
fields.levels = "[Float!]"
"""


@pytest.fixture
async def gauges(s3_endpoint: str, bucket: str, tmp_path: Path) -> AsyncIterator[Starlette]:
    """An app whose model has Float fields (the built-in ones have none)."""
    models = tmp_path / "models.toml"
    models.write_text(GAUGES)
    settings = make_settings(s3_endpoint, bucket, models_file=models)
    app = create_app(settings)
    async with LifespanManager(app):
        yield app
    await drop_test_database(settings)


@pytest.mark.parametrize("stored", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("selection", ["level", "spare", "levels", "level spare levels id"])
async def test_a_float_that_is_not_finite_is_refused_as_graphql_core_refuses_it(
    gauges: Starlette, monkeypatch: pytest.MonkeyPatch, stored: float, selection: str
) -> None:
    """A stored Float no write of ours makes (another writer's, in a shared database): GraphQL
    has no infinity or NaN, and graphql-core says so with an error (nulling the parent of a
    non-null field); the lean paths passed it on, and JSON wrote it as null in a non-null
    field, with no error."""
    services = services_in(gauges)
    (model,) = services.records.models
    stamp = "2026-01-01T00:00:00.000Z"
    await services.records.collection(model).insert_one(
        {
            "_id": "g",
            "level": stored,
            "spare": stored,
            "levels": [1.5, stored],
            "version": 1,
            "createdAt": stamp,
            "updatedAt": stamp,
        }
    )
    query = f'{{ getGauge(id: "g") {{ {selection} }} }}'
    transport = httpx.ASGITransport(app=gauges)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=FULL_ACCESS
    ) as http:
        client = GraphQLClient(http)
        lean = await client.run(query)
        with graphql_cores_completion(monkeypatch):
            reference = await client.run(query)
    assert lean == reference
    assert reference["errors"]


# --- records deferred to a later turn of the event loop ---------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        '{ getSong(id: "fine") { coverArt { path } } }',
        '{ getSong(id: "fine") { id coverArt { p: path } name } }',
        "{ listSongs { items { id coverArt { path } } } }",
        '{ getSong(id: "private") { coverArt { path } } }',
    ],
)
async def test_a_file_deferred_to_a_later_turn_is_answered_as_graphql_core_answers_it(
    client: GraphQLClient,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    query: str,
) -> None:
    """Once an execution has worked ``TURN_SECONDS``, a record's file field returns an
    awaitable (``budget.yielding``). The executor's inline object completion read the leaves
    off the coroutine itself: ``Cannot return null for non-nullable field FileRef.path``, and
    a coroutine never awaited (seen first as a flaky random selection under a loaded run)."""
    await seed(services)
    monkeypatch.setattr(budget, "TURN_SECONDS", -1.0)  # every record is due to wait its turn
    lean = await client.run(query)
    with graphql_cores_completion(monkeypatch):
        reference = await client.run(query)
    assert lean == reference
    assert "errors" not in reference


# --- concurrent requests ----------------------------------------------------------------------

CONCURRENT = [
    "query($id: ID!) { getSong(id: $id) { id name coverArt { path url { url } } } }",
    "query($id: ID!, $e: Int) { getSong(id: $id) { coverArt { url(expiresIn: $e) { url } } } }",
    "query($id: ID!) { getPhotoAlbum(id: $id) { images { path url { url expiresAt } } } }",
    "{ listPhotoAlbums { items { id images { url { url } } } } }",
    "{ listSongs { items { id coverArt { path url { expiresAt } } } } }",
]
CALLERS: list[dict[str, str]] = [{}, {"authorization": "", **API_KEY}, {"x-api-key": "wrong"}]


def declared(query: str, **variables: Any) -> dict[str, Any]:
    """The variables ``query`` declares."""
    return {k: v for k, v in variables.items() if f"${k}:" in query}


@pytest.mark.parametrize("turns", ["as they come", "every record waits"])
async def test_concurrent_requests_each_get_their_own_answer(
    client: GraphQLClient, services: Services, monkeypatch: pytest.MonkeyPatch, turns: str
) -> None:
    """Requests of one prepared document with other variables and other callers, interleaved
    at every await (with every record waiting its turn, at every record too), each answered
    as it is alone: nothing of one execution (plans, signers, storage decisions, budgets)
    leaks into another."""
    await seed(services)
    if turns == "every record waits":
        monkeypatch.setattr(budget, "TURN_SECONDS", -1.0)
    requests = [
        ({"query": query, "variables": declared(query, id=id_, e=expires)}, headers)
        for query in CONCURRENT
        for id_, expires in (("fine", 30), ("private", None), ("mixed", 0), ("none", 60))
        for headers in CALLERS
    ]
    alone = [await answer(client, body, headers) for body, headers in requests]
    together = await asyncio.gather(*(answer(client, body, headers) for body, headers in requests))
    assert list(together) == alone


# --- the body limit and the view read the same headers ----------------------------------------


async def test_a_json_body_is_held_to_the_json_limit_whatever_header_follows(
    client: GraphQLClient, settings: Settings
) -> None:
    """Two Content-Type headers: the view (as Starlette and strawberry) reads the first, a JSON
    body, and reads it whole into memory; the body limit read the last, and allowed it the
    multipart limit (every file of an upload: hundreds of MiB)."""
    padding = "x" * (settings.max_request_bytes * 2)
    body = json.dumps({"query": LIST, "variables": {"pad": padding}}).encode()
    response = await client.http.post(
        "/graphql",
        content=body,
        headers=[
            ("content-type", "application/json"),
            ("content-type", "multipart/form-data; boundary=x"),
        ],
    )
    assert response.status_code == 413, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
