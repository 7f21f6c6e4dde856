"""Image variants over real HTTP on the real stores: a variant URL opens as soon as the
workflow answered, shows the right picture, and lives and goes with its original."""

from __future__ import annotations

import asyncio
import io
import random
import statistics
import struct
import time
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from graphql_files.domain.declaration import PHOTO_ALBUM, SONG
from graphql_files.domain.variants import THUMB, is_variant_key, key_of
from graphql_files.services.wiring import Services

from ..helpers import (
    MP3,
    PNG,
    GraphQLClient,
    LiveServer,
    codes,
    full_access,
    multipart,
    put_object,
    stored_originals,
    upload_data,
)

ATTACH = """mutation($input: AttachSongCoverArtInput!) { attachSongCoverArt(input: $input) {
  coverArtPath coverArt { url { url } thumb: url(variant: "thumb") { url } } } }"""
ADD = """mutation($input: AddPhotoAlbumImagesInput!) { addPhotoAlbumImages(input: $input) {
  imagePaths images { path url(variant: "thumb") { url expiresAt } } } }"""
REPLACE = """mutation($input: ReplacePhotoAlbumImageInput!) {
  replacePhotoAlbumImage(input: $input) { imagePaths } }"""
THUMB_OF = 'query($v: String) { getSong(id: "s1") { coverArt { url(variant: $v) { url } } } }'
RED, BLUE = (220, 20, 20), (20, 20, 220)


def photo(width: int, height: int, *, orientation: int | None = None, fmt: str = "JPEG") -> bytes:
    """Left half red, right half blue; with an EXIF orientation (and a GPS tag to strip)."""
    image = Image.new("RGB", (width, height), RED)
    image.paste(BLUE, (width // 2, 0, width, height))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    exif[0x8825] = {1: "N", 2: (59.0, 19.0, 0.0)}  # GPS: where the photo was taken
    buffer = io.BytesIO()
    image.save(buffer, fmt, exif=exif.tobytes())
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A small, well-formed PNG whose header declares ``width`` x ``height`` pixels (its data
    holds one row): a decompression bomb for whoever trusts the header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 4))
        + chunk(b"IEND", b"")
    )


