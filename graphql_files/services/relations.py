"""Relations between records: no record names a missing parent, and deletes carry their children.

A child names its parent in an ``ID`` field (``Comment.postId``). Two kinds of work touch that
reference and must exclude each other: a *child write* (create a child naming a parent, or point
one at it: check the parent exists, then write) and a *parent delete* (find the children, deal
with them, then delete the parent). Each is check-then-act, so each runs holding the parent's
*record claim*: ``Claims`` over the ``record_claims`` collection, one document per
``<Model>/<id>``, in MongoDB, so every instance of the server sees it, with the leases, hold
limit and kept-on-doubt rule of the object claims (see ``claims``).

A child write (``createX``/``updateX`` naming a parent):

1. Take the claims on the parents the new values name (sorted: no two holders wait on each
   other), *shared*: child writes naming one parent exclude its delete, not each other (a
   ``has_one`` parent's are exclusive: its children are written one at a time).
2. Read each parent as the caller may read it: one that is missing, or that the caller may not
   read, is ``BAD_USER_INPUT`` naming the field (one answer for both: a write tells no more
   about other users' records than a read would); for a ``has_one``, a parent that already has
   another such child is ``CONFLICT``.
3. Write the child in its one guarded MongoDB operation, still holding the claims. A write whose
   outcome is unknown keeps them until their leases run out: it may land yet.
4. Release.

The delete of a record that has children (a ``has_many`` or ``has_one`` relation):

1. Take the record's claim: until it is released, no child can be written naming it.
2. Read it as the caller may delete it; check ``expectedVersion``, ``condition`` and, with
   ``deleteFiles``, the storage rules for its files. A refusal here changes nothing.
3. Look down every cascade for a ``restrict`` relation that still has children: if there is
   one, refuse with ``CONFLICT`` and the counts per relation, having changed nothing.
4. Deal with the children, oldest first, a batch at a time: ``nullify`` sets each one's
   reference to null; ``cascade`` deletes each by this same protocol one level down (under its
   own claim when it has children of its own), then its files when asked. Each is one write
   guarded by the reference still naming this record (a child moved meanwhile is left alone),
   with its own version and event, done with the server's authority over records
   (``Access.for_integrity``): a delete the caller may make carries its children with it.
5. Delete the record (guarded by ``expectedVersion`` and ``condition``), under the claim.
6. Release; then, when asked, delete its files after the answer (``Attachments.discard``).

Why no child names a missing parent: every write that makes a record name P holds P's claim and
has just seen P, and P's delete holds that claim from before it looks for children until P is
gone; so a child write either ends before the delete looks (which then finds the child) or
starts after P is gone (and is refused). Children go before their parents at every level, so a
crash anywhere in a cascade leaves only references to records that exist; the same delete run
again finishes it, and the sweeper removes the files of what it deleted. A cascade runs within
the request's hold limit (``REQUEST_TIMEOUT``): one too large to finish in it answers
``DEADLINE_EXCEEDED`` having deleted part of the tree, bottom up, and running it again goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ..domain import filters
from ..domain.models import ModelSpec, Record, RelationSpec
from ..errors import BadUserInput, Conflict, Forbidden, NotFound
from .attachments import Attachments
from .auth import Access
from .claims import Claim, Claims
from .records import Preconditions, Records

log = logging.getLogger(__name__)

BATCH = 100  # children read per query while a delete deals with them
CONCURRENCY = 8  # children dealt with at once


@dataclass(frozen=True)
class Named:
    """A parent a child's values name."""

    relation: RelationSpec  # the child's belongs_to
    parent: ModelSpec
    parent_id: str
    one: bool  # the parent's side is a has_one: it may have only one such child


def claim_key(model: ModelSpec, record_id: str) -> str:
    return f"{model.name}/{record_id}"


