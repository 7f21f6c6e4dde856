"""A query depth limit that counts every field, introspection included.

strawberry's ``QueryDepthLimiter`` skips fields whose names start with ``__``, so
``__type { ofType { ofType ... } }`` nests without limit; it also re-walks a fragment each time
it is spread. This rule counts all fields and measures each fragment once.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)

from ...errors import BAD_USER_INPUT


def depth_limit_rule(max_depth: int) -> type[ValidationRule]:
    """A validation rule class for ``max_depth``; build it once so validation caching hits."""

    class QueryDepthLimit(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            self._fragments: dict[str, FragmentDefinitionNode] = {
                d.name.value: d
                for d in context.document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }
            self._measured: dict[str, int] = {}

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            depth = self._depth(node.selection_set, frozenset())
            if depth > max_depth:
                name = node.name.value if node.name else "the operation"
                self.report_error(
                    GraphQLError(
                        f"{name} is nested {depth} levels deep; the limit is {max_depth}",
                        node,
                        extensions={"code": BAD_USER_INPUT, "reason": "QUERY_TOO_DEEP"},
                    )
                )

        def _depth(self, selections: SelectionSetNode | None, visiting: frozenset[str]) -> int:
            if selections is None:
                return 0
            deepest = 0
            for selection in selections.selections:
                if isinstance(selection, FieldNode):
                    depth = 1 + self._depth(selection.selection_set, visiting)
                elif isinstance(selection, InlineFragmentNode):
                    depth = self._depth(selection.selection_set, visiting)
                elif isinstance(selection, FragmentSpreadNode):
                    depth = self._fragment_depth(selection.name.value, visiting)
                else:  # pragma: no cover - graphql-core has no other selection kinds
                    depth = 0
                deepest = max(deepest, depth)
            return deepest

        def _fragment_depth(self, name: str, visiting: frozenset[str]) -> int:
            if name in self._measured:
                return self._measured[name]
            fragment = self._fragments.get(name)
            if fragment is None or name in visiting:  # unknown or cyclic: other rules report it
                return 0
            depth = self._depth(fragment.selection_set, visiting | {name})
            self._measured[name] = depth
            return depth

    return QueryDepthLimit