async def fetch(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as browser:
        return await browser.get(url)


async def every_key(services: Services) -> list[str]:
    await services.background.drain()
    return sorted([o.path async for o in services.files.iterate("images/")])


async def create(client: GraphQLClient, *records: tuple[str, str]) -> None:
    for kind, record_id in records:
        await client.data(
            f'mutation {{ create{kind}(input: {{id: "{record_id}", name: "n"}}) {{ id }} }}'
        )


async def attach(client: GraphQLClient, data: bytes, name: str, content_type: str) -> Any:
    return await multipart(
        client,
        ATTACH,
        {"input": {"songId": "s1", "file": None}},
        {"variables.input.file": (name, data, content_type)},
    )


async def test_a_thumbnail_opens_as_soon_as_the_attach_answered(
    client: GraphQLClient, services: Services
) -> None:
    """EXIF orientation 6 (turn a quarter clockwise to show): the stored left half, red, is
    the shown top; the thumbnail is 256x256 webp, upright, with no EXIF or GPS left."""
    await create(client, ("Song", "s1"))
    original = photo(1200, 800, orientation=6)
    response = await attach(client, original, "holiday.jpg", "image/jpeg")
    song = response.json()["data"]["attachSongCoverArt"]
    thumb = await fetch(song["coverArt"]["thumb"]["url"])
    assert thumb.status_code == 200, thumb.text
    assert thumb.headers["content-type"] == "image/webp"
    picture = Image.open(io.BytesIO(thumb.content))
    assert (picture.format, picture.size) == ("WEBP", (256, 256))
    rgb = picture.convert("RGB")
    assert _near(rgb.getpixel((128, 8)), RED)
    assert _near(rgb.getpixel((128, 247)), BLUE)
    assert not picture.getexif()
    assert not {"exif", "xmp", "icc_profile"} & set(picture.info)
    assert (await fetch(song["coverArt"]["url"]["url"])).content == original  # untouched
    path = song["coverArtPath"]
    assert await every_key(services) == sorted([path, key_of(THUMB, path)])


async def test_album_thumbnails_for_sent_and_presigned_files(
    client: GraphQLClient, services: Services
) -> None:
    """Two files sent in one addPhotoAlbumImages and one adopted presigned upload: every
    thumbnail opens in the answer, and getUrl signs the same variant."""
    await create(client, ("PhotoAlbum", "a1"))
    added = await upload_data(
        client,
        ADD,
        {"input": {"albumId": "a1", "files": [None, None]}},
        {
            "variables.input.files.0": ("wide.png", photo(900, 300, fmt="PNG"), "image/png"),
            "variables.input.files.1": ("small.png", PNG, "image/png"),
        },
    )
    post = (
        await client.data(
            'mutation { createUploadUrl(input: {path: "images/PhotoAlbum/a1/form.jpg", '
            'contentType: "image/jpeg"}) { url fields } }'
        )
    )["createUploadUrl"]
    async with httpx.AsyncClient() as browser:
        sent = await browser.post(
            post["url"],
            data=post["fields"],
            files={"file": ("form.jpg", photo(640, 480), "image/jpeg")},
        )
    assert sent.status_code in (200, 204), sent.text
    adopted = await client.data(
        ADD, {"input": {"albumId": "a1", "uploadedPaths": ["images/PhotoAlbum/a1/form.jpg"]}}
    )
    images = adopted["addPhotoAlbumImages"]["images"]
    assert len(images) == 3
    sizes = []
    for image in images:
        thumb = await fetch(image["url"]["url"])
        assert thumb.status_code == 200, (image["path"], thumb.text)
        sizes.append(Image.open(io.BytesIO(thumb.content)).size)
    # cover never enlarges: the 4x4 PNG's thumbnail stays 4x4
    assert sizes == [(256, 256), (4, 4), (256, 256)]
    assert added["addPhotoAlbumImages"]["images"][1]["path"] == images[1]["path"]
    signed = await client.data(
        'query($p: String!) { getUrl(input: {path: $p, variant: "thumb"}) { url } }',
        {"p": images[2]["path"]},
    )
    assert (await fetch(signed["getUrl"]["url"])).status_code == 200


async def test_variants_go_with_their_originals(client: GraphQLClient, services: Services) -> None:
    """Replace (deletePrevious), remove (deleteFiles) and deleteX(deleteFiles): each original
    goes with its thumbnail, and nothing is left."""
    await create(client, ("PhotoAlbum", "a1"), ("Song", "s1"))
    added = await upload_data(
        client,
        ADD,
        {"input": {"albumId": "a1", "files": [None, None, None]}},
        {f"variables.input.files.{n}": (f"{n}.png", PNG, "image/png") for n in range(3)},
    )
    paths = added["addPhotoAlbumImages"]["imagePaths"]
    assert len(await every_key(services)) == 6
    replaced = await upload_data(
        client,
        REPLACE,
        {"input": {"albumId": "a1", "path": paths[0], "file": None}},
        {"variables.input.file": ("new.png", PNG, "image/png")},
    )
    now = replaced["replacePhotoAlbumImage"]["imagePaths"]
    assert await every_key(services) == sorted([*now, *(key_of(THUMB, p) for p in now)])
    await client.data(
        'mutation($p: [String!]!) { removePhotoAlbumImages(input: {albumId: "a1", paths: $p, '
        "deleteFiles: true}) { imagePaths } }",
        {"p": [now[1]]},
    )
    left = [now[0], now[2]]
    assert await every_key(services) == sorted([*left, *(key_of(THUMB, p) for p in left)])
    await attach(client, PNG, "cover.png", "image/png")
    await client.data('mutation { deletePhotoAlbum(input: {id: "a1", deleteFiles: true}) { id } }')
    await client.data('mutation { deleteSong(input: {id: "s1", deleteFiles: true}) { id } }')
    assert await every_key(services) == []


async def test_what_has_no_variant_says_so(client: GraphQLClient, services: Services) -> None:
    """An undeclared name, and a file that is no image: the URL is null with BAD_USER_INPUT,
    never a URL to nothing; the original's own URL is unaffected."""
    await create(client, ("Song", "s1"))
    response = (await attach(client, MP3, "song.mp3", "audio/mpeg")).json()
    assert codes(response) == ["BAD_USER_INPUT"]  # its thumb, asked for in the answer
    assert response["errors"][0]["path"] == ["attachSongCoverArt", "coverArt", "thumb"]
    attached = response["data"]["attachSongCoverArt"]
    assert attached["coverArt"]["url"]["url"].startswith("http")
    assert await every_key(services) == [attached["coverArtPath"]]
    for name, says in (("thumb", "no image"), ("poster", "no variant 'poster'")):
        body = await client.run(THUMB_OF, {"v": name})
        assert body["data"]["getSong"]["coverArt"]["url"] is None
        assert codes(body) == ["BAD_USER_INPUT"]
        assert says in body["errors"][0]["message"]
    plain = await client.data('{ getSong(id: "s1") { coverArt { url { url } } } }')
    assert (await fetch(plain["getSong"]["coverArt"]["url"]["url"])).content == MP3


async def test_hostile_images_are_refused_and_leave_nothing(
    client: GraphQLClient, services: Services
) -> None:
    """A PNG declaring 8,000 x 8,000 pixels (over MAX_IMAGE_PIXELS, in 100 bytes) is refused
    before a pixel is decoded; a file named like an image that is none has no thumbnail to
    make. Neither leaves an object behind."""
    await create(client, ("Song", "s1"))
    bomb = await attach(client, png_declaring(8_000, 8_000), "bomb.png", "image/png")
    assert codes(bomb.json()) == ["BAD_USER_INPUT"], bomb.json()
    assert "pixels" in bomb.json()["errors"][0]["message"]
    fake = await attach(client, MP3, "song.jpg", "audio/mpeg")
    assert codes(fake.json()) == ["BAD_USER_INPUT"], fake.json()
    assert await every_key(services) == []
    song = await client.data('{ getSong(id: "s1") { coverArtPath version } }')
    assert song["getSong"] == {"coverArtPath": None, "version": 1}


async def test_the_variants_namespace_is_the_servers(
    client: GraphQLClient, services: Services
) -> None:
    """A client may not write into a ``.variants/`` folder, adopt from it, or remove the
    thumbnail of a file a record names."""
    await create(client, ("Song", "s1"))
    song = (await attach(client, PNG, "c.png", "image/png")).json()["data"]["attachSongCoverArt"]
    thumb = key_of(THUMB, song["coverArtPath"])
    for mutation in (
        'createUploadUrl(input: {path: $p, contentType: "image/webp"}) { url }',
        "copyFile(input: {source: $c, destination: $p}) { path }",
    ):
        body = await client.run(
            f"mutation($p: String!, $c: String!) {{ {mutation} }}",
            {"p": "images/Song/s1/.variants/x.png/thumb.webp", "c": song["coverArtPath"]},
        )
        assert codes(body) == ["BAD_USER_INPUT"], body
    adopt = await client.run(
        'mutation($p: String!) { attachSongCoverArt(input: {songId: "s1", uploadedPath: $p}) '
        "{ id } }",
        {"p": thumb},
    )
    assert codes(adopt) == ["BAD_USER_INPUT"]
    removed = await client.run("mutation($p: String!) { removeFile(path: $p) }", {"p": thumb})
    assert codes(removed) == ["CONFLICT"]
    assert thumb in await every_key(services)


async def test_the_sweeper_removes_variants_whose_original_is_gone(
    services: Services,
) -> None:
    """A thumbnail a crash left without its original goes after the grace period; one of a
    named original stays."""
    named = "images/Song/s1/aaaa-named.png"
    await services.records.create(
        full_access(services), SONG, {"name": "n", "coverArtPath": named}, record_id="s1"
    )
    await put_object(services, named)
    for original in (named, "images/PhotoAlbum/a1/bbbb-gone.png"):
        await put_object(services, key_of(THUMB, original), content_type="image/webp")
    report = await services.sweeper.run(grace=timedelta(0))
    assert [o.path for o in report.removed] == [key_of(THUMB, "images/PhotoAlbum/a1/bbbb-gone.png")]
    assert await stored_originals(services, "images/") == [named]
    assert [k for k in await every_key(services) if is_variant_key(k)] == [key_of(THUMB, named)]
    assert PHOTO_ALBUM.files[0].variants == (THUMB,)


def _near(pixel: Any, colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) < 40 for a, b in zip(pixel, colour, strict=True))