class Relations:
    """Writes and deletes that keep every reference to a parent pointing at a record."""

    def __init__(
        self,
        *,
        records: Records,
        attachments: Attachments,
        claims: Claims,
        models: Sequence[ModelSpec],
    ) -> None:
        self._records = records
        self._attachments = attachments
        self.claims = claims  # on records, as ``Storage.claims`` are on objects
        self._models = {m.name: m for m in models}
        # which parents' sides are has_one: (child model, reference) -> True
        self._has_one = {
            (r.target, r.references): r.kind == "has_one" for m in models for r in m.children
        }

    # --- child writes ------------------------------------------------------------------------

    async def create(
        self,
        access: Access,
        model: ModelSpec,
        values: Mapping[str, Any],
        *,
        record_id: str | None = None,
        condition: filters.Node | None = None,
    ) -> Record:
        """``Records.create``, holding the claims of the parents ``values`` name."""
        async with self._child_write(access, model, "create", values, record_id):
            return await self._records.create(
                access, model, values, record_id=record_id, condition=condition
            )

    async def update(
        self,
        access: Access,
        model: ModelSpec,
        record_id: str,
        *,
        set_values: Mapping[str, Any],
        unset: Sequence[str] = (),
        preconditions: Preconditions | None = None,
    ) -> Record:
        """``Records.update``, holding the claims of the parents ``set_values`` name."""
        async with self._child_write(access, model, "update", set_values, record_id):
            return await self._records.update(
                access,
                model,
                record_id,
                set_values=set_values,
                unset=unset,
                preconditions=preconditions or Preconditions(),
            )

    @asynccontextmanager
    async def _child_write(
        self,
        access: Access,
        model: ModelSpec,
        action: str,
        values: Mapping[str, Any],
        record_id: str | None,
    ) -> AsyncIterator[None]:
        """Around the one write of a record: steps 1-4 when ``values`` name parents (the
        write itself in ``committing``: an unknown outcome keeps the claims); nothing else."""
        named = self._named(model, values)
        if not named:
            yield
            return
        access.data(model, action)  # refuse before waiting for any claim
        async with self._parents_held(access, model, named, record_id) as claim, claim.committing():
            yield

    def _named(self, model: ModelSpec, values: Mapping[str, Any]) -> list[Named]:
        named = []
        for relation in model.parents:
            parent_id = values.get(relation.references)
            if parent_id is not None:
                parent = self._models[relation.target]
                one = self._has_one.get((model.name, relation.references), False)
                named.append(Named(relation, parent, str(parent_id), one))
        return named

    @asynccontextmanager
    async def _parents_held(
        self, access: Access, model: ModelSpec, named: list[Named], record_id: str | None
    ) -> AsyncIterator[Claim]:
        """Steps 1-2: the claims of the parents ``named``, once each has been seen to exist."""
        keys = [claim_key(n.parent, n.parent_id) for n in named]
        what = ", ".join(f"{n.parent.name} {n.parent_id}" for n in named)
        # children of one parent are written side by side; a has_one's, one at a time
        shared = not any(n.one for n in named)
        purpose = f"write a {model.name} naming {what}"
        async with self.claims.hold(keys, purpose=purpose, shared=shared) as claim:
            for n in named:
                await _check_parent(self._records, access, model, n, record_id)
            yield claim

    # --- deletes -----------------------------------------------------------------------------

    async def delete(
        self,
        access: Access,
        model: ModelSpec,
        record_id: str,
        *,
        delete_files: bool,
        expected_version: int | None = None,
        condition: filters.Node | None = None,
    ) -> Record:
        """Delete a record and deal with its children as its relations say (see above)."""
        if not model.children:
            return await self._attachments.delete_record(
                access,
                model,
                record_id,
                delete_files=delete_files,
                expected_version=expected_version,
                condition=condition,
            )
        access.data(model, "delete")
        key = claim_key(model, record_id)
        async with self.claims.hold([key], purpose=f"delete {model.name} {record_id}") as claim:
            current = await self._records.get(access, model, record_id, purpose="delete")
            _check_preconditions(current, expected_version, condition)
            if delete_files:
                self._attachments.check_deletable(access, model, record_id, current.file_paths)
            counts: dict[str, int] = {}
            await self._restricting(model, [record_id], "", counts)
            if counts:
                raise _still_has(model, record_id, counts)
            await self._children_of(access, model, record_id, delete_files=delete_files)
            async with claim.committing():
                record = await self._records.delete(
                    access,
                    model,
                    record_id,
                    preconditions=Preconditions(
                        expected_version=expected_version, condition=condition
                    ),
                )
        if delete_files:
            self._attachments.discard(access, model, record_id, record.file_paths)
        return record

    async def _restricting(
        self, model: ModelSpec, record_ids: Sequence[str], prefix: str, counts: dict[str, int]
    ) -> None:
        """Count, into ``counts``, the children of ``record_ids`` that a ``restrict`` relation
        keeps, here and down every cascade (``comments.reactions``: the reactions of the
        comments a delete would carry away)."""
        for relation in model.children:
            child = self._models[relation.target]
            if relation.on_delete == "restrict":
                found = await self._records.count_naming(child, relation.references, record_ids)
                if found:
                    counts[prefix + relation.name] = counts.get(prefix + relation.name, 0) + found
            elif relation.on_delete == "cascade" and child.children:
                after: str | None = None
                while True:
                    ids = await self._records.ids_naming(
                        child, relation.references, record_ids, limit=BATCH * 10, after=after
                    )
                    if not ids:
                        break
                    await self._restricting(child, ids, f"{prefix}{relation.name}.", counts)
                    after = ids[-1]

    async def _children_of(
        self, access: Access, model: ModelSpec, record_id: str, *, delete_files: bool
    ) -> None:
        """Step 4: every child of ``record_id`` nullified or deleted, as its relation says."""
        for relation in model.children:
            child = self._models[relation.target]
            if relation.on_delete == "restrict":
                found = await self._records.count_naming(child, relation.references, [record_id])
                if found:  # appeared below a cascade since step 3 looked
                    raise _still_has(model, record_id, {relation.name: found})
                continue
            done: set[str] = set()
            while True:
                ids = await self._records.ids_naming(
                    child, relation.references, [record_id], limit=BATCH
                )
                if not ids:
                    break
                again = done.intersection(ids)
                if again:  # dealt with, yet still naming us: never loop on it
                    raise Conflict(
                        f"{child.name} {sorted(again)[0]!r} still names {model.name} "
                        f"{record_id!r}; try the delete again",
                        reason="CHILDREN_CHANGED",
                    )
                done.update(ids)

                def deal(child_id: str, relation: RelationSpec = relation) -> Awaitable[None]:
                    if relation.on_delete == "nullify":
                        return self._nullify(access, relation, record_id, child_id)
                    return self._cascade(access, relation, record_id, child_id, delete_files)

                await _each(ids, deal)

    async def _nullify(
        self, access: Access, relation: RelationSpec, parent_id: str, child_id: str
    ) -> None:
        child = self._models[relation.target]
        try:
            await self._records.update(
                access.for_integrity(),
                child,
                child_id,
                set_values={},
                unset=[relation.references],
                preconditions=Preconditions(unchanged={relation.references: parent_id}),
            )
        except (NotFound, Conflict):
            log.info("left %s %s: it no longer names %s", child.name, child_id, parent_id)

    async def _cascade(
        self,
        access: Access,
        relation: RelationSpec,
        parent_id: str,
        child_id: str,
        delete_files: bool,
    ) -> None:
        """Delete one child as its own delete would, guarded by it still naming the parent."""
        child = self._models[relation.target]
        guard = Preconditions(unchanged={relation.references: parent_id})
        record: Record | None
        if child.children:
            key = claim_key(child, child_id)
            purpose = f"delete {child.name} {child_id} with its parent {parent_id}"
            async with self.claims.hold([key], purpose=purpose) as claim:
                current = await self._records.find(child, child_id)
                if current is None or current.values.get(relation.references) != parent_id:
                    return
                await self._children_of(access, child, child_id, delete_files=delete_files)
                async with claim.committing():
                    record = await self._delete_child(access, child, child_id, guard)
        else:
            record = await self._delete_child(access, child, child_id, guard)
        if record is not None and delete_files:
            self._attachments.discard(access, child, child_id, record.file_paths)

    async def _delete_child(
        self, access: Access, model: ModelSpec, record_id: str, guard: Preconditions
    ) -> Record | None:
        try:
            return await self._records.delete(
                access.for_integrity(), model, record_id, preconditions=guard
            )
        except (NotFound, Conflict):
            log.info("left %s %s: deleted or moved meanwhile", model.name, record_id)
            return None


