"""Closing a websocket from outside the task that serves it (a cut-off subscriber, an expired
token), without leaving the task unreferenced or raising when the socket is already gone."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.websockets import WebSocket, WebSocketState

_pending: set[asyncio.Task[None]] = set()


def close_later(
    websocket: WebSocket, code: int, reason: str, *, delay: float = 0.0
) -> asyncio.Task[None]:
    """Close ``websocket`` with ``code`` and ``reason`` after ``delay`` seconds."""

    async def close() -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        if websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, OSError):
                await websocket.close(code=code, reason=reason[:120])  # reasons are short

    task = asyncio.create_task(close())
    _pending.add(task)  # keep a reference until it is done
    task.add_done_callback(_pending.discard)
    return task


# A binary frame where a text one is due closes with 4400 and this reason, on every protocol.
NOT_TEXT = "WebSocket message type must be text"
