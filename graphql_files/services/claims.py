"""Claims: exclusive, expiring rights over object keys, kept in MongoDB.

"No record names a missing object" needs two steps on the same key to exclude each other:
*adoption* (check the object exists, then write a record naming it) and *deletion* (check no
record names the object, then delete it). Each is check-then-act, so each runs while holding the
key's claim: one MongoDB document per claimed key, ``_id`` = the key.

- Taking a claim is one atomic insert (the unique ``_id`` lets one of any number of racers win),
  or one guarded update that takes over a claim whose lease has expired.
- The holder of a claim stops working under it within ``hold_seconds`` (its work runs under that
  timeout), and releases it (deletes the document, guarded by its holder id) when done.
- A claim whose holder died (a crash, a lost network) stops blocking when its lease expires.
  The lease is longer than the hold limit by a margin that covers every driver operation still
  in flight when the holder stopped (each bounded by its own timeout) and the clock skew
  between instances (see ``Settings.claim_lease_seconds``).
- A write whose outcome is unknown (a timeout, a dropped connection, a cancelled task while the
  record write or the S3 delete was in flight) may still land later. Work of that kind runs in
  ``Claim.committing()``: if it ends without a definite answer, the claim is *kept* until its
  lease expires, so nobody can act on the key until that write has landed or never will.

Whoever comes second waits (polling with jittered backoff) up to ``wait_seconds``, then gets
``Conflict`` with reason ``BUSY``: it never proceeds without the claim.

*Shared* holds (``hold(..., shared=True)``, on a ``Claims(shared=True)`` collection) are for work
that must exclude the exclusive holders of a key but not each other: the writes of children
naming one parent, against the parent's delete. A shared holder writes a document of its own
(``_id`` = ``<key>#<holder>``, ``shared`` = the key) and then looks for the key's exclusive
claim: if there is one, it withdraws its document and waits as above. An exclusive holder, once
its claim is taken, waits until no unexpired shared document names the key (giving its claim up
if that takes past ``wait_seconds``). Each writes before it looks, so of a shared and an
exclusive holder racing, at least one sees the other: never both proceed. Shared documents have
leases, are released, renewed and kept on doubt exactly as claims are.

A workflow that streams files from its request body takes its claims before the first byte
reaches S3, and may wait on a slow client for longer than the hold limit: its hold limit must
count from when the body is in (a slow body is not a stalled one; ``BODY_IDLE_TIMEOUT`` bounds a
stalled one). Such a hold is *open* (``hold(..., open_until_started=True)``): while the body
arrives, the holder renews its leases every half hold limit, so a live holder never loses them
and a dead one's expire as before (after the last renewal, a lease still outlasts the hold limit
plus what may be in flight); ``Claim.start_clock()`` renews them once more and starts the hold
limit. If a renewal fails, the work is stopped at the latest when a closed hold begun at the
last renewal would have been.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..adapters.mongo import Collection
from ..errors import (
    Busy,
    Conflict,
    DatabaseUnavailable,
    DeadlineExceeded,
    DomainError,
    StorageUnavailable,
)

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
_FIRST_DELAY = 0.004
# An open hold started this soon after its claims were taken runs as a closed one would have,
# from when they were taken (a small body, in at once): its leases need no renewal.
QUICK_START_SECONDS = 1.0
_MAX_DELAY = 0.1
# Errors after which a write may or may not have happened.
_AMBIGUOUS = (DatabaseUnavailable, StorageUnavailable, DeadlineExceeded)


async def _poll(attempt: Callable[[], Awaitable[bool]], deadline: float) -> bool:
    """``attempt`` until it succeeds, waiting between tries with jittered exponential backoff;
    False once the next wait would pass ``deadline`` (event-loop time)."""
    loop = asyncio.get_running_loop()
    delay = _FIRST_DELAY
    while not await attempt():
        if loop.time() + delay > deadline:
            return False
        await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter
        delay = min(delay * 2, _MAX_DELAY)
    return True


def _shared_id(key: str, holder: str) -> str:
    return f"{key}#{holder}"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Claim:
    """Keys held by one piece of work."""

    keys: tuple[str, ...]
    holder: str
    purpose: str
    busy: tuple[str, ...] = ()  # keys asked for but held by others (``Claims.hold_some``)
    ids: tuple[str, ...] = ()  # the claim documents' ids, when not the keys (a shared hold)
    keep: bool = field(default=False, init=False)
    hold_until: float = field(default=float("inf"), init=False)  # event-loop time
    _start: Callable[[], Awaitable[None]] | None = field(default=None, init=False, repr=False)

    @property
    def documents(self) -> tuple[str, ...]:
        return self.ids or self.keys

    async def start_clock(self) -> None:
        """Start the hold limit of an open hold (a closed one runs from the start): its leases
        are renewed once more first. Idempotent."""
        if self._start is not None:
            start, self._start = self._start, None
            await start()

    @property
    def in_time(self) -> bool:
        """Whether work under this claim may still start: never past the hold limit."""
        return asyncio.get_running_loop().time() < self.hold_until

    @asynccontextmanager
    async def committing(self) -> AsyncIterator[None]:
        """Around a write that may land even if we stop waiting for it (a record write naming
        a claimed key, the S3 delete of one). Ending without a definite answer keeps the claim
        until its lease expires."""
        try:
            yield
        except BaseException as exc:
            if not _definite(exc):
                self.keep = True
            raise


def _definite(exc: BaseException) -> bool:
    """A refusal: the driver answered and nothing was written (a guarded write that matched
    nothing, say). Anything else (a timeout, a lost connection, a cancelled task, a bug) leaves
    the outcome unknown."""
    return isinstance(exc, DomainError) and not isinstance(exc, _AMBIGUOUS)


class Claims:
    """The claims collection. ``hold`` for all-or-nothing work (adoption), ``hold_some`` for
    work that can skip keys in use (deletion)."""

    def __init__(
        self,
        *,
        collection: Collection,
        hold_seconds: float,
        lease_seconds: float,
        wait_seconds: float,
        clock: Clock = utc_now,
        shared: bool = False,
    ) -> None:
        if lease_seconds <= hold_seconds:
            raise ValueError("a claim's lease must outlast its hold limit")
        self._collection = collection
        self.hold_seconds = hold_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self.wait_seconds = wait_seconds
        self.clock = clock  # the wall clock leases are written and compared in; tests move it
        self.shared = shared  # whether shared holds exist: exclusive ones then wait for them

    async def ensure_indexes(self) -> None:
        # Real MongoDB drops long-expired claims itself; the sweeper purges them elsewhere.
        await self._collection.create_index([("expiresAt", 1)], expireAfterSeconds=3600)
        if self.shared:
            await self._collection.create_index([("shared", 1), ("expiresAt", 1)])

    @asynccontextmanager
    async def hold(
        self,
        keys: Iterable[str],
        *,
        purpose: str,
        open_until_started: bool = False,
        shared: bool = False,
    ) -> AsyncIterator[Claim]:
        """All of ``keys``, or ``Busy`` (after waiting) and none of them. With
        ``open_until_started``, the hold limit runs only from ``Claim.start_clock()`` (the
        leases renewed meanwhile: see the module's docstring); ``shared``: beside other shared
        holders of the keys (see the module's docstring)."""
        if shared and not self.shared:
            raise ValueError("shared holds need a Claims(shared=True) collection")
        wanted = sorted(set(keys))  # one order for everyone: no two holders wait on each other
        holder = uuid.uuid4().hex
        deadline = asyncio.get_running_loop().time() + self.wait_seconds
        acquire = self._acquire_shared if shared else self._acquire
        taken: list[str] = []
        try:
            for key in wanted:
                if not await acquire(key, holder, purpose, deadline):
                    raise Busy(key)
                taken.append(_shared_id(key, holder) if shared else key)
        except BaseException:
            await self._release(taken, holder)
            raise
        ids = tuple(taken) if shared else ()
        claim = Claim(tuple(wanted), holder, purpose, ids=ids)
        async with self._held(claim, opened=open_until_started):
            yield claim

    @asynccontextmanager
    async def hold_some(
        self, keys: Iterable[str], *, purpose: str, wait: bool = True
    ) -> AsyncIterator[Claim]:
        """Those of ``keys`` that can be had (waiting for each up to ``wait_seconds`` when
        ``wait``); the others are listed in ``Claim.busy``."""
        holder = uuid.uuid4().hex
        deadline = asyncio.get_running_loop().time() + (self.wait_seconds if wait else 0.0)
        taken: list[str] = []
        busy: list[str] = []
        try:
            for key in sorted(set(keys)):
                (taken if await self._acquire(key, holder, purpose, deadline) else busy).append(key)
        except BaseException:
            await self._release(taken, holder)
            raise
        async with self._held(Claim(tuple(taken), holder, purpose, tuple(busy))) as claim:
            yield claim

    @asynccontextmanager
    async def _held(self, claim: Claim, *, opened: bool = False) -> AsyncIterator[Claim]:
        """Run the holder's work within the hold limit (from ``start_clock`` when ``opened``);
        release unless told to keep."""
        loop = asyncio.get_running_loop()
        renewing: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(None) as limit:

                def start(at: float) -> None:
                    claim.hold_until = min(claim.hold_until, at + self.hold_seconds)
                    limit.reschedule(claim.hold_until)

                if opened:
                    taken = loop.time()
                    renewing = asyncio.create_task(self._keep_renewed(claim, start))

                    async def renew_and_start() -> None:
                        assert renewing is not None
                        renewing.cancel()
                        await asyncio.gather(renewing, return_exceptions=True)
                        if loop.time() - taken < min(QUICK_START_SECONDS, self.hold_seconds / 4):
                            start(taken)  # as a closed hold: no renewal worth a round trip
                            return
                        await self._renew(claim)
                        start(loop.time())

                    claim._start = renew_and_start
                else:
                    start(loop.time())
                try:
                    yield claim
                finally:
                    if renewing is not None:
                        renewing.cancel()
                        await asyncio.gather(renewing, return_exceptions=True)
        except TimeoutError as exc:
            claim.keep = True  # whatever was in flight may still land
            log.warning("%s ran past %gs holding %s", claim.purpose, self.hold_seconds, claim.keys)
            raise DeadlineExceeded(
                f"the request ran out of time ({self.hold_seconds:g}s) while working on "
                f"{', '.join(claim.keys)}"
            ) from exc
        finally:
            if claim.keep:
                log.warning(
                    "kept the claims on %s until they expire: %s ended with a write in flight",
                    list(claim.keys),
                    claim.purpose,
                )
            else:
                await self._release(claim.documents, claim.holder)

    async def _renew(self, claim: Claim) -> None:
        """Extend the leases of ``claim``'s keys to a full lease from now."""
        expires = self.clock() + self.lease
        await self._collection.update_many(
            {"_id": {"$in": list(claim.documents)}, "holder": claim.holder},
            {"$set": {"expiresAt": expires}},
        )

    async def _keep_renewed(self, claim: Claim, start: Callable[[float], None]) -> None:
        """Renew an open hold's leases every half hold limit until it is started; if a renewal
        fails, stop the work when a hold begun at the last renewal would have ended (its leases
        still outlast that, and what is in flight then)."""
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        while True:
            await asyncio.sleep(self.hold_seconds / 2)
            try:
                await self._renew(claim)
            except DatabaseUnavailable as exc:
                log.warning("could not renew the claims on %s (%s)", list(claim.keys), exc)
                start(renewed)
                return
            renewed = loop.time()

    async def _acquire(self, key: str, holder: str, purpose: str, deadline: float) -> bool:
        async def take() -> bool:
            now = self.clock()
            document = {
                "_id": key,
                "holder": holder,
                "purpose": purpose,
                "expiresAt": now + self.lease,
            }
            try:
                await self._collection.insert_one(document)
                return True
            except Conflict:
                pass
            expired = {"_id": key, "expiresAt": {"$lte": now}}
            stale = await self._collection.find_one_and_update(
                expired, {"$set": {k: v for k, v in document.items() if k != "_id"}}
            )
            if stale is not None:
                log.warning("took over the expired claim on %s (%s)", key, purpose)
            return stale is not None

        return await _poll(take, deadline) and await self._sharers_gone(key, holder, deadline)

    async def _sharers_gone(self, key: str, holder: str, deadline: float) -> bool:
        """With ``key``'s exclusive claim taken, wait until no shared holder has it; past the
        deadline, give the claim up. (Nothing to wait for where there are no shared holds.)"""
        if not self.shared:
            return True

        async def none_left() -> bool:
            live = {"shared": key, "expiresAt": {"$gt": self.clock()}}
            return await self._collection.count(live) == 0

        try:
            gone = await _poll(none_left, deadline)
        except BaseException:
            await self._release([key], holder)
            raise
        if not gone:
            await self._release([key], holder)
        return gone

    async def _acquire_shared(self, key: str, holder: str, purpose: str, deadline: float) -> bool:
        mine = _shared_id(key, holder)

        async def share() -> bool:
            now = self.clock()
            document = {
                "_id": mine,
                "shared": key,
                "holder": holder,
                "purpose": purpose,
                "expiresAt": now + self.lease,
            }
            try:
                await self._write_shared(document)  # first write, then look
                exclusive = await self._collection.find_one({"_id": key, "expiresAt": {"$gt": now}})
            except BaseException:
                await self._release([mine], holder)
                raise
            if exclusive is not None:
                await self._release([mine], holder)  # withdrawn while the exclusive holder works
            return exclusive is None

        return await _poll(share, deadline)

    async def _write_shared(self, document: dict[str, object]) -> None:
        try:
            await self._collection.insert_one(document)
        except Conflict:  # ours, left by a withdrawal that failed: it is renewed instead
            await self._collection.update_many(
                {"_id": document["_id"], "holder": document["holder"]},
                {"$set": {"purpose": document["purpose"], "expiresAt": document["expiresAt"]}},
            )

    async def _release(self, keys: Iterable[str], holder: str) -> None:
        """Best effort: a claim that cannot be released now expires with its lease."""
        wanted = list(keys)
        if not wanted:
            return
        try:
            await self._collection.delete_many({"_id": {"$in": wanted}, "holder": holder})
        except (DatabaseUnavailable, Conflict) as exc:
            log.warning("could not release the claims on %s (%s); they will expire", wanted, exc)

    async def purge_expired(self) -> int:
        """Forget claims whose lease ran out (their holders are gone)."""
        return await self._collection.delete_many({"expiresAt": {"$lte": self.clock()}})
