"""Helpers for the benchmarks: server subprocesses, wrk runs, a redis-server, free ports."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import jwt

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-api-key-0123456789"
JWT_SECRET = "bench-jwt-secret-0123456789-0123456789"
USER_TOKEN = jwt.encode({"sub": "bench", "exp": int(time.time()) + 24 * 3600}, JWT_SECRET)
# Records need the API key and files a signed-in user (the seed's rules): send both.
HEADERS = {"x-api-key": API_KEY, "authorization": f"Bearer {USER_TOKEN}"}


def raise_open_files_limit() -> None:
    """As many open files as the hard limit allows: 5,000 subscribers beside 5,000 bare sockets
    are 10,000 descriptors in the client, and as many in the server."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def bench_server(env: Mapping[str, str] | None = None) -> Iterator[str]:
    """``bench.server`` in its own process; yields its base URL once it is ready. Unless
    ``env`` says otherwise, on the in-memory engines: the sections comparing GraphQL with a bare
    route read the same store on both sides, and measure what GraphQL adds."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHQL_FILES_")}
    environment.update(
        {
            "GRAPHQL_FILES_API_KEY": API_KEY,
            "GRAPHQL_FILES_JWT_SECRET": JWT_SECRET,
            "GRAPHQL_FILES_EMBEDDED": "memory",
            **(env or {}),
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.server", str(port)], cwd=ROOT, env=environment
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the benchmark server did not start")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


@contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is missing: run 'make system-deps'")
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                directory,
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=10)


def wrk(
    url: str, *, seconds: int, connections: int = 32, body: Mapping[str, object] | None = None
) -> float:
    """Requests per second that wrk measured (POSTing ``body`` as JSON when given)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: run 'make system-deps' (Debian package wrk)")
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        for name, value in HEADERS.items():
            script.write(f'wrk.headers["{name}"] = "{value}"\n')
        if body is not None:
            script.write('wrk.method = "POST"\n')
            script.write(f"wrk.body = {json.dumps(json.dumps(body))}\n")
            script.write('wrk.headers["Content-Type"] = "application/json"\n')
        args += ["-s", script.name]
    output = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} failed responses:\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match, output
    return float(match.group(1))
