"""The command line: schema file in sync, settings errors in one line, the server's start-up."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "graphql_files", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=60,
        check=False,
    )


def test_schema_file_matches_the_code() -> None:
    result = run_cli("schema", "--check")
    assert result.returncode == 0, f"schema.graphql is stale: run 'make schema'\n{result.stderr}"


def test_schema_check_fails_on_drift(tmp_path: Path) -> None:
    stale = tmp_path / "schema.graphql"
    stale.write_text("type Query { old: String }\n")
    result = run_cli("schema", "--check", "--output", str(stale))
    assert result.returncode == 1
    assert "out of date" in result.stderr


def test_a_bad_setting_stops_start_up_with_one_line() -> None:
    result = run_cli("serve", env={"GRAPHQL_FILES_PORT": "eighty"})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "GRAPHQL_FILES_PORT" in lines[0]

    result = run_cli("serve", env={"GRAPHQL_FILES_SIGNED_URL_TTL": "999999999"})
    assert "GRAPHQL_FILES_SIGNED_URL_TTL" in result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_serve_on_embedded_defaults_says_what_is_embedded() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHQL_FILES_")}
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "graphql_files", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        response = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": 'mutation { createSong(input: {name: "x"}) { version } }'},
        )
        assert response.json() == {"data": {"createSong": {"version": 1}}}
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert f"GraphiQL  http://127.0.0.1:{port}/graphql" in output
    assert output.count("data is lost when the server exits") == 2  # MongoDB and S3
    assert "Events    in process" in output
