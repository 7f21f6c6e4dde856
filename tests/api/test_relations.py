"""Relations over HTTP (DESIGN.md, "Relationships"): the generated fields, references that never
name a missing record, deletes that restrict, cascade (files included) and nullify, batched
loads, rules through relations, and the cost of nested pages."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from graphql_files.app import create_app
from graphql_files.errors import DatabaseUnavailable
from graphql_files.services.records import Records
from graphql_files.services.wiring import Services
from graphql_files.settings import Settings

from ..declared import RELATED_TEXT
from ..helpers import (
    FULL_ACCESS,
    PNG,
    GraphQLClient,
    LiveServer,
    client_of,
    codes,
    count_mongodb_calls,
    drop_test_database,
    make_settings,
    multipart,
    services_in,
    start_live_server,
    subscribed,
    user,
    ws_client,
)

pytestmark = pytest.mark.memory

CREATE_POST = "mutation($i: CreatePostInput!) { createPost(input: $i) { id version } }"
CREATE_COMMENT = """mutation($i: CreateCommentInput!) {
  createComment(input: $i) { id postId version } }"""
UPDATE_COMMENT = """mutation($i: UpdateCommentInput!) {
  updateComment(input: $i) { id postId version } }"""
CREATE_REACTION = """mutation($i: CreateReactionInput!) {
  createReaction(input: $i) { id commentId } }"""
CREATE_FLAG = "mutation($i: CreateFlagInput!) { createFlag(input: $i) { id } }"
CREATE_USER = "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }"
CREATE_PROFILE = """mutation($i: CreateProfileInput!) {
  createProfile(input: $i) { id userId } }"""
UPDATE_PROFILE = """mutation($i: UpdateProfileInput!) {
  updateProfile(input: $i) { id userId } }"""
DELETE_POST = """mutation($i: DeletePostInput!) {
  deletePost(input: $i) { id version } }"""
DELETE_USER = "mutation($i: DeleteUserInput!) { deleteUser(input: $i) { id } }"
LIST_COMMENTS = "{ listComments { items { id postId } } }"
POST_WITH_COMMENTS = """query($id: ID!, $limit: Int, $token: String, $dir: ModelSortDirection,
    $filter: ModelCommentFilterInput) {
  getPost(id: $id) { id title
    comments(limit: $limit, nextToken: $token, sortDirection: $dir, filter: $filter) {
      items { id content postId post { id title } } nextToken } } }"""


@pytest.fixture
def settings(s3_endpoint: str, bucket: str, tmp_path: Path) -> Settings:
    models = tmp_path / "models.toml"
    models.write_text(RELATED_TEXT)
    return make_settings(s3_endpoint, bucket, models_file=models)


async def post(client: GraphQLClient, post_id: str, title: str = "T") -> None:
    await client.data(CREATE_POST, {"i": {"id": post_id, "title": title}})


async def comment(
    client: GraphQLClient, comment_id: str, post_id: str | None, content: str = "c"
) -> None:
    await client.data(
        CREATE_COMMENT, {"i": {"id": comment_id, "postId": post_id, "content": content}}
    )


async def ids(services: Services, model: str) -> set[str]:
    """Every record of ``model`` in MongoDB, whoever owns it."""
    collection = services.records.collection(services.declaration.model(model))
    return {doc["_id"] async for doc in collection.iterate({})}


async def objects(services: Services, prefix: str = "") -> set[str]:
    await services.background.drain()
    return {o.path async for o in services.files.iterate(prefix)}


async def test_the_generated_fields(client: GraphQLClient) -> None:
    """Names and types as DESIGN.md gives them, read back by introspection."""
    body = await client.data(
        """{ Post: __type(name: "Post") { fields { name type { kind name ofType { name } }
               args { name type { name } } } }
             Comment: __type(name: "Comment") { fields { name type { name } } }
             User: __type(name: "User") { fields { name type { name } } }
             Profile: __type(name: "Profile") { fields { name type { name } } } }"""
    )
    comments = next(f for f in body["Post"]["fields"] if f["name"] == "comments")
    assert comments["type"] == {
        "kind": "NON_NULL",
        "name": None,
        "ofType": {"name": "ModelCommentConnection"},
    }
    assert [(a["name"], a["type"]["name"]) for a in comments["args"]] == [
        ("filter", "ModelCommentFilterInput"),
        ("sortDirection", "ModelSortDirection"),
        ("limit", "Int"),
        ("nextToken", "String"),
    ]

    def field_type(type_name: str, field: str) -> str:
        found = next(f for f in body[type_name]["fields"] if f["name"] == field)
        name: str = found["type"]["name"]
        return name

    assert field_type("Comment", "post") == "Post"
    assert field_type("Comment", "postId") == "ID"
    assert field_type("User", "profile") == "Profile"
    assert field_type("Profile", "user") == "User"


async def test_a_reference_must_name_a_record(client: GraphQLClient, services: Services) -> None:
    await post(client, "p1")
    error = await client.error(
        CREATE_COMMENT, {"i": {"id": "c1", "postId": "nope", "content": "x"}}
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "postId" in error["message"]
    assert "'nope'" in error["message"]
    assert await ids(services, "Comment") == set()

    await comment(client, "c1", "p1")
    error = await client.error(UPDATE_COMMENT, {"i": {"id": "c1", "postId": "gone"}})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "postId" in error["message"]
    data = await client.data('{ getComment(id: "c1") { postId version } }')
    assert data["getComment"] == {"postId": "p1", "version": 1}  # unchanged

    # a required reference (Reaction.commentId: ID!) too; and no reference at all is fine
    error = await client.error(
        CREATE_REACTION, {"i": {"id": "r1", "commentId": "nope", "emoji": "+1"}}
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    await comment(client, "c2", None)
    moved = await client.data(UPDATE_COMMENT, {"i": {"id": "c2", "postId": "p1"}})
    assert moved["updateComment"] == {"id": "c2", "postId": "p1", "version": 2}


async def test_a_post_with_its_comments_in_one_query(client: GraphQLClient) -> None:
    await post(client, "p1", "First")
    await post(client, "p2", "Second")
    for n in range(5):
        await comment(client, f"a{n}", "p1", f"on first {n}")
    await comment(client, "b0", "p2", "on second")

    data = await client.data(POST_WITH_COMMENTS, {"id": "p1"})
    page = data["getPost"]["comments"]
    assert [c["id"] for c in page["items"]] == [f"a{n}" for n in range(5)]
    assert page["nextToken"] is None
    assert page["items"][0]["post"] == {"id": "p1", "title": "First"}

    # pages, as listComments pages them
    first = (await client.data(POST_WITH_COMMENTS, {"id": "p1", "limit": 2}))["getPost"]
    assert [c["id"] for c in first["comments"]["items"]] == ["a0", "a1"]
    token = first["comments"]["nextToken"]
    second = await client.data(POST_WITH_COMMENTS, {"id": "p1", "limit": 2, "token": token})
    assert [c["id"] for c in second["getPost"]["comments"]["items"]] == ["a2", "a3"]
    backwards = await client.data(POST_WITH_COMMENTS, {"id": "p1", "limit": 2, "dir": "DESC"})
    assert [c["id"] for c in backwards["getPost"]["comments"]["items"]] == ["a4", "a3"]
    filtered = await client.data(
        POST_WITH_COMMENTS, {"id": "p1", "filter": {"content": {"contains": "3"}}}
    )
    assert [c["id"] for c in filtered["getPost"]["comments"]["items"]] == ["a3"]
    # a token of another query is refused, as listComments refuses it
    listed = await client.data("{ listComments(limit: 1) { nextToken } }")
    error = await client.error(
        POST_WITH_COMMENTS, {"id": "p1", "token": listed["listComments"]["nextToken"]}
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"

    # the reference filters like any field
    data = await client.data('{ listComments(filter: {postId: {eq: "p2"}}) { items { id } } }')
    assert data["listComments"]["items"] == [{"id": "b0"}]


async def test_restrict_refuses_and_changes_nothing(
    client: GraphQLClient, services: Services
) -> None:
    await post(client, "p1")
    await comment(client, "c1", "p1")
    await client.data(CREATE_FLAG, {"i": {"id": "f1", "postId": "p1"}})
    await client.data(CREATE_FLAG, {"i": {"id": "f2", "postId": "p1"}})

    error = await client.error(DELETE_POST, {"i": {"id": "p1"}})
    assert error["extensions"]["code"] == "CONFLICT"
    assert error["extensions"]["children"] == {"flags": 2}
    assert "2 flags" in error["message"]
    # the cascading relation was not touched: the restrict was seen before anything changed
    assert await ids(services, "Comment") == {"c1"}
    assert await ids(services, "Post") == {"p1"}

    # a restrict below a cascade keeps its grandparent too
    await client.data('mutation { deleteFlag(input: {id: "f1"}) { id } }')
    await client.data('mutation { deleteFlag(input: {id: "f2"}) { id } }')
    deleted = await client.data(DELETE_POST, {"i": {"id": "p1"}})
    assert deleted["deletePost"]["version"] == 2
    assert await ids(services, "Comment") == set()


async def test_a_restrict_down_a_cascade_is_seen_before_anything_changes(
    tmp_path: Path, s3_endpoint: str, bucket: str
) -> None:
    text = RELATED_TEXT.replace(
        'relations.reactions = { has_many = "Reaction", references = "commentId", '
        'on_delete = "cascade" }',
        'relations.reactions = { has_many = "Reaction", references = "commentId" }',
    )
    models = tmp_path / "restrict.toml"
    models.write_text(text)
    async with client_of(make_settings(s3_endpoint, bucket, models_file=models)) as client:
        await post(client, "p1")
        for n in range(3):
            await comment(client, f"c{n}", "p1")
        await client.data(CREATE_REACTION, {"i": {"id": "r", "commentId": "c2", "emoji": "!"}})
        error = await client.error(DELETE_POST, {"i": {"id": "p1"}})
        assert error["extensions"]["code"] == "CONFLICT"
        assert error["extensions"]["children"] == {"comments.reactions": 1}
        listed = await client.data(LIST_COMMENTS)
        assert len(listed["listComments"]["items"]) == 3


async def upload_post_image(client: GraphQLClient, post_id: str) -> str:
    response = await multipart(
        client,
        """mutation($i: AttachPostImageInput!) { attachPostImage(input: $i) { imagePath } }""",
        {"i": {"postId": post_id, "file": None}},
        {"variables.i.file": ("p.png", PNG, "image/png")},
    )
    path: str = response.json()["data"]["attachPostImage"]["imagePath"]
    return path


async def upload_attachment(client: GraphQLClient, model: str, record_id: str, file: str) -> str:
    id_argument = f"{model[:1].lower()}{model[1:]}Id"
    name = f"attach{model}{file[:1].upper()}{file[1:]}"
    response = await multipart(
        client,
        f"mutation($i: {name[:1].upper()}{name[1:]}Input!) {{ {name}(input: $i) {{ id }} }}",
        {"i": {id_argument: record_id, "file": None}},
        {"variables.i.file": ("a.png", PNG, "image/png")},
    )
    assert "errors" not in response.json(), response.json()
    return record_id


async def test_cascade_takes_the_tree_and_its_files(live: LiveServer, settings: Settings) -> None:
    services = live.services
    async with live.client() as client, ws_client(live) as ws:
        await post(client, "p1")
        await post(client, "p2")  # another post's tree stays whole
        await upload_post_image(client, "p1")
        for n in range(3):
            await comment(client, f"c{n}", "p1")
            await upload_attachment(client, "Comment", f"c{n}", "attachment")
            await client.data(
                CREATE_REACTION, {"i": {"id": f"r{n}", "commentId": f"c{n}", "emoji": "+"}}
            )
            await upload_attachment(client, "Reaction", f"r{n}", "picture")
        await comment(client, "other", "p2")
        await client.data(
            CREATE_REACTION, {"i": {"id": "r-other", "commentId": "other", "emoji": "-"}}
        )
        assert len(await objects(services, "images/")) == 7

        await ws.subscribe("subscription { onDeleteComment { id version } }")
        await ws.subscribe("subscription { onDeleteReaction { id } }")
        await subscribed(live, 2)
        deleted = await client.data(
            """mutation { deletePost(input: {id: "p1", deleteFiles: true}) { id version } }"""
        )
        assert deleted["deletePost"] == {"id": "p1", "version": 3}
        assert await ids(services, "Post") == {"p2"}
        assert await ids(services, "Comment") == {"other"}
        assert await ids(services, "Reaction") == {"r-other"}
        assert await objects(services, "images/") == set()
        # each child deleted as its own deleteX would be: one event each, with its version
        events = [(await ws.next_payload())["data"] for _ in range(6)]
        comments = [e["onDeleteComment"] for e in events if "onDeleteComment" in e]
        reactions = [e["onDeleteReaction"]["id"] for e in events if "onDeleteReaction" in e]
        assert sorted(comments, key=lambda c: c["id"]) == [
            {"id": f"c{n}", "version": 3}
            for n in range(3)  # created, attached, deleted
        ]
        assert sorted(reactions) == ["r0", "r1", "r2"]


async def test_a_cascade_without_delete_files_leaves_them_to_the_sweeper(
    client: GraphQLClient, services: Services
) -> None:
    from datetime import timedelta

    await post(client, "p1")
    await comment(client, "c1", "p1")
    await upload_attachment(client, "Comment", "c1", "attachment")
    await client.data(DELETE_POST, {"i": {"id": "p1"}})
    assert await ids(services, "Comment") == set()
    left = await objects(services, "images/Comment/c1/")
    assert len(left) == 1  # not asked to delete files: the orphan stays...
    report = await services.sweeper.run(grace=timedelta(0))
    assert {o.path for o in report.removed} == left  # ...until swept
    assert await objects(services, "images/") == set()


async def test_nullify_sets_each_child_free(
    live: LiveServer,
) -> None:
    services = live.services
    async with live.client() as client, ws_client(live) as ws:
        await client.data(CREATE_USER, {"i": {"id": "u1", "name": "Ann"}})
        await client.data(CREATE_PROFILE, {"i": {"id": "pr1", "userId": "u1", "bio": "hi"}})
        await ws.subscribe("subscription { onUpdateProfile { id userId version } }")
        await subscribed(live, 1)
        await client.data(DELETE_USER, {"i": {"id": "u1"}})
        event = await ws.next_payload()
        assert event["data"]["onUpdateProfile"] == {
            "id": "pr1",
            "userId": None,
            "version": 2,
        }
    assert await ids(services, "Profile") == {"pr1"}
    assert await ids(services, "User") == set()


async def test_comments_on_one_post_are_written_side_by_side(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    """Sixteen clients commenting on one post at once, with a claim wait far shorter than
    their writes one after another would take: none waits for another (each shares the post's
    claim), so none is refused BUSY (with exclusive claims, most were)."""
    models = tmp_path / "models.toml"
    models.write_text(RELATED_TEXT)
    settings = make_settings(s3_endpoint, bucket, models_file=models, claim_wait=0.05)
    async with start_live_server(settings) as live, live.client() as client:
        await post(client, "busy")

        async def writer(n: int) -> list[dict[str, Any]]:
            bodies = []
            for i in range(5):
                variables = {"i": {"id": f"c{n}-{i}", "postId": "busy", "content": "c"}}
                response = await client.post(CREATE_COMMENT, variables)
                bodies.append(response.json())
            return bodies

        bodies = [b for each in await asyncio.gather(*map(writer, range(16))) for b in each]
        refused = [b["errors"] for b in bodies if "errors" in b]
        assert refused == [], f"{len(refused)} of 80 refused: {refused[0]}"
        assert len(await ids(live.services, "Comment")) == 80
    await drop_test_database(settings)


async def test_has_one_holds_one(client: GraphQLClient) -> None:
    await client.data(CREATE_USER, {"i": {"id": "u1", "name": "Ann"}})
    await client.data(CREATE_PROFILE, {"i": {"id": "pr1", "userId": "u1"}})
    error = await client.error(CREATE_PROFILE, {"i": {"id": "pr2", "userId": "u1"}})
    assert error["extensions"]["code"] == "CONFLICT"
    assert "already has a Profile" in error["message"]
    data = await client.data('{ getUser(id: "u1") { profile { id user { id name } } } }')
    assert data["getUser"]["profile"] == {"id": "pr1", "user": {"id": "u1", "name": "Ann"}}
    # the same profile named again (an update that keeps it) is no second one
    same = await client.data(
        'mutation { updateProfile(input: {id: "pr1", userId: "u1", bio: "b"}) { version } }'
    )
    assert same["updateProfile"]["version"] == 2


# --- batched loads ----------------------------------------------------------------------------


@pytest.fixture
def mongodb_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every read the services send MongoDB from now on, by collection and operation."""
    return count_mongodb_calls(monkeypatch)


