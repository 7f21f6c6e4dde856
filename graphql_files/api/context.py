"""The per-request (or per-websocket-connection) context resolvers receive."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeAlias

import strawberry
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.dataloader import DataLoader

from ..domain.feed import Subscription
from ..domain.objects import ObjectInfo
from ..errors import DomainError, SlowConsumer
from ..services.auth import Access
from ..services.wiring import Services


@dataclass
class Context:
    """Built once per HTTP request or websocket connection by ``GraphQLView.get_context``.

    Not frozen: strawberry's websocket handlers assign ``connection_params`` when the client's
    ``connection_init`` arrives.
    """

    request: Request | WebSocket
    response: Response | WebSocket
    services: Services
    access: Access  # who is calling; replaced on a websocket once connection_init arrives
    connection_params: dict[str, Any] | None = None
    # called once a subscription is registered with the broker (a shared subscription's members
    # wait for it; AppSync's start_ack is sent then)
    on_subscribed: Callable[[Subscription], None] | None = None
    # called when that subscription is cut off for falling behind (default: close the websocket)
    on_cut_off: Callable[[SlowConsumer], None] | None = None

    @cached_property
    def properties(self) -> DataLoader[str, ObjectInfo | None]:
        """``FileRef.properties``, batched per request (made on first use: most requests ask
        for none); a websocket context lives as long as the connection, so there nothing is
        cached across events."""
        cache = not isinstance(self.request, WebSocket)
        return DataLoader(load_fn=self._load_properties, cache=cache)

    async def _load_properties(
        self, paths: list[str]
    ) -> Sequence[ObjectInfo | BaseException | None]:
        """Through storage, as the caller now is (a websocket's access changes at init)."""
        return await self.services.storage.properties_many(self.access, paths)

    @classmethod
    async def build(cls, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        services = services_of(request)
        websocket = isinstance(request, WebSocket)
        # A websocket authenticates once, at connection_init (``GraphQLView.on_ws_connect``),
        # which both protocols require before any operation: until then it is a guest.
        if websocket:
            access = Access(services.policy)
        else:
            access = await authenticate(services, headers_of(request))
        return cls(request=request, response=response, services=services, access=access)


HEADERS_KEY = "graphql_files.headers"  # per request: in the scope


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


Info: TypeAlias = strawberry.Info[Context, None]
