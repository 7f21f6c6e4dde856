"""Subscriptions: Amplify's per-model ones (``onCreateSong`` ...) and the resumable change feed.

A subscriber that falls ``SUBSCRIBER_BUFFER`` events behind is cut off: its websocket is closed
with code 4008 and a reason naming the last cursor it received, so it can resume from there.

No ``from __future__ import annotations``: resolver annotations name per-model types.
"""

import enum
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import strawberry
from starlette.websockets import WebSocket

from ..domain import filters
from ..domain.feed import ChangeEvent, ChangeKind, Subscription
from ..domain.models import MODELS_BY_ENUM, Record
from ..errors import DomainError, SlowConsumer
from . import filtering
from .bindings import BINDINGS, Binding, typed
from .closing import close_later
from .context import Info
from .types import ModelName, PhotoAlbum, Song

CUT_OFF_CODE = 4008
_STREAM: Any = AsyncGenerator  # subscripted with a model's type at run time (see ``typed``)
_VERBS = {
    ChangeKind.CREATED: "created",
    ChangeKind.UPDATED: "updated",
    ChangeKind.DELETED: "deleted",
}


def _closer(info: Info) -> Callable[[SlowConsumer], None] | None:
    """What to do when this subscriber is cut off: close its websocket, saying why."""
    websocket = info.context.response
    if not isinstance(websocket, WebSocket):
        return None

    def cut_off(error: SlowConsumer) -> None:
        cursor = error.extra.get("lastCursor") or "a re-list"
        close_later(websocket, CUT_OFF_CODE, f"too slow: resume after {cursor}")

    return cut_off


@asynccontextmanager
async def _subscribed(
    info: Info, wanted: Callable[[ChangeEvent], bool], after: str | None = None
) -> AsyncIterator[Subscription]:
    """The events ``wanted`` picks, until the subscriber leaves (the block ends)."""
    services = info.context.services
    subscription = await services.broker.subscribe(
        wanted, buffer=services.settings.subscriber_buffer, after=after, on_cut_off=_closer(info)
    )
    if info.context.on_subscribed is not None:
        info.context.on_subscribed()
    try:
        yield subscription
    finally:
        subscription.close()


def change_field(b: Binding, kind: ChangeKind) -> Any:
    async def resolve(info: Info, filter: Any = None) -> AsyncGenerator[Any, None]:
        where = filtering.parse(b.model, filter, what="subscription filter")
        visible = info.context.services.records.visible(info.context.access, b.model)

        def wanted(event: ChangeEvent) -> bool:
            if event.kind is not kind or event.model != b.model.enum_name:
                return False
            record = event.record
            return visible(record) and filters.matches(where, record)

        async with _subscribed(info, wanted) as events:
            async for event in events:
                yield b.object_type.from_record(event.record)

    what = _VERBS[kind]
    extra = (
        " (as it was, with the version the delete gave it)" if kind is ChangeKind.DELETED else ""
    )
    return strawberry.subscription(
        resolver=typed(
            resolve,
            filter=b.inputs.subscription_filter | None,
            returns=_STREAM[b.object_type, None],
        ),
        description=f"Every {b.model.name} {what} from now on that matches `filter`{extra}.",
    )


@strawberry.enum(name="ChangeKind", description="What a change did to its record.")
class ChangeKindType(enum.Enum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"


@strawberry.type(description="One committed change, in the order of the change log.")
class RecordChange:
    cursor: str = strawberry.field(description="Pass as `after` to resume right after this change.")
    kind: ChangeKindType
    model: ModelName
    id: strawberry.ID
    version: int = strawberry.field(description="The record's version after the change.")
    song: Song | None = strawberry.field(description="The record, when `model` is SONG.")
    photoAlbum: PhotoAlbum | None = strawberry.field(
        description="The record, when `model` is PHOTO_ALBUM."
    )

    @classmethod
    def from_event(cls, event: ChangeEvent) -> "RecordChange":
        record = BINDINGS[event.model].object_type.from_record(event.record)
        return cls(
            cursor=event.cursor,
            kind=ChangeKindType(event.kind.value),
            model=ModelName(event.model),
            id=strawberry.ID(event.record_id),
            version=event.version,
            song=record if isinstance(record, Song) else None,
            photoAlbum=record if isinstance(record, PhotoAlbum) else None,
        )


async def record_changes(
    info: Info,
    models: list[ModelName] | None = None,
    ids: list[strawberry.ID] | None = None,
    after: str | None = None,
) -> AsyncGenerator[RecordChange, None]:
    """The change feed: every committed change to the records the caller may read."""
    records = info.context.services.records
    chosen = [MODELS_BY_ENUM[m.value] for m in models] if models else None
    visible: dict[str, Callable[[Record], bool]] = {}
    refusal: DomainError | None = None
    for model in chosen or MODELS_BY_ENUM.values():
        try:
            visible[model.enum_name] = records.visible(info.context.access, model)
        except DomainError as exc:
            if chosen is not None:  # asked for by name: refuse
                raise
            refusal = refusal or exc
    if not visible and refusal is not None:
        raise refusal
    wanted_ids = {str(i) for i in ids} if ids else None

    def wanted(event: ChangeEvent) -> bool:
        sees = visible.get(event.model)
        if sees is None:
            return False
        if wanted_ids is not None and event.record_id not in wanted_ids:
            return False
        return sees(event.record)

    async with _subscribed(info, wanted, after) as events:
        async for event in events:
            yield RecordChange.from_event(event)


record_changes_field = strawberry.subscription(
    resolver=record_changes,
    description="Every committed change, in order. Pass the last `cursor` you saw as `after` to "
    "receive, exactly once and in order, every change you missed, then live ones; a cursor "
    "older than the retained history answers RESYNC_REQUIRED (re-list, then subscribe without "
    "`after`). Without `after`: live changes only. `models`/`ids` narrow the feed.",
)
