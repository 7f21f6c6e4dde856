"""The ``/graphql`` endpoint: strawberry's ASGI view plus what real clients expect of HTTP.

- GraphQL-over-HTTP media types: ``application/graphql-response+json`` when the client accepts
  it (a request error, one that never reached execution, is then a 400 with no ``data``), and
  ``application/json`` otherwise (always 200, as legacy clients expect); neither acceptable: 406.
- Errors strawberry raises as plain-text HTTP exceptions (bad JSON, unsupported content type)
  are answered as GraphQL errors with ``BAD_USER_INPUT``.
- Hostile input is refused before strawberry indexes into it: a body that is not a JSON object,
  JSON nested deeper than ``MAX_JSON_DEPTH`` (bodies, GET variables, multipart operations,
  websocket frames), a multipart ``map`` that does not fit, a subscription over HTTP.
- Multipart (upload) requests must carry a preflight-forcing header; websockets authenticate
  from ``connection_init`` and close when their user token expires. A malformed websocket
  message closes the socket with 4400 and a reason, on both protocols; refused credentials
  close it with 4403.

(The request body limit wraps this view: ``body_limit.BodyLimit``.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLFormattedError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from starlette.websockets import WebSocketDisconnected as StarletteWebSocketDisconnected
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, process_result
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.http.parse_content_type import parse_content_type
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    Message as TransportMessage,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    SubscribeMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage,
    OperationMessage,
    StartMessage,
)
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET, UnsetType

from ..errors import INTERNAL_SERVER_ERROR, DeadlineExceeded, DomainError, Unauthenticated
from ..settings import LOCALHOST_ORIGINS, Settings
from .body_limit import JSON, MULTIPART, error_response, refused_before_body
from .budget import end_over_budget
from .closing import close_later
from .context import Context, authenticate, services_of
from .deadline import request_deadline
from .error_shaping import BAD_USER_INPUT, shape
from .uploads import FileTooLarge, UploadRequestAdapter, close_uploads, place_files

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
NOT_AN_OBJECT = (
    'the request body must be a JSON object such as {"query": "...", "variables": {...}} '
    "(batching is not enabled)"
)
BAD_JSON = "Unable to parse the request's JSON"
SUBSCRIPTIONS_NEED_A_WEBSOCKET = (
    "subscriptions are served over a websocket only (graphql-transport-ws or graphql-ws at "
    "/graphql), not over HTTP"
)


JsonContainer = dict[str, Any] | list[Any]


class JsonTooDeep(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels is refused (MAX_JSON_DEPTH)")


def nests_deeper(value: object, limit: int) -> bool:
    """Whether objects and arrays in ``value`` nest more than ``limit`` deep. A loop, not
    recursion: deep nesting is what this guards against."""
    stack: list[tuple[JsonContainer, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


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


def frame_problem(message: object, operation_types: tuple[str, str]) -> str | None:
    """Why a websocket message cannot be handled, or None. strawberry's handlers index into
    messages unguarded: a non-object, or an operation message without a string id, would
    drop the socket with no close code."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "a message must be a JSON object with a string 'type'"
    if message["type"] in operation_types and not isinstance(message.get("id"), str):
        return "an operation message needs a string 'id'"
    return None


def payload_problem(payload: object) -> str | None:
    """Why an operation's payload (``subscribe``, ``start``) is not one, or None."""
    if not isinstance(payload, dict):
        return "an operation's payload must be a JSON object"
    if not isinstance(payload.get("query"), str):
        return "an operation's payload needs a string 'query'"
    for name, kind in (("variables", dict), ("extensions", dict), ("operationName", str)):
        if not isinstance(payload.get(name), kind | None):
            return f"an operation's '{name}' must be {'an object' if kind is dict else 'a string'}"
    return None


class WebSocketAdapter(ASGIWebSocketAdapter):
    """A frame nested deeper than ``MAX_JSON_DEPTH`` closes the socket with 4400 and a reason
    (strawberry would let the error escape and drop the socket with no close code)."""

    async def iter_json(
        self, *, ignore_parsing_errors: bool = False
    ) -> AsyncGenerator[object, None]:
        try:
            async for message in super().iter_json(ignore_parsing_errors=ignore_parsing_errors):
                yield message
        except JsonTooDeep as exc:
            await self.close(4400, str(exc))


def subscription_cap(view: object) -> int:
    """``MAX_SUBSCRIPTIONS_PER_CONNECTION``, from the view that runs a websocket handler."""
    return cast("GraphQLView", view).settings.max_subscriptions_per_connection


