"""Change events: published once per committed write, replayable from a cursor, fanned out to
local subscribers.

A ``Broker`` appends each event to an ordered log (an in-process ring here, a Redis stream in
``redis_broker``), and every instance hands each event it reads to its local ``Subscription``s.
A subscription registers first and then replays the log after its cursor, so nothing falls in
the gap between history and live events, and a cursor at or before one already delivered is
skipped, so nothing arrives twice.

Each subscription has a bounded queue. A subscriber that stops reading until its queue is full is
cut off (``SlowConsumer``, carrying the last cursor it was given, and the ``on_cut_off`` callback
closes its websocket) instead of slowing the publisher or growing memory. When events may have
been lost (the log was unreachable), every subscriber is ended with ``ResyncRequired``: a client
must never believe its copy is current when it is not.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import re
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import (
    BadUserInput,
    DomainError,
    EventsUnavailable,
    ResyncRequired,
    SlowConsumer,
    excerpt,
)
from .models import ModelSpec, Record

log = logging.getLogger(__name__)

DEFAULT_HISTORY = 10_000

# The cursors of both logs, so that each broker can tell another log's cursor (after a switch
# between the in-process ring and Redis) from no cursor at all. Run ids and epochs are hex
# digits today; any word passes, so that only what is no cursor at all is a client's mistake.
LOCAL_CURSOR = re.compile(r"([0-9A-Za-z]{1,64})-([0-9]{1,20})")  # <run id>-<sequence>
REDIS_CURSOR = re.compile(r"([0-9A-Za-z]{1,64})\.([0-9]{1,20})-([0-9]{1,20})")  # <epoch>.<entry>


def unusable_cursor(cursor: str, why: str) -> ResyncRequired | BadUserInput:
    """The error for a cursor a log cannot replay from: ``ResyncRequired`` when it is a
    well-formed cursor (too old, another run's or another log's), ``BadUserInput`` when it is no
    cursor at all (a client's mistake that no re-list will fix)."""
    if LOCAL_CURSOR.fullmatch(cursor) or REDIS_CURSOR.fullmatch(cursor):
        return ResyncRequired(f"{why}; re-list and subscribe again", cursor=cursor)
    return BadUserInput(
        f"malformed cursor {excerpt(cursor, 40)}: pass `after` a `cursor` this feed gave",
        argument="after",
    )


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
    _records: dict[str, Record] = field(default_factory=dict, compare=False, repr=False)

    @property
    def record_id(self) -> str:
        return str(self.document["_id"])

    def record(self, model: ModelSpec) -> Record:
        """The record (of ``model``, which the event names), parsed once per event however
        many subscribers look at it."""
        parsed = self._records.get(model.name)
        if parsed is None:
            parsed = self._records[model.name] = Record.from_document(model, self.document)
        return parsed

    @property
    def version(self) -> int:
        return int(self.document["version"])


Predicate = Callable[[ChangeEvent], bool]
LogPosition = tuple[int, ...]  # where a cursor points in its log, comparable


@dataclass
class BrokerStats:
    published: int = 0
    publish_failures: int = 0
    cut_off: int = 0
    resyncs: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Subscription:
    """One subscriber's view of the feed: replayed history first, then live events."""

    def __init__(
        self,
        predicate: Predicate,
        buffer: int,
        position: Callable[[str], LogPosition],
        on_close: Callable[[Subscription], None],
        on_cut_off: Callable[[SlowConsumer], None] | None = None,
    ) -> None:
        self._predicate = predicate
        self._queue: asyncio.Queue[ChangeEvent | None] = asyncio.Queue(maxsize=buffer)
        self._backlog: deque[ChangeEvent] = deque()
        self._position = position
        self._on_close = on_close
        self._on_cut_off = on_cut_off
        self._failure: DomainError | None = None
        self._seen: LogPosition | None = None  # the last position handed out
        self.created_at = time.time()
        self.last_cursor: str | None = None

    def offer(self, event: ChangeEvent) -> bool:
        """Queue a live event (never blocks); False when this cut the subscriber off."""
        if self._failure is not None or not self._predicate(event):
            return True
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            cut = SlowConsumer(
                f"this subscriber fell {self._queue.maxsize} events behind and was cut off; "
                "resume from the last cursor it received",
                lastCursor=self.last_cursor,
            )
            self._failure = cut
            if self._on_cut_off is not None:
                self._on_cut_off(cut)
            return False
        return True

    def replay(self, events: Iterable[ChangeEvent]) -> None:
        self._backlog.extend(e for e in events if self._predicate(e))

    def fail(self, error: DomainError) -> None:
        """End this subscription with ``error`` at its next read."""
        if self._failure is None:
            self._failure = error
            if not self._queue.full():
                self._queue.put_nowait(None)  # wake a reader waiting on an empty queue

    def __aiter__(self) -> AsyncIterator[ChangeEvent]:
        return self

    async def __anext__(self) -> ChangeEvent:
        while True:
            if self._backlog:
                event = self._backlog.popleft()
            else:
                if self._failure is not None:
                    raise self._failure
                queued = await self._queue.get()
                if self._failure is not None or queued is None:
                    raise self._failure or ResyncRequired("the subscription ended")
                event = queued
            position = self._position(event.cursor)
            if self._seen is not None and position <= self._seen:
                continue  # replayed already: the live copy of an event from the history
            self._seen = position
            self.last_cursor = event.cursor
            return event

    def close(self) -> None:
        self._on_close(self)


class Broker:
    """The broker's shared half; backends provide the log (``_append``/``_history``)."""

    delivers_on_publish = True  # the in-process log hands events out as they are appended

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self.stats = BrokerStats()
        self.healthy = True

    @property
    def backend(self) -> str:
        return "in process"

    async def start(self) -> None:
        """Begin reading the log (a no-op for the in-process log)."""

    async def close(self) -> None:
        for subscriber in tuple(self._subscribers):
            subscriber.fail(ResyncRequired("the server is shutting down"))
        self._subscribers.clear()

    async def publish(self, event: ChangeEvent) -> None:
        """Append a committed write's event; never raises (the write already happened)."""
        try:
            cursor = await self._append(event)
        except EventsUnavailable as exc:
            self.stats.publish_failures += 1
            log.warning(
                "could not publish %s %s %s v%d: %s",
                event.kind.value,
                event.model,
                event.record_id,
                event.version,
                exc.message,
            )
            self.fail_all("an event could not be published")
            return
        if cursor is None:  # the log already holds a later version of this record
            return
        self.stats.published += 1
        if self.delivers_on_publish:
            self.deliver(replace(event, cursor=cursor))

    def deliver(self, event: ChangeEvent) -> None:
        for subscriber in tuple(self._subscribers):
            if not subscriber.offer(event):
                self._subscribers.discard(subscriber)
                self.count_cut_off(subscriber.last_cursor)

    def count_cut_off(self, last_cursor: str | None) -> None:
        """Count, and log, a subscriber cut off for falling behind: here, or downstream of one
        of these subscriptions (a member of a shared subscription, whose own outbox filled)."""
        self.stats.cut_off += 1
        log.warning("cut off a subscriber that fell behind (cursor %s)", last_cursor)

    def fail_all(self, why: str) -> None:
        """Tell every subscriber it may have missed events; they re-list and resubscribe."""
        self.fail_subscribed_before(float("inf"), why)

    def fail_subscribed_before(self, moment: float, why: str) -> None:
        """Tell every subscriber that was there at ``moment`` (seconds since the epoch) that it
        may have missed events; they re-list and resubscribe."""
        doomed = [s for s in self._subscribers if s.created_at <= moment]
        if doomed:
            self.stats.resyncs += len(doomed)
            log.warning("%s: ending %d subscriptions with RESYNC_REQUIRED", why, len(doomed))
        for subscriber in doomed:
            subscriber.fail(ResyncRequired(f"{why}; re-list and subscribe again"))
            self._subscribers.discard(subscriber)

    async def subscribe(
        self,
        predicate: Predicate,
        *,
        buffer: int,
        after: str | None = None,
        on_cut_off: Callable[[SlowConsumer], None] | None = None,
    ) -> Subscription:
        """Live events from now on, preceded by those after ``after`` when it is given."""
        if not self.healthy:
            raise ResyncRequired(
                "live events are interrupted (the event log is unreachable); "
                "retry shortly, then re-list"
            )
        start = self.position(after) if after is not None else None
        subscription = Subscription(
            predicate, buffer, self.position, self._subscribers.discard, on_cut_off
        )
        self._subscribers.add(subscription)  # first, so no live event falls in the gap
        if after is not None and start is not None:
            try:
                subscription.replay([e async for e in self._history(after, start)])
            except BaseException:
                self._subscribers.discard(subscription)
                raise
        return subscription

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    # --- the log -----------------------------------------------------------------------------

    def position(self, cursor: str) -> LogPosition:
        raise NotImplementedError

    async def _append(self, event: ChangeEvent) -> str | None:
        raise NotImplementedError

    def _history(self, after: str, start: LogPosition) -> AsyncIterator[ChangeEvent]:
        raise NotImplementedError


class LocalBroker(Broker):
    """The in-process log: cursors are ``<run id>-<sequence>``; history is a bounded ring."""

    def __init__(self, *, history: int = DEFAULT_HISTORY) -> None:
        super().__init__()
        self._history_ring: deque[ChangeEvent] = deque(maxlen=history)
        self._run = uuid.uuid4().hex[:12]
        self._sequence = itertools.count(1)

    def position(self, cursor: str) -> LogPosition:
        matched = LOCAL_CURSOR.fullmatch(cursor)
        if matched is None or matched[1] != self._run:
            raise unusable_cursor(cursor, "this cursor is not from this server's current run")
        return (int(matched[2]),)

    async def _append(self, event: ChangeEvent) -> str:
        stamped = replace(event, cursor=f"{self._run}-{next(self._sequence)}")
        self._history_ring.append(stamped)
        return stamped.cursor

    async def _history(self, after: str, start: LogPosition) -> AsyncIterator[ChangeEvent]:
        ring = tuple(self._history_ring)  # a snapshot: no await between it and the check
        if ring and self.position(ring[0].cursor)[0] > start[0] + 1:
            raise ResyncRequired(
                "the changes after this cursor are no longer retained; re-list and subscribe again",
                cursor=after,
            )
        for event in ring:
            if self.position(event.cursor) > start:
                yield event
