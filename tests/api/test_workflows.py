"""The record-file workflows end to end over HTTP against the session's stores, failures
included; on the in-memory engines too (``memory``)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest

from graphql_files.adapters.s3 import Files
from graphql_files.domain.variants import is_variant_key
from graphql_files.errors import DatabaseUnavailable, StorageUnavailable
from graphql_files.services.records import Records
from graphql_files.services.storage import Storage
from graphql_files.services.wiring import Services

from ..helpers import (
    JPEG,
    MP3,
    PNG,
    GraphQLClient,
    codes,
    full_access,
    multipart,
    stored_originals,
    upload_data,
)

pytestmark = pytest.mark.memory  # also run on the in-memory engines

SONG = "id name coverArtPath version coverArt { path url { url } properties { size contentType } }"
ALBUM = "id imagePaths version images { path url { url } }"
ATTACH = f"""mutation($input: AttachSongCoverArtInput!) {{
  attachSongCoverArt(input: $input) {{ {SONG} }} }}"""
DETACH = f"""mutation($input: DetachSongCoverArtInput!) {{
  detachSongCoverArt(input: $input) {{ {SONG} }} }}"""
ADD = f"""mutation($input: AddPhotoAlbumImagesInput!) {{
  addPhotoAlbumImages(input: $input) {{ {ALBUM} }} }}"""
REPLACE = f"""mutation($input: ReplacePhotoAlbumImageInput!) {{
  replacePhotoAlbumImage(input: $input) {{ {ALBUM} }} }}"""
REMOVE = f"""mutation($input: RemovePhotoAlbumImagesInput!) {{
  removePhotoAlbumImages(input: $input) {{ {ALBUM} }} }}"""
DELETE_SONG = "mutation($input: DeleteSongInput!) { deleteSong(input: $input) { id version } }"
DELETE_ALBUM = """mutation($input: DeletePhotoAlbumInput!) {
  deletePhotoAlbum(input: $input) { id version } }"""
CREATE_UPLOAD_URL = """mutation($input: CreateUploadUrlInput!) {
  createUploadUrl(input: $input) { url fields } }"""


@pytest.fixture
def s3(services: Services) -> Services:
    """The bucket, looked at through ``keys``."""
    return services


async def keys(services: Services, prefix: str = "images/") -> list[str]:
    """The objects under ``prefix`` but image variants, once every deletion begun after an
    answer is done (no variant may outlive its original: ``stored_originals``)."""
    return await stored_originals(services, prefix)


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as browser:
        return await browser.get(url)


async def create_song(client: GraphQLClient, song_id: str = "s1") -> None:
    await client.data(
        'mutation($id: ID!) { createSong(input: {id: $id, name: "A"}) { id } }', {"id": song_id}
    )


async def create_album(client: GraphQLClient, album_id: str = "a1") -> None:
    await client.data(
        'mutation($id: ID!) { createPhotoAlbum(input: {id: $id, name: "A"}) { id } }',
        {"id": album_id},
    )


async def attach_body(
    client: GraphQLClient,
    song_id: str = "s1",
    data: bytes = PNG,
    name: str = "x.png",
    kind: str = "image/png",
    **extra: Any,
) -> dict[str, Any]:
    """The response body of attachSongCoverArt with a file sent in the request."""
    response = await multipart(
        client,
        ATTACH,
        {"input": {"songId": song_id, "file": None, **extra}},
        {"variables.input.file": (name, data, kind)},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def attach(
    client: GraphQLClient,
    data: bytes = PNG,
    name: str = "cover.png",
    kind: str = "image/png",
    **extra: Any,
) -> dict[str, Any]:
    """The song after attaching a cover art file, which must succeed."""
    body = await attach_body(client, "s1", data, name, kind, **extra)
    assert "errors" not in body, body["errors"]
    song: dict[str, Any] = body["data"]["attachSongCoverArt"]
    return song


async def test_song_cover_art_lifecycle(
    client: GraphQLClient, s3: Services, services: Services
) -> None:
    await create_song(client)
    song = await attach(client, name="My Cover (final).png")
    path = song["coverArtPath"]
    assert path.startswith("images/Song/s1/")
    assert path.endswith("-My-Cover-final-.png")
    assert song["version"] == 2
    assert song["coverArt"]["path"] == path
    assert song["coverArt"]["properties"] == {"size": len(PNG), "contentType": "image/png"}
    assert (await get(song["coverArt"]["url"]["url"])).content == PNG

    # replace: a new key; the old object is deleted only after the song stops naming it
    replaced = await attach(client, JPEG, "cover.jpg", "image/jpeg")
    assert replaced["coverArtPath"] != path
    assert replaced["version"] == 3
    assert (await get(replaced["coverArt"]["url"]["url"])).content == JPEG
    await services.background.drain()  # deletions run after the answer
    assert await keys(s3) == [replaced["coverArtPath"]]

    # keep the previous file when asked
    kept = await attach(client, PNG, "again.png", deletePrevious=False)
    assert sorted(await keys(s3)) == sorted([replaced["coverArtPath"], kept["coverArtPath"]])

    # detach without deleting: record and file both persist, unlinked
    detached = (await client.data(DETACH, {"input": {"songId": "s1"}}))["detachSongCoverArt"]
    assert detached["coverArtPath"] is None
    assert detached["coverArt"] is None
    assert kept["coverArtPath"] in await keys(s3)

    # attach an existing upload, then detach and delete the file
    again = await attach(client)
    gone = (await client.data(DETACH, {"input": {"songId": "s1", "deleteFile": True}}))[
        "detachSongCoverArt"
    ]
    assert gone["coverArtPath"] is None
    await services.background.drain()
    assert again["coverArtPath"] not in await keys(s3)

    # detaching nothing writes nothing
    nothing = (await client.data(DETACH, {"input": {"songId": "s1"}}))["detachSongCoverArt"]
    assert nothing["version"] == gone["version"]


async def test_delete_song_with_its_files(
    client: GraphQLClient, s3: Services, services: Services
) -> None:
    await create_song(client)
    song = await attach(client)
    await client.data('mutation { createSong(input: {id: "other", name: "B"}) { id } }')
    deleted = (await client.data(DELETE_SONG, {"input": {"id": "s1", "deleteFiles": True}}))[
        "deleteSong"
    ]
    assert deleted["version"] == song["version"] + 1
    await services.background.drain()
    assert await keys(s3) == []
    assert await client.run('{ getSong(id: "s1") { id } }') == {"data": {"getSong": None}}


async def test_delete_without_delete_files_keeps_them(client: GraphQLClient, s3: Services) -> None:
    await create_song(client)
    song = await attach(client)
    await client.data(DELETE_SONG, {"input": {"id": "s1"}})
    assert await keys(s3) == [song["coverArtPath"]]


async def test_files_outside_the_record_folder_are_never_deleted(
    client: GraphQLClient, s3: Services, services: Services
) -> None:
    upload = """mutation($input: UploadFileInput!) { uploadFile(input: $input) { path } }"""
    for path in ("images/shared/logo.png", "images/Song/s1/direct.png"):
        await upload_data(
            client,
            upload,
            {"input": {"path": path, "file": None}},
            {"variables.input.file": ("x.png", PNG, "image/png")},
        )
    await client.data(
        'mutation { createSong(input: {id: "s1", name: "A", '
        'coverArtPath: "images/shared/logo.png"}) { id } }'
    )
    await client.data(
        'mutation { createSong(input: {id: "s2", name: "B", '
        'coverArtPath: "images/Song/s1/direct.png"}) { id } }'
    )
    await attach(client)  # replaces images/shared/logo.png: outside images/Song/s1/, kept
    await services.background.drain()
    assert "images/shared/logo.png" in await keys(s3)
    await client.data(DELETE_SONG, {"input": {"id": "s1", "deleteFiles": True}})
    # images/Song/s1/direct.png lies in s1's folder, but s2 still names it: kept
    await services.background.drain()
    assert sorted(await keys(s3)) == ["images/Song/s1/direct.png", "images/shared/logo.png"]


async def test_attach_a_presigned_upload(client: GraphQLClient, s3: Services) -> None:
    await create_song(client)
    post = (
        await client.data(
            CREATE_UPLOAD_URL,
            {"input": {"path": "images/Song/s1/from-browser.png", "contentType": "image/png"}},
        )
    )["createUploadUrl"]
    async with httpx.AsyncClient() as browser:
        sent = await browser.post(
            post["url"], data=post["fields"], files={"file": ("x.png", PNG, "image/png")}
        )
    assert sent.status_code in (200, 204)
    song = (
        await client.data(
            ATTACH, {"input": {"songId": "s1", "uploadedPath": "images/Song/s1/from-browser.png"}}
        )
    )["attachSongCoverArt"]
    # adopted as a copy under a key of its own, which no presigned form can name; the upload
    # it was made from goes after the answer
    assert song["coverArtPath"].startswith("images/Song/s1/")
    assert song["coverArtPath"].endswith("-from-browser.png")
    assert (await get(song["coverArt"]["url"]["url"])).content == PNG
    assert await keys(s3) == [song["coverArtPath"]]


@pytest.mark.parametrize(
    ("uploaded_path", "code"),
    [
        ("images/Song/other/x.png", "BAD_USER_INPUT"),  # another record's folder
        ("images/Song/s1x/x.png", "BAD_USER_INPUT"),  # a folder whose name starts like ours
        ("images/Song/s1/../other/x.png", "BAD_USER_INPUT"),
        ("images/Song/s1/missing.png", "NOT_FOUND"),
        ("images/Song/s1/text.png", "UNSUPPORTED_MEDIA_TYPE"),  # its bytes are not an image
    ],
)
async def test_uploaded_paths_are_checked(
    client: GraphQLClient, uploaded_path: str, code: str
) -> None:
    await create_song(client)
    post = (
        await client.data(
            CREATE_UPLOAD_URL,
            {"input": {"path": "images/Song/s1/text.png", "contentType": "image/png"}},
        )
    )["createUploadUrl"]
    async with httpx.AsyncClient() as browser:
        await browser.post(
            post["url"],
            data=post["fields"],
            files={"file": ("t.png", b"not really a png", "image/png")},
        )
    body = await client.run(ATTACH, {"input": {"songId": "s1", "uploadedPath": uploaded_path}})
    assert codes(body) == [code]
    song = (await client.data('{ getSong(id: "s1") { coverArtPath version } }'))["getSong"]
    assert song == {"coverArtPath": None, "version": 1}


async def test_exactly_one_source(client: GraphQLClient) -> None:
    await create_song(client)
    neither = await client.run(ATTACH, {"input": {"songId": "s1"}})
    assert codes(neither) == ["BAD_USER_INPUT"]
    both = await multipart(
        client,
        ATTACH,
        {"input": {"songId": "s1", "file": None, "uploadedPath": "images/Song/s1/x.png"}},
        {"variables.input.file": ("x.png", PNG, "image/png")},
    )
    assert codes(both.json()) == ["BAD_USER_INPUT"]


async def test_album_images_lifecycle(
    client: GraphQLClient, s3: Services, services: Services
) -> None:
    await create_album(client)
    added = await upload_data(
        client,
        ADD,
        {"input": {"albumId": "a1", "files": [None, None, None]}},
        {f"variables.input.files.{n}": (f"img{n}.png", PNG, "image/png") for n in range(3)},
    )
    album = added["addPhotoAlbumImages"]
    paths = album["imagePaths"]
    assert len(paths) == 3
    assert all(p.startswith("images/PhotoAlbum/a1/") for p in paths)
    assert album["version"] == 2
    for image in album["images"]:
        assert (await get(image["url"]["url"])).content == PNG

    replaced = (
        await upload_data(
            client,
            REPLACE,
            {"input": {"albumId": "a1", "path": paths[1], "file": None}},
            {"variables.input.file": ("new.jpg", JPEG, "image/jpeg")},
        )
    )["replacePhotoAlbumImage"]
    assert replaced["imagePaths"][0] == paths[0]
    assert replaced["imagePaths"][2] == paths[2]
    new_path = replaced["imagePaths"][1]
    assert new_path not in paths
    assert (await get(replaced["images"][1]["url"]["url"])).content == JPEG
    await services.background.drain()
    assert sorted(await keys(s3)) == sorted([paths[0], new_path, paths[2]])

    kept = (await client.data(REMOVE, {"input": {"albumId": "a1", "paths": [paths[0]]}}))[
        "removePhotoAlbumImages"
    ]
    assert kept["imagePaths"] == [new_path, paths[2]]
    assert paths[0] in await keys(s3)  # unlinked, not deleted

    removed = (
        await client.data(
            REMOVE, {"input": {"albumId": "a1", "paths": [new_path], "deleteFiles": True}}
        )
    )["removePhotoAlbumImages"]
    assert removed["imagePaths"] == [paths[2]]
    await services.background.drain()
    assert new_path not in await keys(s3)

    missing = await client.run(REMOVE, {"input": {"albumId": "a1", "paths": [new_path]}})
    assert codes(missing) == ["NOT_FOUND"]
    not_named = await upload_data_error(
        client,
        REPLACE,
        {"input": {"albumId": "a1", "path": "images/PhotoAlbum/a1/none.png", "file": None}},
    )
    assert not_named == ["NOT_FOUND"]

    await client.data(DELETE_ALBUM, {"input": {"id": "a1", "deleteFiles": True}})
    await services.background.drain()
    assert await keys(s3) == [paths[0]]  # the one unlinked earlier is an orphan for the sweeper


async def upload_data_error(
    client: GraphQLClient, query: str, variables: dict[str, Any]
) -> list[str]:
    response = await multipart(
        client, query, variables, {"variables.input.file": ("x.png", PNG, "image/png")}
    )
    return codes(response.json())


async def test_album_adopts_presigned_uploads(client: GraphQLClient, s3: Services) -> None:
    await create_album(client)
    paths = []
    for n in range(2):
        post = (
            await client.data(
                CREATE_UPLOAD_URL,
                {"input": {"path": f"images/PhotoAlbum/a1/p{n}.mp3", "contentType": "audio/mpeg"}},
            )
        )["createUploadUrl"]
        async with httpx.AsyncClient() as browser:
            await browser.post(
                post["url"], data=post["fields"], files={"file": ("x.mp3", MP3, "audio/mpeg")}
            )
        paths.append(f"images/PhotoAlbum/a1/p{n}.mp3")
    album = (await client.data(ADD, {"input": {"albumId": "a1", "uploadedPaths": paths}}))[
        "addPhotoAlbumImages"
    ]
    copies = album["imagePaths"]
    assert [p.rpartition("-")[2] for p in copies] == ["p0.mp3", "p1.mp3"]
    assert not set(copies) & set(paths)  # copies, under keys of their own
    assert await keys(s3) == sorted(copies)  # the uploads they were made from are gone
    again = await client.error(ADD, {"input": {"albumId": "a1", "uploadedPaths": paths[:1]}})
    assert again["extensions"]["code"] == "NOT_FOUND"  # an upload is adopted once


async def test_concurrent_adds_lose_nothing(client: GraphQLClient, s3: Services) -> None:
    await create_album(client)

    async def add_one(n: int) -> None:
        await upload_data(
            client,
            ADD,
            {"input": {"albumId": "a1", "files": [None]}},
            {"variables.input.files.0": (f"i{n}.png", PNG, "image/png")},
        )

    await asyncio.gather(*(add_one(n) for n in range(50)))
    album = (await client.data('{ getPhotoAlbum(id: "a1") { imagePaths version } }'))[
        "getPhotoAlbum"
    ]
    assert len(album["imagePaths"]) == len(set(album["imagePaths"])) == 50
    assert album["version"] == 51
    assert sorted(await keys(s3)) == sorted(album["imagePaths"])


async def test_stale_version_uploads_nothing(client: GraphQLClient, s3: Services) -> None:
    await create_song(client)
    await attach(client)
    body = await attach_body(client, "s1", expectedVersion=1)
    error = body["errors"][0]
    assert error["extensions"] == {"code": "CONFLICT", "currentVersion": 2}
    assert len(await keys(s3)) == 1


async def test_missing_record_uploads_nothing(client: GraphQLClient, s3: Services) -> None:
    body = await attach_body(client, "nope")
    assert codes(body) == ["NOT_FOUND"]
    album = await multipart(
        client,
        ADD,
        {"input": {"albumId": "nope", "files": [None]}},
        {"variables.input.files.0": ("x.png", PNG, "image/png")},
    )
    assert codes(album.json()) == ["NOT_FOUND"]
    assert await keys(s3) == []


# --- failures injected at each step ----------------------------------------------------------


async def test_record_write_of_unknown_outcome_keeps_the_upload_claimed(
    client: GraphQLClient, s3: Services, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the record write fails without a definite answer (the database timed out), the
    write may still land: the uploads stay, claimed, until the claims' lease runs out; then the
    sweeper removes them, since no record names them."""
    await create_song(client)
    await create_album(client)

    async def database_down(self: Records, *args: Any, **kwargs: Any) -> None:
        raise DatabaseUnavailable("The database did not answer; try again shortly.")

    monkeypatch.setattr(Records, "update", database_down)
    body = await attach_body(client, "s1")
    assert codes(body) == ["DATABASE_UNAVAILABLE"]
    album = await upload_data_many(client, 3)
    assert codes(album) == ["DATABASE_UNAVAILABLE"]
    monkeypatch.undo()
    left = await keys(s3)
    assert len(left) == 4
    report = await services.sweeper.run(grace=timedelta(0))
    assert report.removed == []
    assert report.busy == 8  # the four uploads and their variants: claimed, the write might land

    later = services.storage.claims.clock() + services.storage.claims.lease
    monkeypatch.setattr(services.storage.claims, "clock", lambda: later)
    report = await services.sweeper.run(grace=timedelta(0))
    removed = [o.path for o in report.removed]
    assert sorted(p for p in removed if not is_variant_key(p)) == sorted(left)
    assert len(removed) == 8
    assert await keys(s3) == []
    song = (await client.data('{ getSong(id: "s1") { coverArtPath version } }'))["getSong"]
    assert song == {"coverArtPath": None, "version": 1}


