"""Prepared operations and a lean execute path: GraphQL's fixed cost paid once per document.

strawberry's ``Schema.execute`` runs every request through its extension machinery (a runner, a
context, hooks for parsing, validation and execution), which on a small query costs more than
graphql-core's execution itself. This schema class does the same work without it:

- ``prepare`` parses (with the token limit) and validates (graphql-core's rules, strawberry's
  two, and ours: depth, aliases, query cost) once per (query, operationName), kept in an LRU
  bounded in bytes (``PreparedCache``);
- ``execute`` and ``stream`` run graphql-core's ``execute``/``subscribe`` on the prepared
  document with the schema's executor class (or, for a compiled query, walk its steps), then
  log the errors (bugs with their traceback) and shape them for the client (``error_shaping``).

What strawberry raised or answered is kept: the same exceptions for a missing query, an
operation type that cannot be told or is not allowed, the same ``PreExecutionError`` results on
websockets, the same messages. A schema built with extensions or custom directives is refused:
this path would skip them silently.

The strawberry internals this relies on come through ``_compat``, which checks them as it is
imported.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter, OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from inspect import isawaitable
from typing import Any, cast

import strawberry
from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLSchema,
    execute,
    get_named_type,
    get_operation_ast,
    parse,
    specified_rules,
    subscribe,
    validate,
)
from graphql import ExecutionResult as CoreResult
from strawberry.exceptions import MissingQueryError
from strawberry.types import ExecutionResult

from ._compat import (
    DEFAULT_ALLOWED_OPERATION_TYPES,
    CannotGetOperationTypeError,
    InvalidOperationTypeError,
    MaybeNullValidationRule,
    OneOfInputValidationRule,
    OperationType,
    PreExecutionError,
    convert_arguments,
    get_first_operation,
    get_operation_type,
    optimized_is_awaitable,
)
from .compiled import CompiledQuery, compile_query, run_query
from .error_shaping import shape
from .executor import LeanExecutor, simplify

log = logging.getLogger(__name__)

# what strawberry's validate_document adds to the rules it is given
STRAWBERRY_RULES: tuple[type[ASTValidationRule], ...] = (
    MaybeNullValidationRule,
    OneOfInputValidationRule,
)
PLURAL = {
    OperationType.QUERY: "queries",
    OperationType.MUTATION: "mutations",
    OperationType.SUBSCRIPTION: "subscriptions",
}


@dataclass(frozen=True)
class Prepared:
    """One (query, operationName), parsed and validated: a request error, or a document."""

    document: DocumentNode | None
    operation_type: OperationType | None  # None: the document names no such operation
    errors: tuple[GraphQLError, ...]  # parse or validation errors; nothing executes then
    parsed: bool  # False: a syntax error (strawberry answers those before the operation type)
    compiled: CompiledQuery | None = None  # a query of plain fields (see ``compiled``)
    # the name to execute: the one given, else the first operation's (as strawberry runs the
    # first operation of a document sent without a name)
    operation_name: str | None = None
    # what the transports work out of the document once (the multiplexer's shape of a
    # subscription), kept as long as the prepared operation is
    memo: dict[str, Any] = field(default_factory=dict, compare=False)


MAX_CACHED_QUERY = 64 * 1024  # characters: a longer document is prepared for each request
CACHE_BYTES = 64 * 1024 * 1024


def entry_weight(query: str) -> int:
    """What keeping a prepared document costs, over-estimated: measured (tracemalloc) at about
    10 KB plus 40 bytes per byte of query text (its tokens and nodes, the text itself; 4 bytes a
    character once one character is astral). A comment counts like the rest: the document
    keeps its source, and its last token the comment's text."""
    return 16_384 + 64 * sys.getsizeof(query)


class PreparedCache:
    """An LRU of ``Prepared`` operations, bounded by count and by estimated bytes; a hit costs
    one dict lookup and a move. Only documents that validated are kept, and none longer than
    ``MAX_CACHED_QUERY``: requests that fail, and large ones, are prepared each time, so no
    caller can fill the cache with what it alone sends."""

    def __init__(
        self,
        prepare: Callable[[str, str | None], Prepared],
        maxsize: int,
        max_bytes: int = CACHE_BYTES,
    ) -> None:
        self._prepare = prepare
        self._entries: OrderedDict[tuple[str, str | None], tuple[Prepared, int]] = OrderedDict()
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.bytes = 0  # the estimated weight of what is kept
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, query: str, operation_name: str | None) -> Prepared:
        key = (query, operation_name)
        found = self._entries.get(key)
        if found is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            return found[0]
        self.misses += 1
        entry = self._prepare(query, operation_name)
        if entry.errors or len(query) > MAX_CACHED_QUERY:
            return entry
        weight = entry_weight(query)
        self._entries[key] = (entry, weight)
        self.bytes += weight
        while len(self._entries) > self.maxsize or self.bytes > self.max_bytes:
            _, (_, gone_weight) = self._entries.popitem(last=False)
            self.bytes -= gone_weight
        return entry


