"""Counter-examples hunted on the compiled walk (``engine.compiled``): the same operation, on the
same records, answered compiled and through graphql-core's own executor
(``graphql_cores_completion``) must agree, data and errors alike, on a declaration with
relations, a list field, an enum and numbers, under rules that let the caller read only their
own posts (a comment naming another's post shows it null with FORBIDDEN).

The first four tests below failed on the first compiled walk (commit d84e9bb); each docstring
says what it answered then, where graphql-core answered otherwise."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette

from graphql_files.app import create_app
from graphql_files.services.wiring import Services

from ..helpers import (
    GraphQLClient,
    count_mongodb_calls,
    drop_test_database,
    make_settings,
    schema_of,
    services_in,
    user,
)
from .test_execution import compiled_runs, graphql_cores_completion

MODELS = """\
[enums.Status]
values = ["DRAFT", "LIVE"]

[models.Post]
fields.title = "String!"
fields.tags = "[String!]"
fields.flags = "[Boolean!]"
fields.status = "Status"
fields.rating = "Float"
fields.count = "Int"
relations.comments = { has_many = "Comment", references = "postId", on_delete = "cascade" }

[models.Comment]
fields.content = "String!"
fields.postId = "ID"
relations.post = { belongs_to = "Post", references = "postId" }
"""
RULES = """
[data.Post]
owner = "*"
authenticated = ["create"]

[data.Comment]
authenticated = "*"
"""
STAMP = "2026-01-01T00:00:00.000Z"


class Blog:
    """An app of its own on ``MODELS`` and ``RULES``; its client signs in as ``tester``."""

    def __init__(self, client: GraphQLClient, services: Services, app: Starlette) -> None:
        self.client, self.services, self.app = client, services, app

    def collection(self, model: str) -> Any:
        return self.services.records.collection(self.services.declaration.model(model))

    async def insert(self, model: str, record_id: str, **values: Any) -> None:
        """A stored document as it is, whatever a write of ours would refuse."""
        document = {"_id": record_id, "version": 1, "createdAt": STAMP, "updatedAt": STAMP}
        await self.collection(model).insert_one({**document, **values})

    async def seed(self) -> None:
        mine = {"owner": "tester"}
        await self.insert("Post", "mine", **mine, title="t", count=2**40, rating=float("nan"))
        await self.insert("Post", "mine2", **mine, title="t2")
        await self.insert("Post", "untitled", **mine)  # no title: String!
        await self.insert("Post", "nulls", **mine, title="n", tags=["a", None])
        await self.insert("Post", "ints", **mine, title="i", tags=[1, "b"], flags=[1, 0])
        await self.insert("Post", "theirs", owner="alice", title="theirs")
        await self.insert("Comment", "c1", **mine, content="x", postId="theirs")
        await self.insert("Comment", "c2", **mine, postId="mine")  # no content: String!
        await self.insert("Comment", "c3", **mine, content="y", postId="mine")
        await self.insert("Comment", "c4", **mine, content="z", postId="untitled")
        await self.insert("Comment", "c5", **mine, postId="theirs")  # both

    async def stored(self) -> dict[str, list[tuple[str, int]]]:
        """Every record's id and version, then none: the next run starts afresh."""
        found = {}
        for model in ("Post", "Comment"):
            docs = [(d["_id"], d["version"]) async for d in self.collection(model).iterate({})]
            found[model] = sorted(docs)
            await self.collection(model).delete_many({})
        return found


@pytest.fixture
async def blog(s3_endpoint: str, bucket: str, tmp_path: Path) -> AsyncIterator[Blog]:
    (tmp_path / "models.toml").write_text(MODELS)
    (tmp_path / "access.toml").write_text(RULES)
    settings = make_settings(
        s3_endpoint,
        bucket,
        models_file=tmp_path / "models.toml",
        access_file=tmp_path / "access.toml",
    )
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=user("tester")
        ) as http:
            yield Blog(GraphQLClient(http), services_in(app), app)
    await drop_test_database(settings)


async def both(
    blog: Blog, monkeypatch: pytest.MonkeyPatch, query: str, variables: Any = None
) -> tuple[Any, Any, list[str]]:
    """The answer of the compiled walk, graphql-core's, and the paths the first took."""
    with compiled_runs(schema_of(blog.app)) as runs:
        lean = await blog.client.run(query, variables)
    with graphql_cores_completion(monkeypatch):
        core = await blog.client.run(query, variables)
    return lean, core, runs


# --- differences ------------------------------------------------------------------------------


