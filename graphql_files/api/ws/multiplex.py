"""Multiplexed subscriptions: subscribers who would be sent the same thing share one execution.

Subscribers with the same document, operation name, variables and access class
(``Access.sharing_class``: what the rules can tell apart) form a group. A group runs the
subscription once, through the schema's ``subscribe``, and hands each result, its payload
encoded once, to every member; each member frames it for its own protocol and operation id:

    broker --event--> group: one execution, one encoded payload
                        |--> member outbox --> member's sender --> websocket
                        |--> member outbox --> member's sender --> websocket
                        '--> ...

Each member has its own bounded outbox (``SUBSCRIBER_BUFFER``) and its own sender (the task that
serves its operation), so a slow socket delays nobody; one whose outbox fills is cut off: its
subscription ends with ``SLOW_CONSUMER`` and its websocket is closed with code 4008 and a
reason naming the last cursor it was sent, as for any subscriber.

Never shared: callers with no access class (bad credentials; users who read some model's
records only as their owner), and replays (an ``after`` argument that is not null once the
operation's variables are coerced, their defaults included), which start from a cursor of
their own. Groups are keyed on the coerced variables, not on the request's text. When a
group's first result is a pre-execution error (a document that does not validate), its members
go back to their protocol's own path, so such errors read exactly as they always have.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
from collections import deque
from collections.abc import Hashable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Protocol

from graphql import (
    ArgumentNode,
    DocumentNode,
    GraphQLError,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
    VariableDefinitionNode,
    VariableNode,
    Visitor,
    get_variable_values,
    visit,
)
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected
from strawberry.types import ExecutionResult

from ...domain.feed import Subscription
from ...errors import SlowConsumer
from ..connection import CUT_OFF_CODE, close_later
from ..engine import codec
from ..engine._compat import PreExecutionError
from ..schema.context import Context

log = logging.getLogger(__name__)

REPLAY_ARGUMENT = "after"


def _encode(value: object) -> str:
    return codec.encode_text(value)


class Delivery:
    """One result for every member of a group: its payload is encoded once, when the first
    member asks for it, however many members send it."""

    __slots__ = ("_data", "_payload", "cursor", "result")

    def __init__(self, result: ExecutionResult, cursor: str | None) -> None:
        self.result = result
        self.cursor = cursor  # the change event's, when the result is one
        self._payload: str | None = None
        self._data: str | None = None

    @property
    def payload(self) -> str:
        """``{"data", "errors", "extensions"}`` as JSON text, as graphql-ws and
        graphql-transport-ws send it."""
        if self._payload is None:
            result = self.result
            payload: dict[str, object] = {"data": result.data}
            if result.errors:
                payload["errors"] = [error.formatted for error in result.errors]
            if result.extensions:
                payload["extensions"] = result.extensions
            self._payload = _encode(payload)
        return self._payload

    @property
    def data_payload(self) -> str:
        """``{"data"}`` alone as JSON text, as AppSync sends it."""
        if self._data is None:
            self._data = _encode({"data": self.result.data})
        return self._data


class Outcome(enum.Enum):
    """How a member's subscription ended, for its protocol to answer."""

    ENDED = "ended"  # the stream is over: complete the operation
    STOPPED = "stopped"  # the protocol ended it itself (``Sink.deliver`` said so)
    GONE = "gone"  # the websocket is gone: nothing more to send
    FALLBACK = "fallback"  # not executed here: run the operation the protocol's own way


class Sink(Protocol):
    """A member's protocol: what it sends, and how it frames a shared payload."""

    def subscribed(self) -> None:
        """The group is registered with the broker: no later change will be missed."""

    async def deliver(self, delivery: Delivery) -> bool:
        """Send one result; False ends the operation (``Outcome.STOPPED``)."""


@dataclass(frozen=True)
class Subscriber:
    """One websocket operation: what it asks for, and its context (who asks, and the socket)."""

    query: str
    variables: Mapping[str, Any] | None
    operation_name: str | None
    context: Context

    @property
    def websocket(self) -> WebSocket:
        websocket = self.context.request
        assert isinstance(websocket, WebSocket)
        return websocket


@dataclass(frozen=True)
class Shape:
    """What the multiplexer needs to know of a document, parsed once per (query, name)."""

    subscription: bool
    replay_literal: bool  # an ``after`` argument given as a non-null literal
    replay_variables: frozenset[str]  # variables passed as an ``after`` argument
    variable_definitions: tuple[VariableDefinitionNode, ...]  # to coerce a request's variables


