"""Uploads over real HTTP: ``attachSongCoverArt`` with 1 MiB (p50), and 256 MiB and 1 GiB
through the API (``uploadFile`` and a workflow) against boto3 storing the same bytes straight in
the same S3.

S3 is SeaweedFS in a process of its own, as the embedded default runs it. The API's bytes come
from a generator on the client side, never held in the server; its RSS is sampled from
``/proc`` while it runs.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
from boto3.s3.transfer import TransferConfig
from PIL import Image

from graphql_files.adapters.embedded import SeaweedFS

from .common import HEADERS, bench_server

MIB = 1024 * 1024
GIB = 1024 * MIB
CHUNK = MIB
BOUNDARY = "bench-boundary-7d3f9a"
PREFLIGHT = {"apollo-require-preflight": "true"}
ATTACH = """mutation($input: AttachSongCoverArtInput!) {
  attachSongCoverArt(input: $input) { id version coverArtPath } }"""
UPLOAD = """mutation($input: UploadFileInput!) { uploadFile(input: $input) { path size eTag } }"""
# an MP3 is checked by its magic number only: a tag header, then filler
MP3_HEADER = b"ID3\x04\x00\x00\x00\x00\x00\x00"


def noise_png(size: int) -> bytes:
    """A PNG of about ``size`` bytes: random pixels do not compress."""
    side = int((size / 3) ** 0.5)
    pixels = random.Random(7).randbytes(side * side * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), pixels).save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


def multipart_parts(
    query: str, variables: dict[str, object], path: str, name: str, content_type: str
) -> tuple[bytes, bytes]:
    """The bytes before and after one file's content in a GraphQL multipart request."""
    operations = json.dumps({"query": query, "variables": variables})
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="operations"\r\n\r\n'
        f"{operations}\r\n"
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="map"\r\n\r\n'
        f'{{"0": ["{path}"]}}\r\n'
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="0"; filename="{name}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return head, f"\r\n--{BOUNDARY}--\r\n".encode()


MULTIPART_HEADERS = {
    **HEADERS,
    **PREFLIGHT,
    "content-type": f"multipart/form-data; boundary={BOUNDARY}",
}


def attach_p50(requests: int = 60, warmup: int = 10) -> None:
    cover = noise_png(MIB)
    with bench_server() as url, httpx.Client(base_url=url, timeout=60) as client:
        created = client.post(
            "/graphql",
            json={"query": 'mutation { createSong(input: {id: "s", name: "n"}) { id } }'},
            headers=HEADERS,
        )
        assert "errors" not in created.json(), created.text
        head, tail = multipart_parts(
            ATTACH,
            {"input": {"songId": "s", "file": None}},
            "variables.input.file",
            "c.png",
            "image/png",
        )
        body = head + cover + tail
        times: list[float] = []
        for n in range(warmup + requests):
            started = time.perf_counter()
            response = client.post("/graphql", content=body, headers=MULTIPART_HEADERS)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, response.text
            assert "errors" not in response.json(), response.text
            if n >= warmup:
                times.append(elapsed)
    times.sort()
    print(f"attachSongCoverArt, {len(cover) / MIB:.2f} MiB PNG over HTTP ({requests} requests)")
    print(f"  p50 {statistics.median(times) * 1000:8.1f} ms")
    print(f"  p90 {times[int(len(times) * 0.9)] * 1000:8.1f} ms")


def server_pid(url: str) -> int:
    """The pid of the ``bench.server`` serving ``url`` (found by its command line)."""
    port = url.rsplit(":", 1)[1]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"bench.server" in argv and port.encode() in argv:
            return int(entry.name)
    raise RuntimeError(f"no bench.server process serves {url}")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class RssSampler:
    """The largest RSS of a process while the block runs, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = rss_bytes(pid)
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes(self.pid))


def content(size: int, *, prefix: bytes = b"", suffix: bytes = b"") -> Iterator[bytes]:
    """``prefix``, then ``size`` bytes of an MP3 (a header, then filler), then ``suffix``; made
    a chunk at a time."""
    if prefix:
        yield prefix
    filler = bytes(range(256)) * (CHUNK // 256)
    yield MP3_HEADER
    sent = len(MP3_HEADER)
    while sent < size:
        chunk = filler[: min(CHUNK, size - sent)]
        sent += len(chunk)
        yield chunk
    if suffix:
        yield suffix


CREDENTIALS = ("bench-key", "bench-secret-0123456789")


@contextmanager
def seaweedfs() -> Iterator[tuple[str, str]]:
    """A SeaweedFS of its own (the embedded store's class), data on disk in a temporary
    directory, and a bucket in it; yields (endpoint, bucket)."""
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as directory:
        store = SeaweedFS(Path(directory) / "s3", CREDENTIALS, log_path=Path(directory) / "log")
        asyncio.run(store.start())
        try:
            s3_client(store.endpoint_url).create_bucket(Bucket="bench")
            yield store.endpoint_url, "bench"
        finally:
            asyncio.run(store.stop())


def s3_client(endpoint: str) -> Any:
    """boto3 as a user would call it: its defaults (SigV4 over the payload, a CRC32 checksum,
    8 MiB parts for transfers), the same as the server's."""
    access_key, secret_key = CREDENTIALS
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
    )