async def test_each_level_loads_each_relation_at_once(
    client: GraphQLClient, mongodb_calls: Counter[str]
) -> None:
    for p in range(30):
        await post(client, f"p{p:02}")
        for c in range(3):
            await comment(client, f"c{p:02}-{c}", f"p{p:02}")
            await client.data(
                CREATE_REACTION,
                {"i": {"id": f"r{p:02}-{c}", "commentId": f"c{p:02}-{c}", "emoji": "+"}},
            )
    mongodb_calls.clear()
    data = await client.data(
        """{ listPosts(limit: 30) { items { id
              comments(limit: 5) { items { id post { id }
                reactions(limit: 5) { items { id comment { id } } } } }
              flags(limit: 5) { items { id } } } } }"""
    )
    posts = data["listPosts"]["items"]
    assert len(posts) == 30
    assert all(len(p["comments"]["items"]) == 3 for p in posts)
    assert all(
        c["post"]["id"] == p["id"] and c["reactions"]["items"][0]["comment"]["id"] == c["id"]
        for p in posts
        for c in p["comments"]["items"]
    )
    # one query per relation per level: posts; comments and flags; each comment's post and
    # reactions; each reaction's comment. 30 posts x 3 comments x 1 reaction would be 271
    # queries one by one.
    print(mongodb_calls)
    assert mongodb_calls == Counter(
        {
            "posts.find": 2,  # the page of posts; the comments' posts, by id
            "comments.first_per_group": 1,
            "flags.first_per_group": 1,
            "reactions.first_per_group": 1,
            "comments.find": 1,  # the reactions' comments, by id
        }
    )


