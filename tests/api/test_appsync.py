"""AWS AppSync's real-time protocol on /graphql/realtime, message by message, as aws-amplify v6
speaks it (the real client is driven in tests/clients)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ..helpers import API_KEY, LiveServer, token

ON_CREATE = "subscription { onCreateSong { id name version } }"


def encoded(headers: dict[str, str], *, urlsafe: bool = True) -> str:
    raw = json.dumps(headers).encode()
    if urlsafe:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return base64.b64encode(raw).decode()


def realtime_url(live: LiveServer) -> str:
    return live.ws_url + "/realtime"


@asynccontextmanager
async def appsync(
    live: LiveServer, headers: dict[str, str] | None = None, *, query_string: bool = False
) -> AsyncIterator[ClientConnection]:
    """A socket opened as Amplify opens it, acknowledged."""
    auth = {"host": "localhost", **(API_KEY if headers is None else headers)}
    url, protocols = realtime_url(live), ["graphql-ws", f"header-{encoded(auth)}"]
    if query_string:  # the older form: the header in the query string, base64
        url, protocols = f"{url}?header={encoded(auth, urlsafe=False)}&payload=e30=", ["graphql-ws"]
    async with connect(url, subprotocols=protocols) as ws:  # type: ignore[arg-type]
        assert ws.subprotocol == "graphql-ws"
        await ws.send(json.dumps({"type": "connection_init"}))
        ack = await receive(ws)
        assert ack == {"type": "connection_ack", "payload": {"connectionTimeoutMs": 300000}}
        yield ws


async def receive(ws: ClientConnection, *, skip_keep_alive: bool = True) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
        if not (skip_keep_alive and message["type"] == "ka"):
            return message


def start(op_id: str, query: str, authorization: dict[str, str] | None = None) -> str:
    payload: dict[str, Any] = {"data": json.dumps({"query": query, "variables": {}})}
    if authorization is not None:
        payload["extensions"] = {"authorization": authorization}
    return json.dumps({"id": op_id, "type": "start", "payload": payload})


async def create_song(live: LiveServer, name: str) -> None:
    async with live.client() as http:
        await http.data(
            "mutation($n: String!) { createSong(input: {name: $n}) { id } }", {"n": name}
        )


@pytest.mark.parametrize("query_string", [False, True], ids=["subprotocol", "query-string"])
async def test_a_subscription_is_acknowledged_then_delivered_then_stopped(
    live: LiveServer, query_string: bool
) -> None:
    async with appsync(live, query_string=query_string) as ws:
        keep_alive = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert keep_alive == {"type": "ka"}
        await ws.send(start("op-1", ON_CREATE, {"host": "localhost", **API_KEY}))
        assert await receive(ws) == {"type": "start_ack", "id": "op-1"}
        await create_song(live, "Blue in Green")  # start_ack came after registration
        data = await receive(ws)
        assert data["type"] == "data"
        assert data["id"] == "op-1"
        assert data["payload"]["data"]["onCreateSong"]["name"] == "Blue in Green"
        assert data["payload"]["data"]["onCreateSong"]["version"] == 1
        await ws.send(json.dumps({"type": "stop", "id": "op-1"}))
        assert await receive(ws) == {"type": "complete", "id": "op-1"}


async def test_a_start_without_its_own_authorization_uses_the_handshake(
    live: LiveServer,
) -> None:
    async with appsync(live) as ws:
        await ws.send(start("op", ON_CREATE))
        assert await receive(ws) == {"type": "start_ack", "id": "op"}


async def test_bad_handshake_credentials_are_a_connection_error(live: LiveServer) -> None:
    auth = {"host": "localhost", "x-api-key": "gfk_nope_nope"}
    async with connect(
        realtime_url(live),
        subprotocols=["graphql-ws", f"header-{encoded(auth)}"],  # type: ignore[list-item]
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        refused = await receive(ws)
        assert refused["type"] == "connection_error"
        (error,) = refused["payload"]["errors"]
        assert error["errorType"] == "UnauthorizedException"  # Amplify does not retry this
        assert error["errorCode"] == 401
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4403


async def test_a_refused_start_gets_an_appsync_shaped_error_and_no_ack(live: LiveServer) -> None:
    """A user token alone may not read Song records under the built-in rules (API key only)."""
    async with appsync(live, {}) as ws:
        await ws.send(start("op", ON_CREATE, {"host": "localhost", "Authorization": token()}))
        refused = await receive(ws)
        assert refused["type"] == "error"
        assert refused["id"] == "op"
        (error,) = refused["payload"]["errors"]
        assert error["errorType"] == "Unauthorized"
        assert error["extensions"]["code"] == "FORBIDDEN"
        assert "API key" in error["message"]


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"data": json.dumps({"query": "{ listSongs { items { id } } }"})}, "only subscriptions"),
        ({"data": "not json"}, "must be JSON"),
        ({"data": json.dumps({"variables": {}})}, "needs a string 'query'"),
        ({"query": ON_CREATE}, "needs 'data'"),
        (None, "needs 'data'"),
    ],
)
async def test_a_start_that_is_no_subscription_is_a_bad_request(
    live: LiveServer, payload: Any, says: str
) -> None:
    async with appsync(live) as ws:
        await ws.send(json.dumps({"id": "op", "type": "start", "payload": payload}))
        refused = await receive(ws)
        assert refused["type"] == "error"
        (error,) = refused["payload"]["errors"]
        assert error["errorType"] == "BadRequestException"
        assert says in error["message"]
        await ws.send(start("next", ON_CREATE))  # the connection goes on
        assert await receive(ws) == {"type": "start_ack", "id": "next"}


async def test_a_malformed_message_closes_with_4400(live: LiveServer) -> None:
    async with appsync(live) as ws:
        await ws.send("[" * 10_000)
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4400


async def test_a_websocket_to_an_unknown_path_is_a_404(live: LiveServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(live.ws_url.replace("/graphql", "/nowhere")):
            pass
    assert refused.value.response.status_code == 404


async def test_a_bare_jwt_is_accepted_as_appsync_clients_send_it(live: LiveServer) -> None:
    """aws-amplify's userPool/oidc/lambda modes send the token without 'Bearer'."""
    query = {"query": '{ getProperties(path: "images/none.png") { size } }'}
    async with httpx.AsyncClient(base_url=live.url) as http:
        bare = await http.post("/graphql", json=query, headers={"authorization": token()})
        nothing = await http.post("/graphql", json=query)
    assert [e["extensions"]["code"] for e in bare.json()["errors"]] == ["NOT_FOUND"]
    assert [e["extensions"]["code"] for e in nothing.json()["errors"]] == ["UNAUTHENTICATED"]