class _Replays(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.literal = False
        self.variables: set[str] = set()

    def enter_argument(self, node: ArgumentNode, *_: object) -> None:
        if node.name.value != REPLAY_ARGUMENT:
            return
        if isinstance(node.value, VariableNode):
            self.variables.add(node.value.name.value)
        elif not isinstance(node.value, NullValueNode):
            self.literal = True


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name is not None and o.name.value == name), None)


def _shape(prepared: Any, operation_name: str | None) -> Shape | None:
    """The shape of a prepared document's operation; None when it names no single operation
    (the protocol's own path answers those, with the errors it always gave)."""
    operation = _operation(prepared.document, operation_name)
    if operation is None:
        return None
    replays = _Replays()
    visit(prepared.document, replays)
    return Shape(
        subscription=operation.operation is OperationType.SUBSCRIPTION,
        replay_literal=replays.literal,
        replay_variables=frozenset(replays.variables),
        variable_definitions=tuple(operation.variable_definitions or ()),
    )


class Member:
    """One subscriber in a group: its outbox, and the loop that sends it (run by the task
    that serves the operation)."""

    def __init__(self, group: Group, subscriber: Subscriber, sink: Sink, buffer: int) -> None:
        self.group = group
        self.sink = sink
        self.websocket = subscriber.websocket
        self.broker = subscriber.context.services.broker
        self.buffer = buffer
        self.last_cursor: str | None = None  # of the last result sent
        self.cut = False
        self._outbox: deque[Delivery | Outcome] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def offer(self, delivery: Delivery) -> None:
        """Queue a result (never waits); a member whose outbox is full is cut off."""
        if len(self._outbox) >= self.buffer:
            self.cut_off()
            return
        self._outbox.append(delivery)
        self._wake()

    def end(self, outcome: Outcome) -> None:
        self._outbox.append(outcome)
        self._wake()

    def cut_off(self, *, counted: bool = False) -> None:
        """End this member with ``SLOW_CONSUMER`` and close its websocket with 4008, naming
        the last cursor it was sent; ``counted`` when the broker counted it already."""
        if self.cut:
            return
        self.cut = True
        self.group.remove(self)
        if not counted:
            self.broker.count_cut_off(self.last_cursor)
        error = SlowConsumer(
            f"this subscriber fell {self.buffer} events behind and was cut off; resume from "
            "the last cursor it received",
            lastCursor=self.last_cursor,
        )
        self._outbox.clear()
        failed = ExecutionResult(
            data=None, errors=[GraphQLError(error.message, original_error=error)]
        )
        self._outbox.extend((Delivery(failed, None), Outcome.ENDED))
        self._wake()
        cursor = self.last_cursor or "a re-list"
        close_later(self.websocket, CUT_OFF_CODE, f"too slow: resume after {cursor}")

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def run(self) -> Outcome:
        """Send what the group hands over until the subscription ends."""
        while True:
            if not self._outbox:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
                continue
            item = self._outbox.popleft()
            if isinstance(item, Outcome):
                return item
            try:
                if not await self.sink.deliver(item):
                    return Outcome.STOPPED
            except (WebSocketDisconnect, WebSocketDisconnected):
                return Outcome.GONE
            if item.cursor is not None:
                self.last_cursor = item.cursor


class Group:
    """Subscribers of one (document, operation, variables, access class): one execution."""

    def __init__(self, multiplexer: Multiplexer, key: Hashable, subscriber: Subscriber) -> None:
        self.multiplexer = multiplexer
        self.key = key
        self.members: dict[Member, None] = {}  # in the order they joined
        self.registered = False
        self.ended = False
        self._subscription: Subscription | None = None
        self._task = asyncio.create_task(self._run(subscriber))

    def add(self, member: Member) -> None:
        self.members[member] = None
        if self.registered:
            member.sink.subscribed()

    def remove(self, member: Member) -> None:
        """A member leaves; the last one out ends the group's subscription."""
        self.members.pop(member, None)
        if not self.members and not self.ended:
            self._close()
            self._task.cancel()

    def _registered(self, subscription: Subscription) -> None:
        self._subscription = subscription
        self.registered = True
        for member in tuple(self.members):
            member.sink.subscribed()

    def _cut_off(self, error: SlowConsumer) -> None:
        """The group itself fell behind the broker (which counts that once): every member is
        cut off, each naming the last cursor it was sent."""
        for member in tuple(self.members):
            member.cut_off(counted=True)

    def _close(self, outcome: Outcome | None = None) -> None:
        """Leave the multiplexer and the broker; end the members with ``outcome``."""
        self.ended = True
        self.multiplexer.forget(self)
        if self._subscription is not None:
            self._subscription.close()
        if outcome is not None:
            for member in tuple(self.members):
                member.end(outcome)
        self.members.clear()

    async def _run(self, subscriber: Subscriber) -> None:
        # Until it streams, a failure sends the members back to their protocol's own path,
        # which answers it as it always has; once it streams, they see every result, then end.
        outcome = Outcome.FALLBACK
        try:
            context = Context(
                request=subscriber.context.request,
                response=subscriber.context.response,
                services=subscriber.context.services,
                access=subscriber.context.access,
                on_subscribed=self._registered,
                on_cut_off=self._cut_off,
            )
            stream = await self.multiplexer.schema.subscribe(
                subscriber.query,
                variable_values=dict(subscriber.variables or {}),
                context_value=context,
                operation_name=subscriber.operation_name,
            )
            if isinstance(stream, ExecutionResult):  # refused before it ever streamed
                return
            async with aclosing(stream):
                first = True
                async for result in stream:
                    if first and isinstance(result, PreExecutionError):
                        return
                    first, outcome = False, Outcome.ENDED
                    self.multiplexer.executions += 1
                    cursor = self._subscription.last_cursor if self._subscription else None
                    delivery = Delivery(result, cursor)
                    for member in tuple(self.members):
                        member.offer(delivery)
                outcome = Outcome.ENDED
        except Exception:
            log.exception("a shared subscription failed")
        finally:
            if not self.ended:
                self._close(outcome)