async def test_each_field_of_a_mutation_sees_what_the_ones_before_it_wrote(
    client: GraphQLClient,
) -> None:
    """Mutation fields run in order; relations loaded by one are not what the next one sees."""
    await post(client, "st", "old")
    body = await client.data(
        """mutation {
          a: createComment(input: {id: "st1", content: "1", postId: "st"}) {
            post { title comments { items { id } } } }
          b: updatePost(input: {id: "st", title: "new"}) { title }
          c: createComment(input: {id: "st2", content: "2", postId: "st"}) {
            post { title version comments { items { id } } } }
          d: deleteComment(input: {id: "st1"}) { post { comments { items { id } } } } }"""
    )
    assert body["a"]["post"] == {"title": "old", "comments": {"items": [{"id": "st1"}]}}
    assert body["c"]["post"] == {
        "title": "new",
        "version": 2,
        "comments": {"items": [{"id": "st1"}, {"id": "st2"}]},
    }
    assert body["d"]["post"] == {"comments": {"items": [{"id": "st2"}]}}


async def test_nested_limits_count_in_the_cost(client: GraphQLClient) -> None:
    error = await client.error(
        "{ listPosts(limit: 1000) { items { comments(limit: 1000) { items { id } } } } }"
    )
    assert error["extensions"]["reason"] == "QUERY_TOO_COSTLY"
    assert error["extensions"]["cost"] > 1_000_000
    await client.data("{ listPosts(limit: 10) { items { comments(limit: 10) { items { id } } } } }")


