"""Compiled queries: a prepared query whose every field is plain, answered without graphql-core's
executor.

graphql-core builds an executor per request, collects fields, builds a resolve-info per field
and completes each value through several layers; for ``getSong(id:) { id name ... }`` that costs
more than the resolver and the database together. A query qualifies when every field in it is
one the schema simplified (``executor.simplify``): a leaf or ``__typename``, an attribute, or a
``plain`` resolver (below the root: synchronous, with literal arguments), returning objects or
lists of objects with no abstract types, selected with no fragments and no directives. Whether
a query is compiled is decided once, when it is prepared (``execution``); such a query is
compiled into steps, and each execution coerces the variables, calls the root resolvers and
walks the steps.

The walk answers everything it meets as graphql-core would, to the end: a resolver's error, a
null in a non-null field, a value a type refuses, each becomes the same located error, and a
null propagates to the nearest nullable field, with graphql-core's own messages; a value still
to be awaited (a record deferred to a later turn of the event loop, ``budget.yielding``) is
awaited once the rest is walked, then completed in its place. Nothing runs twice.
``tests/api/test_execution`` runs the same queries both ways and compares the answers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any, NamedTuple

from graphql import (
    BooleanValueNode,
    DocumentNode,
    EnumValueNode,
    FieldNode,
    FloatValueNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    IntValueNode,
    NullValueNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    Undefined,
    get_argument_values,
    get_operation_ast,
    get_variable_values,
    located_error,
)

from ._compat import complete_leaf_value
from .executor import ATTRIBUTE, INLINE, LEAVES_KEY, PLAIN_CALL, ContextOnly, Leaf, complete_leaf

LITERALS = (
    IntValueNode,
    FloatValueNode,
    StringValueNode,
    BooleanValueNode,
    EnumValueNode,
    NullValueNode,
)
MAX_ERRORS = 50  # of variable coercion, as graphql-core's default


class Step(NamedTuple):
    """One field of a selection: how to get its value and complete it."""

    name: str  # the response name
    leaf: Leaf | None  # a leaf read off the object
    typename: str | None  # ``__typename``: the object's type
    get: Callable[[Any, Any], Any] | None  # (source, info) -> value, for an object field
    nullable: bool
    is_list: bool  # a list of objects (each completed by ``selection``)
    items_nullable: bool
    selection: tuple[Step, ...]
    node: FieldNode  # where its errors are located
    field_name: str  # as the schema names it (errors say Parent.field)
    type_name: str  # the object type of its value (or items), or of its leaf


@dataclass(frozen=True)
class RootField:
    name: str
    field: Any  # GraphQLField
    node: FieldNode  # ``field.resolve`` is the plain call
    step: Step  # how its value completes (``get`` unused)
    args: dict[str, Any] | None  # when every argument is a literal: coerced once, here


@dataclass(frozen=True)
class CompiledQuery:
    operation: Any  # OperationDefinitionNode
    roots: tuple[RootField, ...]


def compile_query(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> CompiledQuery | None:
    """The compiled form of a valid query, or None when it does not qualify."""
    try:
        return _compile_query(schema, document, operation_name)
    except GraphQLError:  # an argument graphql-core would refuse: its path says so
        return None


def _compile_query(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> CompiledQuery | None:
    operation = get_operation_ast(document, operation_name)
    if operation is None or operation.operation is not OperationType.QUERY:
        return None
    if operation.directives or len(document.definitions) != 1:
        return None  # fragments live in other definitions
    query_type = schema.query_type
    leaves: dict[str, dict[str, Leaf]] = schema.extensions.get(LEAVES_KEY, {})
    roots = []
    names: set[str] = set()
    for node in operation.selection_set.selections:
        if not isinstance(node, FieldNode) or node.directives or query_type is None:
            return None
        name = (node.alias or node.name).value
        field = query_type.fields.get(node.name.value)
        if field is None or not getattr(field.resolve, PLAIN_CALL, False) or name in names:
            return None
        names.add(name)
        step = _value_step(name, field.type, node, leaves, get=None)
        if step is None:
            return None
        literal = all(isinstance(a.value, LITERALS) for a in node.arguments or ())
        args = get_argument_values(field, node) if literal else None
        roots.append(RootField(name, field, node, step, args))
    return CompiledQuery(operation, tuple(roots))


def _selection(
    parent: GraphQLObjectType,
    selection_set: SelectionSetNode | None,
    leaves: dict[str, dict[str, Leaf]],
) -> tuple[Step, ...] | None:
    if selection_set is None:
        return None
    steps = []
    names: set[str] = set()
    for node in selection_set.selections:
        if not isinstance(node, FieldNode) or node.directives:
            return None
        name = (node.alias or node.name).value
        if name in names:
            return None  # fields merged under one name: graphql-core's job
        names.add(name)
        if node.name.value == "__typename":
            steps.append(
                Step(name, None, parent.name, None, False, False, False, (), node, "", "String")
            )
            continue
        field = parent.fields.get(node.name.value)
        if field is None:
            return None
        leaf = leaves.get(parent.name, {}).get(node.name.value)
        if leaf is not None and not node.arguments:
            steps.append(
                Step(
                    name,
                    leaf,
                    None,
                    None,
                    leaf.nullable,
                    False,
                    False,
                    (),
                    node,
                    node.name.value,
                    leaf.type_.name,
                )
            )
            continue
        get = _getter(field, node)
        step = None if get is None else _value_step(name, field.type, node, leaves, get)
        if step is None:
            return None
        steps.append(step)
    return tuple(steps)


def _getter(field: Any, node: FieldNode) -> Callable[[Any, Any], Any] | None:
    """How to read a non-root object field: an attribute, or a plain synchronous resolver with
    literal arguments (worked out here, once)."""
    resolve: Callable[..., Any] = field.resolve
    literal = all(isinstance(a.value, LITERALS) for a in node.arguments or ())
    if getattr(resolve, ATTRIBUTE, None) is not None and not node.arguments:
        return resolve
    if not getattr(resolve, INLINE, False) or not literal:
        return None
    args = get_argument_values(field, node) if node.arguments else {}
    return lambda source, info: resolve(source, info, **args)


def _value_step(
    name: str,
    type_: Any,
    node: FieldNode,
    leaves: dict[str, dict[str, Leaf]],
    get: Callable[[Any, Any], Any] | None,
) -> Step | None:
    """A field returning an object, or a list of objects (each nullable or not)."""
    nullable = not isinstance(type_, GraphQLNonNull)
    inner = type_ if nullable else type_.of_type
    is_list = isinstance(inner, GraphQLList)
    items_nullable = False
    if is_list:
        item = inner.of_type
        items_nullable = not isinstance(item, GraphQLNonNull)
        inner = item if items_nullable else item.of_type
    if not isinstance(inner, GraphQLObjectType) or inner.is_type_of:
        return None
    selection = _selection(inner, node.selection_set, leaves)
    if selection is None:
        return None
    return Step(
        name,
        None,
        None,
        get,
        nullable,
        is_list,
        items_nullable,
        selection,
        node,
        node.name.value,
        inner.name,
    )


async def run_query(
    compiled: CompiledQuery,
    schema: GraphQLSchema,
    context: Any,
    variables: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, list[GraphQLError]]:
    """The query's data and errors, as graphql-core would answer them (see the module's
    docstring)."""
    operation = compiled.operation
    coerced = get_variable_values(
        schema, operation.variable_definitions or (), variables or {}, MAX_ERRORS
    )
    if isinstance(coerced, list):
        return None, coerced
    walk = _Walk(ContextOnly(context))
    data: dict[str, Any] = {}
    query_type = schema.query_type.name if schema.query_type else "Query"
    try:
        for root in compiled.roots:
            step, path = root.step, (root.name,)
            try:
                args = root.args
                if args is None:
                    args = get_argument_values(root.field, root.node, coerced)
                value = root.field.resolve(None, walk.info, **args)
                if isawaitable(value):
                    value = await value
            except Exception as raw:
                data[root.name] = walk.failed(raw, step, path)
                continue
            slot = ((data, root.name, step.nullable),)
            data[root.name] = walk.value(step, query_type, value, path, slot)
        await walk.settle()
    except _Bubble as bubble:  # a non-null root field: the whole data goes
        walk.errors.append(bubble.error)
        return None, walk.errors
    return data, walk.errors


class _Bubble(Exception):
    """A null in a non-null place, on its way up to the nearest nullable field (its error is
    recorded there, once, with the innermost path, as graphql-core records it)."""

    def __init__(self, error: GraphQLError) -> None:
        super().__init__(error.message)
        self.error = error


class _Pending(NamedTuple):
    """A value still to be awaited, and where it goes once completed."""

    awaitable: Any
    step: Step
    parent: str  # the parent's type name
    path: tuple[str | int, ...]
    container: Any  # dict or list
    key: str | int
    chain: tuple[tuple[Any, str | int, bool], ...]  # the slots above: (container, key, nullable)


def _null_error(parent: str, step: Step, path: tuple[str | int, ...]) -> GraphQLError:
    return located_error(
        TypeError(f"Cannot return null for non-nullable field {parent}.{step.field_name}."),
        [step.node],
        list(path),
    )


class _Walk:
    """One execution's walk: the errors it met, the values it still awaits."""

    def __init__(self, info: ContextOnly) -> None:
        self.info = info
        self.errors: list[GraphQLError] = []
        self.pending: deque[_Pending] = deque()
        self.root_nulled: set[str] = set()  # non-null roots a deferred value nulled

    def failed(self, raw: Exception, step: Step, path: tuple[str | int, ...]) -> Any:
        """A resolver's error: null here when the field may be, else up it goes."""
        error = located_error(raw, [step.node], list(path))
        if not step.nullable:
            raise _Bubble(error)
        self.errors.append(error)
        return None

    def value(
        self,
        step: Step,
        parent: str,
        value: Any,
        path: tuple[str | int, ...],
        chain: tuple[tuple[Any, str | int, bool], ...],
    ) -> Any:
        """An object field's value, completed; ``_Bubble`` when it must be null and may not."""
        try:
            return self._value(step, parent, value, path, chain)
        except _Bubble as bubble:
            if step.nullable:
                self.errors.append(bubble.error)
                return None
            raise

    def _value(
        self,
        step: Step,
        parent: str,
        value: Any,
        path: tuple[str | int, ...],
        chain: tuple[tuple[Any, str | int, bool], ...],
    ) -> Any:
        if value is None:
            if step.nullable:
                return None
            raise _Bubble(_null_error(parent, step, path))
        if not step.is_list:
            return self.object(step.selection, step.type_name, value, path, chain)
        if not isinstance(value, list | tuple):
            raise _Bubble(
                located_error(
                    GraphQLError(
                        "Expected Iterable, but did not find one for field"
                        f" '{parent}.{step.field_name}'."
                    ),
                    [step.node],
                    list(path),
                )
            )
        items: list[Any] = []
        for index, item in enumerate(value):
            item_path = (*path, index)
            if item is None:
                if not step.items_nullable:
                    raise _Bubble(_null_error(parent, step, item_path))
                items.append(None)
                continue
            slot = (*chain, (items, index, step.items_nullable))
            try:
                items.append(self.object(step.selection, step.type_name, item, item_path, slot))
            except _Bubble as bubble:
                if not step.items_nullable:
                    raise
                self.errors.append(bubble.error)
                items.append(None)
        return items

    def object(
        self,
        selection: tuple[Step, ...],
        type_name: str,
        source: Any,
        path: tuple[str | int, ...],
        chain: tuple[tuple[Any, str | int, bool], ...],
    ) -> dict[str, Any]:
        completed: dict[str, Any] = {}
        for step in selection:
            name = step.name
            if step.leaf is not None:
                raw = getattr(source, step.leaf.attr, None)
                value = complete_leaf(step.leaf, raw)
                completed[name] = (
                    value
                    if value is not Undefined
                    else self.leaf(step, type_name, raw, (*path, name))
                )
                continue
            if step.typename is not None:
                completed[name] = step.typename
                continue
            assert step.get is not None
            field_path = (*path, name)
            try:
                value = step.get(source, self.info)
            except Exception as raw_error:
                completed[name] = self.failed(raw_error, step, field_path)
                continue
            slot = (*chain, (completed, name, step.nullable))
            if isawaitable(value):  # deferred to a later turn: walked once the rest is
                completed[name] = None
                self.pending.append(
                    _Pending(value, step, type_name, field_path, completed, name, slot)
                )
                continue
            completed[name] = self.value(step, type_name, value, field_path, slot)
        return completed

    def leaf(self, step: Step, parent: str, value: Any, path: tuple[str | int, ...]) -> Any:
        """A leaf the fast path would not take: graphql-core's own completion, its error."""
        assert step.leaf is not None
        try:
            if value is None:
                raise TypeError(
                    f"Cannot return null for non-nullable field {parent}.{step.field_name}."
                )
            return complete_leaf_value(step.leaf.type_, value)
        except Exception as raw:
            return self.failed(raw, step, path)

    async def settle(self) -> None:
        """Await what was deferred, in order, and complete each in its place (a null that may
        not be there goes up the slots it came through)."""
        while self.pending:
            pending = self.pending.popleft()
            try:
                value = await pending.awaitable
                completed = self.value(
                    pending.step, pending.parent, value, pending.path, pending.chain
                )
            except _Bubble as bubble:
                self._null_above(pending.chain[:-1], bubble.error)
                continue
            except Exception as raw:
                error = located_error(raw, [pending.step.node], list(pending.path))
                if pending.step.nullable:
                    self.errors.append(error)
                    completed = None
                else:
                    self._null_above(pending.chain[:-1], error)
                    continue
            pending.container[pending.key] = completed

    def _null_above(
        self, chain: tuple[tuple[Any, str | int, bool], ...], error: GraphQLError
    ) -> None:
        """Null the nearest nullable slot of ``chain`` for ``error``; with none, the data."""
        for container, key, nullable in reversed(chain):
            if nullable:
                container[key] = None
                self.errors.append(error)
                return
        raise _Bubble(error)
