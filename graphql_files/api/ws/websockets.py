"""The two websocket protocols strawberry serves, graphql-transport-ws and the legacy graphql-ws,
with what real clients need of them: malformed messages close with 4400 and a reason, refused
credentials with 4403 (on both protocols), deep frames are refused, and one connection runs at
most ``MAX_SUBSCRIPTIONS_PER_CONNECTION`` operations.

Subscriptions run through the multiplexer (``multiplex``): subscribers of the same operation
share one execution per event, and each is sent the shared payload framed for its own
operation id. Queries and mutations over graphql-transport-ws, documents that do not parse, and
subscriptions refused before execution take strawberry's own path, so they answer as they
always have.

These subclass strawberry's protocol handlers and override their hooks (``handle_message``,
``handle_subscribe``, ``run_operation``, ``handle_start``, ``handle_async_results``,
``handle_connection_init``, ``handle_task_exception``), which come through ``_compat``: it
checks, as it is imported, that each still has the shape overridden here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Any, cast

from graphql import GraphQLFormattedError
from starlette.websockets import WebSocket as StarletteWebSocket
from starlette.websockets import WebSocketDisconnect as StarletteWebSocketDisconnect
from starlette.websockets import WebSocketDisconnected as StarletteWebSocketDisconnected
from strawberry.exceptions import ConnectionRejectionError

from ...errors import BAD_USER_INPUT, INTERNAL_SERVER_ERROR
from ..connection import NOT_TEXT, Endpoint
from ..engine import codec
from ..engine._compat import (
    ASGIWebSocketAdapter,
    BaseGraphQLTransportWSHandler,
    BaseGraphQLWSHandler,
    ConnectionInitMessage,
    NonTextMessageReceived,
    Operation,
    OperationMessage,
    StartMessage,
    SubscribeMessage,
    TransportMessage,
    WebSocketDisconnected,
)
from ..engine.codec import JsonTooDeep
from ..schema.context import Context
from .multiplex import Delivery, Outcome, Subscriber, multiplexer_of
from .session import Session

log = logging.getLogger(__name__)


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
    (strawberry would let the error escape and drop the socket with no close code); every
    message goes out as a text frame, as both protocols require, even when the view encodes
    JSON to bytes (strawberry would send those as binary frames, which browsers' clients
    ignore)."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        encoded = self.view.encode_json(message)
        text = encoded.decode() if isinstance(encoded, bytes) else encoded
        try:
            await self.ws.send_text(text)
        except StarletteWebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc

    async def iter_json(
        self, *, ignore_parsing_errors: bool = False
    ) -> AsyncGenerator[object, None]:
        try:
            async for message in super().iter_json(ignore_parsing_errors=ignore_parsing_errors):
                yield message
        except JsonTooDeep as exc:
            await self.close(4400, str(exc))
        except NonTextMessageReceived:
            # one answer on every protocol and endpoint (strawberry's graphql-ws closed 1002)
            await self.close(4400, NOT_TEXT)


class FramedSink:
    """A member of a shared subscription on graphql-transport-ws (``next``) or graphql-ws
    (``data``): the shared payload, framed with this operation's id."""

    def __init__(self, context: Context, message_type: str, operation_id: str) -> None:
        assert isinstance(context.request, StarletteWebSocket)
        self.websocket = context.request
        self.prefix = f'{{"type":"{message_type}","id":{codec.encode_text(operation_id)},"payload":'

    def subscribed(self) -> None:
        pass

    async def deliver(self, delivery: Delivery) -> bool:
        await self.websocket.send_text(self.prefix + delivery.payload + "}")
        return True


async def run_shared(
    context: Context,
    sink: FramedSink,
    query: str,
    variables: dict[str, object] | None,
    operation_name: str | None,
) -> Outcome:
    """A subscription through the application's multiplexer; ``FALLBACK`` when it is not one
    the multiplexer runs (the protocol's own path answers it)."""
    multiplexer = multiplexer_of(sink.websocket)
    if multiplexer is None or not multiplexer.serves(query, operation_name):
        return Outcome.FALLBACK
    subscriber = Subscriber(query, variables, operation_name, context)
    return await multiplexer.serve(subscriber, sink)


