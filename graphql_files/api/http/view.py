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

import logging
import re
from collections.abc import Mapping
from datetime import timedelta
from functools import lru_cache
from typing import Any, cast

from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry import UNSET
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.types import ExecutionResult

from ...errors import (
    BAD_USER_INPUT,
    HTTP_STATUS,
    INTERNAL_SERVER_ERROR,
    DeadlineExceeded,
    DomainError,
    PayloadTooLarge,
)
from ...settings import LOCALHOST_ORIGINS, Settings
from ..connection import authenticate, build_context, headers_of, services_of
from ..engine import codec
from ..engine._compat import (
    AsyncHTTPRequestAdapter,
    CannotGetOperationTypeError,
    GraphQLHTTPResponse,
    GraphQLRequestData,
    HTTPException,
    HTTPMethod,
    InvalidOperationTypeError,
    OperationType,
    UnsetType,
    parse_content_type,
    process_result,
)
from ..engine.budget import end_over_budget
from ..engine.codec import JsonTooDeep
from ..engine.error_shaping import shape
from ..engine.execution import LeanSchema
from ..schema.context import Context
from ..ws.session import SESSION_KEY, Session
from ..ws.websockets import LegacyWsHandler, TransportWsHandler, WebSocketAdapter
from .body_limit import JSON, MULTIPART, BodyFault, error_response, refused_before_body
from .deadline import request_deadline
from .graphiql import LOOPBACK_HOSTS, graphiql_page
from .uploads import (
    UploadRequestAdapter,
    close_uploads,
    finish_uploads,
    first_refusal,
    place_files,
    read_whole_body,
)

log = logging.getLogger(__name__)

GRAPHQL_RESPONSE = "application/graphql-response+json"
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
BAD_OPERATION_NAME = (
    "The GraphQL operation's `operationName` must be a string or null, if provided."
)
SUBSCRIPTIONS_NEED_A_WEBSOCKET = (
    "subscriptions are served over a websocket only (graphql-transport-ws or graphql-ws at "
    "/graphql), not over HTTP"
)


@lru_cache(maxsize=256)  # clients send the same few Accept headers
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


def needs_preflight_header(method: str, headers: Mapping[str, str]) -> bool:
    """A POST a browser could send cross-site without a CORS preflight (CVE-2024-47082)."""
    if method != "POST":
        return False
    media_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in SIMPLE_CONTENT_TYPES:
        return False
    return not any(headers.get(h, "").strip() for h in PREFLIGHT_HEADERS)


