"""GraphiQL in a real headless Chromium that can reach nothing but loopback: it renders from the
server's own assets, runs a query, and a subscription receives a change made elsewhere."""

from __future__ import annotations

import hashlib
import io
import json
import re
from base64 import b64encode
from pathlib import Path
from urllib.parse import quote

import httpx
from asgi_lifespan import LifespanManager
from PIL import Image

from graphql_files.api.http.graphiql import ASSETS
from graphql_files.app import create_app
from graphql_files.settings import Settings

from ..declared import POST_EXAMPLE
from ..helpers import (
    FULL_ACCESS,
    PNG,
    LiveServer,
    eventually,
    make_settings,
    multipart,
    services_in,
    start_live_server,
    subscribed,
)
from .devtools import Page, chromium

QUERY = "{ listSongs { items { name } } }"
SUBSCRIPTION = "subscription { onCreateSong { name } }"
RESPONSE = "document.querySelector('.graphiql-response')?.innerText ?? ''"


def graphiql_url(live: LiveServer, query: str) -> str:
    return f"{live.url}/graphql?q={quote(query)}&headers={quote(json.dumps(FULL_ACCESS))}"


async def test_graphiql_works_with_no_network_but_loopback(
    live: LiveServer, tmp_path: Path
) -> None:
    async with live.client() as http:
        await http.data('mutation { createSong(input: {name: "Blue in Green"}) { id } }')
        async with chromium(tmp_path / "profile") as page:
            await page.call("Page.navigate", url=graphiql_url(live, QUERY))
            await page.until(
                "!!document.querySelector('.graphiql-execute-button')", "GraphiQL to render"
            )
            await page.evaluate("document.querySelector('.graphiql-execute-button').click()")
            await page.until(f"{RESPONSE}.includes('Blue in Green')", "the query's result")

            # a subscription tab: its headers reach the websocket as connection_init's payload
            await page.call("Page.navigate", url=graphiql_url(live, SUBSCRIPTION))
            await page.until(
                "document.querySelector('.graphiql-query-editor')?.innerText"
                ".includes('onCreateSong')",
                "the subscription in the editor",
            )
            await page.evaluate("document.querySelector('.graphiql-execute-button').click()")
            await subscribed(live, 1)
            await http.data('mutation { createSong(input: {name: "So What"}) { id } }')
            await page.until(f"{RESPONSE}.includes('So What')", "the subscription's event")
            loading = await page.evaluate("document.body.innerText.includes('Loading...')")
    assert loading is False
    elsewhere = [
        url for url in page.requested if not re.match(r"(https?|wss?)://127\.0\.0\.1:|data:", url)
    ]
    assert elsewhere == [], f"the page reached beyond the server: {elsewhere}"


async def test_the_assets_are_the_ones_the_page_pins(live: LiveServer) -> None:
    """Every asset the page loads is served, and matches the integrity hash the page gives."""
    async with httpx.AsyncClient(base_url=live.url) as http:
        page = (await http.get("/graphql", headers={"accept": "text/html"})).text
        pinned = re.findall(r'(?:src|href)="(/graphql/assets/[^"]+)"\s+integrity="([^"]+)"', page)
        assert len(pinned) == len(list(ASSETS.glob("*.js")) + list(ASSETS.glob("*.css")))
        for path, integrity in pinned:
            served = await http.get(path)
            assert served.status_code == 200, path
            digest = b64encode(hashlib.sha384(served.content).digest()).decode()
            assert integrity == f"sha384-{digest}", path


async def page_headers(settings: Settings) -> str:
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            page = (await http.get("/graphql", headers={"accept": "text/html"})).text
        welcome = services_in(app).dev_headers
    match = re.search(r"const DEFAULT_HEADERS = (.*);", page)
    assert match is not None
    headers: str = json.loads(match.group(1))
    if headers:  # what the editor holds is exactly what was made at start-up
        assert json.loads(headers) == dict(welcome)
    return headers


async def test_on_the_embedded_defaults_the_headers_editor_holds_the_new_credentials() -> None:
    embedded = Settings()  # nothing configured: a key and a token are made at start-up
    headers = await page_headers(embedded)
    assert '"x-api-key": "gfk_' in headers
    assert '"Authorization": "Bearer ey' in headers
    # listening beyond loopback, the page never shows them
    assert await page_headers(embedded.model_copy(update={"host": "0.0.0.0"})) == ""  # noqa: S104


