"""Fan-out across instances through a real redis-server: ordering, resuming, retention, outages."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from graphql_files.adapters.redis_log import GAP_CLOCK_MARGIN, RedisBroker
from graphql_files.domain.feed import ChangeEvent, ChangeKind
from graphql_files.errors import ResyncRequired
from graphql_files.settings import Settings

from ..helpers import (
    FULL_ACCESS,
    GraphQLClient,
    Json,
    LiveServer,
    TransportWsClient,
    eventually,
    make_settings,
    start_live_server,
    subscribed,
    ws_client,
)
from ..processes import RedisProcess

FEED = """subscription($after: String) { recordChanges(after: $after) {
  cursor kind model id version } }"""
ON_UPDATE = "subscription { onUpdateSong { id version name } }"


def redis_settings(s3_endpoint: str, bucket: str, url: str, **overrides: Any) -> Settings:
    return make_settings(
        s3_endpoint, bucket, redis_url=url, redis_stream=f"test:{uuid.uuid4().hex[:8]}", **overrides
    )


@asynccontextmanager
async def instances(settings: Settings, count: int = 2) -> AsyncIterator[list[LiveServer]]:
    async with AsyncExitStack() as stack:
        servers = [
            await stack.enter_async_context(start_live_server(settings)) for _ in range(count)
        ]
        yield servers


async def create(http: GraphQLClient, record_id: str) -> None:
    await http.data(
        'mutation($id: ID!) { createSong(input: {id: $id, name: "x"}) { id } }', {"id": record_id}
    )


async def rename(http: GraphQLClient, record_id: str, name: str) -> dict[str, Any]:
    return await http.run(
        "mutation($id: ID!, $n: String!) { updateSong(input: {id: $id, name: $n}) { version } }",
        {"id": record_id, "n": name},
    )


def redis_broker(url: str, stream: str | None = None) -> RedisBroker:
    """An instance's broker, not started, on ``stream`` (by default a stream of its own)."""
    return RedisBroker(
        url=url,
        stream=stream or f"test:{uuid.uuid4().hex[:8]}",
        history_length=1000,
        history_age_seconds=3600,
    )


@asynccontextmanager
async def running_broker(url: str, stream: str | None = None) -> AsyncIterator[RedisBroker]:
    """A Redis broker on ``stream`` (by default one of its own), started and, at the end,
    closed."""
    broker = redis_broker(url, stream)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.close()


def change(n: int) -> ChangeEvent:
    """Version ``n`` of one record's update event."""
    doc = {"_id": "r", "name": "x", "version": n, "createdAt": "", "updatedAt": ""}
    return ChangeEvent(ChangeKind.UPDATED, "SONG", doc)


async def payloads(ws: TransportWsClient, count: int, field: str) -> list[dict[str, Any]]:
    return [(await ws.next_payload())["data"][field] for _ in range(count)]


async def test_changes_made_on_one_instance_reach_subscribers_of_another(
    s3_endpoint: str, bucket: str, redis_url: str
) -> None:
    settings = redis_settings(s3_endpoint, bucket, redis_url)
    async with instances(settings) as (a, b):
        http_a, http_b = a.client(), b.client()
        async with ws_client(b) as on_b, ws_client(a) as on_a:
            await on_b.subscribe(FEED)
            await on_a.subscribe(FEED)
            await subscribed(a, 1)
            await subscribed(b, 1)
            # each instance writes its own records (their stores are separate unless a real
            # MongoDB is configured), concurrently, interleaved
            for record in ("a1", "a2"):
                await create(http_a, record)
            for record in ("b1", "b2"):
                await create(http_b, record)

            async def burst(http: GraphQLClient, record: str) -> None:
                for n in range(10):
                    await rename(http, record, f"{record}-{n}")

            await asyncio.gather(
                *(
                    burst(http, r)
                    for http, r in ((http_a, "a1"), (http_a, "a2"), (http_b, "b1"), (http_b, "b2"))
                )
            )
            seen_on_b = await payloads(on_b, 44, "recordChanges")
            seen_on_a = await payloads(on_a, 44, "recordChanges")
        for http in (http_a, http_b):
            await http.http.aclose()
    for seen in (seen_on_a, seen_on_b):
        for record in ("a1", "a2", "b1", "b2"):
            versions = [c["version"] for c in seen if c["id"] == record]
            assert versions == list(range(1, 12)), (record, versions)
    # one log, one order: both instances saw the same sequence of cursors
    assert [c["cursor"] for c in seen_on_a] == [c["cursor"] for c in seen_on_b]


