"""A key a record names never changes (issue 20.3): a verified image adopted by a workflow was
replaced afterwards by an upload to the same key, through ``uploadFile`` and through the
presigned form, which stays valid for minutes after adoption."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from graphql_files.services.wiring import Services

from ..declared import PDF, POST_EXAMPLE
from ..helpers import PNG, GraphQLClient, client_of, make_settings, multipart

UPLOAD = """mutation($input: UploadFileInput!) {
  uploadFile(input: $input) { path size contentType } }"""
UPLOAD_URL = """mutation($input: CreateUploadUrlInput!) {
  createUploadUrl(input: $input) { url fields } }"""
ADOPT = """mutation($p: String!) { attachPostImage(input: {postId: "p1", uploadedPath: $p}) {
  imagePath image { url { url } properties { contentType size } } } }"""
IMAGE = """{ getPost(id: "p1") { imagePath
  image { url { url } properties { contentType size } } } }"""
COPY = """mutation($s: String!, $d: String!) {
  copyFile(input: {source: $s, destination: $d}) { path } }"""
# Post's folder takes what any of its file fields takes: images and PDFs (300 KB of one here)
BIG_PDF = PDF[:-6] + b"\n" * 300_000 + b"%%EOF\n"


@pytest.fixture
async def client(s3_endpoint: str, bucket: str, tmp_path: Path) -> AsyncIterator[GraphQLClient]:
    models = tmp_path / "models.toml"
    models.write_text(POST_EXAMPLE)
    settings = make_settings(s3_endpoint, bucket, models_file=models)
    async with client_of(settings) as client:
        await client.data('mutation { createPost(input: {id: "p1", title: "t"}) { id } }')
        yield client


async def upload(client: GraphQLClient, path: str, data: bytes, kind: str) -> httpx.Response:
    return await multipart(
        client,
        UPLOAD,
        {"input": {"path": path, "file": None}},
        {"variables.input.file": ("f", data, kind)},
    )


async def fetch(url: str) -> bytes:
    async with httpx.AsyncClient() as browser:
        return (await browser.get(url)).content


async def test_an_upload_cannot_replace_an_adopted_image(client: GraphQLClient) -> None:
    assert (await upload(client, "images/Post/p1/a.png", PNG, "image/png")).status_code == 200
    post = (await client.data(ADOPT, {"p": "images/Post/p1/a.png"}))["attachPostImage"]
    named = post["imagePath"]
    assert named != "images/Post/p1/a.png"  # adopted into a key of its own

    for path in (named, "images/Post/p1/a.png"):
        answer = (await upload(client, path, BIG_PDF, "application/pdf")).json()
        if path == named:
            assert [e["extensions"]["code"] for e in answer["errors"]] == ["CONFLICT"], answer
            assert "never changes" in answer["errors"][0]["message"]
    later = (await client.data(IMAGE))["getPost"]
    assert later["imagePath"] == named
    assert later["image"]["properties"] == {"contentType": "image/png", "size": len(PNG)}
    assert await fetch(later["image"]["url"]["url"]) == PNG


async def test_a_presigned_form_cannot_replace_an_adopted_image(
    client: GraphQLClient, services: Services
) -> None:
    form = (
        await client.data(
            UPLOAD_URL, {"input": {"path": "images/Post/p1/b.png", "contentType": "image/png"}}
        )
    )["createUploadUrl"]
    async with httpx.AsyncClient() as browser:

        async def post_form(data: bytes) -> int:
            files = {"file": ("b.png", data, "image/png")}
            return (await browser.post(form["url"], data=form["fields"], files=files)).status_code

        assert await post_form(PNG) in (200, 204)
        adopted = (await client.data(ADOPT, {"p": "images/Post/p1/b.png"}))["attachPostImage"]
        await services.background.drain()
        html = b"<html><script>alert(1)</script></html>"
        assert await post_form(html) in (200, 204)  # the form is still valid: it lands...
    later = (await client.data(IMAGE))["getPost"]
    assert later["imagePath"] == adopted["imagePath"]  # ...where no record looks
    assert await fetch(later["image"]["url"]["url"]) == PNG

    named = adopted["imagePath"]
    refused = await client.error(UPLOAD_URL, {"input": {"path": named, "contentType": "image/png"}})
    assert refused["extensions"]["code"] == "CONFLICT"
    assert (await upload(client, "images/Post/p1/c.png", PNG, "image/png")).status_code == 200
    refused = await client.error(COPY, {"s": "images/Post/p1/c.png", "d": named})
    assert refused["extensions"]["code"] == "CONFLICT"
    assert await fetch(later["image"]["url"]["url"]) == PNG


async def test_a_key_named_before_its_upload_is_filled_once(client: GraphQLClient) -> None:
    """A record may name a key before anything is there (created naming it, then uploaded, as
    some clients do): the upload fills it; after that, it never changes."""
    path = "images/Post/p1/later.png"
    await client.data(
        'mutation($p: String) { updatePost(input: {id: "p1", imagePath: $p}) { id } }', {"p": path}
    )
    first = (await upload(client, path, PNG, "image/png")).json()
    assert "errors" not in first, first
    again = (await upload(client, path, BIG_PDF, "application/pdf")).json()
    assert [e["extensions"]["code"] for e in again["errors"]] == ["CONFLICT"], again
    refused = await client.error(UPLOAD_URL, {"input": {"path": path, "contentType": "image/png"}})
    assert refused["extensions"]["code"] == "CONFLICT"
    later = (await client.data(IMAGE))["getPost"]
    assert later["image"]["properties"] == {"contentType": "image/png", "size": len(PNG)}
