"""Races over real HTTP between child writes and parent deletes: no record ever names a missing
parent, and a ``deleteFiles`` cascade leaves no object of what it deleted.

Each race runs ``ROUNDS`` times (``tests/races.py``): a comment created, or moved, naming a post
while that post is deleted with ``on_delete = "cascade"``; two cascades over overlapping trees
(a post and one of its comments, deleted at once); and the first race again with the two
requests sent to two server instances that share MongoDB, S3 and Redis. After every round each
comment and reaction of the round is read from MongoDB: one whose reference names a record that
is gone is dangling, and there must be none; nor any object left in the folder of a record the
round deleted with its files.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from graphql_files.services.wiring import Services
from graphql_files.settings import Settings

from ..declared import RELATED_TEXT
from ..helpers import (
    GraphQLClient,
    LiveServer,
    full_access,
    make_settings,
    put_object,
    start_live_server,
)
from ..races import ROUNDS, Tally, body, folder, race

CREATE_COMMENT = """mutation($id: ID!, $post: ID) {
  createComment(input: {id: $id, postId: $post, content: "c"}) { id postId } }"""
MOVE_COMMENT = """mutation($id: ID!, $post: ID) {
  updateComment(input: {id: $id, postId: $post}) { id postId } }"""
DELETE_POST = """mutation($id: ID!) {
  deletePost(input: {id: $id, deleteFiles: true}) { id } }"""
DELETE_COMMENT = """mutation($id: ID!) {
  deleteComment(input: {id: $id, deleteFiles: true}) { id } }"""
CASCADE_OFFSET = 0.08  # a cascade takes longer than one delete: both orders must happen


@pytest.fixture
def settings(s3_endpoint: str, bucket: str, tmp_path: Path, redis_url: str) -> Settings:
    models = tmp_path / "models.toml"
    models.write_text(RELATED_TEXT)
    return make_settings(
        s3_endpoint,
        bucket,
        models_file=models,
        redis_url=redis_url,
        redis_stream=f"t:{uuid.uuid4().hex[:8]}",
    )


@pytest.fixture
async def client(live: LiveServer) -> AsyncIterator[GraphQLClient]:
    graphql = live.client()
    async with graphql.http:
        yield graphql


PATH_FIELDS = {"Post": "imagePath", "Comment": "attachmentPath", "Reaction": "picturePath"}


async def planted(
    services: Services, model: str, record_id: str, values: dict[str, Any], *, file: bool = True
) -> None:
    """A record for a round, made straight in the stores (the setup is not what is raced),
    naming an object in its folder when ``file``."""
    if file:
        path = f"{folder(model, record_id)}file.png"
        await put_object(services, path)
        values = {**values, PATH_FIELDS[model]: path}
    spec = services.declaration.model(model)
    await services.records.create(full_access(services), spec, values, record_id=record_id)


async def stored(services: Services, model: str, record_id: str) -> dict[str, Any] | None:
    """The record as MongoDB holds it, whoever owns it."""
    collection = services.records.collection(services.declaration.model(model))
    async for doc in collection.iterate({"_id": record_id}):
        return doc
    return None


class Round:
    """What one round left: dangling references and objects a deleted record left behind."""

    def __init__(self, services: Services, tally: Tally) -> None:
        self.services, self.tally = services, tally

    async def parent_exists(self, child: str, child_id: str, reference: str, parent: str) -> None:
        doc = await stored(self.services, child, child_id)
        if doc is None or doc.get(reference) is None:
            return
        if await stored(self.services, parent, doc[reference]) is None:
            self.tally.dangling.append(f"{child} {child_id} names {parent} {doc[reference]}")

    async def no_objects_if_gone(self, model: str, record_id: str) -> None:
        if await stored(self.services, model, record_id) is not None:
            return
        left = [o.path async for o in self.services.files.iterate(folder(model, record_id))]
        self.tally.dangling += [f"{path} outlived its {model}" for path in left]


async def test_create_comment_races_a_cascading_delete(
    live: LiveServer, client: GraphQLClient
) -> None:
    """createComment(postId: P) against deletePost(P, deleteFiles), P with a commented image."""
    services, rng, tally = live.services, random.Random(11), Tally()
    check = Round(services, tally)
    for n in range(ROUNDS):
        post, old, new = f"p{n}", f"old{n}", f"new{n}"
        await planted(services, "Post", post, {"title": "t"})
        await planted(services, "Comment", old, {"content": "c", "postId": post})
        created, deleted = await race(
            partial(body, client, CREATE_COMMENT, {"id": new, "post": post}),
            partial(body, client, DELETE_POST, {"id": post}),
            rng,
            CASCADE_OFFSET,
        )
        tally.saw(created, deleted)
        await services.background.drain()  # files go after the answer
        for comment in (old, new):
            await check.parent_exists("Comment", comment, "postId", "Post")
            await check.no_objects_if_gone("Comment", comment)
        await check.no_objects_if_gone("Post", post)
    print(tally.outcomes)
    assert tally.dangling == [], f"{len(tally.dangling)} dangle after {ROUNDS} rounds: {tally}"
    # both orders happened: a comment created in time was carried away, a late one refused
    assert {"ok / ok", "BAD_USER_INPUT / ok"} <= set(tally.outcomes), tally.outcomes


async def test_moving_a_comment_races_deleting_its_new_post(
    live: LiveServer, client: GraphQLClient
) -> None:
    """updateComment(postId: Q) against deletePost(Q): the comment stays on P or goes with Q."""
    services, rng, tally = live.services, random.Random(12), Tally()
    check = Round(services, tally)
    for n in range(ROUNDS):
        home, other, comment = f"home{n}", f"other{n}", f"moved{n}"
        await planted(services, "Post", home, {"title": "t"}, file=False)
        await planted(services, "Post", other, {"title": "t"}, file=False)
        await planted(services, "Comment", comment, {"content": "c", "postId": home}, file=False)
        moved, deleted = await race(
            partial(body, client, MOVE_COMMENT, {"id": comment, "post": other}),
            partial(body, client, DELETE_POST, {"id": other}),
            rng,
        )
        tally.saw(moved, deleted)
        await check.parent_exists("Comment", comment, "postId", "Post")
    print(tally.outcomes)
    assert tally.dangling == [], f"{len(tally.dangling)} dangle after {ROUNDS} rounds: {tally}"
    assert {"ok / ok", "BAD_USER_INPUT / ok"} <= set(tally.outcomes), tally.outcomes


async def test_overlapping_cascades(live: LiveServer, client: GraphQLClient) -> None:
    """deletePost(P, deleteFiles) against deleteComment(C, deleteFiles), C a comment of P with a
    reaction: every file of the tree goes, and no reaction outlives its comment."""
    services, rng, tally = live.services, random.Random(13), Tally()
    check = Round(services, tally)
    for n in range(ROUNDS):
        post, comment, sibling, reaction = f"tree{n}", f"c{n}", f"s{n}", f"r{n}"
        await planted(services, "Post", post, {"title": "t"})
        await planted(services, "Comment", comment, {"content": "c", "postId": post})
        await planted(services, "Comment", sibling, {"content": "c", "postId": post}, file=False)
        await planted(services, "Reaction", reaction, {"emoji": "+1", "commentId": comment})
        whole, part = await race(
            partial(body, client, DELETE_POST, {"id": post}),
            partial(body, client, DELETE_COMMENT, {"id": comment}),
            rng,
            CASCADE_OFFSET,
        )
        tally.saw(whole, part)
        await services.background.drain()
        assert "errors" not in whole, whole  # a cascade is never refused by the overlap
        await check.parent_exists("Reaction", reaction, "commentId", "Comment")
        for model, record in (("Post", post), ("Comment", comment), ("Comment", sibling)):
            assert await stored(services, model, record) is None, f"{model} {record} survived"
            await check.no_objects_if_gone(model, record)
        await check.no_objects_if_gone("Reaction", reaction)
        assert await stored(services, "Reaction", reaction) is None
    print(tally.outcomes)
    assert tally.dangling == [], f"{len(tally.dangling)} dangle after {ROUNDS} rounds: {tally}"
    # both orders happened: the comment deleted on its own first, or carried off by the post's
    assert {"ok / ok", "ok / NOT_FOUND"} <= set(tally.outcomes), tally.outcomes


async def test_two_instances_race_over_redis(settings: Settings) -> None:
    """The first race with createComment sent to one instance and deletePost to another: the
    record claims live in MongoDB, so the instances exclude each other as one process does."""
    rounds = ROUNDS // 2
    async with (
        start_live_server(settings) as one,
        start_live_server(settings) as two,
        one.client() as first,
        two.client() as second,
    ):
        services, rng, tally = one.services, random.Random(14), Tally()
        check = Round(services, tally)
        for n in range(rounds):
            post, comment = f"shared{n}", f"late{n}"
            await planted(services, "Post", post, {"title": "t"}, file=False)
            created, deleted = await race(
                partial(body, first, CREATE_COMMENT, {"id": comment, "post": post}),
                partial(body, second, DELETE_POST, {"id": post}),
                rng,
            )
            tally.saw(created, deleted)
            await check.parent_exists("Comment", comment, "postId", "Post")
    print(tally.outcomes)
    assert tally.dangling == [], f"{len(tally.dangling)} dangle after {rounds} rounds: {tally}"
    assert {"ok / ok", "BAD_USER_INPUT / ok"} <= set(tally.outcomes), tally.outcomes
