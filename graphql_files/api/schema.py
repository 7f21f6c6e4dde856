"""The schema: Amplify's operation names over the generic resolvers, with limits and caches."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from graphql import ASTValidationRule, GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.schema.config import StrawberryConfig
from strawberry.types.execution import ExecutionContext

from ..domain.feed import ChangeKind
from ..settings import Settings
from .bindings import PHOTO_ALBUM_API, SONG_API
from .budget import budgeted_execution
from .cost import query_cost_rule
from .crud import create_field, delete_field, get_field, list_field, update_field
from .error_shaping import ErrorShaping, log_errors
from .storage_ops import StorageMutation, StorageQuery
from .subscriptions import change_field, record_changes_field
from .types import DATETIME_SCALAR
from .validation import depth_limit_rule
from .workflows import WorkflowMutation

CACHE_SIZE = 1024


@strawberry.type
class RecordQuery:
    getSong = get_field(SONG_API)
    listSongs = list_field(SONG_API)
    getPhotoAlbum = get_field(PHOTO_ALBUM_API)
    listPhotoAlbums = list_field(PHOTO_ALBUM_API)


@strawberry.type
class RecordMutation:
    createSong = create_field(SONG_API)
    updateSong = update_field(SONG_API)
    deleteSong = delete_field(SONG_API)
    createPhotoAlbum = create_field(PHOTO_ALBUM_API)
    updatePhotoAlbum = update_field(PHOTO_ALBUM_API)
    deletePhotoAlbum = delete_field(PHOTO_ALBUM_API)


@strawberry.type
class Query(RecordQuery, StorageQuery):
    """Records first, then storage."""


@strawberry.type
class Mutation(RecordMutation, WorkflowMutation, StorageMutation):
    """Records, then the record-file workflows, then storage."""


@strawberry.type
class Subscription:
    onCreateSong = change_field(SONG_API, ChangeKind.CREATED)
    onUpdateSong = change_field(SONG_API, ChangeKind.UPDATED)
    onDeleteSong = change_field(SONG_API, ChangeKind.DELETED)
    onCreatePhotoAlbum = change_field(PHOTO_ALBUM_API, ChangeKind.CREATED)
    onUpdatePhotoAlbum = change_field(PHOTO_ALBUM_API, ChangeKind.UPDATED)
    onDeletePhotoAlbum = change_field(PHOTO_ALBUM_API, ChangeKind.DELETED)
    recordChanges = record_changes_field


class Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        log_errors(errors)


def build_schema(settings: Settings) -> Schema:
    """The schema with the settings' limits. Rules are built here, once, so that the
    validation cache (keyed by the rule classes) hits across requests."""
    rules: list[type[ASTValidationRule]] = [
        depth_limit_rule(settings.max_query_depth),
        max_aliases_rule(settings.max_aliases),
        query_cost_rule(settings.max_query_cost),
    ]
    extensions: list[Any] = [
        lambda: MaxTokensLimiter(max_token_count=settings.max_tokens),
        lambda: ParserCache(maxsize=CACHE_SIZE),
        lambda: AddValidationRules(rules),
        lambda: ValidationCache(maxsize=CACHE_SIZE),
        ErrorShaping,
    ]
    extension_factories: list[type[SchemaExtension] | Any] = extensions
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extension_factories,
        execution_context_class=budgeted_execution(settings.max_file_work),
        config=StrawberryConfig(scalar_map={datetime: DATETIME_SCALAR}),
    )


def sdl(schema: strawberry.Schema) -> str:
    """The schema as ``schema.graphql`` holds it."""
    return str(schema).rstrip("\n") + "\n"