async def test_a_late_lower_version_is_dropped_at_the_log(redis_url: str) -> None:
    async with running_broker(redis_url) as broker:
        seen = await broker.subscribe(lambda e: True, buffer=10)
        for n in (2, 4, 3, 5):  # 3 was committed before 4 but published after it
            await broker.publish(change(n))
        got = [(await asyncio.wait_for(anext(seen), 5)).version for _ in range(3)]
        assert got == [2, 4, 5]


async def test_resume_on_another_instance_and_after_a_restart(
    s3_endpoint: str, bucket: str, redis_url: str
) -> None:
    settings = redis_settings(s3_endpoint, bucket, redis_url)
    async with instances(settings) as (a, b):
        http = a.client()
        await create(http, "s")
        async with ws_client(b) as ws:
            await ws.subscribe(FEED)
            await subscribed(b, 1)
            for n in range(3):
                await rename(http, "s", f"n{n}")
            first = await payloads(ws, 3, "recordChanges")
        for n in range(3, 6):
            await rename(http, "s", f"n{n}")
        await http.http.aclose()
    # every instance is gone; the history lives in Redis
    async with instances(settings, count=1) as (c,), ws_client(c) as ws:
        await ws.subscribe(FEED, {"after": first[-1]["cursor"]})
        missed = await payloads(ws, 3, "recordChanges")
    assert [x["version"] for x in first + missed] == [2, 3, 4, 5, 6, 7]


async def test_retention_answers_resync_required(
    s3_endpoint: str, bucket: str, redis_url: str
) -> None:
    settings = redis_settings(s3_endpoint, bucket, redis_url, change_history=5)
    async with instances(settings, count=1) as (a,):
        http = a.client()
        await create(http, "s")
        async with ws_client(a) as ws:
            await ws.subscribe(FEED)
            await subscribed(a, 1)
            await rename(http, "s", "first")
            old = (await payloads(ws, 1, "recordChanges"))[0]["cursor"]
            for n in range(30):
                await rename(http, "s", f"n{n}")
            recent = (await payloads(ws, 30, "recordChanges"))[-2]["cursor"]
        async with ws_client(a) as ws:
            await ws.subscribe(FEED, {"after": old})
            assert await ws.error_code() == "RESYNC_REQUIRED"
        async with ws_client(a) as ws:
            await ws.subscribe(FEED, {"after": recent})
            assert (await payloads(ws, 1, "recordChanges"))[0]["version"] == 32
        await http.http.aclose()


