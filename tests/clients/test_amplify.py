"""aws-amplify v6, unmodified (the npm package, pinned by tests/clients/amplify's lockfile),
against a TLS server started here with a certificate made here: configured from the
amplify_outputs.json the server writes, its model client, paging, a missing record, a
subscription through /graphql/realtime, observeQuery, and a refused subscription."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from graphql_files.domain.declaration import BUILTIN, Declaration
from graphql_files.domain.policy import load_policy
from graphql_files.services.amplify_outputs import amplify_outputs
from graphql_files.settings import Settings

from ..declared import BLOG, BLOG_FILE
from ..helpers import PNG, TEST_API_KEY, LiveServer, services_in, start_live_server, token

CLIENT = Path(__file__).parent / "amplify"


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (its own authority)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def run_node(env: dict[str, str], script: str) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: run `make system-deps` (Debian: nodejs, npm)")
    if not (CLIENT / "node_modules" / "aws-amplify").is_dir():
        pytest.fail(f"aws-amplify is not installed: run `make test` (npm ci in {CLIENT})")
    process = await asyncio.create_subprocess_exec(
        node,
        script,
        cwd=CLIENT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 180)
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    assert lines, f"the scenario printed nothing: {err.decode()[-2000:]}"
    seen: dict[str, Any] = json.loads(lines[-1])
    assert "crashed" not in seen, seen["crashed"]
    return seen


async def run_scenario(
    live: LiveServer,
    declaration: Declaration,
    directory: Path,
    cert_file: Path,
    script: str = "scenario.mjs",
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``script`` configured from the amplify_outputs.json the server writes for
    ``declaration``, trusting the test's certificate, with a signed-in user's token at hand."""
    url = live.url.replace("127.0.0.1", "localhost") + "/graphql"
    outputs = amplify_outputs(
        url=url,
        api_key=TEST_API_KEY,
        region="us-east-1",
        policy=load_policy(None),
        declaration=declaration,
    )
    (directory / "amplify_outputs.json").write_text(json.dumps(outputs))
    environment = {
        "OUTPUTS": str(directory / "amplify_outputs.json"),
        "NODE_EXTRA_CA_CERTS": str(cert_file),
        "USER_TOKEN": token("amplify-user"),
        **(env or {}),
    }
    return await run_node(environment, script)


async def test_amplify_v6_works_unchanged(settings: Settings, tmp_path: Path) -> None:
    cert_file, key_file = certificate(tmp_path)
    tls = settings.model_copy(update={"tls_cert_file": cert_file, "tls_key_file": key_file})
    async with start_live_server(tls) as live:
        assert live.url.startswith("https://")
        seen = await run_scenario(live, BUILTIN, tmp_path, cert_file)

    created = seen["create"]["data"]
    assert seen["create"]["errors"] is None
    assert created["name"] == "Blue in Green"
    assert created["version"] == 1
    assert seen["get"]["data"] == created
    assert seen["getMissing"] == {"data": None, "errors": None}  # AppSync's answer
    assert seen["update"]["data"]["name"] == "So What"
    assert seen["update"]["data"]["version"] == 2
    assert seen["pages"] == [["So What", "Track 1"], ["Track 2", "Track 3"], ["Track 4"]]
    assert seen["filtered"] == ["Track 1", "Track 2", "Track 3", "Track 4"]
    assert seen["onCreate"]["name"] == "Live"  # delivered through /graphql/realtime
    observed = seen["observeQuery"]
    assert observed["snapshots"][0] == {"count": 6, "isSynced": True}
    assert observed["names"][-1] == "Observed"
    # a signed-in user alone may not touch Song records under the built-in rules; Amplify
    # reports the refusal the server gave, over HTTP and over the realtime socket
    assert seen["asUser"]["errors"] == [
        "not allowed to create Song records: it needs an API key (x-api-key header)"
    ]
    assert "Unauthorized" in seen["refused"]["errors"]
    assert "needs an API key" in seen["refused"]["errors"]
    assert seen["delete"]["data"]["version"] == 3


async def test_amplify_v6_reads_the_relations(settings: Settings, tmp_path: Path) -> None:
    """The README's blog through Amplify's model client: ``comments.*`` in a selection set, the
    lazy loaders of each kind of relation, ``create({post})``, and cascading deletes (with and
    without their files), from the associations ``amplify-outputs`` writes."""
    cert_file, key_file = certificate(tmp_path)
    blog = settings.model_copy(
        update={"tls_cert_file": cert_file, "tls_key_file": key_file, "models_file": BLOG_FILE}
    )
    async with start_live_server(blog) as live:
        png = {"PNG_BASE64": base64.b64encode(PNG).decode()}
        seen = await run_scenario(live, BLOG, tmp_path, cert_file, "blog.mjs", png)
        services = services_in(live.app)
        await services.background.drain()
        post_id = seen["ids"]["postId"]
        left = {o.path async for o in services.files.iterate("")}

    assert seen["post"]["errors"] is None
    assert seen["image"].get("errors") is None, seen["image"]
    assert seen["attachment"].get("errors") is None, seen["attachment"]
    assert seen["comment"]["data"]["postId"] == post_id
    assert seen["byRecord"]["errors"] is None
    assert seen["byRecord"]["data"]["postId"] == post_id  # {post} became {postId}
    selected = seen["selected"]["data"]
    assert seen["selected"]["errors"] is None
    assert selected["title"] == "First"
    assert sorted(c["content"] for c in selected["comments"]) == ["one", "two"]
    assert {c["postId"] for c in selected["comments"]} == {post_id}
    assert seen["lazy"] == {"contents": ["one", "two"], "errors": None}
    assert seen["parent"]["data"]["id"] == post_id
    assert seen["profile"]["data"]["bio"] == "first programmer"
    assert seen["owner"]["data"]["name"] == "Ada"
    assert seen["deleted"]["errors"] is None
    assert seen["deleted"]["data"]["id"] == seen["ids"]["keptId"]
    assert seen["deletedWithFiles"] == {"data": {"deletePost": {"id": post_id}}, "errors": None}
    assert seen["afterGet"] == {"data": None, "errors": None}
    assert seen["afterComments"] == {"data": [], "errors": None}  # both cascades took them
    # deleteFiles: true took the post's image and its comment's attachment; Amplify's own
    # delete sends the id alone, so the other comment's attachment stays (deleteFiles = false)
    kept_comment = seen["ids"]["keptCommentId"]
    assert [path.split("/")[:3] for path in left] == [["images", "Comment", kept_comment]]
