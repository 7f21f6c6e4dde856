"""The resumable change feed (recordChanges), on the in-process broker, over real websockets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ..helpers import (
    GraphQLClient,
    LiveServer,
    TransportWsClient,
    make_settings,
    start_live_server,
    subscribed,
    ws_client,
)

FEED = """subscription($models: [ModelName!], $ids: [ID!], $after: String) {
  recordChanges(models: $models, ids: $ids, after: $after) {
    cursor kind model id version song { name } photoAlbum { name } } }"""


async def create_song(http: GraphQLClient, song_id: str, name: str = "x") -> None:
    await http.data(
        "mutation($id: ID!, $n: String!) { createSong(input: {id: $id, name: $n}) { id } }",
        {"id": song_id, "n": name},
    )


async def rename(http: GraphQLClient, song_id: str, name: str) -> None:
    await http.data(
        "mutation($id: ID!, $n: String!) { updateSong(input: {id: $id, name: $n}) { id } }",
        {"id": song_id, "n": name},
    )


async def changes(ws: TransportWsClient, count: int) -> list[dict[str, Any]]:
    return [(await ws.next_payload())["data"]["recordChanges"] for _ in range(count)]


async def test_live_changes_of_every_kind_and_model(live: LiveServer) -> None:
    http = live.client()
    async with ws_client(live) as ws:
        await ws.subscribe(FEED)
        await subscribed(live, 1)
        await create_song(http, "s1", "one")
        await rename(http, "s1", "two")
        await http.data('mutation { createPhotoAlbum(input: {id: "a1", name: "al"}) { id } }')
        await http.data('mutation { deleteSong(input: {id: "s1"}) { id } }')
        got = await changes(ws, 4)
    await http.http.aclose()
    assert [(c["kind"], c["model"], c["id"], c["version"]) for c in got] == [
        ("CREATED", "SONG", "s1", 1),
        ("UPDATED", "SONG", "s1", 2),
        ("CREATED", "PHOTO_ALBUM", "a1", 1),
        ("DELETED", "SONG", "s1", 3),
    ]
    assert got[1]["song"] == {"name": "two"}
    assert got[1]["photoAlbum"] is None
    assert got[2]["photoAlbum"] == {"name": "al"}
    assert len({c["cursor"] for c in got}) == 4


async def test_resume_after_a_disconnect_misses_nothing_and_repeats_nothing(
    live: LiveServer,
) -> None:
    http = live.client()
    await create_song(http, "s1")
    async with ws_client(live) as ws:
        await ws.subscribe(FEED)
        await subscribed(live, 1)
        for n in range(3):
            await rename(http, "s1", f"a{n}")
        seen = await changes(ws, 3)
    # the socket is gone; changes go on
    for n in range(4):
        await rename(http, "s1", f"b{n}")
    async with ws_client(live) as ws:
        await ws.subscribe(FEED, {"after": seen[-1]["cursor"]})
        missed = await changes(ws, 4)
        await rename(http, "s1", "live")
        live_one = await changes(ws, 1)
        with pytest.raises(TimeoutError):
            await ws.next_payload(timeout=0.3)
    await http.http.aclose()
    versions = [c["version"] for c in seen + missed + live_one]
    assert versions == list(range(2, 10))
    assert [c["song"]["name"] for c in missed] == ["b0", "b1", "b2", "b3"]


async def test_models_and_ids_narrow_the_feed(live: LiveServer) -> None:
    http = live.client()
    async with ws_client(live) as ws:
        await ws.subscribe(FEED, {"models": ["SONG"], "ids": ["keep"]})
        await subscribed(live, 1)
        await create_song(http, "drop")
        await http.data('mutation { createPhotoAlbum(input: {id: "keep", name: "a"}) { id } }')
        await create_song(http, "keep")
        got = await changes(ws, 1)
        with pytest.raises(TimeoutError):
            await ws.next_payload(timeout=0.3)
    await http.http.aclose()
    assert [(c["model"], c["id"]) for c in got] == [("SONG", "keep")]


async def test_cursors_too_old_or_foreign_need_a_resync(s3_endpoint: str, bucket: str) -> None:
    settings = make_settings(s3_endpoint, bucket, change_history=3)
    async with start_live_server(settings) as live:
        http = live.client()
        async with ws_client(live) as ws:
            await ws.subscribe(FEED)
            await subscribed(live, 1)
            await create_song(http, "s1")
            first = (await changes(ws, 1))[0]["cursor"]
            for n in range(5):
                await rename(http, "s1", f"n{n}")
            await changes(ws, 5)
        # too old; from another run; from another log (Redis)
        for cursor in (first, "0123456789ab-1", "deadbeef.1700000000000-0"):
            async with ws_client(live) as ws:
                await ws.subscribe(FEED, {"after": cursor})
                assert await ws.error_code() == "RESYNC_REQUIRED", cursor
        await http.http.aclose()


async def test_a_malformed_cursor_is_bad_user_input(live: LiveServer) -> None:
    for cursor in ("%%not-a-cursor%%", "not-a-cursor", "x" * 100_000):
        async with ws_client(live) as ws:
            await ws.subscribe(FEED, {"after": cursor})
            message = await ws.receive()
            errors = (
                message["payload"] if message["type"] == "error" else message["payload"]["errors"]
            )
            assert [e["extensions"]["code"] for e in errors] == ["BAD_USER_INPUT"], cursor[:20]
            assert "malformed cursor" in errors[0]["message"]
            assert len(json.dumps(errors)) < 1000  # the cursor is not echoed whole
