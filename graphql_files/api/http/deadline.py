"""The server-side deadline of one HTTP request's execution (``REQUEST_TIMEOUT``).

Past it, the work is cancelled and the client gets ``DEADLINE_EXCEEDED``. The deadline bounds how
long a request can hold a claim on an object (see ``claims``), which is what lets a claim left
by a dead process expire safely. The clock restarts once a multipart body has been read: how
long a client takes to send its files is bounded by the body's idle timeout, not by this.
"""

from __future__ import annotations

import asyncio

from starlette.types import Scope

_KEY = "graphql_files.deadline"  # per request: in the scope


def request_deadline(scope: Scope, seconds: float, *, started: bool = True) -> asyncio.Timeout:
    """``async with`` it: the block runs within ``seconds`` (from now, or, when not
    ``started``, from ``restart_deadline``); ``TimeoutError`` when they run out."""
    timeout = asyncio.timeout(seconds if started else None)
    scope[_KEY] = (timeout, seconds)
    return timeout


def restart_deadline(scope: Scope) -> None:
    """Give the execution its whole deadline from now (the body has just arrived)."""
    entry = scope.get(_KEY)
    if entry is not None:
        timeout, seconds = entry
        timeout.reschedule(asyncio.get_running_loop().time() + seconds)