def nested(levels: int) -> str:
    """``comments { items { post { ... } } }``, ``levels`` deep: 100 times the cost each."""
    selection = "id"
    for _ in range(levels):
        selection = f"id comments {{ items {{ id post {{ {selection} }} }} }}"
    return selection


async def test_a_nesting_past_every_limit_is_refused_over_both_transports(
    live: LiveServer,
) -> None:
    """Ten levels of pages estimate at 100**10: refused like any costly query, with a cost a
    JSON number holds (it was a 500 over HTTP, and no answer at all over a websocket)."""
    query = f'query {{ getPost(id: "p1") {{ {nested(10)} }} }}'
    async with live.client() as client, ws_client(live) as ws:
        response = await client.post(query)
        assert response.status_code == 200, response.text
        errors = response.json()["errors"]
        reasons = {e["extensions"].get("reason") for e in errors}
        assert {"QUERY_TOO_COSTLY", "QUERY_TOO_DEEP"} <= reasons, errors
        costly = next(e for e in errors if e["extensions"].get("reason") == "QUERY_TOO_COSTLY")
        assert costly["extensions"]["cost"] == 2**53 - 1
        assert "more than 9,007,199,254,740,991" in costly["message"]
        await ws.subscribe(f"subscription {{ onUpdatePost {{ {nested(10)} }} }}")
        assert await ws.error_code() == "BAD_USER_INPUT"


