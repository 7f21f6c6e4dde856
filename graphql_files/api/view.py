"""The ``/graphql`` endpoint: strawberry's ASGI view plus what real clients expect of HTTP.

- GraphQL-over-HTTP media types: ``application/graphql-response+json`` when the client accepts
  it (a request error, one that never reached execution, is then a 400 with no ``data``), and
  ``application/json`` otherwise (always 200, as legacy clients expect); neither acceptable: 406.
- Errors strawberry raises as plain-text HTTP exceptions (bad JSON, unsupported content type)
  are answered as GraphQL errors with ``BAD_USER_INPUT``.
- Multipart (upload) requests must carry a preflight-forcing header; websockets authenticate
  from ``connection_init`` and close when their user token expires.

(The request body limit wraps this view: ``body_limit.BodyLimit``.)
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from starlette.websockets import WebSocketDisconnected as StarletteWebSocketDisconnected
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, process_result
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from ..errors import INTERNAL_SERVER_ERROR
from ..settings import LOCALHOST_ORIGINS, Settings
from .body_limit import JSON, MULTIPART, error_response
from .closing import close_later
from .context import Context, authenticate
from .errors import BAD_USER_INPUT, shape
from .uploads import FileTooLarge, UploadRequestAdapter, close_uploads

log = logging.getLogger(__name__)

GRAPHQL_RESPONSE = "application/graphql-response+json"
EXPIRY_KEY = "graphql_files.token_expiry"  # the task that closes a websocket at token expiry
REQUEST_ERROR_KEY = "graphql_files.request_error"  # per request: in the scope, not in state
SIMPLE_CONTENT_TYPES = (MULTIPART, "application/x-www-form-urlencoded", "text/plain")
PREFLIGHT_HEADERS = ("apollo-require-preflight", "x-apollo-operation-name")
PREFLIGHT_MESSAGE = (
    "this request must carry the header 'apollo-require-preflight: true' (or "
    "'x-apollo-operation-name'), which makes browsers send a CORS preflight so other sites "
    "cannot submit it"
)


def negotiate(accept: str | None) -> str | None:
    """The response media type for an Accept header; None when we can offer neither."""
    if not accept:
        return JSON
    offered: dict[str, float] = {}
    for part in accept.split(","):
        media_type, *params = (p.strip().lower() for p in part.split(";"))
        quality = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    quality = float(param[2:])
                except ValueError:
                    quality = 0.0
        offered[media_type] = quality

    def accepted(media_type: str) -> bool:
        return offered.get(media_type, 0.0) > 0

    if accepted(GRAPHQL_RESPONSE):
        return GRAPHQL_RESPONSE
    if accepted(JSON) or accepted("*/*") or accepted("application/*"):
        return JSON
    return None


def is_request_error(result: ExecutionResult) -> bool:
    """Parse, validation and variable errors: nothing executed, so no ``data`` at all."""
    errors = result.errors or []
    return result.data is None and bool(errors) and all(e.path is None for e in errors)


def needs_preflight_header(request: Request) -> bool:
    """A POST a browser could send cross-site without a CORS preflight (CVE-2024-47082)."""
    if request.method != "POST":
        return False
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in SIMPLE_CONTENT_TYPES:
        return False
    return not any(request.headers.get(h, "").strip() for h in PREFLIGHT_HEADERS)


class TransportWsHandler(BaseGraphQLTransportWSHandler[Context, None]):
    async def handle_task_exception(self, error: Exception) -> None:
        # An operation still sending when its connection closed (a subscriber cut off for being
        # too slow, a client gone) is not a server error.
        if isinstance(error, StarletteWebSocketDisconnected | WebSocketDisconnected):
            log.debug("an operation ended with its connection: %s", error)
            return
        await super().handle_task_exception(error)


class GraphQLView(GraphQL[Context, None]):
    request_adapter_class = UploadRequestAdapter
    graphql_transport_ws_handler_class = TransportWsHandler

    def __init__(self, schema: Any, settings: Settings) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql",
            keep_alive=True,
            keep_alive_interval=15,
            connection_init_wait_timeout=timedelta(seconds=10),
            multipart_uploads_enabled=True,
            allowed_origins=settings.cors_origins,
        )
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            try:
                await super().__call__(scope, receive, send)
            finally:  # the connection is over: its expiry closer has nothing left to close
                expiry = scope.get(EXPIRY_KEY)
                if expiry is not None:
                    expiry.cancel()
            return
        request = Request(scope, receive)
        try:
            response = await self._respond(request)
        finally:
            await close_uploads(request)
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        media_type = negotiate(request.headers.get("accept"))
        browser = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if media_type is None and not browser:
            return error_response(406, f"Accept {GRAPHQL_RESPONSE} or {JSON}", BAD_USER_INPUT)
        media_type = media_type or JSON
        if needs_preflight_header(request):
            return error_response(400, PREFLIGHT_MESSAGE, BAD_USER_INPUT, media_type)
        try:
            response = await self.run(request)
        except HTTPException as exc:
            code = BAD_USER_INPUT if exc.status_code < 500 else INTERNAL_SERVER_ERROR
            return error_response(exc.status_code, exc.reason, code, media_type)
        except FileTooLarge as exc:
            return error_response(413, str(exc), "PAYLOAD_TOO_LARGE", media_type)
        if response.headers.get("content-type") == JSON:
            response.headers["content-type"] = media_type
            if media_type == GRAPHQL_RESPONSE and request.scope.get(REQUEST_ERROR_KEY):
                response.status_code = 400
        return response

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        return await Context.build(request, response)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Authenticate a websocket from its ``connection_init`` payload (``x-api-key``,
        ``Authorization``), falling back to the handshake's headers; close it when its user
        token expires."""
        params = {
            str(k).lower(): v
            for k, v in (context.connection_params or {}).items()
            if isinstance(v, str)
        }
        headers = {**{k.lower(): v for k, v in context.request.headers.items()}, **params}
        access = await authenticate(context.services, headers)
        if access.error is not None:
            raise ConnectionRejectionError(
                {"message": access.error.message, "extensions": access.error.extensions}
            )
        context.access = access
        user = access.principal.user
        if (
            user is not None
            and user.expires_at is not None
            and isinstance(context.response, WebSocket)
        ):
            delay = max(0.0, (user.expires_at - datetime.now(UTC)).total_seconds())
            context.response.scope[EXPIRY_KEY] = close_later(
                context.response, 4401, "token expired", delay=delay
            )
        return cast(UnsetType, UNSET)  # acknowledge with no payload

    def is_websocket_origin_allowed(self, request: WebSocket, origin: str) -> bool:
        if self.settings.cors_origins:
            return super().is_websocket_origin_allowed(request, origin)
        return re.fullmatch(LOCALHOST_ORIGINS, origin) is not None

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        if result.errors:  # again here: strawberry reports some parse errors outside extensions
            result.errors = [shape(e) for e in result.errors]
        processed = process_result(result)
        request.scope[REQUEST_ERROR_KEY] = is_request_error(result)
        if request.scope[REQUEST_ERROR_KEY]:
            processed.pop("data", None)
        return processed
