"""The executor: graphql-core's, with plain fields completed inline.

``simplify`` gives every field strawberry would only read off its object a plain attribute
getter, and every ``plain`` resolver a direct call, so neither goes through strawberry's
per-call wrapper; it records the leaf fields among them. ``LeanExecutor`` (graphql-core's
``execution_context_class`` hook, which strawberry passes through) then completes those leaves,
and objects of leaves from plain synchronous resolvers (``url { url expiresAt }``), inline;
anything unusual goes through graphql-core's own code, so results and errors are its own.
What is worked out for a field is kept across executions of a directive-free operation.

The strawberry and graphql-core internals this relies on come through ``_compat``, which checks
them as it is imported.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import cached_property
from typing import Any, NamedTuple, TypeVar

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLField,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    Undefined,
    get_argument_values,
    is_leaf_type,
)

from ._compat import (
    DEFINITION_BACKREF,
    Path,
    StrawberryField,
    StrawberryGraphQLCoreExecutionContext,
    gather_with_cancel,
    to_nodes,
)

F = TypeVar("F", bound=Callable[..., Any])
LEAVES_KEY = "graphql_files.plain_leaves"  # in GraphQLSchema.extensions: type -> field -> Leaf
SHARED_KEY = "graphql_files.shared"  # in GraphQLSchema.extensions: id(operation) -> Shared
PLAIN_RESOLVER = "__graphql_files_plain__"  # on a resolver: plain(takes_source)
PLAIN_CALL = "__graphql_files_call__"  # on a GraphQL field's resolve: it calls a plain resolver
INLINE = "__graphql_files_inline__"  # the same, when that resolver is synchronous
ATTRIBUTE = "__graphql_files_attribute__"  # on a GraphQL field's resolve: the attribute read
# Python values a leaf type passes through unchanged (graphql-core would return them as they are;
# not so a float, which graphql-core refuses when it is infinite or NaN)
NATIVE: dict[str, type] = {"String": str, "ID": str, "Boolean": bool}
INT_RANGE = range(-(2**31), 2**31)


def plain(*, takes_source: bool) -> Callable[[F], F]:
    """Mark a resolver whose arguments need no conversion (scalars, named as in GraphQL) and
    that reads nothing of ``info`` but ``context``: graphql-core calls it directly, without
    strawberry's per-call wrapper. ``takes_source``: a method (it gets the parent object)."""

    def mark(resolver: F) -> F:
        setattr(resolver, PLAIN_RESOLVER, takes_source)
        return resolver

    return mark


class Leaf(NamedTuple):
    """A field read straight off its object: ``attr``, completed as ``type_`` completes it."""

    attr: str
    type_: GraphQLLeafType
    nullable: bool
    native: type | None  # values of exactly this type pass unchanged
    is_list: bool  # a list of non-null leaves ([String!]), itself nullable when ``nullable``


def _attribute(name: str) -> Callable[..., Any]:
    def resolve(source: Any, info: Any, **_: Any) -> Any:
        return getattr(source, name, None)

    setattr(resolve, ATTRIBUTE, name)
    return resolve


def _call(resolver: Callable[..., Any], takes_source: bool) -> Callable[..., Any]:
    if takes_source:
        call = lambda source, info, **args: resolver(source, info, **args)  # noqa: E731
    else:
        call = lambda source, info, **args: resolver(info, **args)  # noqa: E731
    setattr(call, PLAIN_CALL, True)
    # synchronous: LeanExecutor and compiled queries may call it inline
    setattr(call, INLINE, not inspect.iscoroutinefunction(resolver))
    return call


def simplify(schema: GraphQLSchema) -> None:
    """Give every field strawberry would only read off its object (no resolver, no field
    extensions) a plain attribute getter, and every ``plain`` resolver a direct call; record the
    leaf fields among them so ``LeanExecutor`` completes them inline."""
    plan: dict[str, dict[str, Leaf]] = {}
    for type_ in schema.type_map.values():
        if not isinstance(type_, GraphQLObjectType) or type_.name.startswith("__"):
            continue
        if type_ is schema.subscription_type:
            continue  # its fields resolve events, through strawberry's subscribe wrapper
        for name, field in type_.fields.items():
            definition = field.extensions.get(DEFINITION_BACKREF)
            if not isinstance(definition, StrawberryField) or definition.extensions:
                continue
            resolver = definition.base_resolver
            if resolver is not None:
                function = resolver.wrapped_func
                takes_source = getattr(function, PLAIN_RESOLVER, None)
                if takes_source is not None and callable(function):
                    field.resolve = _call(function, takes_source)
                continue
            field.resolve = _attribute(definition.python_name)
            leaf = _leaf(definition.python_name, field.type)
            if leaf is not None:
                plan.setdefault(type_.name, {})[name] = leaf
    schema.extensions[LEAVES_KEY] = plan
    schema.extensions[SHARED_KEY] = {}


class Shared:
    """What every execution of one operation shares: its collected field lists and the plans
    compiled for them. It lives exactly as long as the prepared-operation cache keeps the
    operation's document (``share``/``unshare``): a document that is not kept shares nothing,
    so nothing here outlives what the cache bounds."""

    __slots__ = ("operation", "plans", "static", "subfields")

    def __init__(self, operation: OperationDefinitionNode) -> None:
        self.operation = operation
        self.static: bool | None = None  # decided by the first execution
        self.subfields: dict[Any, Any] = {}
        self.plans: dict[int, tuple[str, Any, Any]] = {}


def share(schema: GraphQLSchema, document: DocumentNode) -> None:
    """Let executions of ``document``'s operations share their plans (while it is kept)."""
    shared: dict[int, Shared] = schema.extensions[SHARED_KEY]
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            shared[id(definition)] = Shared(definition)


def unshare(schema: GraphQLSchema, document: DocumentNode) -> None:
    """The cache let ``document`` go: so does what its executions shared."""
    shared: dict[int, Shared] = schema.extensions[SHARED_KEY]
    for definition in document.definitions:
        entry = shared.get(id(definition))
        if entry is not None and entry.operation is definition:
            del shared[id(definition)]


def _leaf(attr: str, type_: GraphQLOutputType) -> Leaf | None:
    nullable = not isinstance(type_, GraphQLNonNull)
    inner: Any = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    is_list = isinstance(inner, GraphQLList)
    if is_list:
        item = inner.of_type
        if not isinstance(item, GraphQLNonNull) or not is_leaf_type(item.of_type):
            return None
        inner = item.of_type
    if not is_leaf_type(inner):
        return None
    native = NATIVE.get(inner.name) if isinstance(inner, GraphQLScalarType) else None
    if is_list and native is None:
        return None
    return Leaf(attr, inner, nullable, native, is_list)


def complete_leaf(leaf: Leaf, value: Any) -> Any:
    """``value`` completed, or ``Undefined`` when graphql-core's own path must say why not
    (a null in a non-null field, a value the type refuses)."""
    if value is None:
        return None if leaf.nullable else Undefined
    if leaf.is_list:
        native = leaf.native
        if type(value) is list and all(type(v) is native for v in value):
            return value
        return Undefined
    if type(value) is leaf.native:
        return value
    if type(value) is int and leaf.type_.name == "Int":
        return value if value in INT_RANGE else Undefined
    try:
        coerced = leaf.type_.coerce_output_value(value)
    except Exception:
        return Undefined
    return Undefined if coerced is None else coerced


class Inline(NamedTuple):
    """A field whose plain, synchronous resolver returns an object of which only leaves are
    selected (``url { url expiresAt }``): resolved and completed in one step."""

    field: GraphQLField
    resolve: Callable[..., Any]  # the field's plain call
    args: dict[str, Any]
    nullable: bool
    fields: tuple[tuple[str, Leaf], ...]  # (response name, leaf) in selection order


LEAF, INLINE_OBJECT, DEFAULT = "leaf", "inline", "default"


class ContextOnly(NamedTuple):
    """What a ``plain`` resolver may read of its info: the context."""

    context: Any


class LeanExecutor(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, completing plain fields inline: a leaf read off its object
    and passed (or coerced) at once, and an object of leaves from a plain synchronous resolver
    built in one step, instead of a resolve-info, a resolver call through strawberry and
    ``complete_value`` per field. Anything unusual (a null in a non-null field, a value the
    type refuses, a field read twice under one name, a resolver that raises) goes through
    graphql-core's own path, so results and errors are graphql-core's."""

    @classmethod
    def begin(cls) -> None:
        """Called as an execution starts, here or in a compiled query (``compiled``): what a
        subclass sets up for every execution (``budget.budgeted_execution``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.begin()
        # how each field of the operation completes, by the identity of its field list (which
        # graphql-core memoizes per parent type; the entry keeps the list alive, as it does)
        self._compiled: dict[int, tuple[str, Any, Any]] = {}
        self._context_only = ContextOnly(self.context_value)

    def build_response(self, data: dict[str, Any] | None) -> Any:
        """graphql-core's, then the executor lets go of itself: its resolve-info helpers are
        bound methods of it, a reference cycle that would keep every execution (its context,
        request and result) alive until the cyclic collector ran."""
        response = super().build_response(data)
        self.async_helpers = None  # type: ignore[assignment]
        return response

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        plans = self._plans
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        try:
            for response_name, field_details_list in grouped_field_set.items():
                entry = plans.get(id(field_details_list))
                if entry is None or entry[2] is not field_details_list:
                    entry = self._compiled.get(id(field_details_list))
                    if entry is None:
                        entry = self._compiled_field(parent_type, field_details_list)
                kind, how, _ = entry
                if kind is LEAF:
                    value = complete_leaf(how, getattr(source_value, how.attr, None))
                    if value is not Undefined:
                        results[response_name] = value
                        continue  # else: graphql-core completes it, and says what is wrong
                if kind is INLINE_OBJECT:
                    result = self._execute_inline(
                        how, parent_type, source_value, field_details_list, path
                    )
                else:
                    result = self.execute_field(
                        parent_type,
                        source_value,
                        field_details_list,
                        Path(path, response_name, parent_type.name),
                        position_context,
                    )
                if result is not Undefined:
                    results[response_name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:  # as graphql-core: settle what other fields started
                self.settle_in_background([results[f] for f in awaitable_fields])
            raise
        if not awaitable_fields:
            return results

        async def get_results() -> dict[str, Any]:
            if len(awaitable_fields) == 1:  # as graphql-core: no tasks to gather just one
                field = awaitable_fields[0]
                results[field] = await results[field]
                return results
            awaited = await gather_with_cancel(*(results[f] for f in awaitable_fields))
            results.update(zip(awaitable_fields, awaited, strict=True))
            return results

        return get_results()

    @cached_property
    def _shared(self) -> Shared | None:
        """What this execution shares with the others of its operation: only for a document
        the prepared-operation cache keeps, and only when its fields are collected from the
        document alone (no directive anywhere: ``@skip``/``@include`` read variables,
        ``@defer``/``@stream`` change the shape), so what is worked out for one execution holds
        for the next."""
        shared: dict[int, Shared] = self.schema.extensions[SHARED_KEY]
        entry = shared.get(id(self.operation))
        if entry is None or entry.operation is not self.operation:
            return None
        if entry.static is None:
            entry.static = not any(
                _has_directives(node)
                for node in (self.operation, *self.fragment_definitions.values())
            )
        return entry if entry.static else None

    @cached_property
    def _plans(self) -> dict[int, tuple[str, Any, Any]]:
        """Field plans shared by every execution of a kept, static operation (each checked
        against its field list's identity); this execution's own otherwise."""
        shared = self._shared
        return shared.plans if shared is not None else self._compiled

    def collect_subfields(self, return_type: GraphQLObjectType, field_details_list: Any) -> Any:
        """graphql-core's, kept across executions of a shared operation: the same field lists
        come back for the same fields (and with them, their compiled plans)."""
        shared = self._shared
        if shared is None:
            return super().collect_subfields(return_type, field_details_list)
        cache = shared.subfields
        nodes = tuple(details.node for details in field_details_list)
        key = (return_type.name, *map(id, nodes))
        hit = cache.get(key)
        if hit is not None and all(a is b for a, b in zip(hit[0], nodes, strict=True)):
            return hit[1]
        collected = super().collect_subfields(return_type, field_details_list)
        cache[key] = (nodes, collected)
        return collected

    def _compiled_field(
        self, parent_type: GraphQLObjectType, field_details_list: Any
    ) -> tuple[str, Any, Any]:
        """A new plan for the field, kept for every execution of this static operation (the
        same field lists come back: see ``collect_subfields``) when it depends on no argument
        (variables may change those), for this execution otherwise."""
        entry = self._compile(parent_type, field_details_list)
        fixed = not field_details_list[0].node.arguments
        schema = self.schema
        root = parent_type in (schema.query_type, schema.mutation_type, schema.subscription_type)
        if self._shared is not None and fixed and not root:  # root lists: per execution
            self._shared.plans[id(field_details_list)] = entry
        else:
            self._compiled[id(field_details_list)] = entry
        return entry

    def _compile(
        self, parent_type: GraphQLObjectType, field_details_list: Any
    ) -> tuple[str, Any, Any]:
        """How a field completes in this execution: a ``Leaf``, an ``Inline`` object (its
        arguments fixed, as the variables are), or graphql-core's way."""
        plan: dict[str, dict[str, Leaf]] = self.schema.extensions.get(LEAVES_KEY, {})
        default = (DEFAULT, None, field_details_list)
        if len(field_details_list) != 1:
            return default
        details = field_details_list[0]
        name = details.node.name.value
        leaf = plan.get(parent_type.name, {}).get(name)
        if leaf is not None:
            return (LEAF, leaf, field_details_list)
        field = parent_type.fields.get(name)
        if (
            field is None
            or not getattr(field.resolve, INLINE, False)
            or details.fragment_variable_values is not None
            or self.middleware_manager
        ):
            return default
        nullable = not isinstance(field.type, GraphQLNonNull)
        return_type = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
        if not isinstance(return_type, GraphQLObjectType) or return_type.is_type_of:
            return default
        grouped, deferred, _ = self.collect_subfields(return_type, field_details_list)
        leaves = plan.get(return_type.name, {})
        fields = []
        for response_name, sub_details in grouped.items():
            sub_leaf = leaves.get(sub_details[0].node.name.value)
            if deferred or len(sub_details) != 1 or sub_leaf is None:
                return default
            fields.append((response_name, sub_leaf))
        try:
            args = get_argument_values(field, details.node, self.variable_values)
        except GraphQLError:
            return default  # graphql-core's path reports it
        inline = Inline(field, field.resolve, args, nullable, tuple(fields))
        return (INLINE_OBJECT, inline, field_details_list)

    def _execute_inline(
        self,
        inline: Inline,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        parent_path: Path | None,
    ) -> Any:
        """``execute_field`` for an inlined field: the resolver called once; its error, or a
        value the inline completion cannot take, handled by graphql-core's own code."""
        try:
            value = inline.resolve(source, self._context_only, **inline.args)
            if value is None and inline.nullable:
                return None
            if self.is_awaitable(value):  # deferred to a later turn (``budget.yielding``)
                here = _path_of(parent_path, parent_type, field_details_list)
                info = self.build_resolve_info(
                    inline.field, to_nodes(field_details_list), parent_type, here
                )
                return self.complete_awaitable_value(
                    inline.field.type, field_details_list, info, here, value, None
                )
            if value is not None:
                completed = {}
                for response_name, leaf in inline.fields:
                    item = complete_leaf(leaf, getattr(value, leaf.attr, None))
                    if item is Undefined:
                        break
                    completed[response_name] = item
                else:
                    return completed
            # an anomaly: graphql-core completes (and reports) it
            here = _path_of(parent_path, parent_type, field_details_list)
            info = self.build_resolve_info(
                inline.field, to_nodes(field_details_list), parent_type, here
            )
            return self.complete_value(
                inline.field.type, field_details_list, info, here, value, None
            )
        except Exception as raw_error:
            here = _path_of(parent_path, parent_type, field_details_list)
            self.handle_field_error(raw_error, inline.field.type, field_details_list, here)
            return None


def _has_directives(node: Any) -> bool:
    """Whether ``node`` or any selection under it carries a directive (a loop, not recursion:
    the depth limit has checked the document, but this runs on any document)."""
    stack = [node]
    while stack:
        current = stack.pop()
        if getattr(current, "directives", None):
            return True
        selection_set = getattr(current, "selection_set", None)
        if selection_set is not None:
            stack.extend(selection_set.selections)
    return False


def _path_of(parent: Path | None, parent_type: GraphQLObjectType, field_details_list: Any) -> Path:
    node = field_details_list[0].node
    return Path(parent, (node.alias or node.name).value, parent_type.name)