async def run_in_graphiql(page: Page, live: LiveServer, query: str, expected: str) -> None:
    """Open ``query`` in GraphiQL, run it, and wait until the response shows ``expected``."""
    await page.call("Page.navigate", url=graphiql_url(live, query))
    first_word = json.dumps(query.split("(")[0].split("{")[0].strip()[:20])
    await page.until(
        f"document.querySelector('.graphiql-query-editor')?.innerText.includes({first_word})",
        "the operation in the editor",
    )
    await page.evaluate("document.querySelector('.graphiql-execute-button').click()")
    await page.until(f"{RESPONSE}.includes({json.dumps(expected)})", f"a response with {expected}")


async def test_a_declared_post_from_graphiql(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    """Issue 11's "done when", in a browser: a server started with a Post declaration; from
    GraphiQL, create a post, watch its updates while its image is attached in one mutation,
    and delete it with its files. (GraphiQL sends no files: the attach comes from an app.)"""
    models = tmp_path / "models.toml"
    models.write_text(POST_EXAMPLE)
    settings = make_settings(s3_endpoint, bucket, models_file=models)
    async with start_live_server(settings) as live, live.client() as http:
        async with chromium(tmp_path / "profile") as page:
            await run_in_graphiql(
                page,
                live,
                'mutation { createPost(input: {id: "p1", title: "Hi", status: DRAFT}) { id } }',
                '"id": "p1"',
            )
            await page.call(
                "Page.navigate",
                url=graphiql_url(live, "subscription { onUpdatePost { id imagePath } }"),
            )
            await page.until(
                "document.querySelector('.graphiql-query-editor')?.innerText"
                ".includes('onUpdatePost')",
                "the subscription in the editor",
            )
            await page.evaluate("document.querySelector('.graphiql-execute-button').click()")
            await subscribed(live, 1)
            response = await multipart(
                http,
                """mutation($input: AttachPostImageInput!) {
                  attachPostImage(input: $input) { imagePath } }""",
                {"input": {"postId": "p1", "file": None}},
                {"variables.input.file": ("cover.png", PNG, "image/png")},
            )
            assert "errors" not in response.json(), response.text
            await page.until(f"{RESPONSE}.includes('images/Post/p1/')", "the update event")

            await run_in_graphiql(
                page,
                live,
                'mutation { deletePost(input: {id: "p1", deleteFiles: true}) { id version } }',
                '"version": 3',
            )

        async def folder_empty() -> bool:  # files are deleted just after the answer
            listing = await http.data(
                '{ listFiles(input: {path: "images/Post/p1/"}) { items { path } } }'
            )
            return listing == {"listFiles": {"items": []}}

        await eventually(folder_empty, "the deleted post's files to be removed")


PREVIEWS = "document.querySelectorAll('#graphql-files-previews img')"


async def test_an_album_s_thumbnails_show_in_graphiql(live: LiveServer, tmp_path: Path) -> None:
    """Issue 18's "done when", in a browser: create an album from GraphiQL, add two photos in
    one addPhotoAlbumImages (from an app: GraphiQL sends no files), query their thumbnails and
    see them beside the result, then delete the album with its files: nothing is left."""
    async with live.client() as http, chromium(tmp_path / "profile") as page:
        await run_in_graphiql(
            page,
            live,
            'mutation { createPhotoAlbum(input: {id: "a1", name: "Trip"}) { id } }',
            '"id": "a1"',
        )
        added = await multipart(
            http,
            """mutation($input: AddPhotoAlbumImagesInput!) {
              addPhotoAlbumImages(input: $input) { imagePaths } }""",
            {"input": {"albumId": "a1", "files": [None, None]}},
            {
                f"variables.input.files.{n}": (f"photo-{n}.png", _photo(600 + n), "image/png")
                for n in range(2)
            },
        )
        assert "errors" not in response_of(added), added.text
        await run_in_graphiql(
            page,
            live,
            '{ getPhotoAlbum(id: "a1") { images { url(variant: "thumb") { url } } } }',
            "thumb.webp",
        )
        await page.until(f"{PREVIEWS}.length === 2", "two previews beside the result")
        await page.until(
            f"[...{PREVIEWS}].every(i => i.complete && i.naturalWidth === 256)",
            "the thumbnails to load, 256 pixels wide",
        )
        await run_in_graphiql(
            page,
            live,
            'mutation { deletePhotoAlbum(input: {id: "a1", deleteFiles: true}) { version } }',
            '"version": 3',
        )
        await page.until(f"{PREVIEWS}.length === 0", "no previews for a result without images")

        async def bucket_empty() -> bool:  # files are deleted just after the answer
            listing = await http.data('{ listFiles(input: {path: "images/"}) { items { path } } }')
            return listing == {"listFiles": {"items": []}}

        await eventually(bucket_empty, "the album's photos and thumbnails to be removed")


def _photo(width: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, 400), (30, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def response_of(response: httpx.Response) -> dict[str, object]:
    body: dict[str, object] = response.json()
    return body
