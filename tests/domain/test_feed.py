"""The change feed: the in-process broker's ordered fan-out, bounded subscriber buffers and
replay from a cursor; and cursors on both logs: a malformed cursor is the client's mistake
(``BAD_USER_INPUT``); a well-formed one that cannot be replayed, from another run or another
log, needs a re-list (``RESYNC_REQUIRED``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from graphql_files.adapters.redis_log import RedisBroker
from graphql_files.domain.feed import Broker, ChangeEvent, ChangeKind, LocalBroker
from graphql_files.errors import DomainError, ResyncRequired, SlowConsumer


def event(n: int, model: str = "SONG") -> ChangeEvent:
    doc = {"_id": f"s{n}", "name": f"n{n}", "version": 1, "createdAt": "", "updatedAt": ""}
    return ChangeEvent(ChangeKind.CREATED, model, doc)


async def test_every_subscriber_gets_matching_events_in_order() -> None:
    broker = LocalBroker()
    songs = await broker.subscribe(lambda e: e.model == "SONG", buffer=10)
    everything = await broker.subscribe(lambda e: True, buffer=10)
    for n in range(3):
        await broker.publish(event(n))
    await broker.publish(event(9, "PHOTO_ALBUM"))
    assert [(await anext(songs)).record_id for _ in range(3)] == ["s0", "s1", "s2"]
    assert [(await anext(everything)).record_id for _ in range(4)] == ["s0", "s1", "s2", "s9"]
    assert broker.stats.published == 4


async def test_a_full_buffer_cuts_the_subscriber_off_without_slowing_others() -> None:
    broker = LocalBroker()
    told: list[SlowConsumer] = []
    stalled = await broker.subscribe(lambda e: True, buffer=2, on_cut_off=told.append)
    healthy = await broker.subscribe(lambda e: True, buffer=100)
    await broker.publish(event(0))
    first = await anext(stalled)
    for n in range(1, 6):
        await broker.publish(event(n))
    with pytest.raises(SlowConsumer) as cut_off:
        await anext(stalled)
    assert cut_off.value.extensions["lastCursor"] == first.cursor
    assert told == [cut_off.value]
    assert [(await anext(healthy)).record_id for _ in range(6)] == [f"s{n}" for n in range(6)]
    assert broker.subscriber_count == 1
    assert broker.stats.cut_off == 1


async def test_replay_after_a_cursor_then_live_exactly_once() -> None:
    broker = LocalBroker(history=100)
    cursors = []
    watcher = await broker.subscribe(lambda e: True, buffer=100)
    for n in range(5):
        await broker.publish(event(n))
        cursors.append((await anext(watcher)).cursor)
    resumed = await broker.subscribe(lambda e: True, buffer=10, after=cursors[1])
    await broker.publish(event(5))
    got = [(await anext(resumed)).record_id for _ in range(4)]
    assert got == ["s2", "s3", "s4", "s5"]


async def test_cursors_beyond_the_history_need_a_resync() -> None:
    broker = LocalBroker(history=3)
    watcher = await broker.subscribe(lambda e: True, buffer=100)
    cursors = []
    for n in range(6):
        await broker.publish(event(n))
        cursors.append((await anext(watcher)).cursor)
    with pytest.raises(ResyncRequired):
        await broker.subscribe(lambda e: True, buffer=10, after=cursors[0])
    with pytest.raises(ResyncRequired):
        await broker.subscribe(lambda e: True, buffer=10, after="otherrun-3")
    ok = await broker.subscribe(lambda e: True, buffer=10, after=cursors[2])
    assert (await anext(ok)).record_id == "s3"


async def test_fail_all_tells_every_subscriber() -> None:
    broker = LocalBroker()
    subscriptions = [await broker.subscribe(lambda e: True, buffer=5) for _ in range(3)]
    broker.fail_all("events were lost")
    for subscription in subscriptions:
        with pytest.raises(ResyncRequired, match="events were lost"):
            await anext(subscription)
    assert broker.subscriber_count == 0


# --- cursors, on both logs ---------------------------------------------------------------------

MALFORMED = [
    "%%not-a-cursor%%",
    "not-a-cursor",
    "",
    "0123456789ab-",
    "0123456789ab-1x",
    "deadbeef.1-x",
    "deadbeef.-1",
    "deadbeef.1-2-3",
    "0123456789ab-" + "9" * 5000,  # int() refuses more than 4300 digits
    "x" * 100_000,
]
FOREIGN = ["0123456789ab-1", "otherrun-3", "deadbeef.1700000000000-0"]  # other runs, logs


def change(n: int) -> ChangeEvent:
    doc = {"_id": "r", "name": "x", "version": n, "createdAt": "", "updatedAt": ""}
    return ChangeEvent(ChangeKind.UPDATED, "SONG", doc)


@pytest.fixture(params=["local", "redis"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    """Each log in turn: the in-process ring, and a stream of its own on the session's Redis."""
    started: Broker
    if request.param == "local":
        started = LocalBroker()
    else:
        redis_url: str = request.getfixturevalue("redis_url")
        started = RedisBroker(
            url=redis_url,
            stream=f"test:{uuid.uuid4().hex[:8]}",
            history_length=100,
            history_age_seconds=3600,
        )
    await started.start()
    try:
        yield started
    finally:
        await started.close()


async def refusal(broker: Broker, cursor: str) -> DomainError:
    with pytest.raises(DomainError) as refused:
        await broker.subscribe(lambda e: True, buffer=10, after=cursor)
    return refused.value


@pytest.mark.parametrize("cursor", MALFORMED)
async def test_a_malformed_cursor_is_bad_user_input(broker: Broker, cursor: str) -> None:
    error = await refusal(broker, cursor)
    assert error.code == "BAD_USER_INPUT"
    assert "malformed cursor" in error.message
    assert len(error.message) < 300  # never the whole of what the client sent


@pytest.mark.parametrize("cursor", FOREIGN)
async def test_a_well_formed_cursor_from_elsewhere_needs_a_resync(
    broker: Broker, cursor: str
) -> None:
    error = await refusal(broker, cursor)
    assert isinstance(error, ResyncRequired)
    assert error.code == "RESYNC_REQUIRED"


async def test_a_cursor_of_this_log_resumes(broker: Broker) -> None:
    watcher = await broker.subscribe(lambda e: True, buffer=10)
    await broker.publish(change(1))
    cursor = (await asyncio.wait_for(anext(watcher), 5)).cursor
    await broker.publish(change(2))
    resumed = await broker.subscribe(lambda e: True, buffer=10, after=cursor)
    assert (await asyncio.wait_for(anext(resumed), 5)).version == 2
