"""Workflows answer once the record is written: no HEAD after an upload, and the files a write
unlinked are deleted after the answer (the services' background work), never before the write."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgi_lifespan import LifespanManager

from graphql_files.adapters.s3 import Files
from graphql_files.services.sweep import Sweeper
from graphql_files.services.wiring import Services

from ..helpers import JPEG, PNG, GraphQLClient, multipart, originals_of
from .test_workflows import (
    ADD,
    DELETE_SONG,
    DETACH,
    REMOVE,
    REPLACE,
    attach,
    create_album,
    create_song,
)

UPLOAD = """mutation($input: UploadFileInput!) {
  uploadFile(input: $input) { path size contentType eTag lastModified } }"""
ATTACH_PATH = """mutation($input: AttachSongCoverArtInput!) {
  attachSongCoverArt(input: $input) { coverArtPath } }"""
PROPERTIES = "query($p: String!) { getProperties(path: $p) { size contentType eTag lastModified } }"


async def objects(files: Files) -> list[str]:
    """What is in the bucket now, deletions still held or not (image variants aside: each
    goes in the same call as its original)."""
    return originals_of([o.path async for o in files.iterate("images/")])


@pytest.fixture
def app(s3_calls: list[str], app: LifespanManager) -> LifespanManager:
    """The app, started once its S3 calls are counted."""
    return app


class HeldDeletes:
    """S3 deletions held until released: what a client sees before they happen."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.release = asyncio.Event()
        self.started = 0
        real = Files.delete_many

        async def held(files: Files, keys: Any) -> list[str]:
            self.started += 1
            await self.release.wait()
            return await real(files, keys)

        monkeypatch.setattr(Files, "delete_many", held)


async def test_an_upload_is_not_headed_after_its_put(
    client: GraphQLClient, services: Services, s3_calls: list[str]
) -> None:
    await create_song(client)
    s3_calls.clear()
    response = await multipart(
        client,
        ATTACH_PATH,
        {"input": {"songId": "s1", "file": None}},
        {"variables.input.file": ("c.png", PNG, "image/png")},
    )
    cover = response.json()["data"]["attachSongCoverArt"]["coverArtPath"]
    # the record names it once S3 has answered the PUTs: the file's, then its thumbnail's (made
    # from the upload's spool, not read back)
    assert s3_calls == ["PutObject", "PutObject"]
    s3_calls.clear()
    response = await multipart(
        client,
        UPLOAD,
        {"input": {"path": "images/x/a.png", "file": None}},
        {"variables.input.file": ("a.png", PNG, "image/png")},
    )
    stored = response.json()["data"]["uploadFile"]
    assert s3_calls == ["PutObject"]
    # what the PUT's answer and the counted bytes say is what a HEAD says
    headed = (await client.data(PROPERTIES, {"p": "images/x/a.png"}))["getProperties"]
    assert stored == {"path": "images/x/a.png", **headed}
    assert (await client.data(PROPERTIES, {"p": cover}))["getProperties"]["size"] == len(PNG)


async def test_a_multipart_upload_is_not_headed_either(
    client: GraphQLClient, services: Services, s3_calls: list[str]
) -> None:
    big = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * (17 * 4096)  # ~17 MiB
    s3_calls.clear()
    response = await multipart(
        client,
        UPLOAD,
        {"input": {"path": "images/x/big.mp3", "file": None}},
        {"variables.input.file": ("big.mp3", big, "audio/mpeg")},
    )
    assert response.status_code == 200, response.text
    stored = response.json()["data"]["uploadFile"]
    assert "HeadObject" not in s3_calls, s3_calls
    assert "CompleteMultipartUpload" in s3_calls
    headed = (await client.data(PROPERTIES, {"p": "images/x/big.mp3"}))["getProperties"]
    assert stored == {"path": "images/x/big.mp3", **headed}
    assert stored["size"] == len(big)


