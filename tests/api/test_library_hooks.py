"""The hooks of other libraries the server relies on, checked so an upgrade fails here, loudly,
rather than somewhere subtle. When one of these fails: read the library's changes for the hook
named, adapt the module that uses it, then move the pin in pyproject.toml."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import version

import pytest
from graphql import parse
from graphql.execution import Executor
from graphql.execution.collect_fields import FieldDetails
from graphql.execution.executor import to_nodes
from graphql.execution.values import get_argument_values, get_variable_values
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.async_base_view import AsyncBaseHTTPView, AsyncWebSocketAdapter
from strawberry.schema.schema import (
    DEFAULT_ALLOWED_OPERATION_TYPES,
    StrawberryGraphQLCoreExecutionContext,
)
from strawberry.schema.schema import Schema as StrawberrySchema
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types import ExecutionResult
from strawberry.types.execution import ExecutionContext as StrawberryExecutionContext
from strawberry.types.execution import PreExecutionError
from strawberry.types.field import StrawberryField
from strawberry.types.graphql import OperationType
from strawberry.utils.operation import get_first_operation, get_operation_type

PINNED = {
    "strawberry-graphql": "0.341.2",
    "graphql-core": "3.3.2",
    "cross-web": "0.9.0",
    "starlette": "1.10.0",
}

# (class, method, the parameters our override takes, after self) and where we override it
HOOKS = [
    (BaseGraphQLTransportWSHandler, "handle_message", ["message"], "api/websockets.py"),
    (BaseGraphQLTransportWSHandler, "handle_subscribe", ["message"], "api/websockets.py"),
    (BaseGraphQLTransportWSHandler, "handle_task_exception", ["error"], "api/websockets.py"),
    (BaseGraphQLTransportWSHandler, "handle_invalid_message", ["error_message"], "websockets"),
    (BaseGraphQLTransportWSHandler, "run_operation", ["operation"], "api/websockets.py"),
    (Operation, "send_operation_message", ["message"], "api/websockets.py"),
    (BaseGraphQLWSHandler, "handle_message", ["message"], "api/websockets.py"),
    (BaseGraphQLWSHandler, "handle_start", ["message"], "api/websockets.py"),
    (BaseGraphQLWSHandler, "handle_connection_init", ["message"], "api/websockets.py"),
    (
        BaseGraphQLWSHandler,
        "handle_async_results",
        ["operation_id", "query", "operation_name", "variables"],
        "api/websockets.py",
    ),
    (ASGIWebSocketAdapter, "send_json", ["message"], "api/websockets.py"),
    (AsyncBaseHTTPView, "parse_json", ["data"], "api/view.py"),
    (AsyncBaseHTTPView, "decode_json", ["data"], "api/view.py"),
    (AsyncBaseHTTPView, "parse_http_body", ["request"], "api/view.py"),
    (AsyncBaseHTTPView, "parse_multipart", ["request"], "api/view.py"),
    (
        AsyncBaseHTTPView,
        "execute_single",
        ["request", "request_adapter", "sub_response", "context", "root_value", "request_data"],
        "api/view.py",
    ),
    (AsyncBaseHTTPView, "process_result", ["request", "result"], "api/view.py"),
    (Executor, "build_per_event_executor", ["payload"], "api/budget.py"),
    (
        Executor,
        "execute_fields",
        ["parent_type", "source_value", "path", "grouped_field_set", "position_context"],
        "api/executor.py",
    ),
    (Executor, "collect_subfields", ["return_type", "field_details_list"], "api/executor.py"),
    (Executor, "build_response", ["data"], "api/executor.py"),
    (
        Executor,
        "handle_field_error",
        ["raw_error", "return_type", "field_details_list", "path"],
        "api/execution.py",
    ),
    (
        Executor,
        "complete_value",
        ["return_type", "field_details_list", "info", "path", "result", "position_context"],
        "api/execution.py",
    ),
    (
        Executor,
        "complete_awaitable_value",
        ["return_type", "field_details_list", "info", "path", "result", "position_context"],
        "api/executor.py",
    ),
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
        "api/execution.py",
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
        "api/execution.py",
    ),
    (AsyncBaseHTTPView, "_get_stream_transport_from_headers", ["headers"], "api/view.py"),
    (AsyncBaseHTTPView, "get_sub_response", ["request"], "api/view.py"),
    (AsyncBaseHTTPView, "create_response", ["response_data", "sub_response"], "api/view.py"),
]


@pytest.mark.parametrize(("distribution", "pinned"), PINNED.items())
def test_the_installed_versions_are_the_ones_tested(distribution: str, pinned: str) -> None:
    assert version(distribution) == pinned, (
        f"{distribution} {version(distribution)} is installed, but the hooks below were checked "
        f"against {pinned}: re-check them (this file lists each and who uses it) before moving "
        "the pin in pyproject.toml"
    )


@pytest.mark.parametrize(
    ("owner", "name", "parameters", "used_by"),
    HOOKS,
    ids=[f"{c.__name__}.{n}" for c, n, _, _ in HOOKS],
)
def test_every_hook_we_override_is_still_there(
    owner: type, name: str, parameters: list[str], used_by: str
) -> None:
    method = getattr(owner, name, None)
    assert method is not None, f"{owner.__qualname__}.{name} is gone: {used_by} overrides it"
    signature = list(inspect.signature(method).parameters)[1:]
    assert signature == parameters, (
        f"{owner.__qualname__}.{name} now takes {signature}, not {parameters}: "
        f"{used_by} overrides it"
    )


def test_the_operation_state_the_multiplexed_handlers_use_is_still_there() -> None:
    """``api/websockets.py`` runs subscriptions itself (``multiplex``) inside strawberry's
    operation tasks: it reads a graphql-transport-ws ``Operation``'s fields, keeps graphql-ws's
    per-operation bookkeeping (``tasks``, ``subscriptions``) as strawberry does, and hands a
    subscription back to strawberry when its first result is a ``PreExecutionError``."""
    assert {"id", "query", "variables", "operation_name"} <= set(Operation.__slots__)
    legacy_init = inspect.getsource(BaseGraphQLWSHandler.__init__)
    assert "self.tasks" in legacy_init
    assert "self.subscriptions" in legacy_init
    assert issubclass(PreExecutionError, ExecutionResult)
    # the websocket adapter's send_json (overridden to send text frames) reads these two
    adapter_init = inspect.getsource(ASGIWebSocketAdapter.__init__)
    assert "self.ws = response" in adapter_init
    assert "self.view = view" in inspect.getsource(AsyncWebSocketAdapter.__init__)
    transport_subscribe = inspect.getsource(BaseGraphQLTransportWSHandler.handle_subscribe)
    assert "self.run_operation(operation)" in transport_subscribe
    legacy_start = inspect.getsource(BaseGraphQLWSHandler.handle_start)
    assert "self.handle_async_results(" in legacy_start


def test_the_graphql_core_functions_compiled_queries_call_are_still_there() -> None:
    """``api/compiled.py`` and ``api/executor.py`` coerce variables and arguments and locate
    errors with graphql-core's own functions, not exported at its top level."""
    signatures: dict[Callable[..., object], list[str]] = {
        get_variable_values: [
            "schema",
            "var_def_nodes",
            "inputs",
            "max_errors",
            "hide_suggestions",
        ],
        get_argument_values: [
            "type_def",
            "node",
            "variable_values",
            "fragment_variable_values",
            "hide_suggestions",
        ],
        to_nodes: ["field_details_list"],
    }
    for function, parameters in signatures.items():
        assert list(inspect.signature(function).parameters) == parameters, function.__name__


