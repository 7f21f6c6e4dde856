"""The per-request (or per-websocket-connection) context resolvers receive.

It knows no transport: ``request`` and ``response`` are the connection's own objects (a
Starlette request or websocket), opaque here; ``api.connection`` builds a context for each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeAlias

import strawberry
from strawberry.dataloader import DataLoader

from ...domain.feed import Subscription
from ...domain.objects import ObjectInfo
from ...errors import SlowConsumer
from ...services.auth import Access
from ...services.wiring import Services


@dataclass
class Context:
    """Built once per HTTP request or websocket connection (``connection.build_context``).

    Not frozen: strawberry's websocket handlers assign ``connection_params`` when the client's
    ``connection_init`` arrives.
    """

    request: Any  # the connection: a Starlette Request or WebSocket
    response: Any
    services: Services
    access: Access  # who is calling; replaced on a websocket once connection_init arrives
    connection_params: dict[str, Any] | None = None
    # called once a subscription is registered with the broker (a shared subscription's members
    # wait for it; AppSync's start_ack is sent then)
    on_subscribed: Callable[[Subscription], None] | None = None
    # called when that subscription is cut off for falling behind (a websocket's closes it)
    on_cut_off: Callable[[SlowConsumer], None] | None = None
    # whether ``properties`` may be cached: not on a websocket, whose context lives as long
    # as the connection
    per_request: bool = True

    @cached_property
    def properties(self) -> DataLoader[str, ObjectInfo | None]:
        """``FileRef.properties``, batched per request (made on first use: most requests ask
        for none); a websocket context lives as long as the connection, so there nothing is
        cached across events."""
        return DataLoader(load_fn=self._load_properties, cache=self.per_request)

    async def _load_properties(
        self, paths: list[str]
    ) -> Sequence[ObjectInfo | BaseException | None]:
        """Through storage, as the caller now is (a websocket's access changes at init)."""
        return await self.services.storage.properties_many(self.access, paths)


Info: TypeAlias = strawberry.Info[Context, None]