async def read_body(request: Request) -> bytes:
    """The whole body, as ``request.body()`` reads it, without its stream machinery."""
    chunks = []
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def request_data_from(data: dict[str, Any]) -> GraphQLRequestData:
    """An operation from a JSON body, checked as strawberry's ``parse_http_body`` checks it
    (same messages)."""
    fields = {"query": "a string", "variables": "an object", "extensions": "an object"}
    for name, kind in (("query", str), ("variables", dict), ("extensions", dict)):
        if not isinstance(data.get(name), kind | None):
            raise HTTPException(
                400,
                f"The GraphQL operation's `{name}` must be {fields[name]} or null, if provided.",
            )
    return GraphQLRequestData(
        query=data.get("query"),
        variables=data.get("variables"),
        operation_name=data.get("operationName"),
        extensions=data.get("extensions"),
        protocol="http",
    )


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
                session: Session | None = scope.get(SESSION_KEY)
                if session is not None:
                    session.end()
            return
        request = Request(scope, receive)
        try:
            response = await self._respond(request)
        finally:
            await close_uploads(request)
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        headers = headers_of(request)
        media_type = negotiate(headers.get("accept"))
        browser = request.method == "GET" and "text/html" in headers.get("accept", "")
        if media_type is None and not browser:
            return error_response(406, f"Accept {GRAPHQL_RESPONSE} or {JSON}", BAD_USER_INPUT)
        media_type = media_type or JSON
        if needs_preflight_header(request.method, headers):
            return error_response(400, PREFLIGHT_MESSAGE, BAD_USER_INPUT, media_type)
        multipart = headers.get("content-type", "").lower().startswith(MULTIPART)
        if multipart:
            refusal = await self._upload_refusal(request)
            if refusal is not None:
                return refused_before_body(refusal, media_type)
        seconds = self.settings.request_timeout
        try:
            # a multipart body may take long to arrive: its clock starts once it has (the
            # operation runs meanwhile, reading the files as they come)
            async with request_deadline(request.scope, seconds, started=not multipart) as deadline:
                if self._takes_fast_path(request.method, headers):
                    return await self._run_json(request, media_type)
                else:
                    response = await self.run(request)
                if multipart:  # the files streamed while it ran: the rest of the body, checked
                    await finish_uploads(request)
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
        except PayloadTooLarge as exc:  # a file of the body grew past its limit
            return error_response(HTTP_STATUS[exc.code], exc.message, exc.code, media_type)
        except BodyFault as fault:  # the body stalled or grew past its limit as files streamed
            return fault.response(media_type)
        if response.headers.get("content-type") == JSON:
            response.headers["content-type"] = media_type
            if media_type == GRAPHQL_RESPONSE and request.scope.get(REQUEST_ERROR_KEY):
                response.status_code = 400
        return response

    def _takes_fast_path(self, method: str, headers: Mapping[str, str]) -> bool:
        """A single ``POST application/json`` that wants one JSON answer: the common request,
        served by ``_run_json``. Batches, GET, multipart and streaming Accept headers go
        through strawberry's own path."""
        if method != "POST":
            return False
        content_type = headers.get("content-type", "")
        # as strawberry's path reads it: "Application/JSON" is refused there, so here too
        if content_type.partition(";")[0].strip() != JSON:
            return False
        # strawberry's own test for an Accept header that asks for a stream (multipart, SSE)
        return self._get_stream_transport_from_headers(headers) is None

    async def _run_json(self, request: Request, media_type: str) -> Response:
        """strawberry's ``run`` for one JSON operation, with its checks and messages, minus
        what this request cannot need (content negotiation through the ``email`` module, the
        IDE, batches, streaming); answered in ``media_type``."""
        data = self.parse_json(await read_body(request))
        if not isinstance(data, dict):
            raise HTTPException(400, NOT_AN_OBJECT)
        request_data = request_data_from(data)
        sub_response = await self.get_sub_response(request)
        context = await self.get_context(request, sub_response)
        result = await self._execute("POST", context, request_data)
        processed = await self.process_result(request, result)
        status = 400 if media_type == GRAPHQL_RESPONSE and is_request_error(result) else 200
        if sub_response.headers.raw or sub_response.status_code or sub_response.background:
            response = self.create_response(processed, sub_response)  # a resolver set some
            response.headers["content-type"] = media_type
            response.status_code = status if response.status_code == 200 else response.status_code
            return response
        return Response(self.encode_json(processed), status, media_type=media_type)

    async def _upload_refusal(self, request: Request) -> DomainError | None:
        """Why an upload is refused from its headers alone, before its body is read (the rule
        is the caller's access's: ``Access.upload_refusal``). The context authenticates
        again."""
        access = await authenticate(services_of(request), headers_of(request))
        return access.upload_refusal()

    def decode_json(self, data: str | bytes) -> object:
        """JSON from a body, GET variables or multipart ``operations`` (orjson: UTF-8 only, as
        RFC 8259 requires), refused past ``MAX_JSON_DEPTH``."""
        return codec.decode(data, self.settings.max_json_depth)

    def encode_json(self, data: object) -> bytes:
        return codec.encode(data)

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
        try:
            operations = place_files(fields["operations"], fields["map"], form.files)
        except HTTPException as refusal:
            raise await first_refusal(request, refusal) from None
        schema = cast(LeanSchema, self.schema)
        files_map = fields["map"]
        mapped = {
            path.split(".")[1]
            for paths in cast(dict[str, list[str]], files_map).values()
            for path in paths
        }
        if not files_map or not schema.streams_files(
            operations.get("query"), operations.get("operationName"), mapped
        ):
            # Only a query, or a mutation of one field reading every file it is sent (which
            # checks the rest of the body before it commits), runs while its files arrive: any
            # other operation runs once the whole body is in and checked, so a fault in it
            # leaves nothing changed.
            await read_whole_body(cast(UploadRequestAdapter, request).request)
        return operations

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """strawberry's path ends here too (see ``_execute``)."""
        return await self._execute(request_adapter.method, context, request_data)

    async def _execute(
        self, method: HTTPMethod, context: Context, request_data: GraphQLRequestData
    ) -> ExecutionResult:
        """One operation, as strawberry runs it but refusing subscriptions: they are served
        over websockets, and strawberry would run one over HTTP as if it were a query."""
        allowed = OperationType.from_http(method) - {OperationType.SUBSCRIPTION}
        if not self.allow_queries_via_get and method == "GET":
            allowed -= {OperationType.QUERY}
        if not isinstance(request_data.operation_name, str | None):
            raise HTTPException(400, BAD_OPERATION_NAME)
        try:
            return await self.schema.execute(
                request_data.query,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except InvalidOperationTypeError as exc:
            if exc.operation_type is OperationType.SUBSCRIPTION:
                raise HTTPException(400, SUBSCRIPTIONS_NEED_A_WEBSOCKET) from exc
            raise HTTPException(400, exc.as_http_error_reason(method)) from exc
        except CannotGetOperationTypeError as exc:
            raise HTTPException(400, exc.as_http_error_reason()) from exc
        except MissingQueryError as exc:
            raise HTTPException(400, "No GraphQL query found in the request") from exc

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL, its assets served from ``<path>/assets`` (no CDN); on the embedded defaults
        on loopback, its Headers editor holds the credentials made at start-up."""
        services = services_of(request)
        headers = services.dev_headers if self.settings.host in LOOPBACK_HOSTS else {}
        page = graphiql_page(assets_url=f"{request.url.path}/assets", headers=headers)
        return HTMLResponse(page)

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        return await build_context(request, response)

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
        session = Session.of(context.request, self.settings.max_subscriptions_per_connection)
        access = await session.admit(context.services, headers)
        if access.error is not None:
            raise ConnectionRejectionError(
                {"message": access.error.message, "extensions": access.error.extensions}
            )
        context.access = access
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
