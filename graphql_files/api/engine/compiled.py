"""Compiled operations: a prepared query or mutation whose every field is plain, answered
without graphql-core's executor.

graphql-core builds an executor per request, collects fields, builds a resolve-info per field
and completes each value through several layers; for a page of records that costs more than the
resolvers and the database together. An operation qualifies when every field in it is one the
schema simplified (``executor.simplify``): a leaf or ``__typename``, an attribute, or a
``plain`` resolver (synchronous or not; its arguments literals or variables), returning leaves,
objects or lists of objects with no abstract types, selected with no directives and with
fragments only on the field's own type. Whether an operation is compiled is decided once, when
it is prepared (``execution``); it is compiled into steps, and each execution coerces the
variables, works out each field's arguments once, and walks the steps: a query's root fields side
by side, as graphql-core runs them; a mutation's one after another, each settled before the next
starts (what it wrote is what the next one reads).

The walk answers everything it meets as graphql-core would, to the end: a resolver's error, a
null in a non-null field, a value a type refuses, each becomes the same located error, and a
null propagates to the nearest nullable field, with graphql-core's own messages. A value still
to be awaited (a relation's page, ``FileRef.properties``, a record deferred to a later turn of
the event loop by ``budget.yielding``) is started at once and completed in its place as it
finishes, so the loaders of one level see every key of that level before they load. What
finishes under a place a null already took is dropped, its errors too, as graphql-core drops
them; what a null at the root leaves running ends in the background. Nothing runs twice.
``tests/api/test_execution`` runs the same operations both ways and compares the answers;
``tests/api/test_execution_hostile`` compares random ones with strawberry alone.
"""

from __future__ import annotations

from asyncio import Future, ensure_future, get_running_loop
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from inspect import isawaitable
from types import GeneratorType
from typing import Any, NamedTuple

from graphql import (
    BooleanValueNode,
    DocumentNode,
    EnumValueNode,
    FieldNode,
    FloatValueNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    NullValueNode,
    OperationType,
    SelectionSetNode,
    StringValueNode,
    Undefined,
    VariableValues,
    get_argument_values,
    get_named_type,
    get_operation_ast,
    get_variable_values,
    is_leaf_type,
    located_error,
)

from ._compat import complete_leaf_value
from .executor import (
    ATTRIBUTE,
    DIRECT,
    LEAVES_KEY,
    ContextOnly,
    Convert,
    Leaf,
    complete_leaf,
    leaf_of,
)

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
    call: Callable[..., Any] | None  # (source, info, **args) -> value, for an object field
    args: dict[str, Any] | None  # its arguments, fixed; None: from each execution's variables
    field: GraphQLField | None  # whose arguments those are
    convert: Convert | None  # how they are converted (``plain(converts=True)``)
    nullable: bool
    is_list: bool  # a list of objects (each completed by ``selection``)
    items_nullable: bool
    selection: tuple[Step, ...]
    node: FieldNode  # where its errors are located
    field_name: str  # as the schema names it (errors say Parent.field)
    type_name: str  # the object type of its value (or items), or of its leaf
    merged: tuple[FieldNode, ...] = ()  # more selections of the same leaf (error locations)

    @property
    def nodes(self) -> list[FieldNode]:
        return [self.node, *self.merged]


@dataclass(frozen=True)
class CompiledQuery:
    operation: Any  # OperationDefinitionNode
    roots: tuple[Step, ...]
    root_type: str  # Query or Mutation


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
    if operation is None or operation.operation is OperationType.SUBSCRIPTION:
        return None
    root_type = (
        schema.query_type if operation.operation is OperationType.QUERY else schema.mutation_type
    )
    if operation.directives or root_type is None:
        return None
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    leaves: dict[str, dict[str, Leaf]] = schema.extensions.get(LEAVES_KEY, {})
    roots = _selection(root_type, operation.selection_set, leaves, fragments)
    if roots is None or any(step.leaf is not None and step.call is None for step in roots):
        return None
    return CompiledQuery(operation, roots, root_type.name)


