"""Hostile files and what the server discloses, over HTTP against moto's S3.

Declared content types must be well formed; the bytes decide the stored type; SVG is admitted
only by name and then served as an attachment; images must decode; listings leave out keys
the caller may not list.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from graphql_files.app import create_app

from ..helpers import (
    FULL_ACCESS,
    JPEG,
    PNG,
    GraphQLClient,
    codes,
    make_settings,
    multipart,
    upload_data,
    user,
)

UPLOAD = """mutation($input: UploadFileInput!) {
  uploadFile(input: $input) { path size contentType } }"""
CREATE_UPLOAD_URL = """mutation($input: CreateUploadUrlInput!) {
  createUploadUrl(input: $input) { url fields path } }"""
GET_URL = "query($input: GetUrlInput!) { getUrl(input: $input) { url } }"
LIST = """query($input: ListFilesInput!) {
  listFiles(input: $input) { items { path } nextToken } }"""
ATTACH = """mutation($input: AttachSongCoverArtInput!) {
  attachSongCoverArt(input: $input) { coverArtPath version } }"""

SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4">'
    b"<script>alert(document.domain)</script></svg>"
)
PNG_THEN_HTML = b"\x89PNG\r\n\x1a\n<html><script>alert(document.domain)</script></html>"
MALFORMED = [
    "image/png\r\nx-amz-meta-evil: 1",
    "image/png\x00",
    "image/ text/html",
    "image/*",
]


@asynccontextmanager
async def serving(
    s3_endpoint: str, bucket: str, headers: dict[str, str] | None = None, **overrides: Any
) -> AsyncIterator[GraphQLClient]:
    """A client of an app made with these settings."""
    settings = make_settings(s3_endpoint, bucket, **overrides)
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield GraphQLClient(http, dict(FULL_ACCESS if headers is None else headers))


async def send(
    client: GraphQLClient, path: str, data: bytes, part_type: str, **extra: Any
) -> dict[str, Any]:
    """The response body of uploadFile with ``data`` as the file part."""
    response = await multipart(
        client,
        UPLOAD,
        {"input": {"path": path, "file": None, **extra}},
        {"variables.input.file": ("f", data, part_type)},
    )
    assert response.status_code in (200, 400, 413, 415), response.text
    body: dict[str, Any] = response.json()
    return body


async def listed(client: GraphQLClient, prefix: str = "images/") -> list[str]:
    items = (await client.data(LIST, {"input": {"path": prefix}}))["listFiles"]["items"]
    return [i["path"] for i in items]


async def download(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as browser:
        return await browser.get(url)


# --- declared content types -------------------------------------------------------------------


@pytest.mark.parametrize("declared", MALFORMED)
async def test_malformed_content_types_are_bad_input(client: GraphQLClient, declared: str) -> None:
    as_argument = await send(client, "images/m/a.png", PNG, "image/png", contentType=declared)
    assert codes(as_argument) == ["BAD_USER_INPUT"], as_argument
    post = await client.run(
        CREATE_UPLOAD_URL, {"input": {"path": "images/m/b.png", "contentType": declared}}
    )
    assert codes(post) == ["BAD_USER_INPUT"], post
    assert await listed(client) == []


@pytest.mark.parametrize("declared", ["audio/x-custom\r\nx-amz-acl: public-read", "audio/x-a\x00"])
async def test_crlf_or_nul_never_reaches_s3(client: GraphQLClient, declared: str) -> None:
    """A type no sniffer recognises is taken as declared: a CR/LF or NUL in it used to reach
    botocore as a header, which refused it (STORAGE_UNAVAILABLE)."""
    unrecognised = b"\x00\x01\x02 bytes of no recognised format " * 8
    body = await send(client, "images/m/a", unrecognised, "audio/x-custom", contentType=declared)
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert await listed(client) == []


async def test_a_malformed_part_content_type_is_bad_input(client: GraphQLClient) -> None:
    body = await send(client, "images/m/a.png", PNG, "image/png\x00")
    assert codes(body) == ["BAD_USER_INPUT"], body
    assert await listed(client) == []


async def test_a_huge_content_type_is_not_echoed(client: GraphQLClient) -> None:
    huge = "image/" + "x" * 100_000
    for body in (
        await send(client, "images/m/a.png", PNG, "image/png", contentType=huge),
        await client.run(
            CREATE_UPLOAD_URL, {"input": {"path": "images/m/b.png", "contentType": huge}}
        ),
    ):
        assert codes(body) == ["BAD_USER_INPUT"]
        assert len(body["errors"][0]["message"]) < 300


@pytest.mark.parametrize(("size", "code"), [(0, "BAD_USER_INPUT"), (-1, "BAD_USER_INPUT")])
async def test_upload_url_size_must_be_positive(
    client: GraphQLClient, size: int, code: str
) -> None:
    post = await client.run(
        CREATE_UPLOAD_URL,
        {"input": {"path": "images/m/b.png", "contentType": "image/png", "size": size}},
    )
    assert codes(post) == [code]
    too_large = await client.run(
        CREATE_UPLOAD_URL,
        {"input": {"path": "images/m/b.png", "contentType": "image/png", "size": 2**31 - 1}},
    )
    assert codes(too_large) == ["PAYLOAD_TOO_LARGE"]


async def test_the_stored_type_is_the_sniffed_one(client: GraphQLClient) -> None:
    stored = await send(client, "images/t/a", JPEG, "application/octet-stream")
    assert stored["data"]["uploadFile"]["contentType"] == "image/jpeg"
    with_params = await send(client, "images/t/b", PNG, 'image/png; name="b.png"')
    assert with_params["data"]["uploadFile"]["contentType"] == "image/png"
    signed = (await client.data(GET_URL, {"input": {"path": "images/t/b"}}))["getUrl"]
    assert (await download(signed["url"])).headers["content-type"] == "image/png"


# --- SVG ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "part_type", ["image/svg+xml", "image/png", "application/octet-stream", "audio/mpeg"]
)
async def test_svg_with_script_is_refused_by_default(client: GraphQLClient, part_type: str) -> None:
    body = await send(client, "images/v/logo.svg", SVG, part_type)
    assert codes(body) == ["UNSUPPORTED_MEDIA_TYPE"], body
    post = await client.run(
        CREATE_UPLOAD_URL, {"input": {"path": "images/v/b.svg", "contentType": "image/svg+xml"}}
    )
    assert codes(post) == ["UNSUPPORTED_MEDIA_TYPE"]
    assert await listed(client) == []


async def test_an_explicitly_listed_svg_is_served_as_an_attachment(
    s3_endpoint: str, bucket: str
) -> None:
    allowed = ("image/*", "audio/*", "image/svg+xml")
    async with serving(s3_endpoint, bucket, allowed_content_types=allowed) as client:
        for n, part_type in enumerate(["image/svg+xml", "application/octet-stream"]):
            path = f"images/v/{n}.svg"
            body = await send(client, path, SVG, part_type)
            assert body["data"]["uploadFile"]["contentType"] == "image/svg+xml", body
            signed = (await client.data(GET_URL, {"input": {"path": path}}))["getUrl"]
            served = await download(signed["url"])
            assert served.content == SVG
            assert served.headers["content-type"] == "image/svg+xml"
            assert served.headers["content-disposition"] == "attachment"
        # the bytes decide: an SVG is not a PNG even when both are allowed
        assert codes(await send(client, "images/v/x.png", SVG, "image/png")) == [
            "UNSUPPORTED_MEDIA_TYPE"
        ]

        post = (
            await client.data(
                CREATE_UPLOAD_URL,
                {"input": {"path": "images/v/form.svg", "contentType": "image/svg+xml"}},
            )
        )["createUploadUrl"]
        assert post["fields"]["Content-Disposition"] == "attachment"
        policy = json.loads(base64.b64decode(post["fields"]["policy"]))
        assert {"Content-Disposition": "attachment"} in policy["conditions"]
        png_post = (
            await client.data(
                CREATE_UPLOAD_URL, {"input": {"path": "images/v/p.png", "contentType": "image/png"}}
            )
        )["createUploadUrl"]
        assert "Content-Disposition" not in png_post["fields"]


# --- images must decode ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "part_type"),
    [
        (PNG_THEN_HTML, "image/png"),
        (PNG_THEN_HTML, "application/octet-stream"),
        (PNG[:40], "image/png"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00<html><script>alert(1)</script></html>", "image/jpeg"),
    ],
)
async def test_an_image_must_decode_before_it_is_stored(
    client: GraphQLClient, data: bytes, part_type: str
) -> None:
    body = await send(client, "images/d/x.png", data, part_type)
    assert codes(body) == ["UNSUPPORTED_MEDIA_TYPE"], body
    assert await listed(client) == []


async def test_a_presigned_upload_must_decode_before_a_record_adopts_it(
    client: GraphQLClient,
) -> None:
    await client.data('mutation { createSong(input: {id: "s1", name: "A"}) { id } }')
    first = await upload_data(
        client,
        ATTACH,
        {"input": {"songId": "s1", "file": None}},
        {"variables.input.file": ("a.png", PNG, "image/png")},
    )
    named = first["attachSongCoverArt"]["coverArtPath"]
    folder = named.rsplit("/", 1)[0] + "/"  # the song's folder, whatever its layout
    for name, data in (("bad.png", PNG_THEN_HTML), ("good.png", PNG)):
        post = (
            await client.data(
                CREATE_UPLOAD_URL, {"input": {"path": folder + name, "contentType": "image/png"}}
            )
        )["createUploadUrl"]
        async with httpx.AsyncClient() as browser:
            sent = await browser.post(
                post["url"], data=post["fields"], files={"file": (name, data, "image/png")}
            )
        assert sent.status_code in (200, 201, 204), sent.text
    refused = await client.run(
        ATTACH, {"input": {"songId": "s1", "uploadedPath": folder + "bad.png"}}
    )
    assert codes(refused) == ["UNSUPPORTED_MEDIA_TYPE"]
    song = await client.data('{ getSong(id: "s1") { coverArtPath version } }')
    assert song["getSong"] == {"coverArtPath": named, "version": 2}
    adopted = await client.data(
        ATTACH, {"input": {"songId": "s1", "uploadedPath": folder + "good.png"}}
    )
    copy = adopted["attachSongCoverArt"]["coverArtPath"]  # adopted as a copy of its own
    assert copy.startswith(folder), copy
    assert copy.endswith("-good.png"), copy


# --- contentDisposition ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "disposition",
    [
        'attachment; filename="a.png"\r\nSet-Cookie: x=1',
        "attachment\n",
        "inline\x00",
        "attachment\x7f",
        "attachment; filename=" + "a" * 1100,
        "   ",
    ],
)
async def test_content_disposition_is_validated(client: GraphQLClient, disposition: str) -> None:
    await send(client, "images/s1/c.png", PNG, "image/png")
    refused = await client.run(
        GET_URL, {"input": {"path": "images/s1/c.png", "contentDisposition": disposition}}
    )
    assert codes(refused) == ["BAD_USER_INPUT"]
    await client.data(
        'mutation { createSong(input: {id: "s1", name: "A", '
        'coverArtPath: "images/s1/c.png"}) { id } }'
    )
    by_ref = await client.run(
        'query($d: String) { getSong(id: "s1") { coverArt { url(contentDisposition: $d) '
        "{ url } } } }",
        {"d": disposition},
    )
    assert codes(by_ref) == ["BAD_USER_INPUT"]
    assert by_ref["data"]["getSong"]["coverArt"]["url"] is None
    kept = await client.data(
        GET_URL,
        {"input": {"path": "images/s1/c.png", "contentDisposition": 'inline; filename="c.png"'}},
    )
    served = await download(kept["getUrl"]["url"])
    assert served.headers["content-disposition"] == 'inline; filename="c.png"'


# --- listFiles ---------------------------------------------------------------------------------

ENTITY_RULES = """
[data.Song]
publicApiKey = "*"

