"""Uploads over real HTTP: ``attachSongCoverArt`` with 1 MiB (p50), and 1 GiB through the API
against a direct PUT of the same bytes to the same S3.

The 1 GiB run needs S3 in a process of its own: moto keeps uploaded parts in memory, so an
embedded moto would grow the API server by gigabytes and hide what the server itself holds.
Its bytes come from a generator on the client side, never held in memory; the server's RSS is
sampled from ``/proc`` while it runs.
"""

from __future__ import annotations

import io
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import httpx
from PIL import Image

from .common import HEADERS, bench_server, free_port

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


@contextmanager
def moto_process() -> Iterator[str]:
    """A moto S3 server in its own process; yields its endpoint."""
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=20)


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


def stream_gib(size: int = GIB) -> None:
    with moto_process() as endpoint:
        bucket = f"bench-{uuid.uuid4().hex[:12]}"
        credentials = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench"}
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **credentials)
        s3.create_bucket(Bucket=bucket)
        put_url = s3.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": "direct.mp3"}, ExpiresIn=3600
        )
        started = time.perf_counter()
        direct = httpx.put(
            put_url,
            content=content(size),
            headers={"content-length": str(size), "content-type": "audio/mpeg"},
            timeout=600,
        )
        direct_seconds = time.perf_counter() - started
        assert direct.status_code == 200, direct.text
        s3.delete_object(Bucket=bucket, Key="direct.mp3")  # moto frees it

        env = {
            "GRAPHQL_FILES_S3_ENDPOINT_URL": endpoint,
            "GRAPHQL_FILES_S3_BUCKET": bucket,
            "GRAPHQL_FILES_MAX_UPLOAD_BYTES": str(size + MIB),
            "GRAPHQL_FILES_REQUEST_TIMEOUT": "600",
            "GRAPHQL_FILES_S3_TIMEOUT": "120",  # moto joins the parts in memory on completion
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
        }
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        with bench_server(env) as url:
            pid = server_pid(url)
            head, tail = multipart_parts(
                UPLOAD,
                {"input": {"path": "images/bench/one.mp3", "file": None}},
                "variables.input.file",
                "one.mp3",
                "audio/mpeg",
            )
            length = len(head) + size + len(tail)
            with RssSampler(pid) as rss:
                started = time.perf_counter()
                response = httpx.post(
                    f"{url}/graphql",
                    content=content(size, prefix=head, suffix=tail),
                    headers={**MULTIPART_HEADERS, "content-length": str(length)},
                    timeout=600,
                )
                api_seconds = time.perf_counter() - started
            body = response.json()
            assert "errors" not in body, body
            assert body["data"]["uploadFile"]["size"] == size, body
    print(f"{size / GIB:g} GiB through the API (uploadFile) vs a direct PUT; moto in a process")
    print(f"  direct PUT           {direct_seconds:8.1f} s")
    print(f"  through the API      {api_seconds:8.1f} s")
    print(f"  API / direct         {api_seconds / direct_seconds:8.2f}")
    print(f"  server RSS growth    {(rss.peak - rss.baseline) / MIB:8.1f} MiB (peak, sampled)")


def run() -> None:
    attach_p50()
    print()
    stream_gib(int(os.environ.get("BENCH_UPLOAD_BYTES", GIB)))