def _fields(
    parent: GraphQLObjectType,
    selection_set: SelectionSetNode,
    fragments: dict[str, FragmentDefinitionNode],
    within: frozenset[str] = frozenset(),
) -> list[FieldNode] | None:
    """The fields of a selection, its fragments spread in place: only fragments on the
    parent's own type, and nothing under a directive (``@skip``/``@include`` read variables)."""
    found: list[FieldNode] = []
    for node in selection_set.selections:
        if node.directives:
            return None
        if isinstance(node, FieldNode):
            found.append(node)
            continue
        if isinstance(node, InlineFragmentNode):
            condition, selections, name = node.type_condition, node.selection_set, None
        elif isinstance(node, FragmentSpreadNode):
            name = node.name.value
            fragment = fragments.get(name)
            if fragment is None or fragment.directives or name in within:
                return None
            condition, selections = fragment.type_condition, fragment.selection_set
        else:  # pragma: no cover - the three kinds of selection
            return None
        if condition is not None and condition.name.value != parent.name:
            return None  # a fragment on another type: graphql-core's job
        inner = _fields(parent, selections, fragments, within | {name} if name else within)
        if inner is None:
            return None
        found += inner
    return found


def _selection(
    parent: GraphQLObjectType,
    selection_set: SelectionSetNode | None,
    leaves: dict[str, dict[str, Leaf]],
    fragments: dict[str, FragmentDefinitionNode],
) -> tuple[Step, ...] | None:
    if selection_set is None:
        return None
    nodes = _fields(parent, selection_set, fragments)
    if nodes is None:
        return None
    steps: list[Step] = []
    seen: dict[str, tuple[FieldNode, int]] = {}
    for node in nodes:
        name = (node.alias or node.name).value
        if name in seen:
            first, at = seen[name]
            if not _same_leaf(first, node):
                return None  # fields merged under one name: graphql-core's job
            # ``id`` selected twice (say, once in a fragment): one answer, located at both
            steps[at] = steps[at]._replace(merged=(*steps[at].merged, node))
            continue
        seen[name] = (node, len(steps))
        if node.name.value == "__typename":
            steps.append(
                Step(
                    name,
                    None,
                    parent.name,
                    None,
                    None,
                    None,
                    None,
                    False,
                    False,
                    False,
                    (),
                    node,
                    "",
                    "String",
                )
            )
            continue
        field = parent.fields.get(node.name.value)
        if field is None:
            return None
        leaf = leaves.get(parent.name, {}).get(node.name.value)
        if leaf is not None and not node.arguments:
            steps.append(_leaf_of_step(name, leaf, node, None, None))
            continue
        step = _value_step(name, field, node, leaves, fragments)
        if step is None:
            return None
        steps.append(step)
    return tuple(steps)


def _leaf_step(name: str, field: GraphQLField, node: FieldNode) -> Step | None:
    """A leaf a ``plain`` resolver returns (``removeFile: String!``)."""
    leaf = leaf_of("", field.type)
    caller = _caller(field, node)
    if leaf is None or caller is None or node.selection_set is not None:
        return None
    return _leaf_of_step(name, leaf, node, field, caller)


def _leaf_of_step(
    name: str,
    leaf: Leaf,
    node: FieldNode,
    field: GraphQLField | None,
    caller: tuple[Callable[..., Any], dict[str, Any] | None, Convert | None] | None,
) -> Step:
    """A leaf's step: read off its object (no ``caller``), or what a resolver returns."""
    call, args, convert = caller or (None, None, None)
    return Step(
        name,
        leaf,
        None,
        call,
        args,
        field,
        convert,
        leaf.nullable,
        False,
        False,
        (),
        node,
        node.name.value,
        leaf.type_.name,
    )


def _same_leaf(a: FieldNode, b: FieldNode) -> bool:
    """Two selections of one field with nothing to merge: no arguments, no subselection."""
    return (
        a.name.value == b.name.value
        and not a.arguments
        and not b.arguments
        and a.selection_set is None
        and b.selection_set is None
    )


