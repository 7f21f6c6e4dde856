"""Work a request starts but does not wait for: deleting the files a workflow unlinked.

A workflow answers as soon as its record write has committed; deleting what the write unlinked
(``deletePrevious``, ``deleteFile``, ``deleteFiles``) runs here afterwards, so the client does not
wait for S3. The order the consistency rules need still holds: the work is started only after
the write that stopped naming the files. A failure is logged and leaves an orphan, which the
sweeper removes; a record never points at a missing file either way.

The services own the tasks: ``drain()`` waits for those pending (tests use it to see a
deletion through, deterministically), and ``close()``, on shutdown, gives them a moment to
finish, then cancels the rest (a cancelled deletion keeps its claim until the lease expires,
see ``claims``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)

CLOSE_GRACE_SECONDS = 10.0


class Background:
    """Tasks started after an answer, awaited or cancelled when the services close."""

    def __init__(self, *, close_grace: float = CLOSE_GRACE_SECONDS) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._close_grace = close_grace
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def start(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        """Run ``work`` in the background; once the services are closing, drop it (logged: what
        it would have deleted is an orphan for the sweeper)."""
        if self._closed:
            work.close()
            log.warning("shutting down: left %s undone (the sweeper will see to it)", name)
            return
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            log.warning("%s was cancelled; the sweeper will remove what it left", task.get_name())
            return
        failure = task.exception()
        if failure is not None:
            log.error("%s failed", task.get_name(), exc_info=failure)

    async def drain(self) -> None:
        """Wait until no task is pending (those started meanwhile included)."""
        while self._tasks:
            await asyncio.wait(tuple(self._tasks))

    async def close(self) -> None:
        """Stop taking work; wait for what is pending up to the grace period, then cancel it."""
        self._closed = True
        if not self._tasks:
            return
        _, late = await asyncio.wait(tuple(self._tasks), timeout=self._close_grace)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)
