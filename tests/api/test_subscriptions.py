"""Subscriptions over a real websocket, on both protocols, against a real uvicorn."""

from __future__ import annotations

import pytest

from graphql_files.api.ws import appsync as appsync_protocol
from graphql_files.api.ws import websockets

from ..helpers import LegacyWsClient, LiveServer, TransportWsClient, subscribed, ws_client
from .test_appsync import appsync, receive, start

PROTOCOLS = [TransportWsClient, LegacyWsClient]

ON_CREATE = """subscription($f: ModelSubscriptionSongFilterInput) {
  onCreateSong(filter: $f) { id name version coverArtPath } }"""
ON_UPDATE = """subscription($f: ModelSubscriptionSongFilterInput) {
  onUpdateSong(filter: $f) { id name version } }"""
ON_DELETE = "subscription { onDeleteSong { id name version } }"
ON_ALBUM_UPDATE = """subscription($f: ModelSubscriptionPhotoAlbumFilterInput) {
  onUpdatePhotoAlbum(filter: $f) { id imagePaths version } }"""


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.protocol)
async def test_create_update_delete_events_with_versions(
    live: LiveServer, protocol: type[TransportWsClient]
) -> None:
    http = live.client()
    async with ws_client(live, protocol) as ws:
        created_sub = await ws.subscribe(ON_CREATE)
        updated_sub = await ws.subscribe(ON_UPDATE)
        deleted_sub = await ws.subscribe(ON_DELETE)
        await subscribed(live, 3)

        await http.data('mutation { createSong(input: {id: "s1", name: "One"}) { id } }')
        event = await ws.next_payload()
        assert event["data"]["onCreateSong"] == {
            "id": "s1",
            "name": "One",
            "version": 1,
            "coverArtPath": None,
        }

        await http.data('mutation { updateSong(input: {id: "s1", name: "Two"}) { id } }')
        event = await ws.next_payload()
        assert event["data"]["onUpdateSong"] == {"id": "s1", "name": "Two", "version": 2}

        await http.data('mutation { deleteSong(input: {id: "s1"}) { id } }')
        event = await ws.next_payload()
        assert event["data"]["onDeleteSong"] == {"id": "s1", "name": "Two", "version": 3}

        assert live.services.broker.subscriber_count == 3
        for op_id in (created_sub, updated_sub, deleted_sub):
            await ws.stop(op_id)
        await subscribed(live, 0)  # stopped subscriptions leave the fan-out
        assert live.services.broker.subscriber_count == 0
    await http.http.aclose()


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.protocol)
async def test_filtered_out_records_are_not_sent(
    live: LiveServer, protocol: type[TransportWsClient]
) -> None:
    http = live.client()
    async with ws_client(live, protocol) as ws:
        await ws.subscribe(
            ON_CREATE, {"f": {"or": [{"name": {"beginsWith": "keep"}}, {"name": {"in": ["also"]}}]}}
        )
        await subscribed(live, 1)
        for name in ("drop 1", "keep 1", "drop 2", "also", "drop 3", "keep 2"):
            await http.data(
                "mutation($n: String!) { createSong(input: {name: $n}) { id } }", {"n": name}
            )
        received = [(await ws.next_payload())["data"]["onCreateSong"]["name"] for _ in range(3)]
        assert received == ["keep 1", "also", "keep 2"]
        with pytest.raises(TimeoutError):
            await ws.next_payload(timeout=0.5)
    await http.http.aclose()


async def test_update_filter_sees_the_record_after_the_change(live: LiveServer) -> None:
    http = live.client()
    await http.data('mutation { createPhotoAlbum(input: {id: "a1", name: "A"}) { id } }')
    async with ws_client(live) as ws:
        await ws.subscribe(ON_ALBUM_UPDATE, {"f": {"imagePaths": {"contains": "images/a1/x"}}})
        await subscribed(live, 1)
        await http.data('mutation { updatePhotoAlbum(input: {id: "a1", name: "B"}) { id } }')
        await http.data(
            'mutation { updatePhotoAlbum(input: {id: "a1", imagePaths: ["images/a1/x"]}) { id } }'
        )
        event = await ws.next_payload()
        assert event["data"]["onUpdatePhotoAlbum"] == {
            "id": "a1",
            "imagePaths": ["images/a1/x"],
            "version": 3,
        }
    await http.http.aclose()