def noisy_jpeg(width: int, height: int) -> bytes:
    """A photo-sized JPEG whose noise compresses about as a photo's detail does."""
    noise = Image.frombytes("L", (width, height), random.Random(5).randbytes(width * height))
    image = Image.merge("RGB", (noise, noise.point(lambda v: 255 - v), noise))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def reset_peak_rss() -> None:
    clear = Path("/proc/self/clear_refs")
    assert clear.exists(), "this test measures peak memory through Linux's /proc"
    clear.write_text("5")  # the peak restarts from now


def peak_rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


async def test_a_burst_of_large_images_never_stalls_the_server(live: LiveServer) -> None:
    """20 attaches of a 6-megapixel JPEG at once, over real HTTP: each makes its thumbnail
    (at most IMAGE_WORKERS at a time, in threads, decoding at a reduced size), while /healthz
    keeps being answered, and the process's peak memory (client included) grows by far less
    than 20 decoded photos (18 MiB each). The latencies are printed, not asserted (shared
    machines); ``python -m bench variants`` measures a burst of 12-megapixel ones."""
    picture = noisy_jpeg(3000, 2000)
    async with live.client(timeout=120) as client:
        for n in range(20):
            await client.data(
                f'mutation {{ createSong(input: {{id: "b{n}", name: "n"}}) {{ id }} }}'
            )
        reset_peak_rss()
        before = peak_rss_mib()
        done = asyncio.Event()
        health: list[float] = []

        async def watch() -> None:
            async with httpx.AsyncClient(base_url=live.url) as probe:
                while not done.is_set():
                    start = time.perf_counter()
                    assert (await probe.get("/healthz")).status_code == 200
                    health.append(time.perf_counter() - start)
                    await asyncio.sleep(0.02)

        async def one(n: int) -> Any:
            return await multipart(
                client,
                ATTACH,
                {"input": {"songId": f"b{n}", "file": None}},
                {"variables.input.file": (f"photo-{n}.jpg", picture, "image/jpeg")},
            )

        watcher = asyncio.create_task(watch())
        answers = await asyncio.gather(*(one(n) for n in range(20)))
        done.set()
        await watcher
        grown = peak_rss_mib() - before
    assert all("errors" not in a.json() for a in answers), [a.json() for a in answers]
    print(
        f"\n{len(picture) / 2**20:.1f} MiB JPEG x 20: /healthz answered {len(health)} times, "
        f"p50 {statistics.median(health) * 1000:.1f} ms, max {max(health) * 1000:.1f} ms; "
        f"peak RSS +{grown:.0f} MiB"
    )
    assert len(health) >= 5, "the health checks waited for the burst"
    assert grown < 20 * 18, f"peak memory grew {grown:.0f} MiB: images decoded at once?"