class Multiplexer:
    """The groups of one application's websocket subscriptions."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self.executions = 0  # results executed, once per event per group
        self._groups: dict[Hashable, Group] = {}
        self._unique = itertools.count()

    def shape(self, query: str, operation_name: str | None) -> Shape | None:
        """The document's shape, worked out once per prepared document (the schema's prepared
        operations: the one place documents are parsed, under the token limit, and kept);
        None for a document that does not validate (its protocol's path says why)."""
        prepared = self.schema.prepared.get(query, operation_name)
        if prepared.errors or prepared.document is None:
            return None
        if "shape" not in prepared.memo:
            prepared.memo["shape"] = _shape(prepared, operation_name)
        shape: Shape | None = prepared.memo["shape"]
        return shape

    def serves(self, query: str, operation_name: str | None) -> bool:
        """Whether this is a subscription the multiplexer runs (anything else, and what does
        not parse, takes the protocol's own path)."""
        shape = self.shape(query, operation_name)
        return shape is not None and shape.subscription

    def key(self, subscriber: Subscriber) -> Hashable:
        """The group a subscriber belongs to: equal keys are sent equal results. Decided on
        the operation's coerced variables (defaults applied), as the execution will see them:
        ``$after: String = "C"`` sent with no variables is a replay from C."""
        alone = ("alone", next(self._unique))
        shape = self.shape(subscriber.query, subscriber.operation_name)
        sharing = subscriber.context.access.sharing_class()
        if shape is None or sharing is None or shape.replay_literal:
            return alone
        values = get_variable_values(
            self.schema.core, shape.variable_definitions, dict(subscriber.variables or {}), 1
        )
        if isinstance(values, list):  # variables that do not coerce: its execution says so
            return alone
        coerced = values.coerced
        if any(coerced.get(name) is not None for name in shape.replay_variables):
            return alone
        return (
            subscriber.query,
            subscriber.operation_name,
            codec.encode_key(coerced),
            sharing,
        )

    async def serve(self, subscriber: Subscriber, sink: Sink) -> Outcome:
        """Run one subscriber's operation until it ends, sending through ``sink``; the
        caller's task is the member's sender."""
        key = self.key(subscriber)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(self, key, subscriber)
        buffer = subscriber.context.services.settings.subscriber_buffer
        member = Member(group, subscriber, sink, buffer)
        group.add(member)
        try:
            return await member.run()
        finally:
            group.remove(member)

    def forget(self, group: Group) -> None:
        if self._groups.get(group.key) is group:
            del self._groups[group.key]

    @property
    def subscribed(self) -> int:
        """Members of groups registered with the broker: subscribers that miss no change."""
        return sum(len(g.members) for g in self._groups.values() if g.registered)

    def stats(self) -> dict[str, int]:
        return {
            "groups": len(self._groups),
            "members": sum(len(g.members) for g in self._groups.values()),
            "executions": self.executions,
        }


def multiplexer_of(connection: HTTPConnection) -> Multiplexer | None:
    """The application's multiplexer (``create_app`` makes it); None in an app without one,
    whose subscriptions then run one execution each."""
    multiplexer: Multiplexer | None = getattr(connection.app.state, "multiplexer", None)
    return multiplexer
