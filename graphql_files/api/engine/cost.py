"""What a query may cost: a static estimate refused before execution, and a run-time budget.

The estimate (``query_cost_rule``) is a validation rule, so it runs for every operation, over
HTTP and websockets, and is cached with the validation result. Each field costs 1, except
per-file work: ``url`` (signing) costs ``URL_COST`` and ``properties`` (an S3 HEAD) costs
``HEAD_COST``. A field's subtree is multiplied by how many items it can return: ``limit`` of a
``list*`` query (the default 100 when absent; the variable's default, or the most allowed, when
it is a variable), ``pageSize`` of ``listFiles``, and an estimate of ``FILES_PER_RECORD`` for a
record's list of files, whose length only the data knows.

That is why a run-time budget exists too (``Budget``): each execution may do at most
``MAX_FILE_WORK`` units of per-file work (the same units), counted as it happens. Past it, the
request ends with ``BAD_USER_INPUT``.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    VariableNode,
    get_named_type,
    get_nullable_type,
)

from ...domain.pagination import DEFAULT_LIMIT, MAX_LIMIT
from ...errors import BAD_USER_INPUT

URL_COST = 2
HEAD_COST = 20
FILES_PER_RECORD = 10  # the estimate for a list of files; the run-time budget counts the truth
FILE_REF = "FileRef"
# Estimates stop growing here: nested pages multiply (100 posts x 100 comments x ...), and an
# answer must carry the figure as a JSON number every client reads exactly (2**53 - 1).
CEILING = 2**53 - 1
WEIGHTS: dict[tuple[str, str], int] = {
    (FILE_REF, "url"): URL_COST,
    (FILE_REF, "properties"): HEAD_COST,
    ("Query", "getUrl"): URL_COST,
    ("Query", "getProperties"): HEAD_COST,
}


def query_cost_rule(max_cost: int) -> type[ValidationRule]:
    """A validation rule class for ``max_cost``; build it once so validation caching hits."""

    class QueryCostLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self._fragments: dict[str, FragmentDefinitionNode] = {
                d.name.value: d
                for d in context.document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            self._defaults: dict[str, Any] = {}

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            root = self.context.schema.get_root_type(node.operation)
            if root is None:
                return  # another rule reports it
            self._defaults = {
                v.variable.name.value: v.default_value for v in node.variable_definitions or ()
            }
            cost = self._cost(node.selection_set, root, frozenset())
            if cost > max_cost:
                name = node.name.value if node.name else "the operation"
                about = f"more than {CEILING:,}" if cost >= CEILING else f"about {cost:,}"
                self.report_error(
                    GraphQLError(
                        f"{name} would cost {about}, over the limit of {max_cost:,}: "
                        "ask for fewer items (limit, pageSize) or fewer aliases, or fewer "
                        f"per-file fields (url costs {URL_COST} per file, properties "
                        f"{HEAD_COST})",
                        node,
                        extensions={
                            "code": BAD_USER_INPUT,
                            "reason": "QUERY_TOO_COSTLY",
                            "cost": cost,
                            "maxCost": max_cost,
                        },
                    )
                )

        def _cost(
            self,
            selections: SelectionSetNode | None,
            parent: GraphQLNamedType,
            seen: frozenset[str],
        ) -> int:
            if selections is None:
                return 0
            total = 0
            for selection in selections.selections:
                if isinstance(selection, FieldNode):
                    total += self._field_cost(selection, parent, seen)
                elif isinstance(selection, InlineFragmentNode):
                    total += self._cost(
                        selection.selection_set, self._type(selection, parent), seen
                    )
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    fragment = self._fragments.get(name)
                    if fragment is not None and name not in seen:  # cycles: another rule
                        total += self._cost(
                            fragment.selection_set, self._type(fragment, parent), seen | {name}
                        )
            return min(total, CEILING)

        def _field_cost(
            self, node: FieldNode, parent: GraphQLNamedType, seen: frozenset[str]
        ) -> int:
            fields = (
                parent.fields
                if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType)
                else {}
            )
            field = fields.get(node.name.value)
            if field is None:
                return 1  # unknown or introspection: other rules judge it
            weight = WEIGHTS.get((parent.name, node.name.value), 1)
            below = self._cost(node.selection_set, get_named_type(field.type), seen)
            return min(weight + self._multiplier(node, field) * below, CEILING)

        def _multiplier(self, node: FieldNode, field: GraphQLField) -> int:
            arguments = {a.name.value: a.value for a in node.arguments or ()}
            if "limit" in field.args:
                return self._int(arguments.get("limit"), DEFAULT_LIMIT)
            if "input" in field.args and "pageSize" in _input_fields(field):
                given = arguments.get("input")
                if isinstance(given, ObjectValueNode):
                    inner = {f.name.value: f.value for f in given.fields}
                    return self._int(inner.get("pageSize"), DEFAULT_LIMIT)
                return MAX_LIMIT if given is not None else DEFAULT_LIMIT
            nullable = get_nullable_type(field.type)
            if isinstance(nullable, GraphQLList) and get_named_type(nullable).name == FILE_REF:
                return FILES_PER_RECORD
            return 1

        def _int(self, value: Any, absent: int) -> int:
            if value is None:
                return absent
            if isinstance(value, VariableNode):
                default = self._defaults.get(value.name.value)
                return self._int(default, MAX_LIMIT) if default is not None else MAX_LIMIT
            if isinstance(value, IntValueNode):
                return max(1, min(int(value.value), MAX_LIMIT))
            return absent  # null or a wrong type: coercion reports it

        def _type(
            self, node: InlineFragmentNode | FragmentDefinitionNode, parent: GraphQLNamedType
        ) -> GraphQLNamedType:
            if node.type_condition is None:
                return parent
            found = self.context.schema.get_type(node.type_condition.name.value)
            return found if found is not None else parent

    return QueryCostLimit


def _input_fields(field: GraphQLField) -> dict[str, Any]:
    input_type = get_named_type(field.args["input"].type)
    return dict(getattr(input_type, "fields", {}))
