"""The ``/graphql`` endpoint: strawberry's ASGI view plus what real clients expect of HTTP.

- GraphQL-over-HTTP media types: ``application/graphql-response+json`` when the client accepts
  it (a request error, one that never reached execution, is then a 400 with no ``data``), and
  ``application/json`` otherwise (always 200, as legacy clients expect); neither acceptable: 406.
- Errors strawberry raises as plain-text HTTP exceptions (bad JSON, unsupported content type)
  are answered as GraphQL errors with ``BAD_USER_INPUT``.
- The request body is limited while it streams in (``BodyLimit``), answered with a GraphQL error
  coded ``PAYLOAD_TOO_LARGE``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, process_result
from strawberry.types import ExecutionResult

from ..errors import INTERNAL_SERVER_ERROR
from ..services import Services
from ..settings import Settings
from .context import Context
from .errors import BAD_USER_INPUT, shape

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"


def error_response(status: int, message: str, code: str, media_type: str = JSON) -> Response:
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    return JSONResponse(body, status_code=status, media_type=media_type)


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


class GraphQLView(GraphQL[Context, None]):
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
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        media_type = negotiate(request.headers.get("accept"))
        browser = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if media_type is None and not browser:
            response = error_response(406, f"Accept {GRAPHQL_RESPONSE} or {JSON}", BAD_USER_INPUT)
        else:
            try:
                response = await self.run(request)
            except HTTPException as exc:
                code = BAD_USER_INPUT if exc.status_code < 500 else INTERNAL_SERVER_ERROR
                response = error_response(exc.status_code, exc.reason, code, media_type or JSON)
            else:
                if response.media_type == JSON or response.headers.get("content-type") == JSON:
                    response.headers["content-type"] = media_type or JSON
                    if media_type == GRAPHQL_RESPONSE and getattr(
                        request.state, "request_error", False
                    ):
                        response.status_code = 400
        await response(scope, receive, send)

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        services: Services = request.state.services
        return Context(request=request, response=response, services=services)

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        if result.errors:  # again here: strawberry reports some parse errors outside extensions
            result.errors = [shape(e) for e in result.errors]
        processed = process_result(result)
        request.state.request_error = is_request_error(result)
        if request.state.request_error:
            processed.pop("data", None)
        return processed


class BodyLimit:
    """Refuse HTTP request bodies over ``limit`` bytes, counted as they stream in.

    Starlette's ``max_body_size`` answers in plain text; GraphQL clients expect a GraphQL error.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, f"request body is larger than {self.limit} bytes", "PAYLOAD_TOO_LARGE"
        )
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass
