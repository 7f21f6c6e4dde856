"""Change-feed cursors on both logs: a malformed cursor is the client's mistake
(``BAD_USER_INPUT``); a well-formed one that cannot be replayed, from another run or another
log, needs a re-list (``RESYNC_REQUIRED``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from graphql_files.adapters.redis_log import RedisBroker
from graphql_files.domain.feed import Broker, ChangeEvent, ChangeKind, LocalBroker
from graphql_files.errors import BadUserInput, DomainError, ResyncRequired

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
    with pytest.raises(BadUserInput) as refused:
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
