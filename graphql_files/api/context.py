"""The per-request (or per-websocket-connection) context resolvers receive."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import strawberry
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from ..services import Services


@dataclass
class Context:
    """Built once per HTTP request or websocket connection by ``GraphQLView.get_context``.

    Not frozen: strawberry's websocket handlers assign ``connection_params`` when the client's
    ``connection_init`` arrives.
    """

    request: Request | WebSocket
    response: Response | WebSocket
    services: Services
    connection_params: dict[str, Any] | None = None


Info: TypeAlias = strawberry.Info[Context, None]