# --- rules ------------------------------------------------------------------------------------

OWNER_RULES = """
[data.Post]
authenticated = ["create", "read"]
owner = "*"

[data.Comment]
owner = "*"
authenticated = ["create"]

[data.Reaction]
authenticated = "*"

[data.Flag]
authenticated = "*"

[data.User]
authenticated = ["create"]
owner = "*"

[data.Profile]
authenticated = "*"

[storage."images/*"]
authenticated = ["read", "write", "delete"]
"""


@pytest.fixture
async def owners(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> AsyncIterator[dict[str, GraphQLClient]]:
    models = tmp_path / "models.toml"
    models.write_text(RELATED_TEXT)
    rules = tmp_path / "access.toml"
    rules.write_text(OWNER_RULES)
    settings = make_settings(s3_endpoint, bucket, models_file=models, access_file=rules)
    async with client_of(settings, user("alice")) as alice:
        yield {"alice": alice, "bob": GraphQLClient(alice.http, user("bob"))}


async def test_a_relation_shows_what_the_rules_let_the_caller_read(
    owners: dict[str, GraphQLClient],
) -> None:
    alice, bob = owners["alice"], owners["bob"]
    await post(alice, "p1")
    await comment(alice, "mine", "p1", "alice's")
    await comment(bob, "his", "p1", "bob's")  # bob may read alice's post, and comments on it
    # through the post, each sees only their own comments, as listComments would show them
    data = await alice.data(POST_WITH_COMMENTS, {"id": "p1"})
    assert [c["id"] for c in data["getPost"]["comments"]["items"]] == ["mine"]
    data = await bob.data(POST_WITH_COMMENTS, {"id": "p1"})
    assert [c["id"] for c in data["getPost"]["comments"]["items"]] == ["his"]
    # a user is its owner's alone: alice's profile (Profiles are anyone's) shows bob no user
    await alice.data(CREATE_USER, {"i": {"id": "u1", "name": "Alice"}})
    await alice.data(CREATE_PROFILE, {"i": {"id": "pr1", "userId": "u1"}})
    body = await bob.run('{ getProfile(id: "pr1") { id user { id name } } }')
    assert body["data"]["getProfile"] == {"id": "pr1", "user": None}
    assert codes(body) == ["FORBIDDEN"]
    assert body["errors"][0]["path"] == ["getProfile", "user"]


async def test_a_child_names_only_a_parent_its_writer_may_read(
    owners: dict[str, GraphQLClient],
) -> None:
    """Naming a record the caller may not read answers as naming none: no write tells whether
    another user's record exists, and no one can pin a restrict or take a has_one slot on a
    record they cannot see."""
    alice, bob = owners["alice"], owners["bob"]
    await alice.data(CREATE_USER, {"i": {"id": "u1", "name": "Alice"}})
    answers = []
    for user_id in ("u1", "no-such-user"):
        body = await bob.run(CREATE_PROFILE, {"i": {"id": f"of-{user_id}", "userId": user_id}})
        assert codes(body) == ["BAD_USER_INPUT"]
        assert body["errors"][0]["extensions"]["field"] == "userId"
        answers.append(body["errors"][0]["message"].replace(user_id, "<id>"))
    assert answers[0] == answers[1], answers  # the same answer: nothing told
    assert answers[0] == "Profile.userId names no User you may read: '<id>'"
    # alice's own has_one slot is still hers, and a second is refused without naming the first
    await alice.data(CREATE_PROFILE, {"i": {"id": "pa", "userId": "u1"}})
    body = await alice.run(CREATE_PROFILE, {"i": {"id": "pb", "userId": "u1"}})
    assert codes(body) == ["CONFLICT"]
    assert "'pa'" not in body["errors"][0]["message"]
    data = await bob.run(UPDATE_PROFILE, {"i": {"id": "pa", "userId": "u1"}})
    assert codes(data) == ["BAD_USER_INPUT"]  # bob may update profiles, not name alice's user


# --- crashes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("failing_model", ["Comment", "Reaction"])
async def test_a_cascade_cut_short_leaves_no_orphaned_child_and_runs_again(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, failing_model: str
) -> None:
    """The fifth delete of a comment (a parent itself, deleted under its own claim) or of a
    reaction (a leaf) fails as a lost connection would: the outcome unknown."""
    app = create_app(settings.model_copy(update={"claim_wait": 0.2}))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=FULL_ACCESS
        ) as http:
            await cut_short(GraphQLClient(http), services_in(app), monkeypatch, failing_model)
    await drop_test_database(settings)


