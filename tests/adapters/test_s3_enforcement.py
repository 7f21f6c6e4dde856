"""What only an S3 that verifies can prove, against the session's SeaweedFS: the server's signed
URLs open and altered ones do not, presigned POST policies bind, ``preventOverwrite`` holds in
S3 itself, every upload carries a checksum S3 checks (SeaweedFS does not check the SHA-256 that
SigV4 signs: a body altered on the way was stored, until CRC32 was sent over http too), and URLs
are dated by S3's clock."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import botocore.auth
import httpx
import pytest

from graphql_files.errors import Conflict, StorageUnavailable
from graphql_files.services.wiring import Services

from ..helpers import PNG, BytesReader, GraphQLClient, put_object
from ..stores import SessionStores

GET_URL = "query($input: GetUrlInput!) { getUrl(input: $input) { url expiresAt } }"
UPLOAD_URL = """mutation($input: CreateUploadUrlInput!) {
  createUploadUrl(input: $input) { url fields path } }"""


@pytest.fixture(autouse=True)
def verifying_s3(stores: SessionStores) -> None:
    if stores.seaweedfs is None:
        pytest.fail(
            "these tests need the session's SeaweedFS (GRAPHQL_FILES_TEST_S3_ENDPOINT_URL names "
            "another S3): run them without it"
        )


async def url_of(client: GraphQLClient, path: str, **options: Any) -> str:
    data = await client.data(GET_URL, {"input": {"path": path, **options}})
    url: str = data["getUrl"]["url"]
    return url


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | changes
    return parts._replace(query=urlencode(query)).geturl()


async def test_signed_urls_open_and_altered_ones_are_refused(
    client: GraphQLClient, services: Services
) -> None:
    await put_object(services, "images/a.png")
    await put_object(services, "images/b.png", b"another")
    url = await url_of(client, "images/a.png")
    async with httpx.AsyncClient() as http:
        opened = await http.get(url)
        assert opened.status_code == 200
        assert opened.content == PNG
        signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
        flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
        refused = {
            "tampered signature": with_query(url, **{"X-Amz-Signature": flipped}),
            "longer lifetime": with_query(url, **{"X-Amz-Expires": "604800"}),
            "another key": url.replace("/images/a.png?", "/images/b.png?"),
            "another bucket": url.replace(f"/{services.files.bucket}/", "/someone-elses/"),
            "no signature": url.partition("?")[0],
        }
        for what, altered in refused.items():
            response = await http.get(altered)
            assert response.status_code == 403, f"{what}: {response.status_code}"


async def test_an_expired_url_is_refused(client: GraphQLClient, services: Services) -> None:
    await put_object(services, "images/a.png")
    real_clock = services.files.clock
    services.files.clock = lambda: real_clock() - timedelta(hours=1)  # signed an hour ago
    expired = services.files.url_batch(expires_in=600)("images/a.png")
    services.files.clock = real_clock
    async with httpx.AsyncClient() as http:
        response = await http.get(expired.url)
        assert response.status_code == 403
        assert "expired" in response.text.lower()
        assert (await http.get(await url_of(client, "images/a.png"))).status_code == 200


async def test_presigned_post_policies_refuse_oversize_and_foreign_types(
    client: GraphQLClient, services: Services
) -> None:
    path = "images/upload/photo.png"
    form = (
        await client.data(
            UPLOAD_URL, {"input": {"path": path, "contentType": "image/png", "size": len(PNG)}}
        )
    )["createUploadUrl"]

    async def post(fields: dict[str, str], body: bytes) -> httpx.Response:
        async with httpx.AsyncClient() as http:
            files = {"file": ("photo.png", body, fields.get("Content-Type", "image/png"))}
            return await http.post(form["url"], data=fields, files=files)

    too_big = await post(form["fields"], PNG + b"\0" * 100)
    assert too_big.status_code == 400, too_big.text
    assert "EntityTooLarge" in too_big.text
    foreign = await post({**form["fields"], "Content-Type": "text/html"}, PNG)
    assert foreign.status_code == 403, foreign.text
    assert await services.files.head(path) is None  # neither landed

    accepted = await post(form["fields"], PNG)
    assert accepted.status_code in (200, 201, 204), accepted.text
    stored = await services.files.head(path)
    assert stored is not None
    assert stored.size == len(PNG)
    assert stored.content_type == "image/png"


@pytest.mark.parametrize("size", [len(PNG), 9 * 1024 * 1024], ids=["single PUT", "multipart"])
async def test_prevent_overwrite_is_held_by_s3_itself(services: Services, size: int) -> None:
    """No HEAD before the write: S3's If-None-Match refuses it, whichever way it is sent."""
    await put_object(services, "images/taken.png", b"first")
    with pytest.raises(Conflict):
        await services.files.upload(
            "images/taken.png",
            BytesReader(b"x" * size),
            content_type="image/png",
            max_bytes=size,
            prevent_overwrite=True,
        )
    await put_object(services, "images/other.png", b"other")
    with pytest.raises(Conflict):
        await services.files.copy("images/other.png", "images/taken.png", prevent_overwrite=True)
    kept = io.BytesIO()
    await services.files.read_into("images/taken.png", kept, max_bytes=100)
    assert kept.getvalue() == b"first"
    listed, _ = await services.files.list_page("images/", page_size=10)
    assert [o.path for o in listed] == ["images/other.png", "images/taken.png"]