async def test_list_leaves_complete_item_by_item_as_graphql_core(
    blog: Blog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``[String!]``/``[Boolean!]`` whose items are not all of the native type. The first
    walk (``complete_leaf``'s fallback) handed the whole list to the item type's serializer. For
    ``tags: ["a", None]`` it answered "String cannot represent value: ['a', None]" at
    ``[getPost, tags]`` (BAD_USER_INPUT); graphql-core (and now the walk): "Cannot return null
    for non-nullable field Post.tags." at ``[getPost, tags, 1]`` (masked). For
    ``tags: [1, "b"]``, ``flags: [1, 0]`` it answered null and two errors; graphql-core
    ``["1", "b"]`` and ``[true, false]``, no error."""
    await blog.seed()
    for query in (
        '{ getPost(id: "nulls") { id tags } }',
        '{ getPost(id: "ints") { id tags flags } }',
    ):
        lean, core, runs = await both(blog, monkeypatch, query)
        assert runs == ["compiled"]
        assert lean == core, query


NULLED_POSITIONS = [
    # an awaited sibling's error, after a null bubbled up to their parent
    '{ getComment(id: "c5") { post { id } content } }',
    # an awaited error in item 0, after item 1's null made the whole list's field null
    "{ listComments { items { id post { id } content } } }",
    # a non-null awaited field fails in each item of a list of non-null items: the first
    # nulls the list's field
    '{ listPosts { items { id comments(nextToken: "bad") { nextToken } } } }',
]


@pytest.mark.parametrize("query", NULLED_POSITIONS)
async def test_errors_below_a_nulled_field_are_dropped_as_graphql_core_drops_them(
    blog: Blog, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    """graphql-core (3.3: ``CollectedErrors``, ``gather_with_cancel``) reports no error below
    a position already nulled; the first walk completed every deferred value and reported each
    error (it kept no nulled positions; ``_Walk.nulled`` now). E.g. for the first query the
    walk answered ``[getComment.content, getComment.post FORBIDDEN]``, graphql-core only
    ``[getComment.content]``; for the last, one "malformed nextToken" per post against one
    (so too ``getPost { a: comments(limit: -1) {..} b: comments(limit: -2) {..} }``: two
    errors against one)."""
    await blog.seed()
    lean, core, runs = await both(blog, monkeypatch, query)
    assert runs == ["compiled"]
    assert lean["data"] == core["data"]  # the data agree: only the errors differ
    assert lean == core


ROOTS = [
    '{ a: getPost(id: "untitled") { title } b: listPosts(limit: -1) { nextToken } }',
    '{ listPosts { items { comments(nextToken: "bad") { nextToken } } } '
    'getUrl(input: {path: "x/y.png"}) { url } }',
]


@pytest.mark.parametrize("query", ROOTS)
async def test_root_fields_run_side_by_side_as_graphql_core_runs_them(
    blog: Blog, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    """A query's root fields were awaited one after another by the first walk, concurrently by
    graphql-core (and now the walk). A root field that fails at once is reported first by
    graphql-core (``[b, a.title]``), was after the earlier field's errors by the walk
    (``[a.title, b]``); and when it is non-null (``getUrl: SignedUrl!``), the walk abandoned
    what the earlier root field started and reported ``[getUrl]`` alone where graphql-core
    reports
    ``[listPosts.items.0.comments "malformed nextToken", getUrl]``. (The same cause makes two
    root fields' children share a loader's batch by luck only.)"""
    await blog.seed()
    lean, core, runs = await both(blog, monkeypatch, query)
    assert runs == ["compiled"]
    assert lean["data"] == core["data"]
    assert lean == core


async def test_a_leaf_selected_twice_is_located_at_both_as_graphql_core_locates_it(
    blog: Blog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leaf selected twice (in a fragment and directly) is completed once by both, but
    graphql-core locates its error at every selection (``[{1, 64}, {1, 33}]``, the fragment's
    first, as collected), the first walk at the first alone (it dropped the second node):
    ``count`` past 32 bits here."""
    await blog.seed()
    query = '{ getPost(id: "mine") { id ...F count } } fragment F on Post { count }'
    lean, core, runs = await both(blog, monkeypatch, query)
    assert runs == ["compiled"]
    assert lean["data"] == core["data"]
    assert lean == core


# --- what holds -------------------------------------------------------------------------------

AGREED = [
    # FORBIDDEN parents and a null in a non-null field of a parent, in a list
    ("{ listComments { items { id post { id title } } } }", None, "compiled"),
    # errors at two levels of relations at once, each nulling its nearest nullable field
    (
        '{ getPost(id: "mine") { comments { items { id post { title '
        "comments(limit: -1) { nextToken } } } } } }",
        None,
        "compiled",
    ),
    # a null for a non-null argument with a default; variables in nested input lists
    ('query($id: ID = "mine") { getPost(id: $id) { id } }', {"id": None}, "compiled"),
    (
        'query($l: Int, $c: String) { getPost(id: "mine") { comments(limit: $l, filter: {or: '
        '[{content: {eq: "y"}}, {content: {eq: $c}}]}) { items { id } } } }',
        None,  # $c missing: an `or` with no condition, refused
        "compiled",
    ),
    (
        "query($d: ModelSortDirection, $s: Status) { listPosts(filter: {status: {eq: $s}}) "
        '{ items { id } } getPost(id: "mine") { comments(sortDirection: $d) { items { id } } } '
        'x: getPost(id: "mine2") { comments(sortDirection: $d) { items { id } } } }',
        {"d": "DESC", "s": "LIVE"},
        "compiled",
    ),
    # leaves merged across a fragment; a NaN Float; __typename anywhere
    (
        '{ __typename t: __typename getPost(id: "mine") { id ...F rating t: title } } '
        "fragment F on Post { id t: title __typename }",
        None,
        "compiled",
    ),
    # one object selected directly and in a fragment: graphql-core's
    (
        '{ getPost(id: "mine") { comments { items { id } } ...F } } '
        "fragment F on Post { comments { items { content } } }",
        None,
        "graphql-core",
    ),
]


@pytest.mark.parametrize(("query", "variables", "path"), AGREED)
async def test_queries_answer_as_graphql_core(
    blog: Blog, monkeypatch: pytest.MonkeyPatch, query: str, variables: Any, path: str
) -> None:
    await blog.seed()
    lean, core, runs = await both(blog, monkeypatch, query, variables)
    assert runs == [path]
    assert lean == core


MUTATIONS = [
    # a non-null root field fails first: no data, and nothing after it runs
    'mutation { removeFile(path: "") b: createPost(input: {id: "n1", title: "x"}) { id } }',
    # relations read what the fields before wrote; a null in a deleted record; a conflict
    'mutation { a: createPost(input: {id: "n1", title: "x"}) { id comments { items { id } } } '
    'b: createComment(input: {id: "n2", content: "c", postId: "n1"}) { post { id comments '
    '{ items { id } } } } c: deleteComment(input: {id: "c5"}) { id content } '
    'd: createComment(input: {id: "n3", content: "d", postId: "n1"}) { post { comments '
    '{ items { id content } } } } e: createPost(input: {id: "n1", title: "y"}) { id } }',
    # a write that succeeds, its parent FORBIDDEN; a reference the caller may not read
    'mutation($i: CreateCommentInput!) { a: updateComment(input: {id: "c1", content: "now"}) '
    "{ id content version post { id } } b: createComment(input: $i) { id } }",
]


async def test_mutations_answer_as_graphql_core(
    blog: Blog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each mutation on fresh records, compiled then through graphql-core: the same answers
    and the same records written."""
    variables = {"i": {"id": "n9", "content": "q", "postId": "theirs"}}
    for mutation in MUTATIONS:
        await blog.seed()
        with compiled_runs(schema_of(blog.app)) as runs:
            lean = await blog.client.run(mutation, variables)
        lean_stored = await blog.stored()
        await blog.seed()
        with graphql_cores_completion(monkeypatch):
            core = await blog.client.run(mutation, variables)
        assert runs == ["compiled"]
        assert (lean, lean_stored) == (core, await blog.stored()), mutation


async def test_a_failing_non_null_root_leaves_no_task_behind(
    blog: Blog, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``getUrl: SignedUrl!`` refused after relation pages were started (some to fail): the
    data is null, and the started tasks are let go without "Task was destroyed but it is
    pending" or "exception was never retrieved" (asyncio logs both; warnings are errors in
    this suite)."""
    await blog.seed()
    gc.collect()  # what earlier tests in this process left is not this test's to report
    caplog.set_level(logging.DEBUG, logger="asyncio")
    caplog.clear()
    url = 'getUrl(input: {path: "x/y.png"}) { url } }'
    query = "{ listPosts { items { comments { items { post { id } } } } } " + url
    lean, core, runs = await both(blog, monkeypatch, query)
    assert runs == ["compiled"]
    assert lean == core
    assert lean["data"] is None
    for pages in ('(nextToken: "bad")', "(limit: -1)"):
        failing = f"{{ listPosts {{ items {{ comments{pages} {{ nextToken }} }} }} {url}"
        body = await blog.client.run(failing)
        assert body["data"] is None
    for _ in range(3):
        await asyncio.sleep(0.05)
        gc.collect()
    reported = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert reported == [], reported


async def test_each_level_loads_at_once_as_graphql_core(
    blog: Blog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relations with arguments from variables, in a fragment: one MongoDB query per relation
    and level, as graphql-core asks."""
    await blog.seed()
    calls = count_mongodb_calls(monkeypatch)
    query = (
        "query($l: Int, $f: ModelCommentFilterInput) { listPosts(limit: 10) { items { ...P } } } "
        "fragment P on Post { comments(limit: $l, filter: $f) { items { post { id } } } }"
    )
    variables = {"l": 3, "f": {"content": {"ne": "q"}}}
    answers = []
    for forced in (False, True):
        calls.clear()
        path = graphql_cores_completion(monkeypatch) if forced else nullcontext()
        with compiled_runs(schema_of(blog.app)) as runs, path:
            answers.append((await blog.client.run(query, variables), dict(calls), runs))
    (lean, lean_calls, lean_runs), (core, core_calls, core_runs) = answers
    assert (lean_runs, core_runs) == (["compiled"], ["graphql-core"])
    assert lean == core
    assert lean_calls == core_calls == {"posts.find": 2, "comments.first_per_group": 1}
