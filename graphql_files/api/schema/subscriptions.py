"""Subscriptions: Amplify's per-model ones (``onCreateSong`` ...) and the resumable change feed.

A subscriber that falls ``SUBSCRIBER_BUFFER`` events behind is cut off, as its context says
(``Context.on_cut_off``: a websocket closes with code 4008 and a reason naming the last cursor it
received, so it can resume from there).

No ``from __future__ import annotations``: resolver annotations name per-model types.
"""

import enum
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Optional

import strawberry

from ...domain import filters
from ...domain.feed import ChangeEvent, ChangeKind, Subscription
from ...domain.models import Record
from ...errors import DomainError
from . import filtering
from .bindings import Api, Binding, typed
from .context import Info

# subscripted with a model's generated types at run time (see ``typed``)
_STREAM: Any = AsyncGenerator
_LIST: Any = list
_OPTIONAL: Any = Optional
_VERBS = {
    ChangeKind.CREATED: "created",
    ChangeKind.UPDATED: "updated",
    ChangeKind.DELETED: "deleted",
}


@asynccontextmanager
async def _subscribed(
    info: Info, wanted: Callable[[ChangeEvent], bool], after: str | None = None
) -> AsyncIterator[Subscription]:
    """The events ``wanted`` picks, until the subscriber leaves (the block ends)."""
    services = info.context.services
    subscription = await services.broker.subscribe(
        wanted,
        buffer=services.settings.subscriber_buffer,
        after=after,
        on_cut_off=info.context.on_cut_off,
    )
    if info.context.on_subscribed is not None:
        info.context.on_subscribed(subscription)
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
            record = event.record(b.model)
            return visible(record) and filters.matches(where, record)

        async with _subscribed(info, wanted) as events:
            async for event in events:
                yield b.object_type.from_record(event.record(b.model))

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


def record_change_type(api: Api) -> type:
    """``RecordChange``: one committed change, carrying the changed record in the field of its
    model (``song``, ``photoAlbum``, ...), so a client selects exactly what it wants of each."""
    annotations: dict[str, Any] = {
        "cursor": str,
        "kind": ChangeKindType,
        "model": api.model_name,
        "id": strawberry.ID,
        "version": int,
    }
    namespace: dict[str, Any] = {
        "__annotations__": annotations,
        "cursor": strawberry.field(
            description="Pass as `after` to resume right after this change."
        ),
        "version": strawberry.field(description="The record's version after the change."),
    }
    for b in api.bindings:
        annotations[b.model.field_name] = Optional[b.object_type]  # noqa: UP045
        namespace[b.model.field_name] = strawberry.field(
            description=f"The record, when `model` is {b.model.enum_name}."
        )
    generated = type("RecordChange", (), namespace)
    decorated: type = strawberry.type(
        generated, description="One committed change, in the order of the change log."
    )
    return decorated


def record_changes_field(api: Api) -> Any:
    change_type = record_change_type(api)

    def from_event(event: ChangeEvent) -> Any:
        b = api.by_enum(event.model)
        fields: dict[str, Any] = {other.model.field_name: None for other in api.bindings}
        fields[b.model.field_name] = b.object_type.from_record(event.record(b.model))
        return change_type(
            cursor=event.cursor,
            kind=ChangeKindType(event.kind.value),
            model=api.model_name(event.model),
            id=strawberry.ID(event.record_id),
            version=event.version,
            **fields,
        )

    async def record_changes(
        info: Info,
        models: Any = None,
        ids: list[strawberry.ID] | None = None,
        after: str | None = None,
    ) -> AsyncGenerator[Any, None]:
        """The change feed: every committed change to the records the caller may read."""
        records = info.context.services.records
        declared = api.declaration
        chosen = [declared.by_enum[m.value] for m in models] if models else None
        visible: dict[str, Callable[[Record], bool]] = {}
        refusal: DomainError | None = None
        for model in chosen or declared.models:
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
            return sees(event.record(declared.by_enum[event.model]))

        async with _subscribed(info, wanted, after) as events:
            async for event in events:
                yield from_event(event)

    return strawberry.subscription(
        resolver=typed(
            record_changes,
            models=_OPTIONAL[_LIST[api.model_name]],
            returns=_STREAM[change_type, None],
        ),
        description="Every committed change, in order. Pass the last `cursor` you saw as "
        "`after` to receive, exactly once and in order, every change you missed, then live "
        "ones; a cursor older than the retained history answers RESYNC_REQUIRED (re-list, then "
        "subscribe without `after`). Without `after`: live changes only. `models`/`ids` narrow "
        "the feed.",
    )
