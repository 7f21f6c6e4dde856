"""Attaching a 12-megapixel JPEG as a song's cover art, with its ``thumb`` made in the workflow
(the built-in declaration) against the same attach with no variant declared: two servers, side
by side, the requests alternating. The goal is at most 1.5x at p50."""

from __future__ import annotations

import asyncio
import io
import random
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

from .common import HEADERS, bench_server
from .uploads import MULTIPART_HEADERS, multipart_parts

ATTACH = """mutation($input: AttachSongCoverArtInput!) {
  attachSongCoverArt(input: $input) { version coverArtPath } }"""
NO_VARIANTS = """\
[models.Song]
fields.name = "String!"
files.coverArt = { one = "coverArtPath" }
"""


def photo_12mp() -> bytes:
    """A 4000 x 3000 JPEG: a gradient with noise, which compresses about as a photo does."""
    width, height = 4000, 3000
    gradient = Image.linear_gradient("L").resize((width, height))
    noise = Image.frombytes("L", (width, height), random.Random(3).randbytes(width * height))
    image = Image.merge("RGB", (gradient, noise.point(lambda v: v // 4 + 96), gradient))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def run(requests: int = 30, warmup: int = 4) -> None:
    picture = photo_12mp()
    head, tail = multipart_parts(
        ATTACH,
        {"input": {"songId": "s", "file": None}},
        "variables.input.file",
        "p.jpg",
        "image/jpeg",
    )
    body = head + picture + tail
    with tempfile.TemporaryDirectory() as directory:
        plain = Path(directory) / "plain.toml"
        plain.write_text(NO_VARIANTS)
        with (
            bench_server() as with_thumb,
            bench_server({"GRAPHQL_FILES_MODELS_FILE": str(plain)}) as without,
        ):
            times: dict[str, list[float]] = {with_thumb: [], without: []}
            clients = {url: httpx.Client(base_url=url, timeout=120) for url in times}
            for client in clients.values():
                created = client.post(
                    "/graphql",
                    json={"query": 'mutation { createSong(input: {id: "s", name: "n"}) { id } }'},
                    headers=HEADERS,
                )
                assert "errors" not in created.json(), created.text
            for n in range(warmup + requests):
                for url, client in clients.items():
                    start = time.perf_counter()
                    answer = client.post("/graphql", content=body, headers=MULTIPART_HEADERS)
                    elapsed = time.perf_counter() - start
                    assert "errors" not in answer.json(), answer.text
                    if n >= warmup:
                        times[url].append(elapsed)
            for client in clients.values():
                client.close()
    made, bare = (statistics.median(times[u]) * 1000 for u in (with_thumb, without))
    print(
        f"attachSongCoverArt of a 12 MP JPEG ({len(picture) / 2**20:.1f} MiB), p50 of "
        f"{requests}, alternating between two servers"
    )
    print(f"  no variant declared        {bare:8.1f} ms")
    print(f"  with its thumb made        {made:8.1f} ms")
    print(f"  with / without             {made / bare:8.2f}x   (goal: <= 1.5)")
    burst()


async def _burst(url: str, body: bytes, uploads: int) -> tuple[list[float], list[float]]:
    """``uploads`` attaches at once (each to a song of its own), /healthz asked every 50 ms
    meanwhile: the attaches' times and the health checks' latencies."""
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        for n in range(uploads):
            await client.post(
                "/graphql",
                json={
                    "query": f'mutation {{ createSong(input: {{id: "b{n}", name: "n"}}) {{ id }} }}'
                },
                headers=HEADERS,
            )
        done = asyncio.Event()
        health: list[float] = []

        async def watch() -> None:
            while not done.is_set():
                start = time.perf_counter()
                assert (await client.get("/healthz")).status_code == 200
                health.append(time.perf_counter() - start)
                await asyncio.sleep(0.05)

        async def attach(n: int) -> float:
            start = time.perf_counter()
            answer = await client.post(
                "/graphql",
                content=body.replace(b'"songId": "s"', f'"songId": "b{n}"'.encode()),
                headers=MULTIPART_HEADERS,
            )
            assert "errors" not in answer.json(), answer.text
            return time.perf_counter() - start

        watcher = asyncio.create_task(watch())
        times = await asyncio.gather(*(attach(n) for n in range(uploads)))
        done.set()
        await watcher
    return list(times), health


def burst(uploads: int = 20) -> None:
    """Peak RSS of the server and /healthz latency during a burst of large image uploads."""
    picture = photo_12mp()
    variables: dict[str, object] = {"input": {"songId": "s", "file": None}}
    head, tail = multipart_parts(ATTACH, variables, "variables.input.file", "p.jpg", "image/jpeg")
    with bench_server() as url:
        before = httpx.get(f"{url}/memory").json()
        times, health = asyncio.run(_burst(url, head + picture + tail, uploads))
        after = httpx.get(f"{url}/memory").json()
    print(f"A burst of {uploads} attaches of that JPEG at once, each making its thumb")
    print(f"  all answered in              {max(times) * 1000:8.0f} ms")
    p50, worst = statistics.median(health) * 1000, max(health) * 1000
    print(f"  /healthz meanwhile ({len(health)} asked)  p50 {p50:.1f} ms, max {worst:.1f} ms")
    print(
        f"  server RSS                   {before['VmRSS']:.0f} MiB before, peak "
        f"{after['VmHWM']:.0f} MiB (bodies spooled to disk past 1 MiB; IMAGE_WORKERS at once)"
    )