def over_cap_error(cap: int) -> GraphQLFormattedError:
    return {
        "message": f"this connection already has {cap} subscriptions (or other operations) "
        "running, the most one connection may have (MAX_SUBSCRIPTIONS_PER_CONNECTION): stop "
        "one, or open another connection",
        "extensions": {"code": BAD_USER_INPUT},
    }


class TransportWsHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """strawberry's, with malformed messages closed with 4400 and the operations one
    connection runs capped: one over the cap gets an ``error`` for its id (a GraphQL error with
    ``BAD_USER_INPUT``) and the socket stays. graphql-ws clients fail just that operation on an
    ``error``, but treat a 4400 close as fatal and end every subscription on the socket."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cap = subscription_cap(self.view)
        self.max_subscriptions_per_connection = self.cap  # strawberry's own check never fires

    async def handle_message(self, message: TransportMessage) -> None:
        problem = frame_problem(message, ("subscribe", "complete"))
        if problem is None and message["type"] == "subscribe":
            problem = payload_problem(message.get("payload"))
        if problem is not None:  # the protocol's answer to a malformed message
            await self.handle_invalid_message(problem)
            return
        await super().handle_message(message)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        operation_id = message["id"]
        if (
            self.connection_acknowledged  # otherwise strawberry closes with 4401
            and operation_id not in self.operations  # strawberry closes with 4409
            and len(self.operations) >= self.cap
        ):
            error = over_cap_error(self.cap)
            await self.send_message({"type": "error", "id": operation_id, "payload": [error]})
            return
        await super().handle_subscribe(message)

    async def handle_task_exception(self, error: Exception) -> None:
        # An operation still sending when its connection closed (a subscriber cut off for being
        # too slow, a client gone) is not a server error.
        if isinstance(error, StarletteWebSocketDisconnected | WebSocketDisconnected):
            log.debug("an operation ended with its connection: %s", error)
            return
        await super().handle_task_exception(error)


class LegacyWsHandler(BaseGraphQLWSHandler[Context, None]):
    """The legacy ``graphql-ws`` protocol, answering bad input instead of failing on it: a
    malformed message closes with 4400, a ``start`` whose payload is not an operation or that
    would pass ``MAX_SUBSCRIPTIONS_PER_CONNECTION`` gets an ``error`` for its id (the socket
    stays open), refused credentials close with 4403."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cap = subscription_cap(self.view)
        self.max_subscriptions_per_connection = self.cap  # strawberry's own check never fires

    async def handle_message(self, message: OperationMessage) -> None:
        problem = frame_problem(message, ("start", "stop"))
        if problem is not None:
            await self.websocket.close(4400, problem)
            return
        await super().handle_message(message)

    async def handle_start(self, message: StartMessage) -> None:
        error: GraphQLFormattedError | None = None
        if self.connection_acknowledged:  # otherwise strawberry closes with 4401
            problem = payload_problem(message.get("payload"))
            if problem is not None:
                error = {"message": problem, "extensions": {"code": BAD_USER_INPUT}}
            elif self._full(message["id"]):
                error = over_cap_error(self.cap)
        if error is None:
            await super().handle_start(message)
            return
        await self.websocket.send_json({"type": "error", "id": message["id"], "payload": [error]})

    def _full(self, operation_id: str) -> bool:
        """A ``start`` with a running operation's id replaces it: it takes no more room."""
        return len(self.tasks) - (operation_id in self.tasks) >= self.cap

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        """strawberry's, but a refusal closes with 4403 as on graphql-transport-ws (strawberry
        closes with 1011, which says the server failed)."""
        payload = message.get("payload")
        if payload is not None and not isinstance(payload, dict):
            await self.send_message({"type": "connection_error"})
            await self.websocket.close(4400, "the connection_init payload must be an object")
            return
        self.context.connection_params = payload
        try:
            await self.view.on_ws_connect(self.context)  # acknowledges with no payload
        except ConnectionRejectionError as exc:
            await self.send_message({"type": "connection_error", "payload": exc.payload})
            await self.websocket.close(4403, "Forbidden")
            return
        await self.send_message({"type": "connection_ack"})
        self.connection_acknowledged = True
        if self.keep_alive:
            self.keep_alive_task = asyncio.create_task(self.handle_keep_alive())