[data.PhotoAlbum]
publicApiKey = "*"

[storage."images/*"]
authenticated = ["read", "write", "delete"]

[storage."images/private/{entity_id}/*"]
entity = ["read", "write", "delete"]
"""


async def test_listing_leaves_out_keys_the_caller_may_not_list(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    rules = tmp_path / "access.toml"
    rules.write_text(ENTITY_RULES)
    async with serving(s3_endpoint, bucket, user("alice"), access_file=rules) as alice:
        bob = GraphQLClient(alice.http, user("bob"))
        for client, path in [
            (alice, "images/private/alice/a.png"),
            (bob, "images/private/bob/b1.png"),
            (bob, "images/private/bob/b2.png"),
            (bob, "images/private/bob/deeper/b3.png"),
            (alice, "images/shared.png"),
            (bob, "images/pub/x.png"),
        ]:
            assert codes(await send(client, path, PNG, "image/png")) == []

        visible = [
            "images/private/alice/a.png",
            "images/pub/x.png",
            "images/shared.png",
        ]
        assert await listed(alice, "images/") == visible
        assert await listed(alice, "images/pri") == ["images/private/alice/a.png"]
        assert await listed(alice, "images/private/") == ["images/private/alice/a.png"]
        assert await listed(bob, "images/pri") == [
            "images/private/bob/b1.png",
            "images/private/bob/b2.png",
            "images/private/bob/deeper/b3.png",
        ]

        # pages stay walkable; a page may hold fewer items than asked for
        seen: list[str] = []
        token = None
        pages = 0
        while True:
            page = (
                await alice.data(
                    LIST, {"input": {"path": "images/", "pageSize": 2, "nextToken": token}}
                )
            )["listFiles"]
            assert len(page["items"]) <= 2
            seen += [i["path"] for i in page["items"]]
            pages += 1
            token = page["nextToken"]
            if token is None:
                break
        assert seen == visible
        assert pages == 3  # six keys, two at a time
