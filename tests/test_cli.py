"""The command line: schema file in sync, settings errors in one line, the server's start-up,
the sweep and api-key commands."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from graphql_files.adapters.mongo import open_database
from graphql_files.cli import api_key_command
from graphql_files.errors import NotFound
from graphql_files.services.apikeys import ApiKeys
from graphql_files.settings import Settings

from .processes import ROOT, serving


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


def test_serve_on_embedded_defaults_says_what_is_embedded() -> None:
    with serving() as served:
        api_key, user_token = served.welcome()
        song = httpx.post(
            f"{served.url}/graphql",
            headers={"x-api-key": api_key},
            json={"query": 'mutation { createSong(input: {name: "x"}) { version } }'},
        )
        assert song.json() == {"data": {"createSong": {"version": 1}}}
        listing = httpx.post(
            f"{served.url}/graphql",
            headers={"authorization": f"Bearer {user_token}"},
            json={"query": '{ listFiles(input: {path: "images/"}) { nextToken } }'},
        )
        assert listing.json() == {"data": {"listFiles": {"nextToken": None}}}
    output = served.output
    assert f"GraphiQL  {served.url}/graphql" in output
    assert output.count("data is lost when the server exits") == 2  # MongoDB and S3
    assert "Events    in process" in output
    assert output.count(api_key) == 1  # printed once, never logged again


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


def test_sweep_refuses_the_embedded_defaults() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "graphql_files", "sweep", "--dry-run"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "GRAPHQL_FILES_SWEEP_INTERVAL" in result.stderr


async def test_api_key_command_create_list_revoke() -> None:
    async with open_database(Settings()) as database:
        keys = ApiKeys(database=database)
        await keys.ensure_indexes()
        created = await api_key_command(
            argparse.Namespace(action="create", expires_in_days=7, description="ci"), keys
        )
        secret = created[0]
        assert secret.startswith("gfk_")
        found = await keys.find(secret)
        assert found is not None
        assert found.status == "active"
        listing = await api_key_command(argparse.Namespace(action="list"), keys)
        assert secret not in "\n".join(listing)
        assert f"{found.id:<14}active" in listing[1]
        revoked = await api_key_command(argparse.Namespace(action="revoke", id=found.id), keys)
        assert revoked == [f"revoked {found.id} (ci)"]
        assert "revoked" in (await api_key_command(argparse.Namespace(action="list"), keys))[1]
        with pytest.raises(NotFound):
            await api_key_command(argparse.Namespace(action="revoke", id="nope"), keys)


def test_amplify_outputs_writes_what_amplify_configures_itself_from(tmp_path: Path) -> None:
    target = tmp_path / "amplify_outputs.json"
    done = subprocess.run(  # noqa: S603 - our own command
        [
            str(ROOT / ".venv" / "bin" / "graphql-files"),
            "amplify-outputs",
            "--url",
            "https://api.example.com/",
            "--api-key",
            "gfk_abc_def",
            "--output",
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    outputs = json.loads(target.read_text())
    data = outputs["data"]
    assert outputs["version"].startswith("1")  # what aws-amplify v6 checks
    assert data["url"] == "https://api.example.com/graphql"
    assert data["api_key"] == "gfk_abc_def"
    assert data["default_authorization_type"] == "API_KEY"
    assert data["authorization_types"] == ["AWS_LAMBDA"]
    song = data["model_introspection"]["models"]["Song"]
    assert set(song["fields"]) == {
        "id",
        "name",
        "coverArtPath",
        "owner",
        "version",
        "createdAt",
        "updatedAt",
    }
    assert song["fields"]["version"]["isReadOnly"] is True
    assert song["pluralName"] == "Songs"
    rules = next(a for a in song["attributes"] if a["type"] == "auth")["properties"]["rules"]
    assert rules == [
        {
            "allow": "public",
            "provider": "apiKey",
            "operations": ["create", "delete", "read", "update"],
        }
    ]
    album = data["model_introspection"]["models"]["PhotoAlbum"]["fields"]["imagePaths"]
    assert (album["isArray"], album["isArrayNullable"], album["type"]) == (True, True, "String")