async def test_redis_outage_mutations_commit_subscribers_are_told_delivery_resumes(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    server = RedisProcess(str(tmp_path))
    server.start()
    try:
        settings = redis_settings(s3_endpoint, bucket, server.url)
        async with instances(settings) as (a, b):
            http_a, http_b = a.client(), b.client()
            await create(http_a, "s")
            async with ws_client(b) as ws:
                await ws.subscribe(ON_UPDATE)
                await subscribed(b, 1)
                await rename(http_a, "s", "before")
                assert (await payloads(ws, 1, "onUpdateSong"))[0]["version"] == 2

                server.kill()
                during = await rename(http_a, "s", "during the outage")
                assert during == {"data": {"updateSong": {"version": 3}}}  # committed anyway
                assert await ws.error_code(timeout=10) == "RESYNC_REQUIRED"
            ready = (await http_a.http.get("/readyz")).json()
            assert ready["events"]["publish_failures"] >= 1
            assert ready["ready"] is True  # MongoDB and S3 still answer

            server.start()  # same port, empty: a new log
            await wait_until_healthy(http_b)
            await wait_until_healthy(http_a)
            async with ws_client(b) as ws:
                await ws.subscribe(ON_UPDATE)
                await subscribed(b, 1)
                await rename(http_a, "s", "after")
                assert (await payloads(ws, 1, "onUpdateSong"))[0] == {
                    "id": "s",
                    "version": 4,
                    "name": "after",
                }
            for http in (http_a, http_b):
                await http.http.aclose()
    finally:
        server.kill()


async def events_healthy(http: GraphQLClient) -> bool:
    """Whether the instance's event reader reaches Redis, as its /readyz reports it."""
    healthy: bool = (await http.http.get("/readyz")).json()["events"]["healthy"]
    return healthy


async def wait_until_healthy(http: GraphQLClient) -> None:
    await eventually(
        partial(events_healthy, http), "the event reader to reconnect to Redis", timeout=15
    )


async def test_subscribing_during_an_outage_is_refused_until_it_ends(
    s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    server = RedisProcess(str(tmp_path))
    server.start()
    try:
        settings = redis_settings(s3_endpoint, bucket, server.url)
        async with instances(settings, count=1) as (a,):
            server.kill()
            http = a.client()

            async def unhealthy() -> bool:
                return not await events_healthy(http)

            await eventually(unhealthy, "the event reader to notice Redis is gone")
            async with ws_client(a) as ws:
                await ws.subscribe(ON_UPDATE)
                assert await ws.error_code() == "RESYNC_REQUIRED"
            await http.http.aclose()
    finally:
        server.kill()


@pytest.mark.parametrize("backend", ["in process", "redis"])
async def test_a_stalled_subscriber_is_cut_off_while_a_healthy_one_keeps_up(
    s3_endpoint: str, bucket: str, redis_url: str, backend: str
) -> None:
    overrides: dict[str, Any] = {"subscriber_buffer": 4}
    settings = (
        redis_settings(s3_endpoint, bucket, redis_url, **overrides)
        if backend == "redis"
        else make_settings(s3_endpoint, bucket, **overrides)
    )
    async with instances(settings, count=1) as (a,):
        http = a.client()
        await http.data('mutation { createPhotoAlbum(input: {id: "p", name: "x"}) { id } }')
        query = "subscription { onUpdatePhotoAlbum { version imagePaths } }"
        async with stalled_client(a) as stalled, ws_client(a) as healthy:
            await stalled.subscribe(query)
            await healthy.subscribe(query)
            await subscribed(a, 2)
            paths = [f"images/p/{'x' * 900}-{n}.png" for n in range(100)]  # ~90 KB an event
            cut_off = 0
            for n in range(2, 150):
                await http.data(
                    'mutation($p: [String!]) { updatePhotoAlbum(input: {id: "p", '
                    "imagePaths: $p}) { version } }",
                    {"p": paths},
                )
                got = await healthy.next_payload()  # the healthy one is never held up
                assert got["data"]["onUpdatePhotoAlbum"]["version"] == n
                cut_off = (await http.http.get("/readyz")).json()["events"]["cut_off"]
                if cut_off:
                    break
            assert cut_off == 1, "the stalled subscriber was never cut off"
            # the stalled client, reading at last, finds its connection closed and why
            stalled.ws.transport.resume_reading()
            with pytest.raises(ConnectionClosed) as closed:
                await drain(stalled)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4008
            assert closed.value.rcvd.reason.startswith("too slow: resume after ")
        await http.http.aclose()


async def drain(client: TransportWsClient) -> None:
    """Read until the connection ends (raising ConnectionClosed)."""
    while True:
        await asyncio.wait_for(client.ws.recv(), 10)


@asynccontextmanager
async def stalled_client(live: LiveServer) -> AsyncIterator[TransportWsClient]:
    """A subscriber that never reads: small socket buffers, and a client that stops reading."""
    import socket

    from websockets.asyncio.client import connect

    # closed here too: the server closing first leaves it to the garbage collector otherwise
    # (a ResourceWarning, which this suite makes an error, in whichever test collects next)
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        host, port = live.url.removeprefix("http://").split(":")
        sock.connect((host, int(port)))
        # no compression: the test's payloads compress to almost nothing
        async with connect(
            live.ws_url,
            sock=sock,
            subprotocols=[TransportWsClient.protocol],
            max_queue=1,
            ping_interval=None,
            compression=None,
        ) as ws:
            client = StalledClient(ws)
            assert (await client.init(dict(FULL_ACCESS)))["type"] == "connection_ack"
            yield client


class StalledClient(TransportWsClient):
    """A client that stops reading once it has subscribed."""

    async def subscribe(self, query: str, variables: Json | None = None) -> str:
        op_id = await super().subscribe(query, variables)
        self.ws.transport.pause_reading()
        return op_id


async def test_lost_events_leave_a_gap_no_resume_can_cross(tmp_path: Path) -> None:
    """An instance that could not publish marks the log once Redis is back: subscribers that
    were there before the loss are told, a cursor from before it answers RESYNC_REQUIRED, and
    a cursor from after it resumes."""
    server = RedisProcess(str(tmp_path))
    server.start()
    try:
        async with running_broker(server.url) as broker:
            watcher = await broker.subscribe(lambda e: True, buffer=100)
            await broker.publish(change(1))
            before = (await asyncio.wait_for(anext(watcher), 5)).cursor
            server.kill()
            await broker.publish(change(2))  # lost: logged, counted, and the subscriber is told
            lost_by = time.time()
            assert broker.stats.publish_failures == 1
            with pytest.raises(ResyncRequired):
                await asyncio.wait_for(anext(watcher), 5)

            # the restarted Redis lost its data: a new epoch, so the old cursor cannot resume
            server.start()
            await eventually(lambda: broker.healthy, "the broker to reconnect to Redis")
            with pytest.raises(ResyncRequired):
                await broker.subscribe(lambda e: True, buffer=10, after=before)  # another epoch
            # Time itself decides here: the gap mark the broker appends on reconnecting ends
            # every subscription made up to GAP_CLOCK_MARGIN after the loss, so a subscriber
            # that must outlive the gap comes later than that.
            await asyncio.sleep(max(0.0, lost_by + GAP_CLOCK_MARGIN + 0.1 - time.time()))
            fresh = await broker.subscribe(lambda e: True, buffer=10)
            await broker.publish(change(3))
            after = (await asyncio.wait_for(anext(fresh), 5)).cursor
            await broker.publish(change(4))
            resumed = await broker.subscribe(lambda e: True, buffer=10, after=after)
            assert (await asyncio.wait_for(anext(resumed), 5)).version == 4
            # the reader has read it too, so that closing the broker interrupts an idle read
            assert (await asyncio.wait_for(anext(fresh), 5)).version == 4
    finally:
        server.kill()


async def test_a_gap_mark_tells_old_subscribers_and_stops_resumes(redis_url: str) -> None:
    """The gap mark itself, as another instance appends it into a log that kept its data: one
    that committed a change before it could reach Redis, and reached it afterwards."""
    stream = f"test:{uuid.uuid4().hex[:8]}"
    async with running_broker(redis_url, stream) as broker, AsyncExitStack() as stack:
        old = await broker.subscribe(lambda e: True, buffer=100)
        await broker.publish(change(1))
        before = (await asyncio.wait_for(anext(old), 5)).cursor
        other = redis_broker(redis_url, stream)
        stack.push_async_callback(other.close)
        await other.publish(change(2))  # not started: the log is out of its reach, the event lost
        assert other.stats.publish_failures == 1
        # Time itself is under test: the mark ends the subscriptions made up to GAP_CLOCK_MARGIN
        # after the loss (instances' clocks may differ), and no later one.
        await asyncio.sleep(GAP_CLOCK_MARGIN + 0.1)
        new = await broker.subscribe(lambda e: True, buffer=100)  # came after the loss
        await other.start()
        heard = await other.subscribe(lambda e: True, buffer=10)
        await other.publish(change(2))  # appends the gap mark first
        # Its own reader has read what it appended, so that closing it interrupts an idle read:
        # redis-py can swallow the cancellation of a read whose answer is arriving, and then
        # RedisBroker.close waits for its reader for ever.
        assert (await asyncio.wait_for(anext(heard), 5)).version == 2
        with pytest.raises(ResyncRequired, match="lost"):
            await asyncio.wait_for(anext(old), 5)
        assert (await asyncio.wait_for(anext(new), 5)).version == 2
        with pytest.raises(ResyncRequired, match="lost"):
            await broker.subscribe(lambda e: True, buffer=10, after=before)