@pytest.fixture
def corrupting(services: Services) -> Iterator[list[str]]:
    """Alters every PutObject/UploadPart body after botocore has signed it (a bit flipped on
    the way, as a faulty proxy or NIC would); records the checksums the requests carried."""
    checksums: list[str] = []

    def corrupt(request: Any, **_: Any) -> None:
        checksums.append(request.headers.get("x-amz-checksum-crc32", b"").decode())
        body = request.body.read() if hasattr(request.body, "read") else bytes(request.body)
        request.body = io.BytesIO(bytes([body[0] ^ 1]) + body[1:])

    events = services.files._client.meta.events
    for operation in ("PutObject", "UploadPart"):
        events.register_last(f"before-send.s3.{operation}", corrupt)
    yield checksums
    for operation in ("PutObject", "UploadPart"):
        events.unregister(f"before-send.s3.{operation}", corrupt)


@pytest.mark.parametrize("size", [len(PNG), 9 * 1024 * 1024], ids=["single PUT", "multipart"])
async def test_every_upload_carries_a_checksum_s3_checks(
    services: Services, corrupting: list[str], size: int
) -> None:
    data = PNG + b"\0" * (size - len(PNG))
    with pytest.raises(StorageUnavailable):
        await services.files.upload(
            "images/sent.png", BytesReader(data), content_type="image/png", max_bytes=size
        )
    assert corrupting, "no upload request was sent"
    assert all(corrupting), f"an upload went without a checksum: {corrupting}"
    assert await services.files.head("images/sent.png") is None  # nothing corrupt was stored


@pytest.fixture
def slow_clock(services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[timedelta]]:
    """This server's clock set back by what the test appends (botocore's, which signs
    requests, and the URL signer's), as on a machine whose clock drifted."""
    behind = [timedelta(0)]
    real_botocore = botocore.auth.get_current_datetime
    monkeypatch.setattr(
        botocore.auth,
        "get_current_datetime",
        lambda *args, **kwargs: real_botocore(*args, **kwargs) - behind[-1],
    )
    real_clock = services.files.clock
    services.files.clock = lambda: real_clock() - behind[-1]
    yield behind
    services.files.clock = real_clock


async def test_urls_are_dated_by_s3s_clock(
    services: Services, slow_clock: list[timedelta], caplog: pytest.LogCaptureFixture
) -> None:
    """A server whose clock is 5 minutes slow still hands out URLs that open for as long as
    they say; at 20 minutes, S3 refuses its requests, and the error and the log say why."""
    await put_object(services, "images/a.png")
    slow_clock.append(timedelta(minutes=5))
    services.files.clock_offset = timedelta(0)  # as if S3's clock had not been read
    signed = services.files.url_batch(expires_in=60)("images/a.png")
    async with httpx.AsyncClient() as http:
        assert (await http.get(signed.url)).status_code == 403  # expired 4 minutes ago, to S3
        await services.files.measure_clock()
        assert abs(services.files.clock_offset - timedelta(minutes=5)) < timedelta(seconds=5)
        signed = services.files.url_batch(expires_in=60)("images/a.png")
        assert (await http.get(signed.url)).status_code == 200
        assert abs(signed.expires_at - datetime.now(UTC) - timedelta(seconds=60)) < timedelta(
            seconds=5
        )

    slow_clock.append(timedelta(minutes=20))
    await services.files.measure_clock()
    assert "1200s behind S3's" in caplog.text
    with pytest.raises(StorageUnavailable, match="clock"):
        await put_object(services, "images/b.png")
