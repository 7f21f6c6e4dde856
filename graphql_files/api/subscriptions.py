"""Amplify's subscriptions (``onCreateSong`` ...), one factory serving every model and kind.

No ``from __future__ import annotations``: resolver annotations name per-model types.
"""

from collections.abc import AsyncGenerator
from typing import Any

import strawberry

from .. import filters
from ..events import ChangeEvent, ChangeKind
from ..models import Record
from .bindings import Binding
from .context import Info

_VERBS = {
    ChangeKind.CREATED: "created",
    ChangeKind.UPDATED: "updated",
    ChangeKind.DELETED: "deleted",
}


def change_field(b: Binding, kind: ChangeKind) -> Any:
    async def resolve(
        info: Info,
        filter: b.inputs.subscription_filter | None = None,  # type: ignore[name-defined]
    ) -> AsyncGenerator[b.object_type, None]:  # type: ignore[name-defined]
        where = filters.parse(b.model, filter, what="subscription filter")
        owner = info.context.access.data(b.model, "read").owner  # a subscription is a read

        def wanted(event: ChangeEvent) -> bool:
            if event.kind is not kind or event.model != b.model.enum_name:
                return False
            record = Record.from_document(b.model, event.document)
            return (owner is None or record.owner == owner) and filters.matches(where, record)

        services = info.context.services
        subscription = await services.broker.subscribe(
            wanted, buffer=services.settings.subscriber_buffer
        )
        try:
            async for event in subscription:
                yield b.object_type.from_record(Record.from_document(b.model, event.document))
        finally:
            subscription.close()

    what = _VERBS[kind]
    extra = (
        " (as it was, with the version the delete gave it)" if kind is ChangeKind.DELETED else ""
    )
    return strawberry.subscription(
        resolver=resolve,
        description=f"Every {b.model.name} {what} from now on that matches `filter`{extra}.",
    )