async def test_the_replaced_file_is_deleted_after_the_answer(
    client: GraphQLClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_song(client)
    first = await attach(client)
    held = HeldDeletes(monkeypatch)
    second = await attach(client, JPEG, "b.jpg", "image/jpeg")  # answered, delete still held
    assert held.started <= 1
    assert sorted(await objects(services.files)) == sorted(
        [first["coverArtPath"], second["coverArtPath"]]
    )
    held.release.set()
    await services.background.drain()
    assert held.started == 1
    assert await objects(services.files) == [second["coverArtPath"]]


async def test_every_workflow_deletes_after_its_write(
    client: GraphQLClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """detach, replace, remove and deleteX: each answers with its record written and the
    files it unlinked still there; the deletion follows."""
    await create_song(client)
    await create_album(client)
    song = await attach(client)
    album_body = await multipart(
        client,
        ADD,
        {"input": {"albumId": "a1", "files": [None, None]}},
        {
            "variables.input.files.0": ("a.png", PNG, "image/png"),
            "variables.input.files.1": ("b.png", PNG, "image/png"),
        },
    )
    first, second = album_body.json()["data"]["addPhotoAlbumImages"]["imagePaths"]
    held = HeldDeletes(monkeypatch)
    all_files = sorted([song["coverArtPath"], first, second])

    detached = await client.data(DETACH, {"input": {"songId": "s1", "deleteFile": True}})
    assert detached["detachSongCoverArt"]["coverArtPath"] is None
    replaced = await multipart(
        client,
        REPLACE,
        {"input": {"albumId": "a1", "path": first, "file": None}},
        {"variables.input.file": ("c.png", PNG, "image/png")},
    )
    third = replaced.json()["data"]["replacePhotoAlbumImage"]["imagePaths"][0]
    removed = await client.data(
        REMOVE, {"input": {"albumId": "a1", "paths": [second], "deleteFiles": True}}
    )
    assert removed["removePhotoAlbumImages"]["imagePaths"] == [third]
    await client.data(DELETE_SONG, {"input": {"id": "s1", "deleteFiles": True}})
    assert sorted(await objects(services.files)) == sorted([*all_files, third])  # none deleted yet

    held.release.set()
    await services.background.drain()
    assert await objects(services.files) == [third]


async def test_a_failed_deletion_leaves_the_record_right_and_an_orphan_for_the_sweeper(
    client: GraphQLClient,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await create_song(client)
    first = await attach(client)

    async def refused(self: Files, keys: list[str]) -> list[str]:
        return list(keys)  # S3 answered, and deleted none of them

    monkeypatch.setattr(Files, "delete_many", refused)
    second = await attach(client, JPEG, "b.jpg", "image/jpeg")
    await services.background.drain()
    monkeypatch.undo()
    assert f"kept {first['coverArtPath']}: storage did not delete it" in caplog.text
    song = (await client.data('{ getSong(id: "s1") { coverArtPath version } }'))["getSong"]
    assert song == {"coverArtPath": second["coverArtPath"], "version": second["version"]}
    assert sorted(await objects(services.files)) == sorted(
        [first["coverArtPath"], second["coverArtPath"]]
    )
    sweeper: Sweeper = services.sweeper
    report = await sweeper.run(grace=timedelta(0), now=datetime.now(UTC) + timedelta(seconds=2))
    removed = [o.path for o in report.removed]
    assert originals_of(removed) == [first["coverArtPath"]]
    assert len(removed) == 2  # with its thumbnail
    assert await objects(services.files) == [second["coverArtPath"]]


async def test_shutdown_waits_for_pending_deletions(
    client: GraphQLClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_song(client)
    await attach(client)
    held = HeldDeletes(monkeypatch)
    await attach(client, JPEG, "b.jpg", "image/jpeg")
    assert services.background.pending == 1
    closing = asyncio.create_task(services.background.close())
    await asyncio.sleep(0)
    assert not closing.done()
    held.release.set()
    await closing
    assert services.background.pending == 0
    assert held.started == 1