async def _check_parent(
    records: Records, access: Access, model: ModelSpec, named: Named, record_id: str | None
) -> None:
    """The parent ``named`` exists and the caller may read it (one answer for both: a write
    tells no more about records than a read would), and a ``has_one`` parent has no other
    such child."""
    field = named.relation.references
    if named.parent.name == model.name and named.parent_id == record_id:
        raise BadUserInput(f"{model.name}.{field} cannot name the record itself", field=field)
    try:
        found = await records.readable_many(access, named.parent, [named.parent_id])
    except Forbidden:  # the caller may read no such record at all
        found = {}
    if not isinstance(found.get(named.parent_id), Record):
        raise BadUserInput(
            f"{model.name}.{field} names no {named.parent.name} you may read: {named.parent_id!r}",
            field=field,
        )
    if named.one:
        others = await records.ids_naming(model, field, [named.parent_id], limit=2)
        if any(o != record_id for o in others):
            raise Conflict(
                f"{named.parent.name} {named.parent_id!r} already has a {model.name}: a "
                "has_one relation holds one",
                field=field,
            )


def _check_preconditions(
    current: Record, expected_version: int | None, condition: filters.Node | None
) -> None:
    """A delete's own preconditions, checked before any child is touched (and again, by the
    guarded delete itself, at the end)."""
    model = current.model
    if expected_version is not None and current.version != expected_version:
        raise Conflict(
            f"{model.name} {current.id!r} is at version {current.version}, not {expected_version}",
            currentVersion=current.version,
        )
    if condition is not None and not filters.matches(condition, current):
        raise Conflict(
            f"{model.name} {current.id!r} changed or did not meet the condition",
            currentVersion=current.version,
            reason="CONDITION_FAILED",
        )


def _still_has(model: ModelSpec, record_id: str, counts: dict[str, int]) -> Conflict:
    listed = ", ".join(f"{n} {name}" for name, n in counts.items())
    return Conflict(
        f"{model.name} {record_id!r} still has {listed}: delete or move them first "
        "(the relation's on_delete is restrict)",
        children=counts,
        reason="HAS_CHILDREN",
    )


async def _each(items: Iterable[str], deal: Callable[[str], Awaitable[None]]) -> None:
    """``deal`` with every item, ``CONCURRENCY`` at a time; all of them run to their end
    before the first failure is raised (none is left running)."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(item: str) -> None:
        async with gate:
            await deal(item)

    outcomes = await asyncio.gather(*(one(item) for item in items), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
