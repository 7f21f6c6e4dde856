"""The one place the GraphQL layer reaches into its libraries' internals.

strawberry-graphql, graphql-core, cross-web and python-multipart keep no promise about the names
below: the server overrides hooks of strawberry's HTTP view and websocket handlers and of
graphql-core's executor, reads python-multipart's parser state, and builds on strawberry's and
cross-web's request adapters. Every such name is imported here and nowhere else (an
import-linter contract in ``pyproject.toml`` holds the rest of the package to that), and this
module checks, as it is imported, that each still exists and has the shape the server uses:
an upgrade that moves one stops the server at once, with an ``ImportError`` naming the library,
its version and what changed, never somewhere subtle at run time. The libraries are pinned in
``pyproject.toml`` to the versions these checks were written against.

What each name is for is said where it is used; ``HOOKS`` lists the methods the server
overrides, and who overrides them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import version
from typing import Any

# --- cross-web and python-multipart ---------------------------------------------------------------
from cross_web import (
    AsyncHTTPRequestAdapter,
    FormData,
    HTTPException,
    StarletteRequestAdapter,
    parse_content_type,
)

# --- graphql-core --------------------------------------------------------------------------------
from graphql import parse
from graphql.execution import Executor
from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartState, parse_options_header

# --- strawberry ----------------------------------------------------------------------------------
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.execution import optimized_is_awaitable
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData, process_result
from strawberry.http.async_base_view import AsyncBaseHTTPView, AsyncWebSocketAdapter
from strawberry.http.exceptions import NonTextMessageReceived, WebSocketDisconnected
from strawberry.http.types import HTTPMethod
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.schema import (
    DEFAULT_ALLOWED_OPERATION_TYPES,
    StrawberryGraphQLCoreExecutionContext,
)
from strawberry.schema.schema import Schema as StrawberrySchema
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    Message as TransportMessage,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    ConnectionInitMessage,
    OperationMessage,
    StartMessage,
)
from strawberry.types import ExecutionResult
from strawberry.types.arguments import convert_arguments
from strawberry.types.execution import ExecutionContext as StrawberryExecutionContext
from strawberry.types.execution import PreExecutionError
from strawberry.types.field import StrawberryField
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UnsetType
from strawberry.utils.operation import get_first_operation, get_operation_type

PINNED = {
    "strawberry-graphql": "0.341.2",
    "graphql-core": "3.3.2",
    "cross-web": "0.9.0",
    "python-multipart": "0.0.34",
    "starlette": "1.10.0",
}
DEFINITION_BACKREF = GraphQLCoreConverter.DEFINITION_BACKREF  # a GraphQL field's strawberry field
# graphql-core's completion of a leaf value, its errors its own (a static method)
complete_leaf_value = Executor.complete_leaf_value
WS = "api/ws/websockets.py"
VIEW = "api/http/view.py"

# (class, method, the parameters our override takes after self, where we override it)
HOOKS: list[tuple[type, str, list[str], str]] = [
    (BaseGraphQLTransportWSHandler, "handle_message", ["message"], WS),
    (BaseGraphQLTransportWSHandler, "handle_subscribe", ["message"], WS),
    (BaseGraphQLTransportWSHandler, "handle_task_exception", ["error"], WS),
    (BaseGraphQLTransportWSHandler, "handle_invalid_message", ["error_message"], WS),
    (BaseGraphQLTransportWSHandler, "run_operation", ["operation"], WS),
    (Operation, "send_operation_message", ["message"], WS),
    (BaseGraphQLWSHandler, "handle_message", ["message"], WS),
    (BaseGraphQLWSHandler, "handle_start", ["message"], WS),
    (BaseGraphQLWSHandler, "handle_connection_init", ["message"], WS),
    (
        BaseGraphQLWSHandler,
        "handle_async_results",
        ["operation_id", "query", "operation_name", "variables"],
        WS,
    ),
    (ASGIWebSocketAdapter, "send_json", ["message"], WS),
    (ASGIWebSocketAdapter, "iter_json", ["ignore_parsing_errors"], WS),
    (AsyncBaseHTTPView, "parse_json", ["data"], VIEW),
    (AsyncBaseHTTPView, "decode_json", ["data"], VIEW),
    (AsyncBaseHTTPView, "parse_http_body", ["request"], VIEW),
    (AsyncBaseHTTPView, "parse_multipart", ["request"], VIEW),
    (
        AsyncBaseHTTPView,
        "execute_single",
        ["request", "request_adapter", "sub_response", "context", "root_value", "request_data"],
        VIEW,
    ),
    (AsyncBaseHTTPView, "process_result", ["request", "result"], VIEW),
    (AsyncBaseHTTPView, "_get_stream_transport_from_headers", ["headers"], VIEW),
    (AsyncBaseHTTPView, "get_sub_response", ["request"], VIEW),
    (AsyncBaseHTTPView, "create_response", ["response_data", "sub_response"], VIEW),
    (Executor, "build_per_event_executor", ["payload"], "api/engine/budget.py"),
    (Executor, "build_response", ["data"], "api/engine/executor.py"),
    (
        StrawberrySchema,
        "execute",
        [
            "query",
            "variable_values",
            "context_value",
            "root_value",
            "operation_name",
            "allowed_operation_types",
            "operation_extensions",
        ],
        "api/engine/execution.py",
    ),
    (
        StrawberrySchema,
        "stream",
        [
            "query",
            "variable_values",
            "context_value",
            "root_value",
            "operation_name",
            "operation_extensions",
            "allowed_operation_types",
        ],
        "api/engine/execution.py",
    ),
]

# functions called with these parameters, and who calls them
FUNCTIONS: list[tuple[Callable[..., Any], list[str], str]] = [
    (complete_leaf_value, ["return_type", "result"], "api/engine/compiled.py"),
    (get_operation_type, ["graphql_document", "operation_name"], "api/engine/execution.py"),
    (get_first_operation, ["graphql_document"], "api/engine/execution.py"),
    (max_aliases_rule, ["max_alias_count"], "api/schema/build.py"),
    (
        convert_arguments,
        ["value", "arguments", "scalar_registry", "config", "info"],
        "api/engine/execution.py",
    ),
    (parse_options_header, ["value"], "api/http/uploads.py"),
]


def _library(owner: Any) -> str:
    root = getattr(owner, "__module__", "").split(".")[0]
    name = {"graphql": "graphql-core", "strawberry": "strawberry-graphql"}.get(root, root)
    name = name.replace("_", "-")
    try:
        return f"{name} {version(name)}"
    except Exception:  # pragma: no cover - a name we do not map
        return name


def _parameters(function: Callable[..., Any], *, method: bool) -> list[str]:
    names = list(inspect.signature(function).parameters)
    return [n for n in names[1 if method else 0 :] if n not in ("args", "kwargs")]


def problems() -> list[str]:
    """What no longer has the shape the server uses (empty when all is well)."""
    found: list[str] = []
    for owner, name, expected, used_by in HOOKS:
        method = getattr(owner, name, None)
        if method is None:
            found.append(f"{_library(owner)}: {owner.__qualname__}.{name} is gone ({used_by})")
        elif (actual := _parameters(method, method=True)) != expected:
            found.append(
                f"{_library(owner)}: {owner.__qualname__}.{name} now takes {actual}, not "
                f"{expected} ({used_by})"
            )
    for function, expected, used_by in FUNCTIONS:
        if (actual := _parameters(function, method=False)) != expected:
            found.append(
                f"{_library(function)}: {function.__qualname__} now takes {actual}, not "
                f"{expected} ({used_by})"
            )
    facts = {
        # the multiplexed handlers read an operation's fields and strawberry's bookkeeping
        "strawberry's graphql-transport-ws Operation keeps id, query, variables, name": {
            "id",
            "query",
            "variables",
            "operation_name",
        }
        <= set(getattr(Operation, "__slots__", ())),
        "strawberry's graphql-ws handler keeps self.tasks and self.subscriptions": all(
            word in inspect.getsource(BaseGraphQLWSHandler.__init__)
            for word in ("self.tasks", "self.subscriptions")
        ),
        "strawberry's graphql-ws start runs handle_async_results": "self.handle_async_results("
        in inspect.getsource(BaseGraphQLWSHandler.handle_start),
        "strawberry's graphql-transport-ws subscribe runs run_operation": "self.run_operation("
        in inspect.getsource(BaseGraphQLTransportWSHandler.handle_subscribe),
        "strawberry's websocket adapter keeps self.ws and self.view": "self.ws = response"
        in inspect.getsource(ASGIWebSocketAdapter.__init__)
        and "self.view = view" in inspect.getsource(AsyncWebSocketAdapter.__init__),
        "strawberry's PreExecutionError is an ExecutionResult": issubclass(
            PreExecutionError, ExecutionResult
        ),
        # the lean execution path (engine/execution.py) and the executor (engine/executor.py)
        "strawberry's subscribe goes through stream": "self.stream("
        in inspect.getsource(StrawberrySchema.subscribe),
        "strawberry's Schema keeps the graphql-core schema as _schema": "self._schema"
        in inspect.getsource(StrawberrySchema.__init__),
        "a GraphQL field points back to its strawberry field": DEFINITION_BACKREF
        == "strawberry-definition",
        "a strawberry field has base_resolver, extensions, python_name": {
            "base_resolver",
            "extensions",
            "python_name",
        }
        <= set(dir(StrawberryField(python_name="x"))),
        "strawberry allows every operation type by default": set(DEFAULT_ALLOWED_OPERATION_TYPES)
        == set(OperationType),
        "graphql-core's executor keeps async_helpers": "self.async_helpers"
        in inspect.getsource(Executor.__init__),
        "strawberry runs the first operation of a document sent without a name": (
            "_get_first_operation()" in inspect.getsource(StrawberryExecutionContext)
            and _first_name("fragment F on Query { a } query B { b } query C { c }") == "B"
        ),
        "the execution context strawberry passes through extends graphql-core's": issubclass(
            StrawberryGraphQLCoreExecutionContext, Executor
        ),
        # the streaming multipart reader (http/uploads.py) checks the parser ended its body
        "python-multipart's parser keeps its state, END when the body closed": hasattr(
            MultipartState, "END"
        )
        and "self.state" in inspect.getsource(MultipartParser.__init__),
    }
    found += [f"no longer true: {fact}" for fact, holds in facts.items() if not holds]
    return found


def _first_name(text: str) -> str | None:
    first = get_first_operation(parse(text))
    return None if first is None or first.name is None else first.name.value


_problems = problems()
if _problems:  # pragma: no cover - an upgrade moved something: stop here, saying what
    raise ImportError(
        "graphql-files cannot use the installed libraries (pinned in pyproject.toml: "
        + ", ".join(f"{k}=={v}" for k, v in PINNED.items())
        + "): "
        + "; ".join(_problems)
    )

__all__ = [
    "DEFAULT_ALLOWED_OPERATION_TYPES",
    "DEFINITION_BACKREF",
    "ASGIWebSocketAdapter",
    "AsyncHTTPRequestAdapter",
    "BaseGraphQLTransportWSHandler",
    "BaseGraphQLWSHandler",
    "CannotGetOperationTypeError",
    "ConnectionInitMessage",
    "FormData",
    "FormParserError",
    "GraphQLHTTPResponse",
    "GraphQLRequestData",
    "HTTPException",
    "HTTPMethod",
    "InvalidOperationTypeError",
    "MaybeNullValidationRule",
    "MultipartParser",
    "MultipartState",
    "NonTextMessageReceived",
    "OneOfInputValidationRule",
    "Operation",
    "OperationMessage",
    "OperationType",
    "PreExecutionError",
    "StarletteRequestAdapter",
    "StartMessage",
    "StrawberryField",
    "StrawberryGraphQLCoreExecutionContext",
    "SubscribeMessage",
    "TransportMessage",
    "UnsetType",
    "WebSocketDisconnected",
    "complete_leaf_value",
    "convert_arguments",
    "get_first_operation",
    "get_operation_type",
    "max_aliases_rule",
    "optimized_is_awaitable",
    "parse_content_type",
    "parse_options_header",
    "process_result",
]