def mp3_bytes(size: int) -> bytes:
    return b"".join(content(size))


@dataclass
class Side:
    """One way of storing the bytes: its best time of the rounds, and the server's RSS growth."""

    name: str
    upload: Callable[[int], None]
    through_api: bool
    seconds: list[float] = field(default_factory=list)
    rss_growth: int = 0

    def run(self, round_: int, pid: int | None) -> None:
        sampler = RssSampler(pid) if pid is not None else None
        if sampler is not None:
            sampler.__enter__()
        started = time.perf_counter()
        self.upload(round_)
        self.seconds.append(time.perf_counter() - started)
        if sampler is not None:
            sampler.__exit__()
            self.rss_growth = max(self.rss_growth, sampler.peak - sampler.baseline)

    @property
    def best(self) -> float:
        return min(self.seconds)


def through_the_api(url: str, size: int, query: str, variables: dict[str, object]) -> None:
    head, tail = multipart_parts(query, variables, "variables.input.file", "one.mp3", "audio/mpeg")
    response = httpx.post(
        f"{url}/graphql",
        content=content(size, prefix=head, suffix=tail),
        headers={**MULTIPART_HEADERS, "content-length": str(len(head) + size + len(tail))},
        timeout=600,
    )
    body = response.json()
    assert "errors" not in body, body


def _sides(s3: Any, bucket: str, url: str, size: int, transfer: TransferConfig) -> list[Side]:
    data = mp3_bytes(size)  # the direct sides' bytes, in memory as a client's file would be

    def put(n: int) -> None:
        s3.put_object(Bucket=bucket, Key=f"d/put-{n}.mp3", Body=data)

    def multipart(n: int) -> None:
        s3.upload_fileobj(io.BytesIO(data), bucket, f"d/multi-{n}.mp3", Config=transfer)

    def upload_file(n: int) -> None:
        through_the_api(
            url, size, UPLOAD, {"input": {"path": f"images/bench/{n}.mp3", "file": None}}
        )

    def attach(n: int) -> None:
        through_the_api(url, size, ATTACH, {"input": {"songId": "s", "file": None}})

    return [
        Side("direct boto3 PUT", put, through_api=False),
        Side("direct boto3 multipart", multipart, through_api=False),
        Side("uploadFile", upload_file, through_api=True),
        Side("attachSongCoverArt", attach, through_api=True),
    ]


def upload_ratios(sizes: tuple[int, ...], rounds: int) -> None:
    """``uploadFile`` and a workflow (``attachSongCoverArt``) against the faster of a direct
    boto3 single PUT and a direct boto3 multipart upload of the same bytes to the same
    SeaweedFS, alternating the sides, best of ``rounds``; the server's peak RSS growth."""
    with seaweedfs() as (endpoint, bucket):
        s3 = s3_client(endpoint)
        largest = max(sizes)
        # a fresh store grows its first volumes on the first large write: not ours to time
        s3.put_object(Bucket=bucket, Key="warm/up.bin", Body=mp3_bytes(largest))
        s3.delete_object(Bucket=bucket, Key="warm/up.bin")
        env = {
            "GRAPHQL_FILES_S3_ENDPOINT_URL": endpoint,
            "GRAPHQL_FILES_S3_BUCKET": bucket,
            "GRAPHQL_FILES_MAX_UPLOAD_BYTES": str(largest + MIB),
            "GRAPHQL_FILES_REQUEST_TIMEOUT": "600",
            "GRAPHQL_FILES_S3_TIMEOUT": "120",
            "AWS_ACCESS_KEY_ID": CREDENTIALS[0],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS[1],
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        transfer = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB)
        with bench_server(env) as url, httpx.Client(base_url=url, timeout=60) as client:
            pid = server_pid(url)
            created = client.post(
                "/graphql",
                json={"query": 'mutation { createSong(input: {id: "s", name: "n"}) { id } }'},
                headers=HEADERS,
            )
            assert "errors" not in created.json(), created.text
            print(
                f"Uploads to SeaweedFS (a process of its own), best of {rounds}, sides alternating"
            )
            for size in sizes:
                sides = _sides(s3, bucket, url, size, transfer)
                for round_ in range(rounds):
                    for side in sides if round_ % 2 == 0 else reversed(sides):
                        side.run(round_, pid if side.through_api else None)
                direct = min(sides[0].best, sides[1].best)
                print(f"  {size / MIB:g} MiB")
                for side in sides:
                    line = f"    {side.name:<24}{side.best:8.2f} s"
                    if side.through_api:
                        line += f"   {side.best / direct:5.2f}x the faster direct"
                        line += f"   server RSS +{side.rss_growth / MIB:.0f} MiB"
                    print(line)
    print("  goal: at most 1.1x, and under 64 MiB of server RSS growth")


def run() -> None:
    attach_p50()
    print()
    sizes = os.environ.get("BENCH_UPLOAD_SIZES", f"{256 * MIB},{GIB}")
    upload_ratios(tuple(int(n) for n in sizes.split(",")), rounds=3)
