"""The in-process broker: ordered fan-out, bounded subscriber buffers, replay from a cursor."""

from __future__ import annotations

import pytest

from graphql_files.domain.feed import ChangeEvent, ChangeKind, LocalBroker
from graphql_files.errors import ResyncRequired, SlowConsumer


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
