"""Races over real HTTP: adoption and deletion of the same object must never both succeed.

Each race runs two mutations on one object at once, hundreds of times, with the second one
started at a varied offset from the first (sometimes before it), against a real uvicorn. After
every round the record is read back and each object it names is looked up in S3: a record that
names a missing object is a dangling record, and there must be none.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest

from graphql_files.domain.declaration import PHOTO_ALBUM, SONG
from graphql_files.services.wiring import Services

from ..helpers import (
    PNG,
    GraphQLClient,
    LiveServer,
    full_access,
    make_settings,
    multipart,
    put_object,
    start_live_server,
)

ROUNDS = 200
MAX_OFFSET = 0.012  # seconds; both requests take a few milliseconds each

ATTACH = """mutation($input: AttachSongCoverArtInput!) {
  attachSongCoverArt(input: $input) { id coverArtPath version } }"""
DETACH = """mutation($input: DetachSongCoverArtInput!) {
  detachSongCoverArt(input: $input) { id coverArtPath version } }"""
REMOVE_FILE = "mutation($path: String!) { removeFile(path: $path) }"
ADD = """mutation($input: AddPhotoAlbumImagesInput!) {
  addPhotoAlbumImages(input: $input) { id imagePaths version } }"""
REMOVE = """mutation($input: RemovePhotoAlbumImagesInput!) {
  removePhotoAlbumImages(input: $input) { id imagePaths version } }"""


def folder(model: str, record_id: str) -> str:
    return f"images/{model}/{record_id}/"


@dataclass
class Tally:
    """What the rounds of one race ended in."""

    dangling: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)

    def saw(self, first: dict[str, Any], second: dict[str, Any]) -> None:
        key = f"{_outcome(first)} / {_outcome(second)}"
        self.outcomes[key] = self.outcomes.get(key, 0) + 1


def _outcome(body: dict[str, Any]) -> str:
    errors = body.get("errors")
    return errors[0]["extensions"]["code"] if errors else "ok"


async def race(
    first: Callable[[], Awaitable[dict[str, Any]]],
    second: Callable[[], Awaitable[dict[str, Any]]],
    rng: random.Random,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run both, the second started ``offset`` seconds after the first (or before it)."""
    offset = rng.uniform(-MAX_OFFSET, MAX_OFFSET)

    async def delayed(call: Callable[[], Awaitable[dict[str, Any]]], by: float) -> dict[str, Any]:
        if by > 0:
            await asyncio.sleep(by)  # the offset between the two is what this test varies
        return await call()

    a, b = await asyncio.gather(delayed(first, -offset), delayed(second, offset))
    return a, b


async def missing(services: Services, paths: list[str]) -> list[str]:
    found = await services.files.head_many(paths)
    return [p for p, info in zip(paths, found, strict=True) if info is None]


