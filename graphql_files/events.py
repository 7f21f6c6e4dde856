"""Change events: published once per committed write, fanned out to local subscribers.

A ``Broker`` stamps each event with a cursor, keeps a bounded history for replay, and hands
every event to each local ``Subscription`` whose predicate accepts it. Each subscription has a
bounded queue: when a subscriber stops reading and its queue fills, it is cut off (its next read
raises ``SlowConsumer`` naming the last cursor it was given) instead of slowing the publisher or
growing memory. The in-process broker is the default; the Redis broker (``redis_broker``) shares
this fan-out and subscription code.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from .errors import ResyncRequired, SlowConsumer

log = logging.getLogger(__name__)


class ChangeKind(enum.Enum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"


@dataclass(frozen=True)
class ChangeEvent:
    kind: ChangeKind
    model: str  # ModelSpec.enum_name
    document: dict[str, Any]  # the record after the change (as it was, for a delete)
    cursor: str = ""

    @property
    def record_id(self) -> str:
        return str(self.document["_id"])

    @property
    def version(self) -> int:
        return int(self.document["version"])


Predicate = Callable[[ChangeEvent], bool]


class Subscription:
    """One subscriber's view of the feed: replayed history first, then live events."""

    def __init__(self, predicate: Predicate, buffer: int, on_close: Callable[[Subscription], None]):
        self._predicate = predicate
        self._queue: asyncio.Queue[ChangeEvent | None] = asyncio.Queue(maxsize=buffer)
        self._backlog: deque[ChangeEvent] = deque()
        self._on_close = on_close
        self._failure: Exception | None = None
        self.last_cursor: str | None = None

    def offer(self, event: ChangeEvent) -> None:
        """Called by the broker for every event; never blocks."""
        if self._failure is not None or not self._predicate(event):
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._failure = SlowConsumer(
                f"subscriber fell more than {self._queue.maxsize} events behind and was cut off; "
                "resume from the last cursor received",
                lastCursor=self.last_cursor,
            )
            log.warning("cut off a slow subscriber after %d buffered events", self._queue.maxsize)

    def fail(self, error: Exception) -> None:
        """End this subscription with ``error`` at its next read (e.g. events were lost)."""
        if self._failure is None:
            self._failure = error
            if not self._queue.full():
                self._queue.put_nowait(None)  # wake a reader waiting on an empty queue

    def replay(self, events: Iterable[ChangeEvent]) -> None:
        self._backlog.extend(e for e in events if self._predicate(e))

    def __aiter__(self) -> AsyncIterator[ChangeEvent]:
        return self

    async def __anext__(self) -> ChangeEvent:
        if self._backlog:
            event = self._backlog.popleft()
        else:
            if self._failure is not None:
                raise self._failure
            queued = await self._queue.get()
            if self._failure is not None or queued is None:
                raise self._failure or SlowConsumer("subscription ended")
            event = queued
        self.last_cursor = event.cursor
        return event

    def close(self) -> None:
        self._on_close(self)


class Broker:
    """The in-process broker: cursors are ``<instance>-<sequence>``; history is a ring."""

    def __init__(self, *, history: int = 10_000) -> None:
        self._subscribers: set[Subscription] = set()
        self._history: deque[ChangeEvent] = deque(maxlen=history)
        self._epoch = uuid.uuid4().hex[:12]
        self._sequence = itertools.count(1)

    async def publish(self, event: ChangeEvent) -> ChangeEvent:
        stamped = replace(event, cursor=f"{self._epoch}-{next(self._sequence)}")
        self._history.append(stamped)
        self.deliver(stamped)
        return stamped

    def deliver(self, event: ChangeEvent) -> None:
        for subscriber in tuple(self._subscribers):
            subscriber.offer(event)

    def _sequence_of(self, cursor: str) -> int:
        epoch, _, number = cursor.partition("-")
        if epoch != self._epoch or not number.isdigit():
            raise ResyncRequired("this cursor is from another server run; re-list and resubscribe")
        return int(number)

    async def subscribe(
        self, predicate: Predicate, *, buffer: int, after: str | None = None
    ) -> Subscription:
        subscription = Subscription(predicate, buffer, self._subscribers.discard)
        if after is not None:
            start = self._sequence_of(after)
            oldest = self._sequence_of(self._history[0].cursor) if self._history else None
            if oldest is not None and start + 1 < oldest:
                raise ResyncRequired("the changes after this cursor are no longer retained")
            subscription.replay(e for e in self._history if self._sequence_of(e.cursor) > start)
        # No await between the history snapshot and registering: nothing is missed or doubled.
        self._subscribers.add(subscription)
        return subscription

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def close(self) -> None:
        self._subscribers.clear()