async def upload_data_many(client: GraphQLClient, count: int) -> dict[str, Any]:
    response = await multipart(
        client,
        ADD,
        {"input": {"albumId": "a1", "files": [None] * count}},
        {f"variables.input.files.{n}": (f"{n}.png", PNG, "image/png") for n in range(count)},
    )
    body: dict[str, Any] = response.json()
    return body


async def test_conflict_at_the_write_removes_the_upload(
    client: GraphQLClient, s3: Services, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_song(client)
    real_upload = Storage.upload
    records = services.records

    async def upload_then_someone_writes(self: Storage, *args: Any, **kwargs: Any) -> Any:
        stored = await real_upload(self, *args, **kwargs)
        from graphql_files.domain.declaration import SONG

        await records.update(
            full_access(services), SONG, "s1", set_values={"name": "changed meanwhile"}
        )
        return stored

    monkeypatch.setattr(Storage, "upload", upload_then_someone_writes)
    body = await attach_body(client, "s1", expectedVersion=1)
    error = body["errors"][0]
    assert error["extensions"]["code"] == "CONFLICT"
    assert error["extensions"]["currentVersion"] == 2
    assert await keys(s3) == []
    song = (await client.data('{ getSong(id: "s1") { name coverArtPath } }'))["getSong"]
    assert song == {"name": "changed meanwhile", "coverArtPath": None}


async def test_concurrent_cover_changes_delete_exactly_what_they_replaced(
    client: GraphQLClient, s3: Services, services: Services
) -> None:
    await create_song(client)
    await asyncio.gather(*(attach(client, name=f"c{n}.png") for n in range(8)))
    song = (await client.data('{ getSong(id: "s1") { coverArtPath version } }'))["getSong"]
    assert song["version"] == 9
    await services.background.drain()  # deletions run after the answer
    assert await keys(s3) == [song["coverArtPath"]]  # every replaced file was deleted, once


async def test_storage_down_before_upload_changes_nothing(
    client: GraphQLClient, s3: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_song(client)

    async def storage_down(self: Files, *args: Any, **kwargs: Any) -> None:
        raise StorageUnavailable("storage did not answer; try again shortly")

    monkeypatch.setattr(Files, "upload", storage_down)
    body = await attach_body(client, "s1")
    assert codes(body) == ["STORAGE_UNAVAILABLE"]
    monkeypatch.undo()
    song = (await client.data('{ getSong(id: "s1") { coverArtPath version } }'))["getSong"]
    assert song == {"coverArtPath": None, "version": 1}


async def test_storage_down_after_the_write_leaves_an_orphan_not_a_dangling_record(
    client: GraphQLClient, s3: Services, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_song(client)
    first = await attach(client)

    async def storage_down(self: Files, *args: Any, **kwargs: Any) -> list[str]:
        raise StorageUnavailable("storage did not answer; try again shortly")

    monkeypatch.setattr(Files, "delete_many", storage_down)
    second = await attach(client, JPEG, "b.jpg", "image/jpeg")
    await services.background.drain()  # the deletion runs after the answer
    monkeypatch.undo()
    assert second["coverArtPath"] != first["coverArtPath"]
    assert (await get(second["coverArt"]["url"]["url"])).content == JPEG
    assert sorted(await keys(s3)) == sorted([first["coverArtPath"], second["coverArtPath"]])


async def test_a_failed_upload_midway_removes_the_earlier_files(
    client: GraphQLClient, s3: Services
) -> None:
    await create_album(client)
    response = await multipart(
        client,
        ADD,
        {"input": {"albumId": "a1", "files": [None, None]}},
        {
            "variables.input.files.0": ("ok.png", PNG, "image/png"),
            "variables.input.files.1": ("bad.png", b"<html>not an image</html>", "image/png"),
        },
    )
    assert codes(response.json()) == ["UNSUPPORTED_MEDIA_TYPE"]
    assert await keys(s3) == []
    album = (await client.data('{ getPhotoAlbum(id: "a1") { imagePaths version } }'))[
        "getPhotoAlbum"
    ]
    assert album == {"imagePaths": None, "version": 1}
