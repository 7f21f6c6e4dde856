"""The command line: schema file in sync, settings errors in one line, the server's start-up."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from graphql_files.settings import Settings, describe_invalid

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

    for name, value in [
        ("GRAPHQL_FILES_SIGNED_URL_TTL", "999999999"),
        ("GRAPHQL_FILES_JWKS_FILE", "/nonexistent/jwks.json"),
        ("GRAPHQL_FILES_CORS_ORIGINS", "not an origin"),
        ("GRAPHQL_FILES_ATTACHMENT_PREFIX", "/abs"),
    ]:
        result = run_cli("serve", env={name: value})
        assert result.returncode != 0
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert name in result.stderr, result.stderr


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
    lines: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")))
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not any("Application startup complete" in line for line in lines):
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.1)
        banner = "".join(lines)
        api_key = re.search(r"API key\s+(\S+)", banner)
        user_token = re.search(r"User\s+Bearer (\S+)", banner)
        assert api_key, banner
        assert user_token, banner
        song = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            headers={"x-api-key": api_key[1]},
            json={"query": 'mutation { createSong(input: {name: "x"}) { version } }'},
        )
        assert song.json() == {"data": {"createSong": {"version": 1}}}
        listing = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            headers={"authorization": f"Bearer {user_token[1]}"},
            json={"query": '{ listFiles(input: {path: "images/"}) { nextToken } }'},
        )
        assert listing.json() == {"data": {"listFiles": {"nextToken": None}}}
    finally:
        process.terminate()
        process.wait(timeout=20)
        reader.join(timeout=5)
        stdout.close()
    output = "".join(lines)
    assert f"GraphiQL  http://127.0.0.1:{port}/graphql" in output
    assert output.count("data is lost when the server exits") == 2  # MongoDB and S3
    assert "Events    in process" in output
    assert output.count(api_key[1]) == 1  # printed once, never logged again


def test_sweep_with_mongodb_unreachable_says_so_in_one_line(s3_endpoint: str, bucket: str) -> None:
    result = run_cli(
        "sweep",
        env={
            "GRAPHQL_FILES_MONGODB_URI": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300",
            "GRAPHQL_FILES_MONGODB_TIMEOUT_MS": "300",
            "GRAPHQL_FILES_S3_BUCKET": bucket,
            "GRAPHQL_FILES_S3_ENDPOINT_URL": s3_endpoint,
        },
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("graphql-files sweep: "), lines[0]
    assert "database" in lines[0].lower()


@pytest.mark.parametrize(
    "uri",
    [
        "mongodb://user:s3cr3tpass@host:notaport",
        "mongodb://user:s3cr3tpass@host:99999",
        "mongodb://user:s3cr3t@pass@host",  # an unescaped '@'
        "mongodb://user:s3cr3tpass@host/?tls=maybe",
        "http://user:s3cr3tpass@x",
        "mongodb://",
        "mongodb+srv://user:s3cr3tpass@host.example.com:27017",
        "mongodb+srv://user:s3cr3tpass@a.example.com,b.example.com",
        "mongodb+srv://user:s3cr3tpass@",
    ],
)
def test_a_malformed_mongodb_uri_stops_start_up_with_one_line(uri: str) -> None:
    result = run_cli("serve", env={"GRAPHQL_FILES_MONGODB_URI": uri})
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "GRAPHQL_FILES_MONGODB_URI" in lines[0]
    assert "s3cr3t" not in result.stderr + result.stdout


def test_describe_invalid_never_prints_a_secret_input() -> None:
    with pytest.raises(ValidationError) as invalid:
        Settings(mongodb_uri="mongodb://user:s3cr3tpass@host:notaport")
    line = describe_invalid(invalid.value)
    assert line.startswith("invalid setting GRAPHQL_FILES_MONGODB_URI: ")
    assert "s3cr3tpass" not in line
    # whatever pydantic's message holds, a secret field's input never reaches the line
    with pytest.raises(ValidationError) as too_short:
        Settings(jwt_secret="short-s3cr3t")
    assert "short-s3cr3t" not in describe_invalid(too_short.value)


@pytest.mark.parametrize(
    "uri",
    [
        "mongodb://127.0.0.1:27017",
        "mongodb://user:p%40ss@db1:27017,db2:27017/app?replicaSet=rs0&authSource=admin",
        "mongodb+srv://user:pass@cluster0.example.mongodb.net/?retryWrites=true&w=majority",
    ],
)
def test_well_formed_mongodb_uris_are_accepted(uri: str) -> None:
    settings = Settings(mongodb_uri=uri)
    assert settings.mongodb_uri is not None
    assert settings.mongodb_uri.get_secret_value() == uri
