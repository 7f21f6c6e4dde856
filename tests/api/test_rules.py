"""Configured rules: owners, groups, guests and entity paths; subscriptions and websockets."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from graphql_files.api.connection import close_later
from graphql_files.app import create_app
from graphql_files.settings import Settings

from ..helpers import (
    API_KEY,
    PNG,
    GraphQLClient,
    LiveServer,
    TransportWsClient,
    codes,
    eventually,
    make_settings,
    multipart,
    start_live_server,
    subscribed,
    user,
    ws_client,
)
from ..processes import ROOT

RULES = """
[data.Song]
owner = "*"
groups.admins = "*"
guest = ["read"]

[data.PhotoAlbum]
authenticated = ["create", "read"]

[storage."images/*"]
authenticated = ["read", "write", "delete"]

[storage."private/{entity_id}/*"]
entity = ["read", "write", "delete"]
groups.admins = ["read"]

[storage."public/*"]
guest = ["read"]
authenticated = ["read", "write"]
"""

UPLOAD = "mutation($i: UploadFileInput!) { uploadFile(input: $i) { path } }"


@pytest.fixture
def rules_settings(s3_endpoint: str, bucket: str, tmp_path: Path) -> Settings:
    rules = tmp_path / "access.toml"
    rules.write_text(RULES)
    return make_settings(s3_endpoint, bucket, access_file=rules)


@asynccontextmanager
async def clients(settings: Settings) -> AsyncIterator[dict[str, GraphQLClient]]:
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield {
                "guest": GraphQLClient(http, {}),
                "alice": GraphQLClient(http, user("alice")),
                "bob": GraphQLClient(http, user("bob")),
                "admin": GraphQLClient(http, user("root", groups=["admins"])),
                "cognito_admin": GraphQLClient(http, user("x", **{"cognito:groups": ["admins"]})),
                "key": GraphQLClient(http, API_KEY),
            }


async def test_owner_rule(rules_settings: Settings) -> None:
    async with clients(rules_settings) as c:
        created = await c["alice"].data(
            'mutation { createSong(input: {id: "a", name: "A"}) { owner version } }'
        )
        assert created["createSong"] == {"owner": "alice", "version": 1}
        await c["bob"].data('mutation { createSong(input: {id: "b", name: "B"}) { id } }')

        # bob sees only his own records; alice's look exactly like missing ones
        listed = await c["bob"].data("{ listSongs { items { id } } }")
        assert listed["listSongs"]["items"] == [{"id": "b"}]
        # a get answers null for both, as AppSync does; writes answer NOT_FOUND for both
        assert await c["bob"].run('{ getSong(id: "a") { id } }') == {"data": {"getSong": None}}
        assert await c["bob"].run('{ getSong(id: "nope") { id } }') == {"data": {"getSong": None}}
        for query in (
            'mutation { updateSong(input: {id: "a", name: "x"}) { id } }',
            'mutation { updateSong(input: {id: "a", name: "x", expectedVersion: 1}) { id } }',
            'mutation { deleteSong(input: {id: "a"}) { id } }',
        ):
            missing = query.replace('"a"', '"nope"')
            assert (
                codes(await c["bob"].run(query))
                == codes(await c["bob"].run(missing))
                == ["NOT_FOUND"]
            )
        assert (await c["alice"].data('{ getSong(id: "a") { name version } }'))["getSong"] == {
            "name": "A",
            "version": 1,
        }

        # admins (a groups rule, either claim) see and change everything
        admin_list = await c["admin"].data("{ listSongs { items { id } } }")
        assert sorted(i["id"] for i in admin_list["listSongs"]["items"]) == ["a", "b"]
        await c["cognito_admin"].data('mutation { updateSong(input: {id: "a", name: "Z"}) { id } }')
        # guests may read (a guest rule narrowed to read), but not write
        assert (
            len((await c["guest"].data("{ listSongs { items { id } } }"))["listSongs"]["items"])
            == 2
        )
        assert codes(
            await c["guest"].run('mutation { createSong(input: {name: "g"}) { id } }')
        ) == ["UNAUTHENTICATED"]
        # the API key has no rule of its own any more: without a user it reads as a guest
        assert codes(await c["key"].run("{ listSongs { items { id } } }")) == []
        assert codes(await c["key"].run('mutation { createSong(input: {name: "k"}) { id } }')) == [
            "FORBIDDEN"
        ]


async def test_operations_narrow_a_rule(rules_settings: Settings) -> None:
    async with clients(rules_settings) as c:
        await c["alice"].data('mutation { createPhotoAlbum(input: {id: "p", name: "P"}) { id } }')
        assert (await c["bob"].data('{ getPhotoAlbum(id: "p") { name } }'))["getPhotoAlbum"] == {
            "name": "P"
        }
        for mutation in (
            'mutation { updatePhotoAlbum(input: {id: "p", name: "x"}) { id } }',
            'mutation { deletePhotoAlbum(input: {id: "p"}) { id } }',
        ):
            assert codes(await c["alice"].run(mutation)) == ["FORBIDDEN"]
        assert codes(await c["guest"].run('{ getPhotoAlbum(id: "p") { name } }')) == [
            "UNAUTHENTICATED"
        ]


async def put(client: GraphQLClient, path: str) -> list[str]:
    response = await multipart(
        client,
        UPLOAD,
        {"i": {"path": path, "file": None}},
        {"variables.i.file": ("x.png", PNG, "image/png")},
    )
    return codes(response.json())


async def test_entity_paths(rules_settings: Settings) -> None:
    async with clients(rules_settings) as c:
        assert await put(c["alice"], "private/alice/photo.png") == []
        assert await put(c["bob"], "private/alice/photo2.png") == ["FORBIDDEN"]
        assert await put(c["admin"], "private/alice/photo3.png") == ["FORBIDDEN"]
        get = "query($p: String!) { getUrl(input: {path: $p}) { url } }"
        assert codes(await c["alice"].run(get, {"p": "private/alice/photo.png"})) == []
        assert codes(await c["bob"].run(get, {"p": "private/alice/photo.png"})) == ["FORBIDDEN"]
        assert codes(await c["admin"].run(get, {"p": "private/alice/photo.png"})) == []
        listing = "query($p: String!) { listFiles(input: {path: $p}) { items { path } } }"
        assert codes(await c["bob"].run(listing, {"p": "private/alice/"})) == ["FORBIDDEN"]
        mine = await c["alice"].data(listing, {"p": "private/alice/"})
        assert [i["path"] for i in mine["listFiles"]["items"]] == ["private/alice/photo.png"]
        # no rule covers the top of private/: the most specific path does not inherit
        assert codes(await c["alice"].run(listing, {"p": "private/"})) == ["FORBIDDEN"]


async def test_guest_storage_reads(rules_settings: Settings) -> None:
    async with clients(rules_settings) as c:
        assert await put(c["guest"], "public/x.png") == ["UNAUTHENTICATED"]
        assert await put(c["alice"], "public/x.png") == []
        get = 'query { getUrl(input: {path: "public/x.png"}) { url } }'
        signed = await c["guest"].data(get)
        async with httpx.AsyncClient() as browser:
            assert (await browser.get(signed["getUrl"]["url"])).content == PNG
        remove = 'mutation { removeFile(path: "public/x.png") }'
        assert codes(await c["alice"].run(remove)) == ["FORBIDDEN"]  # read+write, no delete


async def test_owner_only_subscribers_see_only_their_records(rules_settings: Settings) -> None:
    async with start_live_server(rules_settings) as live:
        alice = live.client(user("alice"))
        bob = live.client(user("bob"))
        query = "subscription { onCreateSong { id owner } }"
        async with (
            ws_client(live, payload=user("bob")) as bob_ws,
            ws_client(live, payload=user("root", groups=["admins"])) as admin_ws,
        ):
            await bob_ws.subscribe(query)
            await admin_ws.subscribe(query)
            await subscribed(live, 2)
            await alice.data('mutation { createSong(input: {id: "a1", name: "x"}) { id } }')
            await bob.data('mutation { createSong(input: {id: "b1", name: "y"}) { id } }')
            got = await bob_ws.next_payload()
            assert got["data"]["onCreateSong"] == {"id": "b1", "owner": "bob"}
            with pytest.raises(TimeoutError):
                await bob_ws.next_payload(timeout=0.3)
            admin_saw = [
                (await admin_ws.next_payload())["data"]["onCreateSong"]["id"] for _ in range(2)
            ]
            assert admin_saw == ["a1", "b1"]
        for client in (alice, bob):
            await client.http.aclose()


async def test_websocket_authentication(live: LiveServer) -> None:
    http = live.client()
    # from connection_init's payload, or else from the handshake's headers
    for n, (payload, headers) in enumerate([(API_KEY, {}), ({}, API_KEY)]):
        await subscribed(live, 0)  # the previous connection's subscription has left
        async with ws_client(live, payload=payload, headers=headers) as ws:
            await ws.subscribe("subscription { onCreateSong { id } }")
            await subscribed(live, 1)
            await http.data(
                'mutation($id: ID!) { createSong(input: {id: $id, name: "x"}) { id } }',
                {"id": f"x{n}"},
            )
            assert (await ws.next_payload())["data"]["onCreateSong"] == {"id": f"x{n}"}
    await http.http.aclose()
    # a subscription is a read: a user alone may not read Songs under the seed's rules
    async with ws_client(live, payload=user("alice")) as ws:
        await ws.subscribe("subscription { onCreateSong { id } }")
        assert await ws.error_code() == "FORBIDDEN"
    # bad credentials: the connection is refused
    async with connect(live.ws_url, subprotocols=[TransportWsClient.protocol]) as raw:
        await raw.send(
            json.dumps({"type": "connection_init", "payload": {"x-api-key": "gfk_bad_key"}})
        )
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(raw.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4403


async def test_a_connection_closes_when_its_token_expires(live: LiveServer) -> None:
    payload = {**API_KEY, **user("alice", expires_in=-29)}  # valid for 1 s more (30 s leeway)
    async with ws_client(live, payload=payload) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.ws.recv(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4401
        assert closed.value.rcvd.reason == "token expired"


async def test_websocket_origins(live: LiveServer, s3_endpoint: str, bucket: str) -> None:
    for origin, allowed in (("http://localhost:3000", True), ("https://evil.example", False)):
        try:
            async with connect(
                live.ws_url,
                subprotocols=[TransportWsClient.protocol],
                origin=Origin(origin),
            ):
                pass
            accepted = True
        except Exception:
            accepted = False
        assert accepted is allowed, origin
    settings = make_settings(s3_endpoint, bucket, cors_origins="https://app.example")
    async with start_live_server(settings) as other:
        async with connect(
            other.ws_url,
            subprotocols=[TransportWsClient.protocol],
            origin=Origin("https://app.example"),
        ):
            pass
        with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal of the handshake
            async with connect(
                other.ws_url,
                subprotocols=[TransportWsClient.protocol],
                origin=Origin("http://localhost:3000"),
            ):
                pass


async def test_cors(client: GraphQLClient) -> None:
    preflight = await client.http.options(
        "/graphql",
        headers={
            "origin": "http://localhost:5173",
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-api-key",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:5173"
    foreign = await client.http.options(
        "/graphql",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in foreign.headers


def test_a_malformed_rule_file_stops_start_up(tmp_path: Path) -> None:
    rules = tmp_path / "access.toml"
    rules.write_text(
        '[data.Song]\npublicApiKey = "*"\n\n[storage."images/*"]\n'
        'authenticated = ["read", "scribble"]\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "graphql_files", "serve"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "GRAPHQL_FILES_ACCESS_FILE": str(rules)},
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"graphql-files: {rules}, line 5: authenticated: unknown action 'scribble' (expected "
        "read, get, list, write, delete)"
    ]


def expiry_closers() -> set[asyncio.Task[Any]]:
    """The pending tasks that ``close_later`` scheduled, found among the loop's tasks by their
    coroutine (``api.closing`` keeps its own references private)."""
    name = f"{close_later.__qualname__}.<locals>.close"
    return {t for t in asyncio.all_tasks() if getattr(t.get_coro(), "__qualname__", None) == name}


async def test_a_closed_connection_leaves_no_expiry_closer(live: LiveServer) -> None:
    before = expiry_closers()
    async with ws_client(live, payload=user("alice", expires_in=3600)):
        (closer,) = [t for t in expiry_closers() if t not in before]  # it closes in an hour
    await eventually(closer.done, "the expiry closer to end with its connection")
    assert closer.cancelled()
    # and nothing keeps it: once the test lets go of it, it is gone
    released = weakref.ref(closer)
    del closer
    gc.collect()
    assert released() is None, "the cancelled expiry closer is still referenced"