class LeanSchema(strawberry.Schema):
    """A strawberry schema whose ``execute`` and ``stream`` (``subscribe``) take the lean path.

    ``rules`` are added to graphql-core's and strawberry's validation rules; ``max_tokens``
    bounds parsing; at most ``cache_size`` prepared operations are kept, weighing at most
    ``cache_bytes`` (see ``PreparedCache``).
    """

    def __init__(
        self,
        *args: Any,
        rules: Iterable[type[ASTValidationRule]] = (),
        max_tokens: int | None = None,
        cache_size: int = 1024,
        cache_bytes: int = CACHE_BYTES,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("extensions"):
            raise ValueError(
                "LeanSchema executes without strawberry's extension runner: pass limits as "
                "validation rules, not extensions (they would be skipped)"
            )
        super().__init__(*args, **kwargs)
        if self.directives:
            raise ValueError(
                "LeanSchema does not run custom directives (strawberry's DirectivesExtension)"
            )
        self.rules = (*specified_rules, *rules, *STRAWBERRY_RULES)
        # how many executions took each path (``/readyz``): chosen once per document, when
        # it is prepared
        self.paths: Counter[str] = Counter()
        simplify(self._schema, self._convert_arguments)
        self.max_tokens = max_tokens
        self.prepared = PreparedCache(self._prepare, cache_size, cache_bytes)

    def _convert_arguments(self, value: dict[str, Any], arguments: Any) -> dict[str, Any]:
        """A field's coerced arguments as strawberry's resolver wrapper converts them (input
        objects to their classes, enum values to members), for ``plain(converts=True)``."""
        return convert_arguments(
            value,
            arguments,
            scalar_registry=self.schema_converter.scalar_registry,
            config=self.config,
        )

    @property
    def core(self) -> GraphQLSchema:
        """The graphql-core schema strawberry built."""
        return self._schema

    # --- preparing ---------------------------------------------------------------------------

    def _prepare(self, query: str, operation_name: str | None) -> Prepared:
        try:
            document = parse(query, max_tokens=self.max_tokens)
        except GraphQLError as error:
            return Prepared(None, None, (error,), parsed=False)
        if operation_name is None:
            first = get_first_operation(document)
            operation_name = first.name.value if first and first.name else None
        try:
            operation_type: OperationType | None = get_operation_type(document, operation_name)
        except RuntimeError:
            operation_type = None
        errors = tuple(validate(self._schema, document, self.rules))
        compiled = None if errors else compile_query(self._schema, document, operation_name)
        return Prepared(
            document, operation_type, errors, True, compiled, operation_name=operation_name
        )

    def streams_files(self, query: object, operation_name: object, mapped: set[str]) -> bool:
        """Whether this multipart operation may run while its files arrive: a valid query (it
        writes nothing), or a mutation of one field that takes uploads and declares every
        variable the ``map`` puts files in (``mapped``), so it reads each file it is sent, and
        checks the rest of the body, before it commits. False for anything else, request
        errors included."""
        if not isinstance(query, str) or not isinstance(operation_name, str | None) or not query:
            return False
        prepared = self.prepared.get(query, operation_name)
        if prepared.errors or prepared.document is None:
            return False
        if prepared.operation_type is OperationType.QUERY:
            return True
        operation = get_operation_ast(prepared.document, prepared.operation_name)
        mutation = self._schema.mutation_type
        if prepared.operation_type is not OperationType.MUTATION or not operation or not mutation:
            return False
        selections = operation.selection_set.selections
        if len(selections) != 1 or not isinstance(selections[0], FieldNode):
            return False
        field = mutation.fields.get(selections[0].name.value)
        declared = {d.variable.name.value for d in operation.variable_definitions or ()}
        return (
            field is not None
            and any(_takes_upload(arg.type) for arg in field.args.values())
            and mapped <= declared
        )

    def prepare(
        self,
        query: str | None,
        operation_name: str | None,
        allowed: Iterable[OperationType] | None,
    ) -> Prepared:
        """The prepared operation; strawberry's exceptions for a missing query, an operation
        that cannot be found, or one of a type not ``allowed``. A syntax error comes back as
        the prepared operation's errors before the type is looked at, as in strawberry."""
        if not query:
            raise MissingQueryError
        prepared = self.prepared.get(query, operation_name)
        if not prepared.parsed:
            return prepared
        if prepared.operation_type is None:
            raise CannotGetOperationTypeError(operation_name)
        if prepared.operation_type not in (allowed or DEFAULT_ALLOWED_OPERATION_TYPES):
            raise InvalidOperationTypeError(prepared.operation_type)
        return prepared

    # --- executing ---------------------------------------------------------------------------

    async def _core(
        self,
        run: Callable[..., Any],
        prepared: Prepared,
        root_value: Any,
        context_value: Any,
        variable_values: dict[str, Any] | None,
        operation_extensions: dict[str, Any] | None,
        **extra: Any,
    ) -> Any:
        """graphql-core's ``execute`` or ``subscribe`` on the prepared document, awaited."""
        result = run(
            self._schema,
            prepared.document,
            root_value=root_value,
            context_value=context_value,
            variable_values=variable_values,
            operation_name=prepared.operation_name,
            executor_class=self.execution_context_class,
            operation_extensions=operation_extensions,
            **extra,
        )
        return await result if isawaitable(result) else result

    def _finish(self, data: Any, errors: Iterable[GraphQLError] | None) -> ExecutionResult:
        """Errors logged (bugs with their traceback) before they are shaped for the client."""
        if not errors:
            return ExecutionResult(data=data, errors=None)
        errors = list(errors)
        self.process_errors(errors)
        return ExecutionResult(data=data, errors=[shape(e) for e in errors])

    def _refused(self, errors: Iterable[GraphQLError]) -> PreExecutionError:
        result = self._finish(None, errors)
        return PreExecutionError(data=None, errors=result.errors)

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        prepared = self.prepare(query, operation_name, allowed_operation_types)
        if prepared.errors or prepared.document is None:
            return self._refused(prepared.errors)
        if prepared.compiled is not None:  # decided when it was prepared: it runs to the end
            self.paths["compiled"] += 1
            executor = cast(type[LeanExecutor], self.execution_context_class)
            executor.begin()
            data, errors = await run_query(
                prepared.compiled, self._schema, context_value, variable_values
            )
            return self._finish(data, errors)
        self.paths["graphql-core"] += 1
        try:
            result = await self._core(
                execute,
                prepared,
                root_value,
                context_value,
                variable_values,
                operation_extensions,
                is_awaitable=cast(Any, optimized_is_awaitable),
            )
        except Exception as exc:
            return self._refused([_coerce(exc)])
        assert isinstance(result, CoreResult)
        return self._finish(result.data, result.errors)

    async def stream(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
    ) -> Any:
        """The results of any operation over a streaming transport (websockets): one for a
        query or mutation, one per event for a subscription; request errors as strawberry's
        ``PreExecutionError``."""
        return self._lean_stream(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            operation_extensions,
            allowed_operation_types,
        )

    async def _lean_stream(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None,
        context_value: Any | None,
        root_value: Any | None,
        operation_name: str | None,
        operation_extensions: dict[str, Any] | None,
        allowed_operation_types: Iterable[OperationType] | None,
    ) -> AsyncGenerator[ExecutionResult, None]:
        try:
            prepared = self.prepare(query, operation_name, allowed_operation_types)
        except (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError) as exc:
            yield self._refused([_pre_execution_error(exc)])
            return
        if prepared.errors or prepared.document is None:
            yield self._refused(prepared.errors)
            return
        if prepared.operation_type is not OperationType.SUBSCRIPTION:
            yield await self.execute(
                query,
                variable_values,
                context_value,
                root_value,
                operation_name,
                allowed_operation_types,
                operation_extensions,
            )
            return
        try:
            source = await self._core(
                subscribe,
                prepared,
                root_value,
                context_value,
                variable_values,
                operation_extensions,
            )
        except Exception as exc:
            yield self._refused([_coerce(exc)])
            return
        if isinstance(source, CoreResult):  # refused before any event: variables, the resolver
            yield self._refused(source.errors or ())
            return
        try:
            async with aclosing(cast(Any, source)):
                async for event in source:
                    yield self._finish(event.data, event.errors)
        except Exception as exc:
            yield self._finish(None, [_coerce(exc)])


def _takes_upload(type_: Any, seen: frozenset[str] = frozenset()) -> bool:
    """Whether an argument of this input type can carry an ``Upload``."""
    named = get_named_type(type_)
    if named.name == "Upload":
        return True
    if not isinstance(named, GraphQLInputObjectType) or named.name in seen:
        return False
    return any(_takes_upload(f.type, seen | {named.name}) for f in named.fields.values())


def _coerce(error: Exception) -> GraphQLError:
    return (
        error if isinstance(error, GraphQLError) else GraphQLError(str(error), original_error=error)
    )


def _pre_execution_error(error: Exception) -> GraphQLError:
    """The error strawberry streams for a request it cannot run (over websockets)."""
    if isinstance(error, CannotGetOperationTypeError):
        return GraphQLError(error.as_http_error_reason(), original_error=error)
    if isinstance(error, InvalidOperationTypeError):
        return GraphQLError(f"{PLURAL[error.operation_type]} are not allowed", original_error=error)
    return _coerce(error)