async def body(client: GraphQLClient, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(query, variables)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    for error in result.get("errors", []):  # refusals are fine; a 500 is not
        assert error["extensions"]["code"] != "INTERNAL_SERVER_ERROR", error
    return result


@pytest.fixture
async def client(live: LiveServer) -> AsyncIterator[GraphQLClient]:
    graphql = live.client()
    async with graphql.http:
        yield graphql


async def test_adopt_races_remove_file(live: LiveServer, client: GraphQLClient) -> None:
    """attachSongCoverArt(uploadedPath: P) against removeFile(P), P unnamed in the song's folder."""
    services, rng, tally = live.services, random.Random(1), Tally()
    for n in range(ROUNDS):
        song_id = f"race1-{n}"
        await client.data(
            'mutation($id: ID!) { createSong(input: {id: $id, name: "r"}) { id } }', {"id": song_id}
        )
        path = f"{folder('Song', song_id)}presigned.png"
        await put_object(services, path)
        attach, remove = await race(
            partial(body, client, ATTACH, {"input": {"songId": song_id, "uploadedPath": path}}),
            partial(body, client, REMOVE_FILE, {"path": path}),
            rng,
        )
        tally.saw(attach, remove)
        await services.background.drain()  # deletions run after the answer
        song = await services.records.get(full_access(services), SONG, song_id)
        tally.dangling += await missing(services, list(song.file_paths))
    print(tally.outcomes)
    assert tally.dangling == [], f"{len(tally.dangling)} of {ROUNDS} rounds dangle: {tally}"
    assert sum(tally.outcomes.values()) == ROUNDS


async def test_detach_and_delete_races_reattach(live: LiveServer, client: GraphQLClient) -> None:
    """detachSongCoverArt(deleteFile) against attachSongCoverArt(uploadedPath: the same file,
    deletePrevious: false)."""
    services, rng, tally = live.services, random.Random(2), Tally()
    for n in range(ROUNDS):
        song_id = f"race2-{n}"
        path = f"{folder('Song', song_id)}cover.png"
        await put_object(services, path)
        await client.data(
            'mutation($id: ID!) { createSong(input: {id: $id, name: "r"}) { id } }', {"id": song_id}
        )
        await body(client, ATTACH, {"input": {"songId": song_id, "uploadedPath": path}})
        detach, attach = await race(
            partial(body, client, DETACH, {"input": {"songId": song_id, "deleteFile": True}}),
            partial(
                body,
                client,
                ATTACH,
                {"input": {"songId": song_id, "uploadedPath": path, "deletePrevious": False}},
            ),
            rng,
        )
        tally.saw(detach, attach)
        await services.background.drain()  # deletions run after the answer
        song = await services.records.get(full_access(services), SONG, song_id)
        tally.dangling += await missing(services, list(song.file_paths))
    print(tally.outcomes)
    assert tally.dangling == [], f"{len(tally.dangling)} of {ROUNDS} rounds dangle: {tally}"


async def test_remove_and_delete_races_add(live: LiveServer, client: GraphQLClient) -> None:
    """removePhotoAlbumImages(paths: [P], deleteFiles) against addPhotoAlbumImages(uploadedPaths:
    [P])."""
    services, rng, tally = live.services, random.Random(3), Tally()
    for n in range(ROUNDS):
        album_id = f"race3-{n}"
        path = f"{folder('PhotoAlbum', album_id)}image.png"
        await put_object(services, path)
        await client.data(
            'mutation($id: ID!) { createPhotoAlbum(input: {id: $id, name: "r"}) { id } }',
            {"id": album_id},
        )
        await body(client, ADD, {"input": {"albumId": album_id, "uploadedPaths": [path]}})
        remove, add = await race(
            partial(
                body,
                client,
                REMOVE,
                {"input": {"albumId": album_id, "paths": [path], "deleteFiles": True}},
            ),
            partial(body, client, ADD, {"input": {"albumId": album_id, "uploadedPaths": [path]}}),
            rng,
        )
        tally.saw(remove, add)
        await services.background.drain()  # deletions run after the answer
        album = await services.records.get(full_access(services), PHOTO_ALBUM, album_id)
        tally.dangling += await missing(services, list(album.file_paths))
    print(tally.outcomes)
    assert tally.dangling == [], f"{len(tally.dangling)} of {ROUNDS} rounds dangle: {tally}"


async def test_fifty_concurrent_attaches_without_expected_version_all_succeed(
    s3_endpoint: str, bucket: str, redis_url: str
) -> None:
    """Without expectedVersion the caller asked the server to serialize: on an instance that
    publishes through Redis (slower writes, more contention), all 50 succeed, every version from
    2 to 51 is someone's, and each deleted exactly what it replaced: one object is left."""
    settings = make_settings(
        s3_endpoint, bucket, redis_url=redis_url, redis_stream=f"t:{uuid.uuid4().hex[:8]}"
    )
    # 50 requests served one after another by one event loop, the test's own: no request may
    # give up before its turn comes (the server's REQUEST_TIMEOUT bounds each)
    async with start_live_server(settings) as live, live.client(timeout=60) as client:
        await client.data('mutation { createSong(input: {id: "busy", name: "b"}) { id } }')

        async def attach() -> dict[str, Any]:
            response = await multipart(
                client,
                ATTACH,
                {"input": {"songId": "busy", "file": None}},
                {"variables.input.file": ("c.png", PNG, "image/png")},
            )
            result: dict[str, Any] = response.json()
            return result

        bodies = await asyncio.gather(*(attach() for _ in range(50)))
        assert [b.get("errors") for b in bodies] == [None] * 50
        versions = sorted(b["data"]["attachSongCoverArt"]["version"] for b in bodies)
        assert versions == list(range(2, 52))
        services = live.services
        await services.background.drain()  # deletions run after the answer
        left = [o.path async for o in services.files.iterate(folder("Song", "busy"))]
        song = await services.records.get(full_access(services), SONG, "busy")
        assert left == list(song.file_paths)
