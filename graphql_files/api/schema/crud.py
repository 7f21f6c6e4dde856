"""Amplify's record operations, one factory per operation, serving every model.

``get_field(binding)`` for Song's binding is ``getSong``, ``list_field`` for PhotoAlbum's is
``listPhotoAlbums``;
and so on. Each resolver only turns arguments into a call on ``Records`` and the record it
gets back into the model's GraphQL type.

Each resolver is written once, its per-model argument and return types given by ``typed``
(strawberry reads them from the annotations; a type checker sees ``Any``). No ``from __future__
import annotations``: strawberry must see the annotations evaluated.
"""

from typing import Any

import strawberry
from strawberry import UNSET

from ...domain.models import check_values
from ...errors import NotFound
from ...services.records import Preconditions
from ..engine.executor import plain
from . import filtering
from .bindings import Binding, typed
from .context import Info
from .types import ModelSortDirection, to_stored


def given_values(binding: Binding, obj: Any) -> dict[str, Any]:
    """The model fields an input object carries (null included, unset left out)."""
    values = {
        f.name: to_stored(getattr(obj, f.name))
        for f in binding.model.fields
        if getattr(obj, f.name, UNSET) is not UNSET
    }
    check_values(binding.model, values)
    return values


def _expected_version(obj: Any) -> int | None:
    value = getattr(obj, "expectedVersion", UNSET)
    return None if value is UNSET else value


def get_field(b: Binding) -> Any:
    @plain(takes_source=False)
    async def resolve(info: Info, id: strawberry.ID) -> Any:
        try:
            record = await info.context.services.records.get(info.context.access, b.model, id)
        except NotFound:
            return None  # AppSync's answer, which Amplify's clients expect: no error
        return b.object_type.from_record(record)

    return strawberry.field(
        resolver=typed(resolve, returns=b.object_type | None),
        description=f"One {b.model.name} by id; null when there is none (or none the caller "
        "may read).",
    )


def list_field(b: Binding) -> Any:
    @plain(takes_source=False, converts=True)
    async def resolve(
        info: Info,
        filter: Any = None,
        limit: int | None = None,
        nextToken: str | None = None,
        sortDirection: ModelSortDirection | None = None,
    ) -> Any:
        page = await info.context.services.records.list(
            info.context.access,
            b.model,
            where=filtering.parse(b.model, filter),
            limit=limit,
            next_token=nextToken,
            descending=sortDirection is ModelSortDirection.DESC,
        )
        return b.connection(
            items=[b.object_type.from_record(r) for r in page.items], nextToken=page.next_token
        )

    return strawberry.field(
        resolver=typed(resolve, filter=b.inputs.filter | None, returns=b.connection | None),
        description=f"{b.model.plural} matching `filter`, by createdAt then id; `limit` "
        "defaults to 100 (at most 1000); pass `nextToken` back for the next page.",
    )


def create_field(b: Binding) -> Any:
    @plain(takes_source=False, converts=True)
    async def resolve(info: Info, input: Any, condition: Any = None) -> Any:
        record_id = None if input.id in (None, UNSET) else str(input.id)
        record = await info.context.services.relations.create(
            info.context.access,
            b.model,
            given_values(b, input),
            record_id=record_id,
            condition=filtering.parse(b.model, condition, what="condition"),
        )
        return b.object_type.from_record(record)

    return strawberry.mutation(
        resolver=typed(
            resolve,
            input=b.inputs.create,
            condition=b.inputs.condition | None,
            returns=b.object_type | None,
        ),
        description=f"Create a {b.model.name}.",
    )


def update_field(b: Binding) -> Any:
    @plain(takes_source=False, converts=True)
    async def resolve(info: Info, input: Any, condition: Any = None) -> Any:
        values = given_values(b, input)
        record = await info.context.services.relations.update(
            info.context.access,
            b.model,
            str(input.id),
            set_values={k: v for k, v in values.items() if v is not None},
            unset=[k for k, v in values.items() if v is None],
            preconditions=Preconditions(
                expected_version=_expected_version(input),
                condition=filtering.parse(b.model, condition, what="condition"),
            ),
        )
        return b.object_type.from_record(record)

    return strawberry.mutation(
        resolver=typed(
            resolve,
            input=b.inputs.update,
            condition=b.inputs.condition | None,
            returns=b.object_type | None,
        ),
        description=f"Change a {b.model.name}: fields given as null are removed.",
    )


def delete_field(b: Binding) -> Any:
    @plain(takes_source=False, converts=True)
    async def resolve(info: Info, input: Any, condition: Any = None) -> Any:
        record = await info.context.services.relations.delete(
            info.context.access,
            b.model,
            str(input.id),
            delete_files=input.deleteFiles,
            expected_version=_expected_version(input),
            condition=filtering.parse(b.model, condition, what="condition"),
        )
        return b.object_type.from_record(record)

    return strawberry.mutation(
        resolver=typed(
            resolve,
            input=b.inputs.delete,
            condition=b.inputs.condition | None,
            returns=b.object_type | None,
        ),
        description=f"Delete a {b.model.name}; returns it as it was, with the version the "
        "delete gave it.",
    )
