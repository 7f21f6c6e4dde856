"""Authorization under the seed's rules: data by API key, storage by signed-in user, each
guarding only its own category, over every kind of caller. Denied cells change nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from graphql_files.domain.declaration import SONG
from graphql_files.services.wiring import Services

from ..helpers import (
    API_KEY,
    PNG,
    GraphQLClient,
    codes,
    full_access,
    multipart,
    put_object,
    token,
    user,
)

OK = "ok"
UNAUTH = "UNAUTHENTICATED"
FORBID = "FORBIDDEN"
CALLERS = [
    "guest",
    "api_key",
    "expired_key",
    "revoked_key",
    "bad_key",
    "user",
    "other_user",
    "group_member",
    "expired_token",
    "bad_token",
    "api_key_and_user",
]


@pytest.fixture
async def callers(services: Services) -> dict[str, dict[str, str]]:
    keys = services.authenticator.api_keys
    _, expired = await keys.create(expires_in_days=-1, description="already expired")
    revoked_key, revoked = await keys.create(description="to revoke")
    await keys.revoke(revoked_key.id)
    return {
        "guest": {},
        "api_key": API_KEY,
        "expired_key": {"x-api-key": expired},
        "revoked_key": {"x-api-key": revoked},
        "bad_key": {"x-api-key": "gfk_nope_not-a-key"},
        "user": user("alice"),
        "other_user": user("bob"),
        "group_member": user("carol", groups=["editors"]),
        "expired_token": user("alice", expires_in=-3600),
        "bad_token": {"authorization": f"Bearer {token('alice', secret='x' * 40)}"},
        "api_key_and_user": {**API_KEY, **user("alice")},
    }


@pytest.fixture
async def bare(app: LifespanManager) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client with no credentials of its own."""
    transport = httpx.ASGITransport(app=app.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        yield http


def expected(caller: str, needs: str) -> str:
    """What the seed's rules answer: data needs the API key, storage a signed-in user."""
    if caller in ("expired_key", "revoked_key", "bad_key", "expired_token", "bad_token", "guest"):
        return UNAUTH
    has_key = caller in ("api_key", "api_key_and_user")
    has_user = caller in ("user", "other_user", "group_member", "api_key_and_user")
    granted = {"data": has_key, "storage": has_user, "both": has_key and has_user}[needs]
    return OK if granted else FORBID


def outcome(body: dict[str, Any]) -> str:
    found = codes(body)
    return found[0] if found else OK


Op = Callable[[GraphQLClient, Services], Awaitable[dict[str, Any]]]


async def seeded(services: Services) -> str:
    record_id = f"s-{uuid.uuid4().hex[:8]}"
    await services.records.create(
        full_access(services), SONG, {"name": "seed"}, record_id=record_id
    )
    return record_id


async def song_version(services: Services, record_id: str) -> int | None:
    doc = await services.records.collection(SONG).find_one({"_id": record_id})
    return None if doc is None else int(doc["version"])


DATA_OPS: dict[str, tuple[str, Callable[[str], dict[str, Any]]]] = {
    "createSong": (
        'mutation($id: ID!) { createSong(input: {id: $id, name: "n"}) { id } }',
        lambda rid: {"id": rid + "-new"},
    ),
    "getSong": ("query($id: ID!) { getSong(id: $id) { id } }", lambda rid: {"id": rid}),
    "listSongs": ("{ listSongs { items { id } } }", lambda rid: {}),
    "updateSong": (
        'mutation($id: ID!) { updateSong(input: {id: $id, name: "x"}) { id } }',
        lambda rid: {"id": rid},
    ),
    "deleteSong": (
        "mutation($id: ID!) { deleteSong(input: {id: $id}) { id } }",
        lambda rid: {"id": rid},
    ),
}


@pytest.mark.parametrize("operation", list(DATA_OPS))
@pytest.mark.parametrize("caller", CALLERS)
async def test_data_operations(
    bare: httpx.AsyncClient,
    services: Services,
    callers: dict[str, dict[str, str]],
    caller: str,
    operation: str,
) -> None:
    record_id = await seeded(services)
    query, variables = DATA_OPS[operation]
    body = await GraphQLClient(bare, callers[caller]).run(query, variables(record_id))
    want = expected(caller, "data")
    assert outcome(body) == want, body
    if want != OK:
        assert await song_version(services, record_id) == 1  # unchanged, still there
        assert await song_version(services, record_id + "-new") is None
        assert next(iter(body["data"].values())) is None


STORAGE_OPS: dict[str, str] = {
    "uploadFile": "upload",
    "createUploadUrl": """mutation($p: String!) { createUploadUrl(input: {path: $p,
        contentType: "image/png"}) { url } }""",
    "getUrl": "query($p: String!) { getUrl(input: {path: $p}) { url } }",
    "getProperties": "query($p: String!) { getProperties(path: $p) { size } }",
    "listFiles": '{ listFiles(input: {path: "images/"}) { items { path } } }',
    "copyFile": """mutation($p: String!) { copyFile(input: {source: $p,
        destination: "images/copy/x.png"}) { path } }""",
    "removeFile": "mutation($p: String!) { removeFile(path: $p) }",
}


@pytest.mark.parametrize("operation", list(STORAGE_OPS))
@pytest.mark.parametrize("caller", CALLERS)
async def test_storage_operations(
    bare: httpx.AsyncClient,
    services: Services,
    callers: dict[str, dict[str, str]],
    caller: str,
    operation: str,
) -> None:
    path = f"images/{uuid.uuid4().hex[:8]}/x.png"
    await put_object(services, path)
    client = GraphQLClient(bare, callers[caller])
    if operation == "uploadFile":
        response = await multipart(
            client,
            "mutation($i: UploadFileInput!) { uploadFile(input: $i) { path } }",
            {"i": {"path": path + ".new.png", "file": None}},
            {"variables.i.file": ("x.png", PNG, "image/png")},
        )
        body = response.json()
    else:
        body = await client.run(STORAGE_OPS[operation], {"p": path})
    want = expected(caller, "storage")
    assert outcome(body) == want, body
    if want != OK:
        assert await services.files.head(path) is not None  # not removed
        assert await services.files.head(path + ".new.png") is None  # not written
        assert await services.files.head("images/copy/x.png") is None


WORKFLOWS: dict[str, str] = {
    "attachSongCoverArt": """mutation($id: ID!, $f: Upload!) { attachSongCoverArt(input: {
        songId: $id, file: $f}) { coverArtPath } }""",
    "detachSongCoverArt": """mutation($id: ID!) { detachSongCoverArt(input: {songId: $id,
        deleteFile: true}) { coverArtPath } }""",
    "deleteSongWithFiles": """mutation($id: ID!) { deleteSong(input: {id: $id,
        deleteFiles: true}) { id } }""",
}


@pytest.mark.parametrize("workflow", list(WORKFLOWS))
@pytest.mark.parametrize("caller", CALLERS)
async def test_workflows_need_both(
    bare: httpx.AsyncClient,
    services: Services,
    callers: dict[str, dict[str, str]],
    caller: str,
    workflow: str,
) -> None:
    record_id = await seeded(services)
    path = f"images/Song/{record_id}/old.png"
    await put_object(services, path)
    await services.records.update(
        full_access(services), SONG, record_id, set_values={"coverArtPath": path}
    )
    client = GraphQLClient(bare, callers[caller])
    if workflow == "attachSongCoverArt":
        response = await multipart(
            client,
            WORKFLOWS[workflow],
            {"id": record_id, "f": None},
            {"variables.f": ("x.png", PNG, "image/png")},
        )
        body = response.json()
    else:
        body = await client.run(WORKFLOWS[workflow], {"id": record_id})
    want = expected(caller, "both")
    assert outcome(body) == want, body
    if want != OK:
        if "data" in body:  # refused before the body was read: an upload by no one has none
            assert next(iter(body["data"].values())) is None
        else:
            assert workflow == "attachSongCoverArt", body
            assert want == UNAUTH, body
        assert await song_version(services, record_id) == 2
        assert await services.files.head(path) is not None
        objects = [o.path async for o in services.files.iterate(f"images/Song/{record_id}/")]
        assert objects == [path]


async def test_the_seeds_independence(bare: httpx.AsyncClient, services: Services) -> None:
    """An API key alone can create a Song but not upload its cover art; a user alone can upload
    to images/ but not create a Song; both together do the whole workflow."""
    key_only = GraphQLClient(bare, API_KEY)
    user_only = GraphQLClient(bare, user("alice"))
    both = GraphQLClient(bare, {**API_KEY, **user("alice")})
    create = 'mutation { createSong(input: {id: "s", name: "A"}) { id owner } }'
    attach = (
        'mutation($f: Upload!) { attachSongCoverArt(input: {songId: "s", file: $f}) '
        "{ coverArtPath coverArt { url { url } } } }"
    )
    upload = "mutation($i: UploadFileInput!) { uploadFile(input: $i) { path } }"

    assert codes(await user_only.run(create)) == [FORBID]
    assert (await key_only.data(create))["createSong"] == {"id": "s", "owner": None}
    denied = await multipart(
        key_only, attach, {"f": None}, {"variables.f": ("c.png", PNG, "image/png")}
    )
    assert codes(denied.json()) == [FORBID]
    uploaded = await multipart(
        user_only,
        upload,
        {"i": {"path": "images/s/by-user.png", "file": None}},
        {"variables.i.file": ("c.png", PNG, "image/png")},
    )
    assert uploaded.json()["data"]["uploadFile"]["path"] == "images/s/by-user.png"
    attached = await multipart(
        both, attach, {"f": None}, {"variables.f": ("c.png", PNG, "image/png")}
    )
    song = attached.json()["data"]["attachSongCoverArt"]
    assert song["coverArtPath"].startswith("images/Song/s/")
    assert song["coverArt"]["url"]["url"].startswith("http")

    # reading the song with the key alone works; its file URL is storage's business
    read = await key_only.run('{ getSong(id: "s") { name coverArt { path url { url } } } }')
    assert read["data"]["getSong"]["name"] == "A"
    assert read["data"]["getSong"]["coverArt"] == {"path": song["coverArtPath"], "url": None}
    assert codes(read) == [FORBID]
    assert read["errors"][0]["path"] == ["getSong", "coverArt", "url"]


async def test_credentials_never_reach_the_logs(
    bare: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    secret_token = token("alice", expires_in=-10)
    with caplog.at_level("DEBUG"):
        await GraphQLClient(
            bare,
            {"x-api-key": "gfk_x_secret-looking-key", "authorization": f"Bearer {secret_token}"},
        ).run("{ listSongs { items { id } } }")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "secret-looking-key" not in text
    assert secret_token not in text


async def test_refusals_say_what_is_missing(bare: httpx.AsyncClient) -> None:
    """Under the seed's rules an API key never grants storage and a user never grants data:
    a refusal names the credential that would, not a generic 'sign in'."""
    key_only = GraphQLClient(bare, API_KEY)
    user_only = GraphQLClient(bare, user("alice"))
    nobody = GraphQLClient(bare, {})
    props = '{ getProperties(path: "images/x.png") { size } }'
    create = 'mutation { createSong(input: {name: "A"}) { id } }'

    refused = await key_only.error(props)
    assert refused["extensions"]["code"] == FORBID
    assert refused["message"] == (
        "not allowed to get images/x.png: it needs a signed-in user (Authorization header)"
    )
    refused = await nobody.error(props)
    assert refused["extensions"]["code"] == UNAUTH
    assert refused["message"] == "get images/x.png needs a signed-in user (Authorization header)"
    refused = await user_only.error(create)
    assert refused["extensions"]["code"] == FORBID
    assert refused["message"].endswith("it needs an API key (x-api-key header)")
