"""Compiled queries: a prepared query whose every field is plain, answered without graphql-core's
executor.

graphql-core builds an executor per request, collects fields, builds a resolve-info per field
and completes each value through several layers; for ``getSong(id:) { id name ... }`` that costs
more than the resolver and the database together. A query qualifies when every field in it is
one the schema simplified (``execution.simplify``): a leaf or ``__typename``, an attribute, or a
``plain`` resolver (below the root: synchronous, with literal arguments), returning objects or
lists of objects with no abstract types, selected with no fragments and no directives. Such a
query is compiled once, with its prepared operation, into steps; each execution coerces the
variables, calls the root resolvers and walks the steps.

Whenever the walk meets something it cannot answer exactly as graphql-core would (an error, a
null in a non-null field, a value a type refuses, a value still to be awaited below the root),
it gives up and graphql-core executes the query from the start: queries only read, so running
one again changes nothing, and every error is graphql-core's own. ``tests/api/test_execution``
runs the same queries both ways and compares the answers.
"""

from __future__ import annotations

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
)

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


class GiveUp(Exception):
    """The compiled walk cannot answer as graphql-core would."""


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
        step = _value_step(name, field.type, node.selection_set, leaves, get=None)
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
            steps.append(Step(name, None, parent.name, None, False, False, False, ()))
            continue
        field = parent.fields.get(node.name.value)
        if field is None:
            return None
        leaf = leaves.get(parent.name, {}).get(node.name.value)
        if leaf is not None and not node.arguments:
            steps.append(Step(name, leaf, None, None, leaf.nullable, False, False, ()))
            continue
        get = _getter(field, node)
        step = (
            None if get is None else _value_step(name, field.type, node.selection_set, leaves, get)
        )
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
    selection_set: SelectionSetNode | None,
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
    selection = _selection(inner, selection_set, leaves)
    if selection is None:
        return None
    return Step(name, None, None, get, nullable, is_list, items_nullable, selection)


async def run_query(
    compiled: CompiledQuery,
    schema: GraphQLSchema,
    context: Any,
    variables: dict[str, Any] | None,
) -> dict[str, Any]:
    """The query's data; ``GiveUp`` (or any exception) when graphql-core must answer."""
    operation = compiled.operation
    coerced = get_variable_values(
        schema, operation.variable_definitions or (), variables or {}, MAX_ERRORS
    )
    if isinstance(coerced, list):
        raise GiveUp("variables")
    info = ContextOnly(context)
    data: dict[str, Any] = {}
    for root in compiled.roots:
        args = root.args
        if args is None:
            args = get_argument_values(root.field, root.node, coerced)
        value = root.field.resolve(None, info, **args)
        if isawaitable(value):
            value = await value
        data[root.name] = _complete(root.step, value, info)
    return data


def _complete(step: Step, value: Any, info: Any) -> Any:
    if isawaitable(value):  # deferred to a later turn (``budget.yielding``): graphql-core's job
        close = getattr(value, "close", None)
        if close is not None:
            close()
        raise GiveUp(step.name)
    if value is None:
        if step.nullable:
            return None
        raise GiveUp(step.name)
    if not step.is_list:
        return _object(step.selection, value, info)
    if type(value) is not list:
        raise GiveUp(step.name)
    items: list[dict[str, Any] | None] = []
    for item in value:
        if item is None:
            if not step.items_nullable:
                raise GiveUp(step.name)
            items.append(None)
        else:
            items.append(_object(step.selection, item, info))
    return items


def _object(selection: tuple[Step, ...], source: Any, info: Any) -> dict[str, Any]:
    completed: dict[str, Any] = {}
    for step in selection:
        if step.leaf is not None:
            value = complete_leaf(step.leaf, getattr(source, step.leaf.attr, None))
            if value is Undefined:
                raise GiveUp(step.name)
            completed[step.name] = value
        elif step.typename is not None:
            completed[step.name] = step.typename
        else:
            assert step.get is not None
            completed[step.name] = _complete(step, step.get(source, info), info)
    return completed