def test_what_the_lean_execution_path_reads_of_strawberry_is_still_there() -> None:
    """``api/execution.py`` executes without strawberry's runner: strawberry's subscribe must
    still go through ``stream`` (which it overrides), a GraphQL field must still point back to
    its strawberry field, and that field must still say whether it has a resolver or
    extensions."""
    assert "self.stream(" in inspect.getsource(StrawberrySchema.subscribe)
    assert GraphQLCoreConverter.DEFINITION_BACKREF == "strawberry-definition"
    field = StrawberryField(python_name="x")
    assert (field.base_resolver, field.extensions, field.python_name) == (None, [], "x")
    assert set(DEFAULT_ALLOWED_OPERATION_TYPES) == set(OperationType)
    assert list(inspect.signature(get_operation_type).parameters) == [
        "graphql_document",
        "operation_name",
    ]
    assert FieldDetails._fields[:3] == ("node", "defer_usage", "fragment_variable_values")
    # a document sent without an operation name runs its first operation (execution.py does so)
    first = get_first_operation(parse("fragment F on Query { a } query B { b } query C { c }"))
    assert first is not None
    assert first.name is not None
    assert first.name.value == "B"
    assert "_get_first_operation()" in inspect.getsource(StrawberryExecutionContext)


def test_the_execution_context_strawberry_passes_through_is_the_one_we_extend() -> None:
    assert issubclass(StrawberryGraphQLCoreExecutionContext, Executor)
