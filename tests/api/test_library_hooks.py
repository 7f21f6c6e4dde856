"""The hooks of other libraries the server relies on, checked so an upgrade fails here, loudly,
rather than somewhere subtle. When one of these fails: read the library's changes for the hook
named, adapt the module that uses it, then move the pin in pyproject.toml."""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator
from importlib.metadata import version

import pytest
from graphql.execution import Executor
from starlette.datastructures import Headers
from starlette.formparsers import MultiPartParser
from strawberry.http.async_base_view import AsyncBaseHTTPView
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from graphql_files.api.uploads import part_is_a_file

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
    (MultiPartParser, "on_part_begin", [], "api/uploads.py"),
    (MultiPartParser, "on_part_data", ["data", "start", "end"], "api/uploads.py"),
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
    transport_subscribe = inspect.getsource(BaseGraphQLTransportWSHandler.handle_subscribe)
    assert "self.run_operation(operation)" in transport_subscribe
    legacy_start = inspect.getsource(BaseGraphQLWSHandler.handle_start)
    assert "self.handle_async_results(" in legacy_start


def test_the_execution_context_strawberry_passes_through_is_the_one_we_extend() -> None:
    assert issubclass(StrawberryGraphQLCoreExecutionContext, Executor)


async def test_the_multipart_parser_still_tells_files_from_fields() -> None:
    """``part_is_a_file`` reads Starlette's parser's private current part: file parts and form
    fields must still be told apart while they stream in."""
    body = (
        b"--b\r\n"
        b'Content-Disposition: form-data; name="operations"\r\n\r\n{}\r\n'
        b"--b\r\n"
        b'Content-Disposition: form-data; name="0"; filename="x.png"\r\n'
        b"Content-Type: image/png\r\n\r\nPNGDATA\r\n"
        b"--b--\r\n"
    )
    seen: list[bool] = []

    class Spy(MultiPartParser):
        def on_part_data(self, data: bytes, start: int, end: int) -> None:
            seen.append(part_is_a_file(self))
            super().on_part_data(data, start, end)

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    headers = Headers({"content-type": "multipart/form-data; boundary=b"})
    form = await Spy(headers, stream()).parse()
    await form.close()
    assert seen == [False, True]