class GraphQLView(GraphQL[Context, None]):
    request_adapter_class = UploadRequestAdapter
    websocket_adapter_class = WebSocketAdapter
    graphql_transport_ws_handler_class = TransportWsHandler
    graphql_ws_handler_class = LegacyWsHandler

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
        if request.headers.get("content-type", "").lower().startswith(MULTIPART):
            refusal = await self._upload_refusal(request)
            if refusal is not None:
                return refused_before_body(refusal, media_type)
        seconds = self.settings.request_timeout
        try:
            # a multipart body may take long to arrive: its clock starts once it has
            multipart = request.headers.get("content-type", "").lower().startswith(MULTIPART)
            async with request_deadline(request.scope, seconds, started=not multipart) as deadline:
                response = await self.run(request)
        except TimeoutError:
            if not deadline.expired():
                raise
            log.warning(
                "%s %s ran past its deadline of %gs", request.method, request.url.path, seconds
            )
            message = f"the request ran past its deadline of {seconds:g}s and was stopped"
            return error_response(503, message, DeadlineExceeded.code, media_type)
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

    async def _upload_refusal(self, request: Request) -> DomainError | None:
        """Why an upload is refused from its headers alone, before its body (up to
        ``max_upload_files`` x ``max_upload_bytes``, spooled to disk) is read: bad credentials,
        or none where the storage rules let no guest write. The context authenticates again."""
        services = services_of(request)
        access = await authenticate(services, request.headers)
        if access.error is not None:
            return access.error
        if access.principal.anonymous and not services.policy.grants_guests("write"):
            return Unauthenticated(
                "uploads need a signed-in user (an Authorization header): the storage rules "
                "let no guest write"
            )
        return None

    def decode_json(self, data: str | bytes) -> object:
        limit = self.settings.max_json_depth
        try:
            value = json.loads(data)
        except RecursionError as exc:  # nested past the interpreter's limit, far past ours
            raise JsonTooDeep(limit) from exc
        if nests_deeper(value, limit):
            raise JsonTooDeep(limit)
        return value

    def parse_json(self, data: str | bytes) -> Any:
        try:
            return self.decode_json(data)
        except JsonTooDeep as exc:
            raise HTTPException(400, str(exc)) from exc
        except ValueError as exc:  # not JSON, or bytes in no Unicode encoding
            raise HTTPException(400, BAD_JSON) from exc

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        content_type, _ = parse_content_type(request.content_type or "")
        if request.method == "POST" and "application/json" in content_type:
            body = await request.get_body()
            raw = body.encode() if isinstance(body, str) else body
            # Only a body that does not open with "{" can be other than an object: parse just
            # those here (strawberry parses again), to tell bad JSON from a JSON non-object.
            if raw.lstrip(b" \t\r\n")[:1] != b"{" and not isinstance(self.parse_json(raw), dict):
                raise HTTPException(400, NOT_AN_OBJECT)
        return await super().parse_http_body(request)

    async def parse_multipart(self, request: AsyncHTTPRequestAdapter) -> dict[str, Any]:
        try:
            form = await request.get_form_data()
        except ValueError as exc:
            raise HTTPException(400, "Unable to parse the multipart body") from exc
        fields: dict[str, object] = {}
        for name, default in (("operations", None), ("map", "{}")):
            value = form.form.get(name, default)
            if not isinstance(value, str):
                raise HTTPException(400, f"the multipart '{name}' field must be there, as text")
            fields[name] = self.parse_json(value)
        return place_files(fields["operations"], fields["map"], form.files)

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """strawberry's, refusing subscriptions: they are served over websockets, and
        strawberry would run one over HTTP as if it were a query (and fail)."""
        allowed = OperationType.from_http(request_adapter.method) - {OperationType.SUBSCRIPTION}
        if not self.allow_queries_via_get and request_adapter.method == "GET":
            allowed -= {OperationType.QUERY}
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except InvalidOperationTypeError as exc:
            if exc.operation_type is OperationType.SUBSCRIPTION:
                raise HTTPException(400, SUBSCRIPTIONS_NEED_A_WEBSOCKET) from exc
            raise HTTPException(400, exc.as_http_error_reason(request_adapter.method)) from exc
        except CannotGetOperationTypeError as exc:
            raise HTTPException(400, exc.as_http_error_reason()) from exc
        except MissingQueryError as exc:
            raise HTTPException(400, "No GraphQL query found in the request") from exc

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
        end_over_budget(result)
        if result.errors:  # again here: strawberry reports some parse errors outside extensions
            result.errors = [shape(e) for e in result.errors]
        processed = process_result(result)
        request.scope[REQUEST_ERROR_KEY] = is_request_error(result)
        if request.scope[REQUEST_ERROR_KEY]:
            processed.pop("data", None)
        return processed
