"""Uploads stream through: S3 gets a file's parts while its request body is still arriving, a
client gone mid-body leaves no parts behind, and the limits hold while streaming. Over a real
uvicorn and a raw socket, so the test decides when each byte of the body is sent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import boto3
import pytest

from graphql_files.settings import Settings

from ..helpers import (
    FULL_ACCESS,
    JPEG,
    PNG,
    PREFLIGHT,
    GraphQLClient,
    LiveServer,
    eventually,
    make_settings,
    start_live_server,
)
from .test_limits import raw_connection, read_answer, request_head

MIB = 1024 * 1024
BOUNDARY = "stream-boundary"
UPLOAD = "mutation($i: UploadFileInput!) { uploadFile(input: $i) { path size } }"
ATTACH = """mutation($i: AttachSongCoverArtInput!) {
  attachSongCoverArt(input: $i) { coverArtPath version } }"""
ADD = """mutation($i: AddPhotoAlbumImagesInput!) {
  addPhotoAlbumImages(input: $i) { imagePaths } }"""
MP3_HEADER = b"ID3\x04\x00\x00\x00\x00\x00\x00"


def mp3(size: int) -> bytes:
    filler = bytes(range(256)) * (size // 256 + 1)
    return (MP3_HEADER + filler)[:size]


@pytest.fixture
async def live(s3_calls: list[str], settings: Settings) -> AsyncIterator[LiveServer]:
    """The app on a real uvicorn, started once its S3 calls are counted."""
    async with start_live_server(settings) as server:
        yield server


def multipart_head(query: str, variables: dict[str, Any], path: str, name: str, kind: str) -> bytes:
    operations = json.dumps({"query": query, "variables": variables})
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="operations"\r\n\r\n'
        f"{operations}\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; "
        f'name="map"\r\n\r\n{{"0": ["{path}"]}}\r\n--{BOUNDARY}\r\n'
        f'Content-Disposition: form-data; name="0"; filename="{name}"\r\n'
        f"Content-Type: {kind}\r\n\r\n"
    ).encode()


TAIL = f"\r\n--{BOUNDARY}--\r\n".encode()


def http_head(length: int) -> bytes:
    return request_head(
        f"multipart/form-data; boundary={BOUNDARY}", length, {**FULL_ACCESS, **PREFLIGHT}
    )


async def s3_saw(calls: list[str], operation: str) -> None:
    await eventually(lambda: operation in calls, f"S3 to see {operation}", timeout=10)


def big_mp3_head() -> bytes:
    """The multipart body up to the bytes of an MP3 sent to ``uploadFile``."""
    return multipart_head(
        UPLOAD,
        {"i": {"path": "images/x/big.mp3", "file": None}},
        "variables.i.file",
        "b.mp3",
        "audio/mpeg",
    )


async def test_the_s3_upload_starts_before_the_body_has_arrived(
    live: LiveServer, s3_calls: list[str]
) -> None:
    data = mp3(40 * MIB)
    head = big_mp3_head()
    half = len(data) // 2
    async with raw_connection(live) as (reader, writer):
        writer.write(http_head(len(head) + len(data) + len(TAIL)) + head + data[:half])
        await writer.drain()
        await s3_saw(s3_calls, "UploadPart")  # half the file is still to come
        assert "CompleteMultipartUpload" not in s3_calls
        writer.write(data[half:] + TAIL)
        await writer.drain()
        status, _, body = await read_answer(reader)
    assert status == 200, body
    assert body == {"data": {"uploadFile": {"path": "images/x/big.mp3", "size": len(data)}}}
    stored = await live.services.files.read_start("images/x/big.mp3", 64)
    assert stored == data[:64]


async def test_a_client_gone_mid_body_aborts_the_upload_and_changes_nothing(
    live: LiveServer, s3_calls: list[str], s3_endpoint: str, settings: Settings
) -> None:
    async with live.client() as client:
        await client.data('mutation { createSong(input: {id: "s1", name: "A"}) { id } }')
    data = mp3(40 * MIB)
    head = multipart_head(
        ATTACH, {"i": {"songId": "s1", "file": None}}, "variables.i.file", "b.mp3", "audio/mpeg"
    )
    async with raw_connection(live) as (_, writer):
        writer.write(http_head(len(head) + len(data) + len(TAIL)) + head + data[: 20 * MIB])
        await writer.drain()
        await s3_saw(s3_calls, "UploadPart")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    await eventually(
        lambda: s3.list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads", []) == [],
        "the multipart upload to be aborted",
    )
    assert "AbortMultipartUpload" in s3_calls
    assert s3.list_objects_v2(Bucket=settings.s3_bucket).get("KeyCount") == 0
    async with live.client() as client:
        song = await client.data('{ getSong(id: "s1") { coverArtPath version } }')
    assert song == {"getSong": {"coverArtPath": None, "version": 1}}


async def test_a_file_over_the_limit_is_stopped_while_it_streams(
    s3_calls: list[str], s3_endpoint: str, bucket: str
) -> None:
    settings = make_settings(s3_endpoint, bucket, max_upload_bytes=20 * MIB)
    data = mp3(30 * MIB)
    head = big_mp3_head()
    async with start_live_server(settings) as live, raw_connection(live) as (reader, writer):
        writer.write(http_head(len(head) + len(data) + len(TAIL)) + head)
        for start in range(0, len(data), MIB):
            writer.write(data[start : start + MIB])
            await writer.drain()
            if "AbortMultipartUpload" in s3_calls:
                break
        status, _, body = await read_answer(reader)
        assert status == 413, body
        assert body["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
        assert body["errors"][0]["message"] == (
            f"a file in this request is larger than {20 * MIB} bytes"
        )
        s3 = boto3.client("s3", endpoint_url=s3_endpoint)
        assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert "UploadPart" in s3_calls  # it had begun


async def test_files_wanted_out_of_order_are_spooled(client: GraphQLClient) -> None:
    """The map puts the body's second file first: reading it spools the first on the way."""
    await client.data('mutation { createPhotoAlbum(input: {id: "a1", name: "A"}) { id } }')
    operations = {"query": ADD, "variables": {"i": {"albumId": "a1", "files": [None, None]}}}
    files_map = {"0": ["variables.i.files.1"], "1": ["variables.i.files.0"]}
    response = await client.http.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps(files_map)},
        files={"0": ("zero.png", PNG, "image/png"), "1": ("one.jpg", JPEG, "image/jpeg")},
        headers=PREFLIGHT,
    )
    paths = response.json()["data"]["addPhotoAlbumImages"]["imagePaths"]
    assert paths[0].endswith("-one.jpg")
    assert paths[1].endswith("-zero.png")


async def test_a_file_the_map_puts_twice_is_read_twice(client: GraphQLClient) -> None:
    await client.data('mutation { createPhotoAlbum(input: {id: "a1", name: "A"}) { id } }')
    operations = {"query": ADD, "variables": {"i": {"albumId": "a1", "files": [None, None]}}}
    files_map = {"0": ["variables.i.files.0", "variables.i.files.1"]}
    response = await client.http.post(
        "/graphql",
        data={"operations": json.dumps(operations), "map": json.dumps(files_map)},
        files={"0": ("twice.png", PNG, "image/png")},
        headers=PREFLIGHT,
    )
    first, second = response.json()["data"]["addPhotoAlbumImages"]["imagePaths"]
    assert first != second
    assert first.endswith("-twice.png")
    assert second.endswith("-twice.png")
