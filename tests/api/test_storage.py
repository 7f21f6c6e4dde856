"""The storage operations over HTTP against moto's S3 server: uploads, URLs, listing, limits."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from graphql_files.settings import Settings

from ..helpers import (
    JPEG,
    MP3,
    PNG,
    PREFLIGHT,
    GraphQLClient,
    Json,
    client_of,
    codes,
    make_settings,
    multipart,
    upload_data,
)

UPLOAD = """mutation($input: UploadFileInput!) {
  uploadFile(input: $input) { path size contentType eTag lastModified } }"""
GET_URL = "query($input: GetUrlInput!) { getUrl(input: $input) { url expiresAt } }"
PROPERTIES = "query($p: String!) { getProperties(path: $p) { path size contentType } }"
LIST = """query($input: ListFilesInput!) {
  listFiles(input: $input) { items { path size } nextToken } }"""
CREATE_UPLOAD_URL = """mutation($input: CreateUploadUrlInput!) {
  createUploadUrl(input: $input) { url fields path expiresAt } }"""
REMOVE = "mutation($p: String!) { removeFile(path: $p) }"


async def put(
    client: GraphQLClient, path: str, data: bytes = PNG, kind: str = "image/png", **extra: object
) -> dict[str, object]:
    uploaded = await upload_data(
        client,
        UPLOAD,
        {"input": {"path": path, "file": None, **extra}},
        {"variables.input.file": ("a.png", data, kind)},
    )
    result: dict[str, object] = uploaded["uploadFile"]
    return result


async def fetch(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as browser:
        return await browser.get(url)


async def test_upload_then_download_through_a_signed_url(client: GraphQLClient) -> None:
    stored = await put(client, "images/shared/cover.png")
    assert stored["path"] == "images/shared/cover.png"
    assert stored["size"] == len(PNG)
    assert stored["contentType"] == "image/png"
    assert stored["eTag"]

    signed = (await client.data(GET_URL, {"input": {"path": "images/shared/cover.png"}}))["getUrl"]
    downloaded = await fetch(signed["url"])
    assert downloaded.status_code == 200
    assert downloaded.content == PNG
    assert downloaded.headers["content-type"] == "image/png"

    props = (await client.data(PROPERTIES, {"p": "images/shared/cover.png"}))["getProperties"]
    assert props == {
        "path": "images/shared/cover.png",
        "size": len(PNG),
        "contentType": "image/png",
    }


async def test_audio_and_type_from_the_bytes(client: GraphQLClient) -> None:
    stored = await put(client, "images/a/track.mp3", MP3, "audio/mpeg")
    assert stored["contentType"] == "audio/mpeg"
    # a part without a useful type (what curl sends for unknown extensions) goes by its bytes
    sniffed = await put(client, "images/a/x.jpg", JPEG, "application/octet-stream")
    assert sniffed["contentType"] == "image/jpeg"
    declared = await put(
        client, "images/a/y.jpg", JPEG, "application/octet-stream", contentType="image/jpg"
    )
    assert declared["contentType"] == "image/jpeg"


async def test_prevent_overwrite(client: GraphQLClient) -> None:
    await put(client, "images/p/one.png", preventOverwrite=True)
    response = await multipart(
        client,
        UPLOAD,
        {"input": {"path": "images/p/one.png", "file": None, "preventOverwrite": True}},
        {"variables.input.file": ("b.jpg", JPEG, "image/jpeg")},
    )
    assert codes(response.json()) == ["CONFLICT"]
    props = (await client.data(PROPERTIES, {"p": "images/p/one.png"}))["getProperties"]
    assert props["contentType"] == "image/png"  # unchanged
    replaced = await put(client, "images/p/one.png", JPEG, "image/jpeg")
    assert replaced["contentType"] == "image/jpeg"


async def test_multipart_needs_a_preflight_header(client: GraphQLClient) -> None:
    response = await client.http.post(
        "/graphql",
        data={
            "operations": json.dumps(
                {"query": UPLOAD, "variables": {"input": {"path": "images/x.png", "file": None}}}
            ),
            "map": json.dumps({"0": ["variables.input.file"]}),
        },
        files={"0": ("a.png", PNG, "image/png")},
    )
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "apollo-require-preflight" in error["message"]
    missing = await client.data(LIST, {"input": {"path": "images/"}})
    assert missing["listFiles"]["items"] == []


@pytest.mark.parametrize(
    ("data", "declared"),
    [
        (b"just some text, not an image", "text/plain"),  # type not allowed
        (JPEG, "image/png"),  # bytes contradict the declared type
        (b"plain text pretending", "image/png"),  # unrecognisable bytes for a recognisable type
        (PNG, "application/pdf"),
    ],
)
async def test_unsupported_media(client: GraphQLClient, data: bytes, declared: str) -> None:
    response = await multipart(
        client,
        UPLOAD,
        {"input": {"path": "images/m/x", "file": None}},
        {"variables.input.file": ("x", data, declared)},
    )
    assert codes(response.json()) == ["UNSUPPORTED_MEDIA_TYPE"], response.json()
    listing = await client.data(LIST, {"input": {"path": "images/"}})
    assert listing["listFiles"]["items"] == []


@pytest.mark.parametrize(
    "path",
    [
        "../etc/passwd",
        "/abs.png",
        "images//x.png",
        "images/./x.png",
        "images/../x.png",
        "images/x\x00.png",
        "images/",
        "",
        "a" * 1025,
    ],
)
async def test_bad_paths_are_refused_everywhere(client: GraphQLClient, path: str) -> None:
    response = await multipart(
        client,
        UPLOAD,
        {"input": {"path": path, "file": None}},
        {"variables.input.file": ("x.png", PNG, "image/png")},
    )
    assert codes(response.json()) == ["BAD_USER_INPUT"]
    requests: list[tuple[str, Json]] = [
        (GET_URL, {"input": {"path": path}}),
        (PROPERTIES, {"p": path}),
        (REMOVE, {"p": path}),
    ]
    for query, variables in requests:
        assert codes(await client.run(query, variables)) == ["BAD_USER_INPUT"], (query, path)
    assert (await client.data(LIST, {"input": {"path": "images/"}}))["listFiles"]["items"] == []


def limited_client(
    s3_endpoint: str, bucket: str, **overrides: object
) -> AbstractAsyncContextManager[GraphQLClient]:
    return client_of(make_settings(s3_endpoint, bucket, **overrides))


async def test_oversized_upload_is_stopped_while_streaming(s3_endpoint: str, bucket: str) -> None:
    async with limited_client(s3_endpoint, bucket, max_upload_bytes=64 * 1024) as client:
        sent = 0
        boundary = "graphql-files-test-boundary"
        operations = json.dumps(
            {"query": UPLOAD, "variables": {"input": {"path": "images/big.png", "file": None}}}
        )

        async def body() -> AsyncIterator[bytes]:
            nonlocal sent
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="operations"\r\n\r\n'
                f"{operations}\r\n--{boundary}\r\nContent-Disposition: form-data; "
                f'name="map"\r\n\r\n{{"0": ["variables.input.file"]}}\r\n--{boundary}\r\n'
                'Content-Disposition: form-data; name="0"; filename="big.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            yield head + PNG
            for _ in range(1000):  # 64 MiB more, if the server kept reading
                sent += 65536
                yield b"\0" * 65536

        response = await client.http.post(
            "/graphql",
            content=body(),
            headers={"content-type": f"multipart/form-data; boundary={boundary}", **PREFLIGHT},
        )
        assert response.status_code == 413
        assert codes(response.json()) == ["PAYLOAD_TOO_LARGE"]
        assert sent < 1024 * 1024, f"the server read {sent} bytes before refusing"
        assert (await client.data(LIST, {"input": {"path": "images/"}}))["listFiles"]["items"] == []


async def test_small_limit_refuses_a_file_just_over_it(s3_endpoint: str, bucket: str) -> None:
    async with limited_client(s3_endpoint, bucket, max_upload_bytes=len(PNG) - 1) as client:
        response = await multipart(
            client,
            UPLOAD,
            {"input": {"path": "images/x.png", "file": None}},
            {"variables.input.file": ("x.png", PNG, "image/png")},
        )
        assert response.status_code == 413
        assert codes(response.json()) == ["PAYLOAD_TOO_LARGE"]


async def test_presigned_post_policy_pins_type_and_length(
    client: GraphQLClient, settings: Settings
) -> None:
    before = datetime.now(UTC)
    post = (
        await client.data(
            CREATE_UPLOAD_URL,
            {
                "input": {
                    "path": "images/song-1/cover.png",
                    "contentType": "image/png",
                    "size": len(PNG),
                }
            },
        )
    )["createUploadUrl"]
    assert post["path"] == "images/song-1/cover.png"
    fields = post["fields"]
    assert fields["key"] == "images/song-1/cover.png"
    assert fields["Content-Type"] == "image/png"
    policy = json.loads(base64.b64decode(fields["policy"]))
    conditions = policy["conditions"]
    assert {"bucket": settings.s3_bucket} in conditions
    assert {"key": "images/song-1/cover.png"} in conditions
    assert {"Content-Type": "image/png"} in conditions
    assert ["content-length-range", len(PNG), len(PNG)] in conditions
    expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert before + timedelta(seconds=890) <= expiration <= before + timedelta(seconds=910)

    # the browser's part: post the form to S3, file last
    async with httpx.AsyncClient() as browser:
        posted = await browser.post(
            post["url"], data=fields, files={"file": ("cover.png", PNG, "image/png")}
        )
    assert posted.status_code in (200, 201, 204), posted.text
    props = (await client.data(PROPERTIES, {"p": "images/song-1/cover.png"}))["getProperties"]
    assert props["size"] == len(PNG)

    unsized = (
        await client.data(
            CREATE_UPLOAD_URL, {"input": {"path": "images/x/y.png", "contentType": "image/png"}}
        )
    )["createUploadUrl"]
    policy = json.loads(base64.b64decode(unsized["fields"]["policy"]))
    assert ["content-length-range", 1, settings.max_upload_bytes] in policy["conditions"]


@pytest.mark.parametrize(
    ("variables", "code"),
    [
        ({"path": "images/x.png", "contentType": "text/html"}, "UNSUPPORTED_MEDIA_TYPE"),
        ({"path": "images/x.png", "contentType": "image/png", "size": 0}, "BAD_USER_INPUT"),
        (
            {"path": "images/x.png", "contentType": "image/png", "size": 51 * 1024 * 1024},
            "PAYLOAD_TOO_LARGE",
        ),
        ({"path": "../x.png", "contentType": "image/png"}, "BAD_USER_INPUT"),
    ],
)
async def test_presigned_post_refusals(
    client: GraphQLClient, variables: dict[str, object], code: str
) -> None:
    assert codes(await client.run(CREATE_UPLOAD_URL, {"input": variables})) == [code]


async def test_get_url_options(client: GraphQLClient) -> None:
    await put(client, "images/u/a b+c.png")
    long = (
        await client.data(
            GET_URL, {"input": {"path": "images/u/a b+c.png", "expiresIn": 10_000_000}}
        )
    )["getUrl"]
    query = parse_qs(urlsplit(long["url"]).query)
    assert query["X-Amz-Expires"] == ["900"]  # capped by SIGNED_URL_TTL
    expires_at = datetime.fromisoformat(long["expiresAt"])
    assert timedelta(seconds=895) < expires_at - datetime.now(UTC) <= timedelta(seconds=901)

    short = (
        await client.data(
            GET_URL,
            {
                "input": {
                    "path": "images/u/a b+c.png",
                    "expiresIn": 60,
                    "contentDisposition": 'attachment; filename="x.png"',
                }
            },
        )
    )["getUrl"]
    assert parse_qs(urlsplit(short["url"]).query)["X-Amz-Expires"] == ["60"]
    downloaded = await fetch(short["url"])
    assert downloaded.content == PNG
    assert downloaded.headers["content-disposition"] == 'attachment; filename="x.png"'

    missing = await client.run(
        GET_URL, {"input": {"path": "images/u/none.png", "validateObjectExistence": True}}
    )
    assert codes(missing) == ["NOT_FOUND"]
    unchecked = await client.data(GET_URL, {"input": {"path": "images/u/none.png"}})
    assert (await fetch(unchecked["getUrl"]["url"])).status_code == 404
    assert codes(
        await client.run(GET_URL, {"input": {"path": "images/u/a b+c.png", "expiresIn": 0}})
    ) == ["BAD_USER_INPUT"]


async def test_get_properties_of_a_missing_object(client: GraphQLClient) -> None:
    body = await client.run(PROPERTIES, {"p": "images/none.png"})
    assert body["data"] == {"getProperties": None}
    assert codes(body) == ["NOT_FOUND"]


async def test_list_files_pages(client: GraphQLClient) -> None:
    paths = [f"images/l/{n}.png" for n in range(5)] + ["images/other/x.png"]
    for path in paths:
        await put(client, path)
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = (
            await client.data(
                LIST, {"input": {"path": "images/l/", "pageSize": 2, "nextToken": token}}
            )
        )["listFiles"]
        seen += [item["path"] for item in page["items"]]
        pages += 1
        token = page["nextToken"]
        if token is None:
            break
    assert seen == sorted(paths[:5])
    assert pages == 3
    for bad in (
        {"path": "images/", "pageSize": 0},
        {"path": "images/", "pageSize": 1001},
        {"path": "images/", "nextToken": "not-a-token"},
    ):
        assert codes(await client.run(LIST, {"input": bad})) == ["BAD_USER_INPUT"], bad


async def test_remove_file_refuses_while_a_record_names_it(client: GraphQLClient) -> None:
    await put(client, "images/s1/cover.png")
    await client.data(
        'mutation { createSong(input: {id: "s1", name: "A", '
        'coverArtPath: "images/s1/cover.png"}) { id } }'
    )
    refused = await client.run(REMOVE, {"p": "images/s1/cover.png"})
    assert codes(refused) == ["CONFLICT"]
    assert "Song s1" in refused["errors"][0]["message"]
    assert (await client.data(PROPERTIES, {"p": "images/s1/cover.png"}))["getProperties"]

    await client.data('mutation { updateSong(input: {id: "s1", coverArtPath: null}) { id } }')
    assert (await client.data(REMOVE, {"p": "images/s1/cover.png"}))["removeFile"] == (
        "images/s1/cover.png"
    )
    assert codes(await client.run(PROPERTIES, {"p": "images/s1/cover.png"})) == ["NOT_FOUND"]


async def test_copy_file(client: GraphQLClient) -> None:
    await put(client, "images/c/a.png")
    copy = """mutation($input: CopyFileInput!) { copyFile(input: $input) { path size } }"""
    copied = await client.data(
        copy, {"input": {"source": "images/c/a.png", "destination": "images/c/b.png"}}
    )
    assert copied["copyFile"] == {"path": "images/c/b.png", "size": len(PNG)}
    again = await client.run(
        copy,
        {
            "input": {
                "source": "images/c/a.png",
                "destination": "images/c/b.png",
                "preventOverwrite": True,
            }
        },
    )
    assert codes(again) == ["CONFLICT"]
    missing = await client.run(
        copy, {"input": {"source": "images/c/none.png", "destination": "images/c/z.png"}}
    )
    assert codes(missing) == ["NOT_FOUND"]


async def test_storage_unreachable(s3_endpoint: str, bucket: str) -> None:
    async with limited_client("http://127.0.0.1:9", bucket) as client:
        response = await multipart(
            client,
            UPLOAD,
            {"input": {"path": "images/x.png", "file": None}},
            {"variables.input.file": ("x.png", PNG, "image/png")},
        )
        assert codes(response.json()) == ["STORAGE_UNAVAILABLE"]
        assert codes(await client.run(PROPERTIES, {"p": "images/x.png"})) == ["STORAGE_UNAVAILABLE"]
        ready = await client.http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["s3"] != "ok"
