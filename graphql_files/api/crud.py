"""Amplify's record operations, one factory per operation, serving every model.

``get_field(SONG_API)`` is ``getSong``; ``list_field(PHOTO_ALBUM_API)`` is ``listPhotoAlbums``;
and so on. Each resolver only turns arguments into a call on ``Records`` and the record it
gets back into the model's GraphQL type.

No ``from __future__ import annotations``: resolver annotations name per-model types that
strawberry must see evaluated.
"""

from typing import Any

import strawberry
from strawberry.types.unset import UNSET

from .. import filters
from ..models import check_values
from ..records import Preconditions
from .bindings import Binding
from .context import Info
from .types import ModelSortDirection


def given_values(binding: Binding, obj: Any) -> dict[str, Any]:
    """The model fields an input object carries (null included, unset left out)."""
    values = {
        f.name: getattr(obj, f.name)
        for f in binding.model.fields
        if getattr(obj, f.name, UNSET) is not UNSET
    }
    check_values(binding.model, values)
    return values


def _expected_version(obj: Any) -> int | None:
    value = getattr(obj, "expectedVersion", UNSET)
    return None if value is UNSET else value


def get_field(b: Binding) -> Any:
    async def resolve(info: Info, id: strawberry.ID) -> b.object_type | None:  # type: ignore[name-defined]
        grant = info.context.access.data(b.model, "read")
        record = await info.context.services.records.get(b.model, id, owner=grant.owner)
        return b.object_type.from_record(record)

    return strawberry.field(
        resolver=resolve,
        description=f"One {b.model.name} by id; null with a NOT_FOUND error when there is none.",
    )


def list_field(b: Binding) -> Any:
    async def resolve(
        info: Info,
        filter: b.inputs.filter | None = None,  # type: ignore[name-defined]
        limit: int | None = None,
        nextToken: str | None = None,
        sortDirection: ModelSortDirection | None = None,
    ) -> b.connection | None:  # type: ignore[name-defined]
        grant = info.context.access.data(b.model, "read")
        page = await info.context.services.records.list(
            b.model,
            where=filters.parse(b.model, filter),
            limit=limit,
            next_token=nextToken,
            descending=sortDirection is ModelSortDirection.DESC,
            owner=grant.owner,
        )
        return b.connection(
            items=[b.object_type.from_record(r) for r in page.items], nextToken=page.next_token
        )

    return strawberry.field(
        resolver=resolve,
        description=f"{b.model.plural} matching `filter`, by createdAt then id; `limit` "
        "defaults to 100 (at most 1000); pass `nextToken` back for the next page.",
    )


def create_field(b: Binding) -> Any:
    async def resolve(
        info: Info,
        input: b.inputs.create,  # type: ignore[name-defined]
        condition: b.inputs.condition | None = None,  # type: ignore[name-defined]
    ) -> b.object_type | None:  # type: ignore[name-defined]
        grant = info.context.access.data(b.model, "create")
        record_id = None if input.id in (None, UNSET) else str(input.id)
        record = await info.context.services.records.create(
            b.model,
            given_values(b, input),
            record_id=record_id,
            owner=grant.creator,
            condition=filters.parse(b.model, condition, what="condition"),
        )
        return b.object_type.from_record(record)

    return strawberry.mutation(resolver=resolve, description=f"Create a {b.model.name}.")


def update_field(b: Binding) -> Any:
    async def resolve(
        info: Info,
        input: b.inputs.update,  # type: ignore[name-defined]
        condition: b.inputs.condition | None = None,  # type: ignore[name-defined]
    ) -> b.object_type | None:  # type: ignore[name-defined]
        grant = info.context.access.data(b.model, "update")
        values = given_values(b, input)
        record = await info.context.services.records.update(
            b.model,
            str(input.id),
            set_values={k: v for k, v in values.items() if v is not None},
            unset=[k for k, v in values.items() if v is None],
            preconditions=Preconditions(
                expected_version=_expected_version(input),
                condition=filters.parse(b.model, condition, what="condition"),
                owner=grant.owner,
            ),
        )
        return b.object_type.from_record(record)

    return strawberry.mutation(
        resolver=resolve,
        description=f"Change a {b.model.name}: fields given as null are removed.",
    )


def delete_field(b: Binding) -> Any:
    async def resolve(
        info: Info,
        input: b.inputs.delete,  # type: ignore[name-defined]
        condition: b.inputs.condition | None = None,  # type: ignore[name-defined]
    ) -> b.object_type | None:  # type: ignore[name-defined]
        record = await info.context.services.attachments.delete_record(
            info.context.access,
            b.model,
            str(input.id),
            delete_files=input.deleteFiles,
            expected_version=_expected_version(input),
            condition=filters.parse(b.model, condition, what="condition"),
        )
        return b.object_type.from_record(record)

    return strawberry.mutation(
        resolver=resolve,
        description=f"Delete a {b.model.name}; returns it as it was, with the version the "
        "delete gave it.",
    )
