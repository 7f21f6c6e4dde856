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
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest

from graphql_files.domain.declaration import PHOTO_ALBUM, SONG

from ..helpers import (
    PNG,
    GraphQLClient,
    LiveServer,
    full_access,
    make_settings,
    multipart,
    put_object,
    start_live_server,
    stored_originals,
)
from ..races import ROUNDS, Tally, body, folder, missing, race

ATTACH = """mutation($input: AttachSongCoverArtInput!) {
  attachSongCoverArt(input: $input) { id coverArtPath version } }"""
DETACH = """mutation($input: DetachSongCoverArtInput!) {
  detachSongCoverArt(input: $input) { id coverArtPath version } }"""
REMOVE_FILE = "mutation($path: String!) { removeFile(path: $path) }"
ADD = """mutation($input: AddPhotoAlbumImagesInput!) {
  addPhotoAlbumImages(input: $input) { id imagePaths version } }"""
REMOVE = """mutation($input: RemovePhotoAlbumImagesInput!) {
  removePhotoAlbumImages(input: $input) { id imagePaths version } }"""


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
        left = await stored_originals(services, folder("Song", "busy"))
        song = await services.records.get(full_access(services), SONG, "busy")
        assert left == list(song.file_paths)
