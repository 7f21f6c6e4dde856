"""The command line: schema file in sync, settings errors in one line, the server's start-up,
the sweep and api-key commands."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from graphql_files.adapters.mongo import open_database
from graphql_files.cli import api_key_command
from graphql_files.errors import NotFound
from graphql_files.services.apikeys import ApiKeys
from graphql_files.settings import Settings

from .declared import POST_EXAMPLE
from .helpers import PNG, TransportWsClient, eventually
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
    assert output.count("kept across restarts") == 2  # MongoDB and S3
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


def test_sweep_refuses_the_in_memory_engines() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "graphql_files", "sweep", "--dry-run"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "GRAPHQL_FILES_EMBEDDED": "memory"},
    )
    assert result.returncode == 2
    assert "GRAPHQL_FILES_SWEEP_INTERVAL" in result.stderr


def test_sweep_and_api_key_use_the_embedded_data_while_no_server_does(tmp_path: Path) -> None:
    data = {"GRAPHQL_FILES_DATA_DIR": str(tmp_path)}
    with serving(tmp_path) as served:
        api_key, _ = served.welcome()
        for command in (["sweep", "--dry-run"], ["api-key", "list"]):
            held = run_cli(*command, env=data)
            assert held.returncode != 0
            lines = held.stderr.strip().splitlines()
            assert len(lines) == 1, held.stderr
            assert f"is in use by graphql-files server (pid {served.pid})" in lines[0]
    listed = run_cli("api-key", "list", env=data)
    assert listed.returncode == 0, listed.stderr
    assert api_key.split("_")[1] in listed.stdout  # the key the server made, by its id
    swept = run_cli("sweep", "--dry-run", env=data)
    assert swept.returncode == 0, swept.stderr


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


# --- declared models ---------------------------------------------------------------------------


@pytest.fixture
def post_models(tmp_path: Path) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(POST_EXAMPLE)
    return path


def test_check_models_validates_a_declaration(post_models: Path) -> None:
    result = run_cli("check-models", str(post_models))
    assert result.returncode == 0, result.stderr
    assert "2 models: Post (6 fields, 2 file fields), User (2 fields, 1 file fields)" in (
        result.stdout
    )


def test_a_malformed_declaration_stops_every_command_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "models.toml"
    bad.write_text('[models.Post]\nfields.title = "String!"\nfiles.image = { one = "title" }\n')
    expected = f"graphql-files: {bad}, line 3: 'title' is already a field"
    for args, env in [
        (("check-models", str(bad)), {}),
        (("schema", "--models", str(bad)), {}),
        (("serve",), {"GRAPHQL_FILES_MODELS_FILE": str(bad)}),
        (("amplify-outputs", "--url", "http://x"), {"GRAPHQL_FILES_MODELS_FILE": str(bad)}),
    ]:
        result = run_cli(*args, env=env)
        assert result.returncode != 0, args
        assert result.stderr.strip().splitlines() == [expected], (args, result.stderr)


def test_schema_models_prints_the_names_the_contract_gives(post_models: Path) -> None:
    result = run_cli("schema", "--models", str(post_models))
    assert result.returncode == 0, result.stderr
    sdl = result.stdout
    for line in [
        "getPost(id: ID!): Post",
        "listPosts(filter: ModelPostFilterInput = null, limit: Int = null, "
        "nextToken: String = null, sortDirection: ModelSortDirection = null): ModelPostConnection",
        "createPost(input: CreatePostInput!, condition: ModelPostConditionInput = null): Post",
        "updatePost(input: UpdatePostInput!, condition: ModelPostConditionInput = null): Post",
        "deletePost(input: DeletePostInput!, condition: ModelPostConditionInput = null): Post",
        "onCreatePost(filter: ModelSubscriptionPostFilterInput = null): Post!",
        "onUpdatePost(filter: ModelSubscriptionPostFilterInput = null): Post!",
        "onDeletePost(filter: ModelSubscriptionPostFilterInput = null): Post!",
        "image: FileRef",
        "attachments: [FileRef!]!",
        "attachPostImage(input: AttachPostImageInput!): Post",
        "detachPostImage(input: DetachPostImageInput!): Post",
        "addPostAttachments(input: AddPostAttachmentsInput!): Post",
        "replacePostAttachment(input: ReplacePostAttachmentInput!): Post",
        "removePostAttachments(input: RemovePostAttachmentsInput!): Post",
        "attachUserProfilePicture(input: AttachUserProfilePictureInput!): User",
        "status: PostStatus",
        "tags: [String!]",
        "  postId: ID!",
        "  userId: ID!",
    ]:
        assert line in sdl, line
    model_name = sdl[sdl.index("enum ModelName {") :].split("}")[0]
    assert model_name.split()[3:] == ["POST", "USER"]
    attach = sdl[sdl.index("input AttachPostImageInput {") :].split("}")[0]
    for argument in ("postId", "file", "uploadedPath", "deletePrevious", "expectedVersion"):
        assert f"  {argument}:" in attach, attach
    assert "Song" not in sdl  # a declaration replaces the built-in one whole


def test_amplify_outputs_describes_the_declared_models(post_models: Path) -> None:
    result = run_cli(
        "amplify-outputs", "--url", "http://x", env={"GRAPHQL_FILES_MODELS_FILE": str(post_models)}
    )
    assert result.returncode == 0, result.stderr
    introspection = json.loads(result.stdout)["data"]["model_introspection"]
    assert set(introspection["models"]) == {"Post", "User"}
    post = introspection["models"]["Post"]["fields"]
    assert post["status"]["type"] == {"enum": "PostStatus"}
    assert (post["tags"]["isArray"], post["tags"]["type"]) == (True, "String")
    assert introspection["enums"]["PostStatus"]["values"] == ["DRAFT", "PUBLISHED"]


def test_a_server_started_with_a_declaration_serves_its_whole_api(post_models: Path) -> None:
    """The issue's "done when": start the server with a Post declaration; create a post, attach
    its image in one mutation, receive the update over a subscription, delete it with its files."""
    asyncio.run(_post_round_trip(post_models))


async def _post_round_trip(post_models: Path) -> None:
    with serving(GRAPHQL_FILES_MODELS_FILE=str(post_models)) as served:
        api_key, user_token = served.welcome()  # records by API key, files for signed-in users
        headers = {"x-api-key": api_key, "authorization": f"Bearer {user_token}"}
        async with (
            httpx.AsyncClient(base_url=served.url, headers=headers) as http,
            connect(
                served.url.replace("http", "ws") + "/graphql",
                subprotocols=[TransportWsClient.protocol],
            ) as socket,
        ):
            ws = TransportWsClient(socket)
            assert (await ws.init(headers))["type"] == "connection_ack"

            async def run(query: str, variables: dict[str, object]) -> dict[str, object]:
                response = await http.post(
                    "/graphql", json={"query": query, "variables": variables}
                )
                body: dict[str, object] = response.json()
                assert "errors" not in body, body
                return body

            created = await run(
                'mutation { createPost(input: {id: "p1", title: "Hello", tags: ["a"], '
                "status: DRAFT}) { id version status } }",
                {},
            )
            assert created["data"] == {"createPost": {"id": "p1", "version": 1, "status": "DRAFT"}}
            await ws.subscribe(
                'subscription { onUpdatePost(filter: {id: {eq: "p1"}}) { id version imagePath } }'
            )
            attach = """mutation($input: AttachPostImageInput!) {
              attachPostImage(input: $input) { version imagePath image { url { url } } } }"""
            operations = {"query": attach, "variables": {"input": {"postId": "p1", "file": None}}}
            for _ in range(100):  # the subscription is registered once an update reaches it
                response = await http.post(
                    "/graphql",
                    data={
                        "operations": json.dumps(operations),
                        "map": json.dumps({"0": ["variables.input.file"]}),
                    },
                    files={"0": ("cover.png", PNG, "image/png")},
                    headers={"apollo-require-preflight": "true"},
                )
                attached = response.json()
                assert "errors" not in attached, attached
                try:
                    event = await ws.next_payload(timeout=0.2)
                    break
                except TimeoutError:
                    continue
            else:
                pytest.fail("no onUpdatePost event arrived")
            image_path = event["data"]["onUpdatePost"]["imagePath"]
            assert image_path.startswith("images/Post/p1/"), event
            async with httpx.AsyncClient() as browser:
                url = attached["data"]["attachPostImage"]["image"]["url"]["url"]
                assert (await browser.get(url)).content == PNG

            deleted = await run(
                'mutation { deletePost(input: {id: "p1", deleteFiles: true}) { id } }', {}
            )
            assert deleted["data"] == {"deletePost": {"id": "p1"}}

            async def folder_empty() -> bool:  # files are deleted just after the answer
                listing = await run(
                    'query { listFiles(input: {path: "images/Post/p1/"}) { items { path } } }',
                    {},
                )
                return listing["data"] == {"listFiles": {"items": []}}

            await eventually(folder_empty, "the deleted post's files to be removed")
