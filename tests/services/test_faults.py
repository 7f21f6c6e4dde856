"""Faults that must fail fast and leave nothing behind: a hung Redis, a hung S3, a step that
fails after an upload."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from graphql_files.adapters.s3 import Files
from graphql_files.app import create_app
from graphql_files.domain.declaration import SONG
from graphql_files.domain.objects import ObjectInfo
from graphql_files.errors import StorageUnavailable
from graphql_files.services.wiring import Services

from ..helpers import (
    FULL_ACCESS,
    PNG,
    GraphQLClient,
    codes,
    eventually,
    full_access,
    make_settings,
    multipart,
    start_live_server,
    subscribed,
    ws_client,
)
from ..processes import RedisProcess, hung_server

ATTACH = """mutation($f: Upload!) {
  attachSongCoverArt(input: {songId: "s", file: $f}) { coverArtPath version } }"""
RENAME = 'mutation($n: String!) { updateSong(input: {id: "s", name: $n}) { version } }'


async def test_a_hung_redis_does_not_hold_up_mutations(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    """Redis stopped (not down): the mutation answers normally within the publish deadline,
    the event counts as lost (subscribers are told RESYNC_REQUIRED), and delivery resumes once
    Redis answers again."""
    redis = RedisProcess(str(tmp_path))
    redis.start()
    settings = make_settings(
        s3_endpoint, bucket, redis_url=redis.url, redis_stream=f"t:{uuid.uuid4().hex[:8]}"
    )
    try:
        async with (
            start_live_server(settings) as live,
            ws_client(live) as ws,
            live.client() as http,
        ):
            await http.data('mutation { createSong(input: {id: "s", name: "a"}) { id } }')
            await ws.subscribe("subscription { onUpdateSong { version } }")
            await subscribed(live, 1)
            redis.pause()
            try:
                # the client gives up long before redis-py's own socket timeouts would
                body = await asyncio.wait_for(http.run(RENAME, {"n": "during"}), 8)
                assert body == {"data": {"updateSong": {"version": 2}}}
                assert await ws.error_code(timeout=10) == "RESYNC_REQUIRED"
                ready = (await http.http.get("/readyz")).json()
                assert ready["events"]["publish_failures"] == 1
            finally:
                redis.resume()
            broker = live.services.broker
            await eventually(lambda: broker.healthy, "the event reader to reach Redis", timeout=20)
            async with ws_client(live) as again:
                await again.subscribe("subscription { onUpdateSong { version } }")
                await subscribed(live, 1)
                await http.data(RENAME, {"n": "after"})
                assert (await again.next_payload(10))["data"]["onUpdateSong"] == {"version": 3}
    finally:
        redis.kill()


@pytest.fixture
async def hung_s3_app(bucket: str) -> AsyncIterator[LifespanManager]:
    async with hung_server() as endpoint:
        settings = make_settings(endpoint, bucket, s3_timeout=0.3)
        async with LifespanManager(create_app(settings)) as manager:
            yield manager


async def test_a_hung_s3_answers_storage_unavailable_in_seconds(
    hung_s3_app: LifespanManager,
) -> None:
    transport = httpx.ASGITransport(app=hung_s3_app.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://t", headers=FULL_ACCESS
    ) as http:
        client = GraphQLClient(http)
        await client.data('mutation { createSong(input: {id: "s", name: "a"}) { id } }')
        response = await asyncio.wait_for(
            multipart(client, ATTACH, {"f": None}, {"variables.f": ("c.png", PNG, "image/png")}),
            20,  # three attempts of 30 s each before the fix
        )
        assert codes(response.json()) == ["STORAGE_UNAVAILABLE"]
        song = await client.data('{ getSong(id: "s") { coverArtPath version } }')
        assert song == {"getSong": {"coverArtPath": None, "version": 1}}


async def test_an_upload_whose_answer_is_lost_is_removed(
    client: GraphQLClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PUT landed, but its answer was lost: the request fails, and what it uploaded is
    deleted like any failed step's upload."""
    await client.data('mutation { createSong(input: {id: "s", name: "a"}) { id } }')
    real_upload = Files.upload

    async def answer_lost(self: Files, key: str, *args: Any, **kwargs: Any) -> ObjectInfo:
        await real_upload(self, key, *args, **kwargs)
        raise StorageUnavailable("storage did not answer; try again shortly")

    monkeypatch.setattr(Files, "upload", answer_lost)
    response = await multipart(
        client, ATTACH, {"f": None}, {"variables.f": ("c.png", PNG, "image/png")}
    )
    monkeypatch.undo()
    assert codes(response.json()) == ["STORAGE_UNAVAILABLE"]
    assert [o.path async for o in services.files.iterate("images/")] == []
    assert (await services.records.get(full_access(services), SONG, "s")).version == 1