def _caller(
    field: GraphQLField, node: FieldNode
) -> tuple[Callable[..., Any], dict[str, Any] | None, Convert | None] | None:
    """How to get an object field's value: an attribute read, or a ``plain`` resolver called
    directly (synchronous or not); its arguments fixed here, once, when every one is a
    literal (converted as strawberry converts them), else left to each execution."""
    resolve = field.resolve
    if resolve is None:
        return None
    if getattr(resolve, ATTRIBUTE, None) is not None and not node.arguments:
        return resolve, {}, None
    found = getattr(resolve, DIRECT, None)
    if found is None:
        return None
    convert, direct = found
    if not all(isinstance(a.value, LITERALS) for a in node.arguments or ()):
        return direct, None, convert
    args = get_argument_values(field, node) if node.arguments else {}
    return direct, (convert(args) if convert is not None else args), None


def _value_step(
    name: str,
    field: GraphQLField,
    node: FieldNode,
    leaves: dict[str, dict[str, Leaf]],
    fragments: dict[str, FragmentDefinitionNode],
) -> Step | None:
    """A field returning an object, or a list of objects (each nullable or not), or a leaf."""
    if is_leaf_type(get_named_type(field.type)):
        return _leaf_step(name, field, node)
    caller = _caller(field, node)
    if caller is None:
        return None
    type_: Any = field.type
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
    selection = _selection(inner, node.selection_set, leaves, fragments)
    if selection is None:
        return None
    call, args, convert = caller
    return Step(
        name,
        None,
        None,
        call,
        args,
        field,
        convert,
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
    walk = _Walk(ContextOnly(context), coerced)
    mutation = operation.operation is OperationType.MUTATION
    data: dict[str, Any] = {}
    try:
        for step in compiled.roots:
            if step.typename is not None:
                data[step.name] = step.typename
                continue
            if mutation:  # each field runs, to the end, after the one before it
                walk.info = ContextOnly(context, step.name)
            path: Path = (step.name,)
            slot: Chain = ((data, step.name, step.nullable, path),)
            try:
                value = walk.resolve(step, None)
            except Exception as raw:
                data[step.name] = walk.failed(raw, step, path)
                continue
            if _awaitable(value):
                # a query's root fields run side by side, as graphql-core runs them
                data[step.name] = None
                walk.defer(value, step, compiled.root_type, path, data, step.name, slot)
            else:
                data[step.name] = walk.value(step, compiled.root_type, value, path, slot)
            if mutation:
                await walk.settle()
        await walk.settle()
    except _Bubble as bubble:  # a non-null root field: the whole data goes
        walk.errors.append(bubble.error)
        return None, walk.errors
    finally:
        walk.abandon()
    return data, walk.errors


_LET_GO: set[Future[Any]] = set()  # abandoned work, kept until it ends (tasks are weakly held)


def _retrieve(future: Future[Any]) -> None:
    """Take a finished future's outcome, so that asyncio never reports it as unretrieved."""
    _LET_GO.discard(future)
    if not future.cancelled():
        future.exception()


_AWAITABLE: dict[type, bool] = {}  # by the type of value a resolver returned


def _awaitable(value: Any) -> bool:
    """``inspect.isawaitable``, decided once per type (resolvers return few types; a generator
    alone is awaitable or not by its own flags)."""
    kind = type(value)
    known = _AWAITABLE.get(kind)
    if known is None:
        if kind is GeneratorType:
            return isawaitable(value)
        known = _AWAITABLE[kind] = isawaitable(value)
    return known


class _Bubble(Exception):
    """A null in a non-null place, on its way up to the nearest nullable field (its error is
    recorded there, once, with the innermost path, as graphql-core records it)."""

    def __init__(self, error: GraphQLError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(eq=False, slots=True)  # told apart by identity
class _Pending:
    """A value still to be awaited, and where it goes once completed."""

    future: Future[Any]
    step: Step
    parent: str  # the parent's type name
    path: tuple[str | int, ...]
    container: Any  # dict or list
    key: str | int
    chain: Chain  # the slots above


Path = tuple[str | int, ...]
# where a value goes: (container, key, whether it may be null, its path)
Slot = tuple[Any, str | int, bool, Path]
Chain = tuple[Slot, ...]


def _null_error(parent: str, step: Step, path: tuple[str | int, ...]) -> GraphQLError:
    return located_error(
        TypeError(f"Cannot return null for non-nullable field {parent}.{step.field_name}."),
        step.nodes,
        list(path),
    )


class _Walk:
    """One execution's walk: the errors it met, the values it still awaits."""

    def __init__(self, info: ContextOnly, variables: VariableValues) -> None:
        self.info = info
        self.variables = variables
        self.arguments: dict[int, dict[str, Any]] = {}  # per step: its arguments, this time
        self.errors: list[GraphQLError] = []
        self.nulled: list[Path] = []  # where nulls went up to
        # values still awaited, and those whose wait is over, in the order they finished
        self.pending: set[_Pending] = set()
        self.ready: deque[_Pending] = deque()
        self._wake: Future[None] | None = None
        self.root_nulled: set[str] = set()  # non-null roots a deferred value nulled

    def resolve(self, step: Step, source: Any) -> Any:
        """The step's value for ``source`` (its arguments worked out once per execution)."""
        assert step.call is not None
        args = step.args
        if args is None:
            args = self.arguments.get(id(step))
            if args is None:
                assert step.field is not None
                args = get_argument_values(step.field, step.node, self.variables)
                if step.convert is not None:
                    args = step.convert(args)
                self.arguments[id(step)] = args
        return step.call(source, self.info, **args)

    def defer(self, value: Any, *where: Any) -> None:
        """Complete ``value`` in its place once it is awaited. It starts now (a coroutine
        becomes a task), and the values are completed in the order they finish, as
        graphql-core completes them: the loaders of one level (``schema.relations``) see every
        key of that level before they load, whatever other level is still loading."""
        pending = _Pending(ensure_future(value), *where)
        self.pending.add(pending)
        pending.future.add_done_callback(lambda _: self._finished(pending))

    def _finished(self, pending: _Pending) -> None:
        if pending in self.pending:
            self.ready.append(pending)
            if self._wake is not None and not self._wake.done():
                self._wake.set_result(None)

    def abandon(self) -> None:
        """Let go of what was started and will not be completed (a null went up past it):
        each runs to its end in the background, its outcome retrieved (cancelling a call
        to the database in flight would leave its connection to the collector)."""
        for pending in self.pending:
            future = pending.future
            if future.done():
                _retrieve(future)
            else:
                _LET_GO.add(future)
                future.add_done_callback(_retrieve)
        self.pending.clear()
        self.ready.clear()

    def failed(self, raw: Exception, step: Step, path: tuple[str | int, ...]) -> Any:
        """A resolver's error: null here when the field may be, else up it goes."""
        error = located_error(raw, step.nodes, list(path))
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
        chain: Chain,
    ) -> Any:
        """An object field's value, completed; ``_Bubble`` when it must be null and may not."""
        try:
            return self._value(step, parent, value, path, chain)
        except _Bubble as bubble:
            if step.nullable:
                self.errors.append(bubble.error)
                self.nulled.append(path)
                return None
            raise

    def _value(
        self,
        step: Step,
        parent: str,
        value: Any,
        path: tuple[str | int, ...],
        chain: Chain,
    ) -> Any:
        if value is None:
            if step.nullable:
                return None
            raise _Bubble(_null_error(parent, step, path))
        if step.leaf is not None:  # a resolver's leaf
            completed = complete_leaf(step.leaf, value)
            if completed is Undefined:
                return self.leaf(step, parent, value, path)
            return completed
        if not step.is_list:
            return self.object(step.selection, step.type_name, value, path, chain)
        if not isinstance(value, list | tuple):
            raise _Bubble(
                located_error(
                    GraphQLError(
                        "Expected Iterable, but did not find one for field"
                        f" '{parent}.{step.field_name}'."
                    ),
                    step.nodes,
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
            slot = (*chain, (items, index, step.items_nullable, item_path))
            try:
                items.append(self.object(step.selection, step.type_name, item, item_path, slot))
            except _Bubble as bubble:
                if not step.items_nullable:
                    raise
                self.errors.append(bubble.error)
                self.nulled.append(item_path)
                items.append(None)
        return items

    def object(
        self,
        selection: tuple[Step, ...],
        type_name: str,
        source: Any,
        path: tuple[str | int, ...],
        chain: Chain,
    ) -> dict[str, Any]:
        completed: dict[str, Any] = {}
        for step in selection:
            name = step.name
            if step.leaf is not None and step.call is None:
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
            field_path = (*path, name)
            try:
                value = self.resolve(step, source)
            except Exception as raw_error:
                completed[name] = self.failed(raw_error, step, field_path)
                continue
            slot = (*chain, (completed, name, step.nullable, field_path))
            if _awaitable(value):  # deferred to a later turn: walked once the rest is
                completed[name] = None
                self.defer(value, step, type_name, field_path, completed, name, slot)
                continue
            completed[name] = self.value(step, type_name, value, field_path, slot)
        return completed

    def leaf(self, step: Step, parent: str, value: Any, path: tuple[str | int, ...]) -> Any:
        """A leaf the fast path would not take: graphql-core's own completion, its error (a
        list of leaves item by item, each error at its item)."""
        assert step.leaf is not None
        try:
            if value is None:
                raise TypeError(
                    f"Cannot return null for non-nullable field {parent}.{step.field_name}."
                )
            if not step.leaf.is_list:
                return complete_leaf_value(step.leaf.type_, value)
            if not isinstance(value, list | tuple):
                raise GraphQLError(
                    "Expected Iterable, but did not find one for field"
                    f" '{parent}.{step.field_name}'."
                )
        except Exception as raw:
            return self.failed(raw, step, path)
        items = []
        for index, item in enumerate(value):
            try:
                if item is None:  # a list of leaves holds non-null items (``Leaf``)
                    raise TypeError(
                        f"Cannot return null for non-nullable field {parent}.{step.field_name}."
                    )
                items.append(complete_leaf_value(step.leaf.type_, item))
            except Exception as raw:
                return self.failed(raw, step, (*path, index))
        return items

    async def settle(self) -> None:
        """Complete what was deferred, each in its place as it finishes (a null that may not be
        there goes up the slots it came through)."""
        while self.pending:
            if not self.ready:
                self._wake = get_running_loop().create_future()
                await self._wake
                continue
            pending = self.ready.popleft()
            self.pending.discard(pending)
            if self._under_null(pending.path):
                _retrieve(pending.future)  # dropped with its place
                continue
            try:
                completed = self.value(
                    pending.step,
                    pending.parent,
                    pending.future.result(),
                    pending.path,
                    pending.chain,
                )
            except _Bubble as bubble:
                self._null_above(pending.chain[:-1], bubble.error)
                continue
            except Exception as raw:
                error = located_error(raw, pending.step.nodes, list(pending.path))
                if pending.step.nullable:
                    self.errors.append(error)
                    completed = None
                else:
                    self._null_above(pending.chain[:-1], error)
                    continue
            pending.container[pending.key] = completed

    def _null_above(self, chain: Chain, error: GraphQLError) -> None:
        """Null the nearest nullable slot of ``chain`` for ``error``; with none, the data."""
        for container, key, nullable, path in reversed(chain):
            if nullable:
                container[key] = None
                self.errors.append(error)
                self.nulled.append(path)
                return
        raise _Bubble(error)

    def _under_null(self, path: Path) -> bool:
        """Whether ``path`` lies under a place a null already took (as graphql-core, what
        finishes there later is dropped, its errors too)."""
        return any(path[: len(nulled)] == nulled for nulled in self.nulled)
