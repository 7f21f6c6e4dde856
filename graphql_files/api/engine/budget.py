"""The run-time budget of per-file work: one per execution (an HTTP request's operation, a
websocket operation, each event of a subscription).

The number of files a listing touches is known only from the data (an album may name a
thousand images), so ``FileRef.url`` and ``FileRef.properties`` spend from the budget as they
run; past ``MAX_FILE_WORK`` units the field fails with ``BAD_USER_INPUT`` and the view answers
the whole request with that one error. The budget also says when to yield to the event loop
(``yielding``): after ``TURN_SECONDS`` of work, so a large (allowed) response never holds up
other requests for long, and a common one (a page of a thousand URLs) is not slowed down by
turns it does not need.

The budget is started by graphql-core's executor (``execution_context_class``, its public hook;
strawberry passes it through) and kept in a context variable: set in the task that executes the
operation, it is seen by every resolver, including those graphql-core runs in child tasks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Hashable
from contextvars import ContextVar
from typing import Any, TypeVar

from strawberry.types import ExecutionResult

from ...errors import BudgetExceeded
from .executor import LeanExecutor

T = TypeVar("T")
TURN_SECONDS = 0.010  # of work before other requests get a turn of the event loop


class Budget:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.spent = 0
        # per-file work shared by the fields of this execution: signers per URL options
        self.shared: dict[Hashable, Any] = {}
        self.exceeded: BudgetExceeded | None = None
        self._turn_ends = time.monotonic() + TURN_SECONDS
        self._turns: asyncio.Lock | None = None  # deferred records go one per loop turn

    def spend(self, units: int) -> None:
        """Count ``units`` of work; ``BudgetExceeded`` past the limit."""
        self.spent += units
        if self.spent > self.limit:
            self.exceeded = self.exceeded or BudgetExceeded(self.limit)
            raise self.exceeded

    def due_to_yield(self) -> bool:
        """True once this execution has worked ``TURN_SECONDS`` since the event loop last had
        a turn: then every record completed in this stretch waits for the next turn."""
        return time.monotonic() >= self._turn_ends

    async def next_turn(self) -> None:
        """Wait for a turn of the event loop of one's own when one is still due: deferred
        records resume one at a time, so I/O is polled between two of them whenever
        ``TURN_SECONDS`` of work went by (waking several at once would run them back to back
        in one turn)."""
        if self._turns is None:
            self._turns = asyncio.Lock()
        async with self._turns:
            if self.due_to_yield():
                await asyncio.sleep(0)
                self._turn_ends = time.monotonic() + TURN_SECONDS


_CURRENT: ContextVar[Budget | None] = ContextVar("graphql_files_budget", default=None)


def current_budget() -> Budget:
    """The budget of the operation being executed."""
    budget = _CURRENT.get()
    if budget is None:  # pragma: no cover - every execution starts one
        raise RuntimeError("no execution budget: build the schema with budgeted_execution()")
    return budget


def yielding(value: T) -> T | Awaitable[T]:
    """What a record's file field returns: ``value``, or, once enough work was done since the
    last yield, an awaitable of it. graphql-core completes a list synchronously and awaits only
    at the end, so yielding inside ``FileRef.url`` would come after all the work; returned from
    the parent field, the awaitable defers that record's files to a later turn of the event
    loop, and other requests are served in between."""
    budget = current_budget()
    if not budget.due_to_yield():
        return value

    async def later() -> T:
        await budget.next_turn()
        return value

    return later()


def end_over_budget(result: ExecutionResult) -> None:
    """A request that ran over its budget ends with that one error and no data (rather than
    one error for every file past the limit)."""
    for error in result.errors or ():
        if isinstance(error.original_error, BudgetExceeded):
            result.data = None
            result.errors = [error]
            return


def start_budget(limit: int) -> None:
    """Give the execution that starts now (in this task) a budget of ``limit`` units."""
    _CURRENT.set(Budget(limit))


def budgeted_execution(limit: int) -> type[LeanExecutor]:
    """An execution context class starting a budget of ``limit`` units for every execution."""

    class BudgetedExecution(LeanExecutor):
        @classmethod
        def begin(cls) -> None:
            start_budget(limit)

        def build_per_event_executor(self, payload: Any) -> Any:
            executor = super().build_per_event_executor(payload)
            start_budget(limit)  # each subscription event is an execution of its own
            return executor

    return BudgetedExecution
