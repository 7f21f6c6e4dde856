"""What every connection needs, whatever its protocol: its headers, the services, the caller,
the context its resolvers get, and closing a websocket from outside the task that serves it.

The transport rooms (``http``, ``ws``) build on this; the ``schema`` below knows none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, Protocol

from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket, WebSocketState

from ..errors import DomainError, SlowConsumer
from ..services.auth import Access
from ..services.wiring import Services
from ..settings import Settings
from .schema.context import Context

HEADERS_KEY = "graphql_files.headers"  # per request: in the scope
CUT_OFF_CODE = 4008  # a subscriber that fell too far behind
# A binary frame where a text one is due closes with 4400 and this reason, on every protocol.
NOT_TEXT = "WebSocket message type must be text"


class Endpoint(Protocol):
    """What the websocket protocols need of the GraphQL endpoint that serves them."""

    settings: Settings

    @property
    def schema(self) -> Any: ...

    def is_websocket_origin_allowed(self, request: WebSocket, origin: str) -> bool: ...

    def encode_json(self, data: object) -> str | bytes: ...

    async def on_ws_connect(self, context: Context) -> Any: ...


def headers_of(connection: HTTPConnection) -> dict[str, str]:
    """The request's headers as a plain dict (the first of repeated names, as Starlette's
    ``headers.get`` answers), made once per request: the view and the context read several."""
    cached: dict[str, str] | None = connection.scope.get(HEADERS_KEY)
    if cached is None:
        cached = {}
        for name, value in connection.scope["headers"]:
            cached.setdefault(name.decode("latin-1"), value.decode("latin-1"))
        connection.scope[HEADERS_KEY] = cached
    return cached


def services_of(connection: HTTPConnection) -> Services:
    """The services the app's lifespan opened.

    From the app's state rather than the request's lifespan state: a test or a server that runs
    the lifespan without passing its state into each request's scope still works.
    """
    services: Services = connection.app.state.services
    return services


async def authenticate(services: Services, headers: Mapping[str, str]) -> Access:
    """The caller's access; bad credentials become an access whose every check refuses."""
    try:
        principal = await services.authenticator.principal(headers)
    except DomainError as exc:  # bad credentials, or MongoDB down while looking up a key
        return Access(services.policy, error=exc)
    return Access(services.policy, principal)


async def build_context(request: HTTPConnection, response: Any) -> Context:
    """The context of an HTTP request (its caller from its headers), or of a websocket (a
    guest until ``connection_init``, which both protocols require before any operation; a
    subscriber of it cut off for falling behind closes it)."""
    services = services_of(request)
    if isinstance(request, WebSocket):
        return Context(
            request=request,
            response=response,
            services=services,
            access=Access(services.policy),
            on_cut_off=cut_off_closer(request),
            per_request=False,
        )
    access = await authenticate(services, headers_of(request))
    return Context(request=request, response=response, services=services, access=access)


def cut_off_closer(websocket: WebSocket) -> Any:
    """Close ``websocket`` with 4008, naming the last cursor its subscriber was sent."""

    def cut_off(error: SlowConsumer) -> None:
        cursor = error.extra.get("lastCursor") or "a re-list"
        close_later(websocket, CUT_OFF_CODE, f"too slow: resume after {cursor}")

    return cut_off


# --- closing a websocket from outside the task that serves it --------------------------------

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
