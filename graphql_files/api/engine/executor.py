"""How fields resolve, outside strawberry's per-call wrapper.

``simplify`` gives every field strawberry would only read off its object a plain attribute
getter, and every ``plain`` resolver a direct call (its arguments converted as strawberry
converts them, when it asks); it records the leaf fields among them (``Leaf``). The compiled
operations (``compiled``) walk those; graphql-core's executor (``LeanExecutor``, its
``execution_context_class`` hook, which strawberry passes through) runs the rest with the same
direct calls and its own completion, so its results and errors are its own.

The strawberry and graphql-core internals this relies on come through ``_compat``, which checks
them as it is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple, TypeVar

from graphql import (
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    Undefined,
    is_leaf_type,
)

from ._compat import (
    DEFINITION_BACKREF,
    StrawberryField,
    StrawberryGraphQLCoreExecutionContext,
)

F = TypeVar("F", bound=Callable[..., Any])
LEAVES_KEY = "graphql_files.plain_leaves"  # in GraphQLSchema.extensions: type -> field -> Leaf
PLAIN_RESOLVER = "__graphql_files_plain__"  # on a resolver: plain(takes_source)
PLAIN_CONVERTS = "__graphql_files_converts__"  # on a resolver: plain(converts=True)
# on a GraphQL field's resolve that calls a plain resolver: (convert, direct), the arguments'
# conversion and the resolver called with arguments already converted (the compiler converts
# fixed arguments once, not per call)
DIRECT = "__graphql_files_direct__"
ATTRIBUTE = "__graphql_files_attribute__"  # on a GraphQL field's resolve: the attribute read
# Python values a leaf type passes through unchanged (graphql-core would return them as they are;
# not so a float, which graphql-core refuses when it is infinite or NaN)
NATIVE: dict[str, type] = {"String": str, "ID": str, "Boolean": bool}
INT_RANGE = range(-(2**31), 2**31)


def plain(*, takes_source: bool, converts: bool = False) -> Callable[[F], F]:
    """Mark a resolver that reads nothing of ``info`` but ``context``: graphql-core (and a
    compiled query) calls it directly, without strawberry's per-call wrapper. Its arguments
    are named as in GraphQL; ``converts``: they are converted as strawberry converts them
    (input objects, enums), else they need no conversion (scalars). ``takes_source``: a method
    (it gets the parent object)."""

    def mark(resolver: F) -> F:
        setattr(resolver, PLAIN_RESOLVER, takes_source)
        setattr(resolver, PLAIN_CONVERTS, converts)
        return resolver

    return mark


Convert = Callable[[dict[str, Any]], dict[str, Any]]


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


def _call(
    resolver: Callable[..., Any], takes_source: bool, convert: Convert | None
) -> Callable[..., Any]:
    direct: Callable[..., Any]
    if takes_source:
        direct = lambda source, info, **args: resolver(source, info, **args)  # noqa: E731
    else:
        direct = lambda source, info, **args: resolver(info, **args)  # noqa: E731
    call = direct
    if convert is not None:
        call = lambda source, info, **args: direct(source, info, **convert(args))  # noqa: E731
    setattr(call, DIRECT, (convert, direct))
    return call


def _convert(
    converter: Callable[[dict[str, Any], Any], dict[str, Any]],
    arguments: Any,
    value: dict[str, Any],
) -> dict[str, Any]:
    return converter(value, arguments)


def simplify(
    schema: GraphQLSchema, converter: Callable[[dict[str, Any], Any], dict[str, Any]]
) -> None:
    """Give every field strawberry would only read off its object (no resolver, no field
    extensions) a plain attribute getter, and every ``plain`` resolver a direct call; record the
    leaf fields among them (the compiled walk reads them inline). ``converter(args,
    arguments)`` converts a field's coerced arguments as strawberry does (``arguments``: the
    strawberry field's)."""
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
                    convert = None
                    if getattr(function, PLAIN_CONVERTS, False):
                        convert = partial(_convert, converter, definition.arguments)
                    field.resolve = _call(function, takes_source, convert)
                continue
            field.resolve = _attribute(definition.python_name)
            leaf = leaf_of(definition.python_name, field.type)
            if leaf is not None:
                plan.setdefault(type_.name, {})[name] = leaf
    schema.extensions[LEAVES_KEY] = plan


def leaf_of(attr: str, type_: GraphQLOutputType) -> Leaf | None:
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


class ContextOnly(NamedTuple):
    """What a ``plain`` resolver may read of its info: the context, and in a mutation the
    root field it runs under (its response name; fields of a mutation run one after another,
    each seeing what those before it wrote)."""

    context: Any
    mutation_field: str | None = None


class LeanExecutor(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's executor, as strawberry passes it through, for what a compiled
    operation does not cover (subscription events; fragments on other types, directives,
    fields merged under one name): it starts each execution's budget (``begin``) and lets go
    of itself when done."""

    @classmethod
    def begin(cls) -> None:
        """Called as an execution starts, here or in a compiled operation (``compiled``): what
        a subclass sets up for every execution (``budget.budgeted_execution``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.begin()

    def build_response(self, data: dict[str, Any] | None) -> Any:
        """graphql-core's, then the executor lets go of itself: its resolve-info helpers are
        bound methods of it, a reference cycle that would keep every execution (its context,
        request and result) alive until the cyclic collector ran."""
        response = super().build_response(data)
        self.async_helpers = None  # type: ignore[assignment]
        return response
