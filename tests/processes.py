"""Processes a test runs beside the app: a real redis-server, the CLI's own server as a user
starts it, and a service that accepts connections and never answers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@asynccontextmanager
async def hung_server() -> AsyncIterator[str]:
    """A loopback TCP server that accepts connections and never answers (a hung service);
    yields its ``http://host:port`` address."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # keep the connection open, say nothing

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for writer in held:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await server.wait_closed()


@dataclass
class Served:
    """A ``graphql-files serve`` process: its port, and every line it printed so far."""

    port: int
    lines: list[str]
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def welcome(self) -> tuple[str, str]:
        """The API key and the user token the start-up block printed."""
        api_key = re.search(r"API key\s+(\S+)", self.output)
        user_token = re.search(r"User\s+Bearer (\S+)", self.output)
        assert api_key, self.output
        assert user_token, self.output
        return api_key[1], user_token[1]


@contextmanager
def serving(data_dir: Path | None = None, **env: str) -> Iterator[Served]:
    """``graphql-files serve`` on a free port, as a user starts it: on the embedded defaults, no
    ``GRAPHQL_FILES_*`` variable set but those in ``env``, its data in ``data_dir`` (a fresh
    temporary directory unless given). Yields once start-up is complete (within 30 s), and ends
    the process afterwards."""
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        served = stack.enter_context(_serving({"GRAPHQL_FILES_DATA_DIR": str(data_dir), **env}))
        yield served


@contextmanager
def _serving(env: dict[str, str]) -> Iterator[Served]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHQL_FILES_")}
    process = subprocess.Popen(
        # port 0: the server binds a free one itself (a port chosen here could be taken
        # before the server binds it), and its start-up block names it
        [sys.executable, "-m", "graphql_files", "serve", "--port", "0"],
        cwd=ROOT,
        env={**environment, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    stdout = process.stdout
    served = Served(0, [], process.pid)
    started = threading.Event()

    def read() -> None:
        for line in iter(stdout.readline, ""):
            served.lines.append(line)
            listening = re.search(r"GraphiQL  https?://[^:]+:(\d+)/", line)
            if listening:
                served.port = int(listening[1])
            if "Application startup complete" in line:
                started.set()
        started.set()  # the output ended (the process exited): stop waiting either way

    reader = threading.Thread(target=read)
    reader.start()
    try:
        started.wait(timeout=30)
        assert "Application startup complete" in served.output, served.output
        yield served
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=20)
        reader.join(timeout=5)
        stdout.close()


class RedisProcess:
    """A real ``redis-server`` on a loopback port, in a temporary directory, no persistence."""

    def __init__(self, directory: str, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed: run `make system-deps` "
                "(Debian: apt-get install -y redis-server)"
            )
        self.process = subprocess.Popen(  # noqa: S603
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
                "--stream-node-max-entries",
                "4",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as probe,
            ):
                probe.sendall(b"PING\r\n")
                if probe.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"redis-server did not start on port {self.port}")

    def pause(self) -> None:
        """Stop the process without ending it: it accepts connections and answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
