"""AWS AppSync's real-time websocket protocol, as aws-amplify v6 speaks it, on
``<graphql path>/realtime``: the third protocol over the one subscription machinery.

The client opens the socket offering the subprotocols ``graphql-ws`` and
``header-<base64url JSON>`` (or, the older form, ``?header=<base64 JSON>&payload=e30=``); the JSON
carries ``host`` and its credentials (``x-api-key``, or ``Authorization`` with a bare or
``Bearer`` JWT). Then:

    client                                   server
    {"type": "connection_init"}          ->
                                         <-  {"type": "connection_ack",
                                              "payload": {"connectionTimeoutMs": 300000}}
                                         <-  {"type": "ka"}  (every KEEP_ALIVE_SECONDS)
    {"type": "start", "id": ..., "payload": {"data": "<JSON: {query, variables}>",
       "extensions": {"authorization": {...headers...}}}}  ->
                                         <-  {"type": "start_ack", "id": ...}
                                         <-  {"type": "data", "id": ..., "payload": {"data": ...}}
    {"type": "stop", "id": ...}          ->
                                         <-  {"type": "complete", "id": ...}

A ``start`` authenticates with its own ``extensions.authorization`` when it has one (and then
with that alone), else with the handshake's header, under the same rules as every other
request. Subscriptions run through the multiplexer (``multiplex``), shared with every
subscriber of the same operation on any protocol. ``start_ack`` is sent once the subscription is
registered with the broker, so a change made after it is never missed. Refusals
are AppSync-shaped (``{"errors": [{"errorType": ..., "message": ...}]}``) so that Amplify
reports them, and does not retry what cannot succeed (``UnauthorizedException``,
``BadRequestException``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLError, OperationDefinitionNode, OperationType
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ...errors import (
    APPSYNC_ERROR_CODE,
    APPSYNC_ERROR_TYPE,
    BAD_USER_INPUT,
    INTERNAL_SERVER_ERROR,
    DomainError,
)
from ..connection import (
    NOT_TEXT,
    Endpoint,
    authenticate,
    build_context,
    services_of,
)
from ..engine import codec
from ..engine.codec import JsonTooDeep
from ..engine.error_shaping import shape
from ..schema.context import Context
from .multiplex import Delivery, Outcome, Subscriber, multiplexer_of
from .session import Session

log = logging.getLogger(__name__)

PROTOCOL = "graphql-ws"
HEADER_PREFIX = "header-"
MAX_HEADER_DEPTH = 2  # the handshake's headers: one flat JSON object
CONNECTION_TIMEOUT_MS = 300_000  # what the client allows between keep-alives
KEEP_ALIVE_SECONDS = 60.0
INIT_TIMEOUT_SECONDS = 10.0


def appsync_error(code: str, message: str) -> dict[str, Any]:
    """One error as AppSync shapes it (``extensions.code`` kept for our own clients)."""
    error: dict[str, Any] = {"errorType": APPSYNC_ERROR_TYPE.get(code, code), "message": message}
    if code in APPSYNC_ERROR_CODE:
        error["errorCode"] = APPSYNC_ERROR_CODE[code]
    error["extensions"] = {"code": code}
    return error


def from_graphql(errors: list[GraphQLError]) -> list[dict[str, Any]]:
    shaped = [shape(e) for e in errors]
    return [appsync_error(str((e.extensions or {}).get("code")), e.message) for e in shaped]


def handshake_headers(websocket: WebSocket) -> dict[str, str]:
    """The credentials the client put in its handshake: the ``header-<base64url>`` subprotocol,
    or the ``header`` query parameter; header names in lower case. Empty when there are none;
    ``ValueError`` when they are not base64 JSON of strings."""
    encoded = next(
        (
            p[len(HEADER_PREFIX) :]
            for p in websocket.scope.get("subprotocols", ())
            if p.startswith(HEADER_PREFIX)
        ),
        websocket.query_params.get("header"),
    )
    if not encoded:
        return {}
    try:
        raw = base64.urlsafe_b64decode(
            encoded.replace("+", "-").replace("/", "_") + "=" * (-len(encoded) % 4)
        )
        decoded = codec.decode(raw, MAX_HEADER_DEPTH)
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise ValueError("the handshake header is not base64-encoded JSON") from exc
    return _headers(decoded)


def _headers(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError("the authorization headers must be a JSON object")
    return {str(k).lower(): v for k, v in value.items() if isinstance(v, str)}


@dataclass
class _Operation:
    task: asyncio.Task[None] | None = None
    acked: bool = False  # start_ack sent (or being sent): it precedes every data message


@dataclass
class _Connection:
    websocket: WebSocket
    view: Endpoint
    headers: dict[str, str]
    operations: dict[str, _Operation] = field(default_factory=dict)
    pending: set[asyncio.Task[None]] = field(default_factory=set)  # start_acks being sent
    initialised: bool = False

    @property
    def settings(self) -> Any:
        return self.view.settings

    @property
    def session(self) -> Session:
        return Session.of(self.websocket, self.settings.max_subscriptions_per_connection)

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.send_text(codec.encode_text(message))

    async def send_text(self, text: str) -> None:
        if self.websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.websocket.send_text(text)

    async def serve(self) -> None:
        keep_alive: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(INIT_TIMEOUT_SECONDS) as init_deadline:
                first = await self.receive()
                init_deadline.reschedule(None)
            if first is None:
                return
            if first.get("type") != "connection_init":
                await self.websocket.close(4400, "the first message must be connection_init")
                return
            if not await self.initialise():
                return
            keep_alive = asyncio.create_task(self.keep_alive())
            while (message := await self.receive()) is not None:
                await self.handle(message)
        except TimeoutError:
            await self.websocket.close(4408, "connection_init was not sent in time")
        finally:
            if keep_alive is not None:
                keep_alive.cancel()
            self.session.end()
            for operation in self.operations.values():
                if operation.task is not None:
                    operation.task.cancel()

    async def receive(self) -> dict[str, Any] | None:
        """The next message, or None when the socket is closed (a malformed one closes it)."""
        try:
            frame = await self.websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return None
        if frame["type"] == "websocket.disconnect":
            return None
        text = frame.get("text")
        if text is None:  # a binary frame: answered as /graphql answers it (strawberry's words)
            await self.websocket.close(4400, NOT_TEXT)
            return None
        try:
            message = codec.decode(text, self.settings.max_json_depth)
        except (ValueError, RecursionError) as exc:
            reason = str(exc) if isinstance(exc, JsonTooDeep) else "a message must be JSON"
            await self.websocket.close(4400, reason[:120])
            return None
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            await self.websocket.close(4400, "a message must be a JSON object with a 'type'")
            return None
        return message

    async def initialise(self) -> bool:
        """``connection_ack``, or ``connection_error`` and a close when the handshake's
        credentials are refused."""
        access = await authenticate(services_of(self.websocket), self.headers)
        if access.error is not None:
            error = appsync_error(access.error.code, access.error.message)
            await self.send({"type": "connection_error", "payload": {"errors": [error]}})
            await self.websocket.close(4403, "Forbidden")
            return False
        self.initialised = True
        await self.send(
            {"type": "connection_ack", "payload": {"connectionTimeoutMs": CONNECTION_TIMEOUT_MS}}
        )
        return True

    async def keep_alive(self) -> None:
        while True:
            await self.send({"type": "ka"})
            await asyncio.sleep(KEEP_ALIVE_SECONDS)

    async def handle(self, message: dict[str, Any]) -> None:
        kind, operation_id = message["type"], message.get("id")
        if kind == "connection_init":
            return  # a second one changes nothing
        if not isinstance(operation_id, str) or not operation_id:
            await self.websocket.close(4400, f"a '{kind}' message needs a string 'id'")
            return
        if kind == "start":
            await self.start(operation_id, message.get("payload"))
        elif kind == "stop":
            await self.stop(operation_id)
        else:
            error = appsync_error(BAD_USER_INPUT, f"unknown message type {kind[:40]!r}")
            await self.send({"type": "error", "id": operation_id, "payload": {"errors": [error]}})

    async def ack(self, operation_id: str) -> None:
        operation = self.operations.get(operation_id)
        if operation is not None and not operation.acked:
            operation.acked = True
            await self.send({"type": "start_ack", "id": operation_id})

    async def refuse(self, operation_id: str, code: str, message: str) -> None:
        error = appsync_error(code, message)
        await self.send({"type": "error", "id": operation_id, "payload": {"errors": [error]}})

    async def start(self, operation_id: str, payload: object) -> None:
        if operation_id in self.operations:
            await self.refuse(operation_id, BAD_USER_INPUT, f"{operation_id!r} is running")
            return
        if self.session.full(len(self.operations)):
            await self.refuse(operation_id, BAD_USER_INPUT, self.session.over_cap())
            return
        try:
            query, variables, headers = self.operation(payload)
        except ValueError as exc:
            await self.refuse(operation_id, BAD_USER_INPUT, str(exc))
            return
        context = await build_context(self.websocket, self.websocket)
        # a start's own authorization replaces the handshake's (as on AppSync); none: the
        # handshake's
        context.access = await self.session.admit(context.services, headers or self.headers)
        if context.access.error is not None:
            error = context.access.error
            await self.refuse(operation_id, error.code, error.message)
            return
        operation = _Operation()
        context.on_subscribed = lambda _: self.ack_soon(operation_id)
        self.operations[operation_id] = operation
        operation.task = asyncio.create_task(self.run(operation_id, query, variables, context))

    def ack_soon(self, operation_id: str) -> None:
        """Registered with the broker: nothing after this is missed; say so."""
        acking = asyncio.get_running_loop().create_task(self.ack(operation_id))
        self.pending.add(acking)
        acking.add_done_callback(self.pending.discard)

    def operation(self, payload: object) -> tuple[str, dict[str, Any] | None, dict[str, str]]:
        """The query, variables and per-operation headers of a ``start``'s payload."""
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), str):
            raise ValueError("a start's payload needs 'data': a JSON string {query, variables}")
        try:
            data = codec.decode(payload["data"], self.settings.max_json_depth)
        except JsonTooDeep:
            raise
        except ValueError as exc:
            raise ValueError("a start's 'data' must be JSON: {query, variables}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("query"), str):
            raise ValueError("a start's 'data' needs a string 'query'")
        variables = data.get("variables")
        if variables is not None and not isinstance(variables, dict):
            raise ValueError("'variables' must be an object")
        _only_subscriptions(self.view.schema, data["query"])
        extensions = payload.get("extensions") or {}
        authorization = extensions.get("authorization") if isinstance(extensions, dict) else None
        headers = _headers(authorization) if authorization is not None else {}
        return data["query"], variables, headers

    async def run(
        self, operation_id: str, query: str, variables: dict[str, Any] | None, context: Context
    ) -> None:
        """Through the application's multiplexer (shared with every subscriber of the same
        operation), or alone when it runs none or refused the operation before executing it."""
        try:
            multiplexer = multiplexer_of(self.websocket)
            if multiplexer is not None and multiplexer.serves(query, None):
                subscriber = Subscriber(query, variables, None, context)
                sink = _Sink(self, operation_id)
                if await multiplexer.serve(subscriber, sink) is not Outcome.FALLBACK:
                    return
            await self.run_alone(operation_id, query, variables, context)
        except Exception:  # a bug: logged, and the client told (it would wait forever)
            log.exception("the subscription %s failed", operation_id)
            with contextlib.suppress(Exception):  # the socket may be gone: nothing to tell
                await self.refuse(operation_id, INTERNAL_SERVER_ERROR, "internal server error")
        finally:
            self.operations.pop(operation_id, None)

    async def run_alone(
        self, operation_id: str, query: str, variables: dict[str, Any] | None, context: Context
    ) -> None:
        try:
            stream = await self.view.schema.subscribe(
                query, variable_values=variables, context_value=context
            )
            async for result in stream:
                if result.errors and not result.data:  # refused, before or after start_ack
                    errors = from_graphql(result.errors)
                    await self.send(
                        {"type": "error", "id": operation_id, "payload": {"errors": errors}}
                    )
                    return
                await self.ack(operation_id)
                await self.send(
                    {"type": "data", "id": operation_id, "payload": {"data": result.data}}
                )
        except asyncio.CancelledError:
            raise
        except DomainError as exc:  # pragma: no cover - resolvers' errors come as results
            await self.refuse(operation_id, exc.code, exc.message)

    async def stop(self, operation_id: str) -> None:
        operation = self.operations.pop(operation_id, None)
        if operation is not None and operation.task is not None:
            operation.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await operation.task
        await self.send({"type": "complete", "id": operation_id})


class _Sink:
    """A member of a shared subscription: ``start_ack`` once registered, then each result's
    shared ``{"data"}`` payload framed with this operation's id; a result with errors and no
    data ends the operation with an AppSync-shaped ``error``."""

    def __init__(self, connection: _Connection, operation_id: str) -> None:
        self.connection = connection
        self.operation_id = operation_id
        self.prefix = f'{{"type":"data","id":{codec.encode_text(operation_id)},"payload":'

    def subscribed(self) -> None:
        self.connection.ack_soon(self.operation_id)

    async def deliver(self, delivery: Delivery) -> bool:
        result = delivery.result
        if result.errors and not result.data:  # refused, before or after start_ack
            errors = from_graphql(result.errors)
            message = {"type": "error", "id": self.operation_id, "payload": {"errors": errors}}
            await self.connection.send(message)
            return False
        await self.connection.ack(self.operation_id)
        await self.connection.send_text(self.prefix + delivery.data_payload + "}")
        return True


def _only_subscriptions(schema: Any, query: str) -> None:
    """Refuse what is not a subscription, from the schema's prepared document (parsed once,
    under the token limit of the settings, as every other document is)."""
    prepared = schema.prepared.get(query, None)
    if not prepared.parsed or prepared.document is None:
        message = prepared.errors[0].message if prepared.errors else "no document"
        raise ValueError(f"the query does not parse: {message}")
    kinds = {
        d.operation for d in prepared.document.definitions if isinstance(d, OperationDefinitionNode)
    }
    if kinds != {OperationType.SUBSCRIPTION}:
        raise ValueError("only subscriptions are served here; send queries and mutations by HTTP")


class AppSyncRealtime:
    """The ASGI endpoint at ``<graphql path>/realtime``."""

    def __init__(self, view: Endpoint) -> None:
        self.view = view

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        origin = websocket.headers.get("origin")
        if origin is not None and not self.view.is_websocket_origin_allowed(websocket, origin):
            await websocket.close(code=4403)  # before accepting: the handshake is refused
            return
        try:
            headers = handshake_headers(websocket)
        except ValueError:
            await websocket.close(code=4400)
            return
        offered = scope.get("subprotocols", ())
        await websocket.accept(subprotocol=PROTOCOL if PROTOCOL in offered else None)
        await _Connection(websocket, self.view, headers).serve()