async def cut_short(
    client: GraphQLClient, services: Services, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    await post(client, "p1")
    for n in range(12):
        await comment(client, f"c{n:02}", "p1")
        await client.data(
            CREATE_REACTION, {"i": {"id": f"r{n:02}", "commentId": f"c{n:02}", "emoji": "+"}}
        )
    real = Records.delete
    deletes = 0

    async def failing_delete(
        self: Records, access: Any, model: Any, *args: Any, **kwargs: Any
    ) -> Any:
        nonlocal deletes
        if model.name == failing:
            deletes += 1
            if deletes == 5:
                raise DatabaseUnavailable("injected: the database went away")
        return await real(self, access, model, *args, **kwargs)

    monkeypatch.setattr(Records, "delete", failing_delete)
    error = await client.error(DELETE_POST, {"i": {"id": "p1"}})
    assert error["extensions"]["code"] == "DATABASE_UNAVAILABLE"
    # part of the tree went, bottom up: whatever is left names only what is left
    assert await ids(services, "Post") == {"p1"}
    comments = await ids(services, "Comment")
    assert 0 < len(comments) < 12
    left = await client.data("{ listReactions(limit: 100) { items { commentId } } }")
    assert {r["commentId"] for r in left["listReactions"]["items"]} <= comments
    assert len(left["listReactions"]["items"]) < 12

    monkeypatch.setattr(Records, "delete", real)
    if failing == "Comment":
        # the comment's delete, in doubt, keeps its claim until the lease runs out: it might
        # land yet, and nothing may act on that comment before it has
        error = await client.error(DELETE_POST, {"i": {"id": "p1"}})
        assert error["extensions"]["reason"] == "BUSY"
        claims = services.relations.claims
        later = claims.clock() + claims.lease
        monkeypatch.setattr(claims, "clock", lambda: later)
    # the same delete finishes the tree
    await client.data(DELETE_POST, {"i": {"id": "p1"}})
    assert await ids(services, "Post") == set()
    assert await ids(services, "Comment") == set()
    assert await ids(services, "Reaction") == set()


# --- subscriptions ----------------------------------------------------------------------------


async def test_a_subscription_selects_relations_resolved_per_event(live: LiveServer) -> None:
    async with live.client() as client, ws_client(live) as ws:
        await post(client, "p1", "First")
        await ws.subscribe(
            """subscription { onCreateComment { id
                 post { title comments { items { id } } } } }"""
        )
        await subscribed(live, 1)
        await comment(client, "c1", "p1")
        await comment(client, "c2", "p1")
        first, second = (await ws.next_payload(), await ws.next_payload())
    assert first["data"]["onCreateComment"] == {
        "id": "c1",
        "post": {"title": "First", "comments": {"items": [{"id": "c1"}]}},
    }
    # each event resolved when it happened: the second sees both comments
    assert second["data"]["onCreateComment"]["post"]["comments"]["items"] == [
        {"id": "c1"},
        {"id": "c2"},
    ]


async def test_a_subscribers_relations_obey_the_subscribers_rules(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    models = tmp_path / "models.toml"
    models.write_text(RELATED_TEXT)
    rules = tmp_path / "access.toml"
    rules.write_text(OWNER_RULES)  # profiles are everyone's to read; users only their owners'
    settings = make_settings(s3_endpoint, bucket, models_file=models, access_file=rules)
    async with (
        start_live_server(settings) as live,
        live.client(user("alice")) as alice,
        ws_client(live, payload=user("alice")) as alice_ws,
        ws_client(live, payload=user("bob")) as bob_ws,
    ):
        await alice.data(CREATE_USER, {"i": {"id": "u1", "name": "Alice"}})
        query = "subscription { onCreateProfile { id user { name } } }"
        await alice_ws.subscribe(query)
        await bob_ws.subscribe(query)
        await subscribed(live, 2)
        await alice.data(CREATE_PROFILE, {"i": {"id": "pr1", "userId": "u1"}})
        mine, his = await alice_ws.next_payload(), await bob_ws.next_payload()
    assert mine == {"data": {"onCreateProfile": {"id": "pr1", "user": {"name": "Alice"}}}}
    # bob reads Users only as their owner: alice's is withheld from him, per event
    assert his["data"] == {"onCreateProfile": {"id": "pr1", "user": None}}
    assert codes(his) == ["FORBIDDEN"]
    await drop_test_database(settings)
