"""Hostile websocket input, on both protocols: a close code with a reason, or an ``error`` for
the operation, never a socket dropped with no close code (1006) or a traceback in the log."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from ..helpers import FULL_ACCESS, Json, LegacyWsClient, LiveServer, TransportWsClient, ws_client
from .test_appsync import appsync

PROTOCOLS = [TransportWsClient, LegacyWsClient]
ON_CREATE = "subscription { onCreateSong { id } }"
NOPE = {"query": "subscription { onCreateSong { nope } }"}  # answered with a validation error
DEEP_FRAME = '{"type": "start", "id": "1", "payload": ' + "[" * 100_000 + "]" * 100_000 + "}"


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


@asynccontextmanager
async def acknowledged(live: LiveServer, protocol: Subprotocol) -> AsyncIterator[ClientConnection]:
    """A raw connection past ``connection_init``, for sending what no client library would."""
    async with connect(live.ws_url, subprotocols=[protocol], max_size=None) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": FULL_ACCESS}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
        yield ws


async def read_until_closed(ws: ClientConnection) -> None:
    """Read, skipping keep-alives (and legacy graphql-ws's ``connection_error``), until the
    server closes the socket; anything else fails the test."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert message["type"] in ("ka", "connection_error"), message


async def close_of(ws: ClientConnection) -> tuple[int, str]:
    """The code and reason the server closes with."""
    with pytest.raises(ConnectionClosed) as closed:
        await read_until_closed(ws)
    assert closed.value.rcvd is not None, "the socket was dropped with no close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.protocol)
async def test_a_deeply_nested_frame_closes_with_4400(
    live: LiveServer, protocol: type[TransportWsClient]
) -> None:
    async with acknowledged(live, protocol.protocol) as ws:
        await ws.send(DEEP_FRAME.replace('"start"', f'"{protocol.start_type}"'))
        code, reason = await close_of(ws)
    assert code == 4400
    assert "64" in reason


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.protocol)
@pytest.mark.parametrize(
    "message",
    [
        [1],
        "a string",
        {"id": "1"},
        {"type": "START", "id": {"an": "object"}, "payload": {"query": ON_CREATE}},
        {"type": "START", "payload": {"query": ON_CREATE}},
        {"type": "STOP", "id": ["1"]},
    ],
    ids=["array", "string", "no type", "object id", "no id", "stop with a list id"],
)
async def test_malformed_messages_close_with_4400(
    live: LiveServer, protocol: type[TransportWsClient], message: object
) -> None:
    text = json.dumps(message)
    text = text.replace("START", protocol.start_type).replace("STOP", protocol.stop_type)
    async with acknowledged(live, protocol.protocol) as ws:
        await ws.send(text)
        code, reason = await close_of(ws)
    assert code == 4400
    assert reason


@pytest.mark.parametrize(
    "payload",
    [
        {},
        None,
        {"query": 5},
        {"query": ON_CREATE, "variables": 5},
        {"query": ON_CREATE, "operationName": ["x"]},
    ],
    ids=["no query", "null", "query not a string", "variables not an object", "bad name"],
)
async def test_transport_ws_closes_on_a_subscribe_that_is_no_operation(
    live: LiveServer, payload: Json | None
) -> None:
    async with acknowledged(live, TransportWsClient.protocol) as ws:
        await ws.send(json.dumps({"type": "subscribe", "id": "1", "payload": payload}))
        code, reason = await close_of(ws)
    assert code == 4400
    assert "payload" in reason or "'" in reason


@pytest.mark.parametrize(
    "payload",
    [
        {},
        None,
        {"query": 5},
        {"query": ON_CREATE, "variables": 5},
        {"query": ON_CREATE, "operationName": ["x"]},
    ],
    ids=["no query", "null", "query not a string", "variables not an object", "bad name"],
)
async def test_legacy_answers_a_start_that_is_no_operation_with_an_error(
    live: LiveServer, payload: Json | None
) -> None:
    async with ws_client(live, LegacyWsClient) as client:
        await client.ws.send(json.dumps({"type": "start", "id": "bad", "payload": payload}))
        while (message := await client.receive())["type"] == "ka":
            pass
        assert message["type"] == "error"
        assert message["id"] == "bad"
        assert [e["extensions"]["code"] for e in message["payload"]] == ["BAD_USER_INPUT"]
        # the socket is still open and handles the next operation
        await client.ws.send(json.dumps({"type": "start", "id": "next", "payload": NOPE}))
        while (message := await client.receive())["type"] == "ka":
            pass
        assert (message["type"], message["id"]) == ("error", "next")


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.protocol)
async def test_bad_credentials_close_with_4403(
    live: LiveServer, protocol: type[TransportWsClient]
) -> None:
    async with connect(live.ws_url, subprotocols=[protocol.protocol]) as ws:
        init = {"type": "connection_init", "payload": {"x-api-key": "gfk_bad_key"}}
        await ws.send(json.dumps(init))
        if protocol is LegacyWsClient:  # legacy graphql-ws says why before it closes
            error = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert error["type"] == "connection_error"
            assert error["payload"]["extensions"]["code"] == "UNAUTHENTICATED"
        code, _ = await close_of(ws)
    assert code == 4403


async def test_a_binary_frame_closes_with_4400_on_every_endpoint(live: LiveServer) -> None:
    """Issue 20.8: on /graphql/realtime a binary frame after connection_init raised KeyError
    in the AppSync handler (close 1006, a traceback); /graphql answered 4400. Now both alike."""
    closes = []
    for protocol in PROTOCOLS:
        async with acknowledged(live, protocol.protocol) as ws:
            await ws.send(b'{"type": "ka"}')
            closes.append(await close_of(ws))
    async with appsync(live) as ws:
        await ws.send(b'{"type": "ka"}')
        closes.append(await close_of(ws))
    assert closes == [(4400, "WebSocket message type must be text")] * 3, closes