def session_of(handler: Any) -> Session:
    """The session of the websocket a protocol handler serves (its context's connection)."""
    cap = cast(Endpoint, handler.view).settings.max_subscriptions_per_connection
    return Session.of(handler.context.request, cap)


def over_cap_error(session: Session) -> GraphQLFormattedError:
    return {
        "message": f"{session.over_cap()}: stop one, or open another connection",
        "extensions": {"code": BAD_USER_INPUT},
    }


def internal_error() -> GraphQLFormattedError:
    """What a client hears of an operation that failed inside the server (the log has why)."""
    return {"message": "internal server error", "extensions": {"code": INTERNAL_SERVER_ERROR}}


class TransportWsHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """strawberry's, with malformed messages closed with 4400 and the operations one
    connection runs capped: one over the cap gets an ``error`` for its id (a GraphQL error with
    ``BAD_USER_INPUT``) and the socket stays. graphql-ws clients fail just that operation on an
    ``error``, but treat a 4400 close as fatal and end every subscription on the socket."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session = session_of(self)
        self.max_subscriptions_per_connection = self.session.cap  # strawberry's never fires

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
            and self.session.full(len(self.operations))
        ):
            error = over_cap_error(self.session)
            await self.send_message({"type": "error", "id": operation_id, "payload": [error]})
            return
        await super().handle_subscribe(message)

    async def run_operation(self, operation: Operation[Context, None]) -> None:
        """A subscription runs shared (``multiplex``); anything else, strawberry's way."""
        sink = FramedSink(self.context, "next", operation.id)
        try:
            outcome = await run_shared(
                self.context, sink, operation.query, operation.variables, operation.operation_name
            )
            if outcome is Outcome.ENDED:
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except Exception as error:  # as strawberry's own: reported, and the id freed
            await self.handle_task_exception(error)
            self.operations.pop(operation.id, None)
            await self._report_failure(operation.id)
            return
        if outcome is Outcome.FALLBACK:
            await super().run_operation(operation)

    async def _report_failure(self, operation_id: str) -> None:
        """The client hears that its operation ended (the log has why): without it, a
        graphql-ws client waits for an answer that never comes."""
        with contextlib.suppress(Exception):  # the socket may be gone: nothing to tell
            await self.send_message(
                {"type": "error", "id": operation_id, "payload": [internal_error()]}
            )

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
        self.session = session_of(self)
        self.max_subscriptions_per_connection = self.session.cap  # strawberry's never fires

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
                error = over_cap_error(self.session)
        if error is None:
            await super().handle_start(message)
            return
        await self.websocket.send_json({"type": "error", "id": message["id"], "payload": [error]})

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        """A subscription runs shared (``multiplex``), answering as strawberry's does: a
        ``complete`` when it ends or is stopped; anything else, strawberry's way."""
        sink = FramedSink(self.context, "data", operation_id)
        try:
            outcome = await run_shared(self.context, sink, query, variables, operation_name)
            if outcome is Outcome.FALLBACK:
                await super().handle_async_results(operation_id, query, operation_name, variables)
                return
            if outcome is Outcome.ENDED:
                await self.send_message({"type": "complete", "id": operation_id})
        except asyncio.CancelledError:
            await self.send_message({"type": "complete", "id": operation_id})
        except Exception:  # a bug: logged, and the client told (it would wait forever)
            log.exception("the subscription %s failed", operation_id)
            with contextlib.suppress(Exception):  # the socket may be gone: nothing to tell
                await self.send_message(
                    {"type": "error", "id": operation_id, "payload": internal_error()}
                )
        finally:
            self.subscriptions.pop(operation_id, None)
            self.tasks.pop(operation_id, None)

    def _full(self, operation_id: str) -> bool:
        """A ``start`` with a running operation's id replaces it: it takes no more room."""
        return self.session.full(len(self.tasks) - (operation_id in self.tasks))

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