async def test_refused_writes_publish_nothing(live: LiveServer) -> None:
    http = live.client()
    await http.data('mutation { createSong(input: {id: "s1", name: "A"}) { id } }')
    async with ws_client(live) as ws:
        await ws.subscribe(ON_UPDATE)
        await subscribed(live, 1)
        stale = await http.error(
            'mutation { updateSong(input: {id: "s1", name: "B", expectedVersion: 7}) { id } }'
        )
        assert stale["extensions"]["code"] == "CONFLICT"
        await http.data('mutation { updateSong(input: {id: "s1", name: "C"}) { id } }')
        event = await ws.next_payload()
        assert event["data"]["onUpdateSong"] == {"id": "s1", "name": "C", "version": 2}
    await http.http.aclose()


async def test_invalid_subscription_filter_is_refused(live: LiveServer) -> None:
    async with ws_client(live) as ws:
        await ws.subscribe(ON_CREATE, {"f": {"name": {"between": ["a"]}}})
        assert await ws.error_code() == "BAD_USER_INPUT"


async def test_many_subscribers_each_get_every_event_once(live: LiveServer) -> None:
    http = live.client()
    async with ws_client(live) as a, ws_client(live, LegacyWsClient) as b:
        await a.subscribe(ON_CREATE)
        await b.subscribe(ON_CREATE)
        await subscribed(live, 2)
        for n in range(5):
            await http.data(
                "mutation($n: String!) { createSong(input: {name: $n}) { id } }", {"n": f"n{n}"}
            )
        for ws in (a, b):
            names = [(await ws.next_payload())["data"]["onCreateSong"]["name"] for _ in range(5)]
            assert names == [f"n{n}" for n in range(5)]
            with pytest.raises(TimeoutError):
                await ws.next_payload(timeout=0.3)
    await http.http.aclose()


async def broken(*_: object) -> None:
    raise RuntimeError("a bug, injected")


@pytest.mark.parametrize("protocol", [TransportWsClient, LegacyWsClient], ids=lambda p: p.protocol)
async def test_an_operation_that_fails_inside_the_server_is_answered(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch, protocol: type[TransportWsClient]
) -> None:
    """A bug while running a subscription ends it with an ``error`` the client hears (without
    the bug's details: the log has them), and the socket stays; graphql-ws clients waited
    forever before."""
    monkeypatch.setattr(websockets, "run_shared", broken)
    async with ws_client(live, protocol) as ws:
        await ws.subscribe("subscription { onCreateSong { id } }")
        message = await ws.receive()
        while message["type"] in ("ka", "ping", "pong"):  # keep-alives
            message = await ws.receive()
        assert message["type"] == "error", message
        # graphql-transport-ws sends a list of errors, the legacy protocol one error
        payload = message["payload"]
        (error,) = payload if isinstance(payload, list) else [payload]
        assert error == {
            "message": "internal server error",
            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
        }
        await ws.ws.ping()  # still open


async def test_an_appsync_operation_that_fails_inside_the_server_is_answered(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_lookup(*_: object) -> None:
        raise RuntimeError("a bug, injected")

    monkeypatch.setattr(appsync_protocol, "multiplexer_of", broken_lookup)
    async with appsync(live) as ws:
        await ws.send(start("op", "subscription { onCreateSong { id } }"))
        message = await receive(ws)
        assert message["type"] == "error", message
        (error,) = message["payload"]["errors"]
        assert error["message"] == "internal server error"
        assert "injected" not in str(message)
        await ws.ping()  # still open
