"""Relation fields: ``Post.comments`` (a page, as ``listComments`` pages), ``User.profile`` and
``Comment.post`` (one record, or null).

Every relation is loaded for all the records of one level of one execution at once: the
resolvers of a level ask a ``DataLoader`` made for that execution (kept in its budget's shared
work, so a subscription's events each get their own), which makes one MongoDB query per
relation and arguments (``Records.children``, ``Records.readable_many``). What a relation
returns obeys the related model's data rules as its own ``getX``/``listX`` would: an
owner-limited caller's page holds only their own children, and a parent they may not read is
null with a ``FORBIDDEN`` error.

No ``from __future__ import annotations``: strawberry must see the annotations evaluated.
"""

from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

import strawberry
from graphql import OperationType
from strawberry.dataloader import DataLoader

from ...domain import filters
from ...domain.models import Record, RelationSpec
from ...errors import DomainError
from ...services.records import Page
from ..engine.budget import current_budget
from ..engine.executor import ContextOnly, plain
from . import filtering
from .context import Info
from .types import ModelSortDirection, typed

if TYPE_CHECKING:
    from .bindings import Binding

Bindings = Mapping[str, "Binding"]


def _loader(
    info: Info, key: Hashable, load: Callable[[list[str]], Awaitable[Sequence[Any]]]
) -> DataLoader[str, Any]:
    """The loader of ``key`` for this execution: made on first use, shared by every resolver
    of the execution that asks for the same relation with the same arguments. A mutation's
    fields run one after another, each seeing what the ones before it wrote: each has loaders
    of its own."""
    if isinstance(info, ContextOnly):  # a compiled operation's resolver: plain
        if info.mutation_field is not None:
            key = (info.mutation_field, key)
    elif info.operation.operation is OperationType.MUTATION:
        root = info.path
        while root.prev is not None:
            root = root.prev
        key = (root.key, key)
    shared = current_budget().shared
    loader = shared.get(key)
    if loader is None:
        loader = shared[key] = DataLoader(load_fn=load)
    return loader


def children_field(relation: RelationSpec, bindings: Bindings) -> Any:
    """``Post.comments(filter, sortDirection, limit, nextToken)``: a has_many relation."""
    target = bindings[relation.target]

    @plain(takes_source=True, converts=True)
    async def resolve(
        self: Any,
        info: Info,
        filter: Any = None,
        sortDirection: ModelSortDirection | None = None,
        limit: int | None = None,
        nextToken: str | None = None,
    ) -> Any:
        where = filtering.parse(target.model, filter)
        descending = sortDirection is ModelSortDirection.DESC
        page = await _pages(info, relation, where, limit, nextToken, descending).load(self.id)
        return target.connection(
            items=[target.object_type.from_record(r) for r in page.items],
            nextToken=page.next_token,
        )

    return strawberry.field(
        resolver=typed(resolve, filter=target.inputs.filter | None, returns=target.connection),
        description=relation.description
        or f"The {relation.target} records whose {relation.references} names this "
        f"{relation.source}, by createdAt then id, as list{target.model.plural} pages them: "
        "`limit` defaults to 100 (at most 1000); pass `nextToken` back for the next page.",
    )


def one_child_field(relation: RelationSpec, bindings: Bindings) -> Any:
    """``User.profile``: a has_one relation; null when there is none the caller may read."""
    target = bindings[relation.target]

    @plain(takes_source=True)
    async def resolve(self: Any, info: Info) -> Any:
        page = await _pages(info, relation, None, 1, None, False).load(self.id)
        return target.object_type.from_record(page.items[0]) if page.items else None

    return strawberry.field(
        resolver=typed(resolve, returns=Optional[target.object_type]),  # noqa: UP045
        description=relation.description
        or f"The {relation.target} whose {relation.references} names this {relation.source}; "
        "null when there is none.",
    )


def parent_field(relation: RelationSpec, bindings: Bindings) -> Any:
    """``Comment.post``: a belongs_to relation; null when the reference is."""
    target = bindings[relation.target]

    @plain(takes_source=True)
    async def resolve(self: Any, info: Info) -> Any:
        parent_id = getattr(self, relation.references)
        if parent_id is None:
            return None
        found = await _parents(info, relation).load(str(parent_id))
        if isinstance(found, DomainError):
            raise found
        return None if found is None else target.object_type.from_record(found)

    return strawberry.field(
        resolver=typed(resolve, returns=Optional[target.object_type]),  # noqa: UP045
        description=relation.description
        or f"The {relation.target} this {relation.source}'s {relation.references} names; null "
        f"when it names none, and null with a FORBIDDEN error when the caller may not read it.",
    )


def relation_field(relation: RelationSpec, bindings: Bindings) -> Any:
    if relation.kind == "has_many":
        return children_field(relation, bindings)
    if relation.kind == "has_one":
        return one_child_field(relation, bindings)
    return parent_field(relation, bindings)


def _pages(
    info: Info,
    relation: RelationSpec,
    where: filters.Node | None,
    limit: int | None,
    next_token: str | None,
    descending: bool,
) -> DataLoader[str, Page]:
    key = (
        "children",
        relation.source,
        relation.name,
        filters.fingerprint(where),
        limit,
        next_token,
        descending,
    )

    async def load(parent_ids: list[str]) -> list[Page]:
        context = info.context
        model = context.services.declaration.model(relation.target)
        pages = await context.services.records.children(
            context.access,
            model,
            relation.references,
            parent_ids,
            where=where,
            limit=limit,
            next_token=next_token,
            descending=descending,
        )
        return [pages[parent_id] for parent_id in parent_ids]

    return _loader(info, key, load)


def _parents(info: Info, relation: RelationSpec) -> DataLoader[str, Record | DomainError | None]:
    async def load(parent_ids: list[str]) -> list[Record | DomainError | None]:
        context = info.context
        model = context.services.declaration.model(relation.target)
        found = await context.services.records.readable_many(context.access, model, parent_ids)
        return [found.get(parent_id) for parent_id in parent_ids]

    return _loader(info, ("parents", relation.target), load)
