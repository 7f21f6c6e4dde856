"""FileRef on records: URLs are signed locally, properties are fetched in one batch."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from graphql_files.adapters.s3 import Files
from graphql_files.domain.objects import ObjectInfo
from graphql_files.services.wiring import Services

from ..helpers import PNG, GraphQLClient, upload_data

LIST_WITH_URLS = """{ listPhotoAlbums(limit: 100) { items { images { path url { url } } } } }"""
LIST_WITH_PROPERTIES = """{ listPhotoAlbums(limit: 100) {
  items { images { path properties { size contentType } } } } }"""


@pytest.fixture
def app(s3_calls: list[str], app: LifespanManager) -> LifespanManager:
    """The app, started once its S3 calls are counted."""
    return app


async def seed_albums(client: GraphQLClient, albums: int, images: int) -> None:
    for a in range(albums):
        paths = [f"images/a{a}/{i}.png" for i in range(images)]
        await client.data(
            "mutation($i: CreatePhotoAlbumInput!) { createPhotoAlbum(input: $i) { id } }",
            {"i": {"id": f"a{a}", "name": f"{a}", "imagePaths": paths}},
        )


async def test_a_thousand_urls_without_a_network_call(
    client: GraphQLClient, services: Services, s3_calls: list[str]
) -> None:
    await seed_albums(client, 100, 10)
    s3_calls.clear()
    data = await client.data(LIST_WITH_URLS)
    urls = [
        image["url"]["url"]
        for album in data["listPhotoAlbums"]["items"]
        for image in album["images"]
    ]
    assert len(urls) == len(set(urls)) == 1000
    assert s3_calls == []
    await services.files.head("images/a0/0.png")  # and a call made is counted
    assert s3_calls == ["HeadObject"]


async def test_properties_are_one_batch_per_request(
    client: GraphQLClient, monkeypatch: pytest.MonkeyPatch, s3_calls: list[str]
) -> None:
    await seed_albums(client, 3, 4)
    for name in ("0", "1"):  # two objects exist; the other ten paths name nothing
        await upload_data(
            client,
            "mutation($input: UploadFileInput!) { uploadFile(input: $input) { path } }",
            {"input": {"path": f"images/a0/{name}.png", "file": None}},
            {"variables.input.file": ("x.png", PNG, "image/png")},
        )
    batches: list[list[str]] = []
    real = Files.head_many

    async def spy(self: Files, keys: Any) -> list[ObjectInfo | None]:
        batches.append(list(keys))
        return await real(self, keys)

    monkeypatch.setattr(Files, "head_many", spy)
    s3_calls.clear()
    data = await client.data(LIST_WITH_PROPERTIES)
    properties = {
        image["path"]: image["properties"]
        for album in data["listPhotoAlbums"]["items"]
        for image in album["images"]
    }
    assert properties["images/a0/0.png"] == {"size": len(PNG), "contentType": "image/png"}
    assert properties["images/a2/3.png"] is None
    assert len(batches) == 1
    assert len(batches[0]) == 12
    assert s3_calls.count("HeadObject") == 12


async def test_urls_open(client: GraphQLClient) -> None:
    await upload_data(
        client,
        "mutation($input: UploadFileInput!) { uploadFile(input: $input) { path } }",
        {"input": {"path": "images/s/c.png", "file": None}},
        {"variables.input.file": ("x.png", PNG, "image/png")},
    )
    await client.data(
        'mutation { createSong(input: {id: "s", name: "x", '
        'coverArtPath: "images/s/c.png"}) { id } }'
    )
    song = (await client.data('{ getSong(id: "s") { coverArt { url(expiresIn: 30) { url } } } }'))[
        "getSong"
    ]
    async with httpx.AsyncClient() as browser:
        assert (await browser.get(song["coverArt"]["url"]["url"])).content == PNG
