"""One websocket connection, whatever its protocol (graphql-transport-ws, graphql-ws, AppSync's):
who is calling (authenticated from its credentials, once per set of credentials), how many
operations it may run at once (``MAX_SUBSCRIPTIONS_PER_CONNECTION``), and its closing, with
4401, when a user token it was admitted with expires. Each protocol answers in its own words;
what it decides comes from here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime

from starlette.websockets import WebSocket

from ...services.auth import Access
from ...services.wiring import Services
from ..connection import authenticate, close_later

SESSION_KEY = "graphql_files.ws_session"  # in the websocket's scope
TOKEN_EXPIRED = (4401, "token expired")


class Session:
    """The shared state of one websocket (``Session.of``)."""

    def __init__(self, websocket: WebSocket, cap: int) -> None:
        self.websocket = websocket
        self.cap = cap
        self._closers: list[asyncio.Task[None]] = []

    @classmethod
    def of(cls, websocket: WebSocket, cap: int) -> Session:
        """The websocket's session, made on first use."""
        session: Session | None = websocket.scope.get(SESSION_KEY)
        if session is None:
            session = websocket.scope[SESSION_KEY] = cls(websocket, cap)
        return session

    def full(self, running: int) -> bool:
        """Whether ``running`` operations leave no room for another."""
        return running >= self.cap

    def over_cap(self) -> str:
        return (
            f"this connection already has {self.cap} subscriptions (or other operations) "
            "running, the most one may (MAX_SUBSCRIPTIONS_PER_CONNECTION)"
        )

    async def admit(self, services: Services, headers: Mapping[str, str]) -> Access:
        """The caller these credentials make (refused ones: an access carrying the error);
        the socket is closed when a user token among them expires."""
        access = await authenticate(services, headers)
        user = access.principal.user if access.error is None else None
        if user is not None and user.expires_at is not None:
            delay = max(0.0, (user.expires_at - datetime.now(UTC)).total_seconds())
            self._closers.append(close_later(self.websocket, *TOKEN_EXPIRED, delay=delay))
        return access

    def end(self) -> None:
        """The connection is over: nothing left to close."""
        for closer in self._closers:
            closer.cancel()
        self._closers.clear()
