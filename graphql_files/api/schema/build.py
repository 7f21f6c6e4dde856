"""The schema: Amplify's operation names over the generic resolvers, with limits and caches."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import strawberry
from graphql import ASTValidationRule, GraphQLError
from strawberry.file_uploads import Upload
from strawberry.schema.config import StrawberryConfig

from ...domain.declaration import BUILTIN, Declaration
from ...domain.feed import ChangeKind
from ...settings import Settings
from ..engine._compat import max_aliases_rule
from ..engine.budget import budgeted_execution
from ..engine.cost import query_cost_rule
from ..engine.error_shaping import log_errors
from ..engine.execution import LeanSchema
from ..engine.validation import depth_limit_rule
from .bindings import api_for
from .crud import create_field, delete_field, get_field, list_field, update_field
from .storage_ops import StorageMutation, StorageQuery
from .subscriptions import change_field, record_changes_field
from .types import DATETIME_SCALAR, UPLOAD_SCALAR
from .workflows import workflow_fields

CACHE_SIZE = 1024


def _strawberry_type(name: str, bases: tuple[type, ...], fields: dict[str, Any]) -> type:
    decorated: type = strawberry.type(type(name, bases, dict(fields)))
    return decorated


@dataclass(frozen=True)
class RootTypes:
    query: type
    mutation: type
    subscription: type


@cache
def root_types(declaration: Declaration) -> RootTypes:
    """Query, Mutation and Subscription for ``declaration``'s models, in Amplify's names: per
    model, getX/listX; createX/updateX/deleteX; the workflows of its file fields;
    onCreateX/onUpdateX/onDeleteX; then storage, and the change feed."""
    api = api_for(declaration)
    queries: dict[str, Any] = {}
    mutations: dict[str, Any] = {}
    workflows: dict[str, Any] = {}
    subscriptions: dict[str, Any] = {}
    for b in api.bindings:
        name, plural = b.model.name, b.model.plural
        queries[f"get{name}"] = get_field(b)
        queries[f"list{plural}"] = list_field(b)
        mutations[f"create{name}"] = create_field(b)
        mutations[f"update{name}"] = update_field(b)
        mutations[f"delete{name}"] = delete_field(b)
        workflows.update(workflow_fields(b))
        for kind, verb in (
            (ChangeKind.CREATED, "Create"),
            (ChangeKind.UPDATED, "Update"),
            (ChangeKind.DELETED, "Delete"),
        ):
            subscriptions[f"on{verb}{name}"] = change_field(b, kind)
    subscriptions["recordChanges"] = record_changes_field(api)
    record_query = _strawberry_type("RecordQuery", (), queries)
    record_mutation = _strawberry_type("RecordMutation", (), mutations)
    workflow_mutation = _strawberry_type("WorkflowMutation", (), workflows)
    return RootTypes(
        # records first, then the record-file workflows, then storage
        query=_strawberry_type("Query", (record_query, StorageQuery), {}),
        mutation=_strawberry_type(
            "Mutation", (record_mutation, workflow_mutation, StorageMutation), {}
        ),
        subscription=_strawberry_type("Subscription", (), subscriptions),
    )


class Schema(LeanSchema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        log_errors(errors)


def build_schema(settings: Settings, declaration: Declaration = BUILTIN) -> Schema:
    """The schema of ``declaration``'s models with the settings' limits. Rules are built here,
    once: the prepared-operation cache holds each document's validation result."""
    roots = root_types(declaration)
    rules: list[type[ASTValidationRule]] = [
        depth_limit_rule(settings.max_query_depth),
        max_aliases_rule(settings.max_aliases),
        query_cost_rule(settings.max_query_cost),
    ]
    return Schema(
        query=roots.query,
        mutation=roots.mutation,
        subscription=roots.subscription,
        rules=rules,
        max_tokens=settings.max_tokens,
        cache_size=CACHE_SIZE,
        execution_context_class=budgeted_execution(settings.max_file_work),
        config=StrawberryConfig(scalar_map={datetime: DATETIME_SCALAR, Upload: UPLOAD_SCALAR}),
    )


def sdl(schema: strawberry.Schema) -> str:
    """The schema as ``schema.graphql`` holds it."""
    return str(schema).rstrip("\n") + "\n"
