"""The Redis broker: one ordered log (a Redis stream) that every instance appends to and reads.

- Publishing is one Lua script: it appends the event unless the stream already holds a later
  version of the same record (two instances can commit v2 and v3 of a record and publish them in
  the other order; the late v2 is dropped, so each record's versions stay in order for every
  reader). Per-record marks expire after ``VERSION_MARK_SECONDS``.
- Each instance runs one reader task (``XREAD BLOCK``) and fans events out locally: no Redis
  connection per subscriber. A resuming subscriber replays with ``XRANGE`` from its cursor.
- Retention: ``MAXLEN ~ CHANGE_HISTORY`` on every append, and ``XTRIM MINID ~`` for
  ``CHANGE_HISTORY_AGE``. A cursor older than the oldest entry left answers ``RESYNC_REQUIRED``
  (trimming removes the oldest entries, so anything newer is still whole).
- Cursors are ``<epoch>.<stream id>``. The epoch is a random id stored beside the stream; if
  Redis loses its data, a new epoch makes every old cursor ``RESYNC_REQUIRED`` instead of
  silently skipping what was lost.
- When Redis is unreachable, publishing fails (the write is already committed: it is logged and
  counted), the reader marks the broker unhealthy and every local subscriber gets
  ``RESYNC_REQUIRED``; the reader reconnects with backoff and delivery resumes. An instance
  that failed to publish appends a *gap* entry once Redis answers again: readers that meet it
  live end their subscriptions with ``RESYNC_REQUIRED``, and a replay that crosses it answers
  ``RESYNC_REQUIRED``, so no client resumes across lost changes believing it saw them all.

This is the only module that calls redis-py; its errors become ``EventsUnavailable`` here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..domain.feed import (
    REDIS_CURSOR,
    Broker,
    ChangeEvent,
    ChangeKind,
    LogPosition,
    unusable_cursor,
)
from ..errors import EventsUnavailable, ResyncRequired

log = logging.getLogger(__name__)

VERSION_MARK_SECONDS = 600
READ_BLOCK_MS = 5000
PUBLISH_TIMEOUT = 1.0  # seconds a mutation waits for Redis before counting its event lost
READ_COUNT = 500
REPLAY_PAGE = 1000
TRIM_EVERY_SECONDS = 30.0
GAP_CLOCK_MARGIN = 1.0  # instances' clocks may differ: err towards telling a subscriber

# KEYS: stream, the record's version mark. ARGV: version, payload, max length, mark lifetime.
_APPEND = """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) <= current then return false end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[4])
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'e', ARGV[2])
"""


def _stream_position(entry_id: str) -> LogPosition:
    milliseconds, _, sequence = entry_id.partition("-")
    return (int(milliseconds), int(sequence or 0))


def _is_gap(fields: dict[Any, Any]) -> bool:
    return b"g" in fields or "g" in fields


def _gap_time(fields: dict[Any, Any]) -> float:
    """When the marking instance first lost a change (seconds since the epoch)."""
    return int(_text(fields.get(b"g", fields.get("g", "0")))) / 1000


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBroker(Broker):
    delivers_on_publish = False  # everyone, this instance included, hears it from the stream

    def __init__(
        self, *, url: str, stream: str, history_length: int, history_age_seconds: float
    ) -> None:
        super().__init__()
        self._redis = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=2,
            socket_timeout=(READ_BLOCK_MS / 1000) + 5,
            # A pooled connection Redis closed (a restart) fails on first use: reconnect and
            # retry. Appends are safe to retry: the version check drops a second copy.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        self._stream = stream
        self._history_length = history_length
        self._history_age_ms = int(history_age_seconds * 1000)
        self._append_script = self._redis.register_script(_APPEND)
        self._epoch: str | None = None
        self._last_id = "$"
        self._reader: asyncio.Task[None] | None = None
        self._trimmed_at = 0.0
        self._lost_at: float | None = None  # when this instance first failed to publish
        self._closing = False
        self.healthy = False

    @property
    def backend(self) -> str:
        return "redis"

    async def start(self) -> None:
        try:
            await self._connect()
        except RedisError as exc:
            log.warning("Redis is unreachable at start-up (%s); retrying in the background", exc)
        self._reader = asyncio.create_task(self._read_forever(), name="redis-event-reader")

    async def close(self) -> None:
        self._closing = True  # the reader stops at its next turn, even if a cancel is lost
        if self._reader is not None:
            # redis-py can swallow the cancellation of an XREAD whose answer is arriving: then
            # the flag ends the loop, at most one blocking read later
            self._reader.cancel()
            await asyncio.wait({self._reader}, timeout=READ_BLOCK_MS / 1000 + 2)
            if not self._reader.done():
                log.warning("the Redis reader did not stop; closing its connections under it")
        await super().close()
        await self._redis.aclose()

    async def _connect(self) -> None:
        """Learn (or make) the stream's epoch; start reading after what is there now."""
        epoch_key = f"{self._stream}:epoch"
        await self._redis.set(epoch_key, uuid.uuid4().hex[:8], nx=True)
        epoch = _text(await self._redis.get(epoch_key))
        if self._epoch is not None and epoch != self._epoch:
            log.warning("the event stream was reset (Redis lost its data): old cursors are void")
            self._last_id = "0-0"  # read everything the new stream holds
        elif self._last_id == "$":
            info = await self._info()
            self._last_id = _text(info.get("last-generated-id", "0-0")) if info else "0-0"
        self._epoch = epoch
        self.healthy = True

    async def _info(self) -> dict[str, Any]:
        try:
            info: dict[str, Any] = {
                _text(k): v for k, v in (await self._redis.xinfo_stream(self._stream)).items()
            }
        except RedisError as exc:
            if "no such key" in str(exc).lower():
                return {}
            raise
        return info

    # --- the log -------------------------------------------------------------------------------

    def position(self, cursor: str) -> LogPosition:
        matched = REDIS_CURSOR.fullmatch(cursor)
        if matched is None or matched[1] != self._epoch:
            raise unusable_cursor(cursor, "this cursor is from an earlier event log")
        return (int(matched[2]), int(matched[3]))

    async def _append(self, event: ChangeEvent) -> str | None:
        if self._epoch is None or not self.healthy:  # fail fast: do not hold up the mutation
            self._lost_at = self._lost_at or time.time()
            raise EventsUnavailable("the event log (Redis) is unreachable")
        payload = json.dumps(
            {"k": event.kind.value, "m": event.model, "d": event.document},
            separators=(",", ":"),
        )
        mark = f"{self._stream}:v:{event.model}:{event.record_id}"
        try:
            # A Redis that stopped answering (a paused process, a full network buffer) must not
            # hold the mutation: past the deadline the event counts as lost, like an outage.
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await self._mark_gap()
                entry_id = await self._append_script(
                    keys=[self._stream, mark],
                    args=[event.version, payload, self._history_length, VERSION_MARK_SECONDS],
                )
        except TimeoutError as exc:
            self._lost_at = self._lost_at or time.time()
            self.healthy = False  # fail fast until the reader reaches Redis again
            raise EventsUnavailable(f"Redis did not answer within {PUBLISH_TIMEOUT:g}s") from exc
        except RedisError as exc:
            self._lost_at = self._lost_at or time.time()
            raise EventsUnavailable(f"Redis refused the event: {exc}") from exc
        if entry_id is None:
            log.info(
                "dropped %s %s v%d: a later version was published first",
                event.model,
                event.record_id,
                event.version,
            )
            return None
        return f"{self._epoch}.{_text(entry_id)}"

    async def _mark_gap(self) -> None:
        """Record in the log that this instance lost events (at ``_lost_at``)."""
        if self._lost_at is not None:
            await self._redis.xadd(
                self._stream,
                {"g": str(int(self._lost_at * 1000))},
                maxlen=self._history_length,
                approximate=True,
            )
            log.warning(
                "marked the event log: changes made here were lost since %s",
                time.strftime("%H:%M:%S", time.gmtime(self._lost_at)),
            )
            self._lost_at = None

    async def _history(self, after: str, start: LogPosition) -> AsyncIterator[ChangeEvent]:
        try:
            info = await self._info()
            newest = _stream_position(_text(info.get("last-generated-id", "0-0")))
            first = info.get("first-entry")
            # Trimming removes the oldest entries: the history after the cursor is whole only if
            # the oldest entry left is not newer than the cursor (or nothing was ever added
            # after it).
            oldest = _stream_position(_text(first[0])) if first else None
            if (oldest is not None and start < oldest) or (oldest is None and start < newest):
                raise ResyncRequired(
                    "the changes after this cursor are no longer retained; "
                    "re-list and subscribe again",
                    cursor=after,
                )
            if start > newest:
                raise ResyncRequired("this cursor is ahead of the event log", cursor=after)
            if start == newest:
                return
            low = f"({start[0]}-{start[1]}"
            while True:
                page: Any = await self._redis.xrange(self._stream, min=low, count=REPLAY_PAGE)
                for entry_id, fields in page:
                    if _is_gap(fields):
                        raise ResyncRequired(
                            "changes after this cursor were lost while the "
                            "event log was unreachable; re-list and subscribe "
                            "again",
                            cursor=after,
                        )
                    yield self._event(entry_id, fields)
                if len(page) < REPLAY_PAGE:
                    return
                low = f"({_text(page[-1][0])}"
        except RedisError as exc:
            raise ResyncRequired(
                "the event log (Redis) is unreachable; retry shortly", cursor=after
            ) from exc

    def _event(self, entry_id: Any, fields: dict[Any, Any]) -> ChangeEvent:
        body = json.loads(fields[b"e"] if b"e" in fields else fields["e"])
        return ChangeEvent(
            kind=ChangeKind(body["k"]),
            model=body["m"],
            document=body["d"],
            cursor=f"{self._epoch}.{_text(entry_id)}",
        )

    # --- the reader ------------------------------------------------------------------------------

    async def _read_forever(self) -> None:
        backoff = 0.1
        while not self._closing:
            try:
                if not self.healthy:
                    await self._connect()
                    await self._mark_gap()
                    log.info("the event log (Redis) is reachable again; delivering events")
                    backoff = 0.1
                entries: Any = await self._redis.xread(
                    {self._stream: self._last_id}, block=READ_BLOCK_MS, count=READ_COUNT
                )
                for _, items in entries or ():
                    for entry_id, fields in items:
                        self._last_id = _text(entry_id)
                        if _is_gap(fields):
                            self.fail_subscribed_before(
                                _gap_time(fields) + GAP_CLOCK_MARGIN,
                                "changes were lost while the event log was unreachable",
                            )
                        else:
                            self.deliver(self._event(entry_id, fields))
                await self._trim()
            except RedisError as exc:
                if self.healthy:
                    log.warning("lost the event log (Redis): %s", exc)
                    self.healthy = False
                    self.fail_all("live events were interrupted (Redis unreachable)")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _trim(self) -> None:
        now = time.monotonic()
        if now - self._trimmed_at < TRIM_EVERY_SECONDS:
            return
        self._trimmed_at = now
        oldest = int(time.time() * 1000) - self._history_age_ms
        await self._redis.xtrim(self._stream, minid=oldest, approximate=True)
