"""Records in MongoDB: versions, conditions, keyset pagination, one event per committed write.

Every write is a single MongoDB operation whose query carries its preconditions (the id, the
expected version, the caller's ``condition``, a workflow's guard), so a write either happens as
a whole on the state the caller saw or not at all. ``version`` goes up by one on every write,
deletes included, and each committed write publishes exactly one event after the commit.
Within one process, commit and publish for the same record are serialised, so subscribers see
each record's versions in order.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..adapters.mongo import Collection, Database
from ..domain import filters, pagination
from ..domain.feed import Broker, ChangeEvent, ChangeKind
from ..domain.models import (
    MAX_LIST_LENGTH,
    FileSpec,
    ModelSpec,
    Record,
    check_record_id,
    file_paths,
    paths_in,
)
from ..domain.variants import original_of
from ..errors import BadUserInput, Conflict, DomainError, Forbidden, NotFound
from . import queries
from .auth import Access

log = logging.getLogger(__name__)


def _iso(moment: datetime) -> str:
    """Amplify's AWSDateTime form: UTC, milliseconds, 'Z'. Sorts as text."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _Clock:
    """Wall-clock milliseconds that never repeat or go back within this process, so records
    created one after another here sort in creation order."""

    def __init__(self) -> None:
        self._last = datetime.min.replace(tzinfo=UTC)

    def now(self) -> str:
        current = datetime.now(UTC)
        moment = current - timedelta(microseconds=current.microsecond % 1000)
        self._last = max(moment, self._last + timedelta(milliseconds=1))
        return _iso(self._last)


@dataclass(frozen=True)
class Page:
    items: list[Record]
    next_token: str | None


@dataclass(frozen=True)
class Preconditions:
    """What must hold for a write to happen: all optional, all checked atomically with it.

    Workflows state their conditions by intent (``unchanged``, ``naming``, ``room``); only this
    module knows how MongoDB expresses them.
    """

    expected_version: int | None = None
    condition: filters.Node | None = None
    unchanged: Mapping[str, Any] | None = None  # field -> the value it still holds (None: unset)
    naming: Mapping[str, Sequence[str]] | None = None  # list field -> values it still holds
    room: Mapping[str, int] | None = None  # list field -> how many more entries must fit

    def query(self, record_id: str, *, owner: str | None, max_entries: int) -> dict[str, Any]:
        """The MongoDB query matching the record only while all of this holds (and, for an
        owner-rule caller, only if it is theirs)."""
        query: dict[str, Any] = {"_id": record_id}
        for field, value in (self.unchanged or {}).items():
            query[field] = {"$exists": False} if value is None else value
        for field, values in (self.naming or {}).items():
            query[field] = {"$all": list(values)}
        for field, more in (self.room or {}).items():
            # no entry at index max-more: at most max-more entries now
            query[f"{field}.{max_entries - more}"] = {"$exists": False}
        if owner is not None:
            query["owner"] = owner
        if self.expected_version is not None:
            query["version"] = self.expected_version
        if self.condition is not None:
            query["$and"] = [queries.to_mongo(self.condition)]
        return query


@dataclass(frozen=True)
class RecordRef:
    """Which record names an object: enough to decide whether a caller may be told."""

    model: ModelSpec
    id: str
    owner: str | None

    def __str__(self) -> str:
        return f"{self.model.name} {self.id}"


class _KeyedLocks:
    """One asyncio lock per key, dropped when no one holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: tuple[str, str]) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Records:
    """CRUD over every declared model."""

    def __init__(
        self,
        *,
        database: Database,
        broker: Broker,
        models: Sequence[ModelSpec],
        max_files: int = MAX_LIST_LENGTH,
    ) -> None:
        self.models = tuple(models)
        self.max_files = max_files  # file paths one file field of a record may name
        self._collections: dict[str, Collection] = {
            m.name: database.collection(m.collection) for m in self.models
        }
        self._broker = broker
        self._locks = _KeyedLocks()
        self._clock = _Clock()

    def collection(self, model: ModelSpec) -> Collection:
        return self._collections[model.name]

    async def ensure_indexes(self) -> None:
        for model in self.models:
            collection = self.collection(model)
            await collection.create_index([("createdAt", 1), ("_id", 1)])
            for key_field in model.key_fields:  # which record names a path
                await collection.create_index([(key_field, 1)])
            for relation in model.parents:  # a parent's children, a page at a time
                await collection.create_index(
                    [(relation.references, 1), ("createdAt", 1), ("_id", 1)]
                )

    async def get(
        self, access: Access, model: ModelSpec, record_id: str, *, purpose: str = "read"
    ) -> Record:
        """The record, if the caller may ``purpose`` it (read, update, delete); ``NotFound``
        when missing or, for an owner-rule caller, someone else's."""
        owner = access.data(model, purpose).owner
        query = {"_id": record_id} if owner is None else {"_id": record_id, "owner": owner}
        doc = await self.collection(model).find_one(query)
        if doc is None:
            raise NotFound(f"{model.name} {record_id!r} not found")
        return Record.from_document(model, doc)

    async def list(
        self,
        access: Access,
        model: ModelSpec,
        *,
        where: filters.Node | None = None,
        limit: int | None = None,
        next_token: str | None = None,
        descending: bool = False,
    ) -> Page:
        """A page of the records matching ``where`` that the caller may read."""
        owner = access.data(model, "read").owner
        size = pagination.check_limit(limit)
        query_key = f"{model.name}|{filters.fingerprint(where)}|{'desc' if descending else 'asc'}"
        query = _page_query(where, owner, next_token, query_key, descending)
        order = -1 if descending else 1
        docs = await self.collection(model).find(
            query, sort=[("createdAt", order), ("_id", order)], limit=size + 1
        )
        return _page(model, docs, size, query_key)

    async def children(
        self,
        access: Access,
        model: ModelSpec,
        reference: str,
        parent_ids: Sequence[str],
        *,
        where: filters.Node | None = None,
        limit: int | None = None,
        next_token: str | None = None,
        descending: bool = False,
    ) -> dict[str, Page]:
        """For each of ``parent_ids``, a page of the ``model`` records whose ``reference``
        names it (matching ``where``, readable by the caller), as ``list`` pages them: all in
        one MongoDB query. A ``next_token`` continues every parent's page from one position."""
        owner = access.data(model, "read").owner
        size = pagination.check_limit(limit)
        query_key = (
            f"{model.name}.{reference}|{filters.fingerprint(where)}|"
            f"{'desc' if descending else 'asc'}"
        )
        query = _page_query(where, owner, next_token, query_key, descending)
        query = {"$and": [{reference: {"$in": list(parent_ids)}}, query]}
        order = -1 if descending else 1
        groups = await self.collection(model).first_per_group(
            query, group_by=reference, sort=[("createdAt", order), ("_id", order)], n=size + 1
        )
        return {
            parent: _page(model, groups.get(parent, []), size, query_key) for parent in parent_ids
        }

    async def find(self, model: ModelSpec, record_id: str) -> Record | None:
        """The record, whoever may read it: what integrity checks (does the parent a child
        names exist?) ask, never shown to a caller as such."""
        doc = await self.collection(model).find_one({"_id": record_id})
        return None if doc is None else Record.from_document(model, doc)

    async def find_many(self, model: ModelSpec, record_ids: Sequence[str]) -> dict[str, Record]:
        """Those of ``record_ids`` that exist, whoever may read them, in one query (callers
        apply the rules: ``visible``)."""
        wanted = list(dict.fromkeys(record_ids))
        docs = await self.collection(model).find(
            {"_id": {"$in": wanted}}, sort=[("_id", 1)], limit=len(wanted)
        )
        return {doc["_id"]: Record.from_document(model, doc) for doc in docs}

    async def readable_many(
        self, access: Access, model: ModelSpec, record_ids: Sequence[str]
    ) -> dict[str, Record | DomainError]:
        """Those of ``record_ids`` that exist, each the record or, when the caller may read
        only their own and it is another's, why it is withheld (``FORBIDDEN``): what a
        relation naming it shows (a caller who may read none of them is refused outright)."""
        owner = access.data(model, "read").owner
        found: dict[str, Record | DomainError] = {}
        for record_id, record in (await self.find_many(model, record_ids)).items():
            if owner is None or record.owner == owner:
                found[record_id] = record
            else:
                found[record_id] = Forbidden(
                    f"not allowed to read {model.name} {record_id!r}: it is another user's"
                )
        return found

    async def count_naming(
        self, model: ModelSpec, reference: str, record_ids: Sequence[str]
    ) -> int:
        """How many ``model`` records name one of ``record_ids`` in ``reference``, whoever
        owns them."""
        return await self.collection(model).count({reference: {"$in": list(record_ids)}})

    async def ids_naming(
        self,
        model: ModelSpec,
        reference: str,
        record_ids: Sequence[str],
        *,
        limit: int,
        after: str | None = None,
    ) -> Sequence[str]:
        """Ids of up to ``limit`` ``model`` records naming one of ``record_ids`` in
        ``reference`` (past the id ``after``, in id order), whoever owns them."""
        query: dict[str, Any] = {reference: {"$in": list(record_ids)}}
        if after is not None:
            query["_id"] = {"$gt": after}
        docs = await self.collection(model).find(
            query, sort=[("_id", 1)], limit=limit, projection={"_id": 1}
        )
        return [doc["_id"] for doc in docs]

    async def create(
        self,
        access: Access,
        model: ModelSpec,
        values: Mapping[str, Any],
        *,
        record_id: str | None = None,
        condition: filters.Node | None = None,
    ) -> Record:
        """A new record, owned by the signed-in caller who creates it."""
        owner = access.data(model, "create").creator
        record_id = check_record_id(record_id) if record_id is not None else str(uuid.uuid4())
        self.check_file_counts(model, values)
        now = self._clock.now()
        record = Record(
            model=model,
            id=record_id,
            values={k: v for k, v in values.items() if v is not None},
            owner=owner,
            version=1,
            created_at=now,
            updated_at=now,
        )
        # Amplify checks a create's condition against the item being replaced: there is none.
        if condition is not None and not filters.matches(condition, _NO_RECORD):
            raise Conflict("the condition was not met", reason="CONDITION_FAILED")
        async with self._locks.hold((model.name, record_id)):
            try:
                await self.collection(model).insert_one(record.to_document())
            except Conflict as exc:
                raise Conflict(f"{model.name} {record_id!r} already exists") from exc
            await self._publish(ChangeKind.CREATED, record)
        return record

    async def update(
        self,
        access: Access,
        model: ModelSpec,
        record_id: str,
        *,
        set_values: Mapping[str, Any] | None = None,
        unset: Sequence[str] = (),
        add: Mapping[str, Sequence[Any]] | None = None,
        pull: Mapping[str, Sequence[Any]] | None = None,
        preconditions: Preconditions = Preconditions(),
    ) -> Record:
        """One atomic write: ``$set``/``$unset``/``$addToSet``/``$pull`` and the version bump."""
        owner = access.data(model, "update").owner
        self.check_file_counts(model, set_values or {})
        update: dict[str, Any] = {
            "$set": {**(set_values or {}), "updatedAt": self._clock.now()},
            "$inc": {"version": 1},
        }
        if unset:
            update["$unset"] = dict.fromkeys(unset, "")
        if add:
            update["$addToSet"] = {field: {"$each": list(v)} for field, v in add.items()}
        if pull:
            update["$pull"] = {field: {"$in": list(v)} for field, v in pull.items()}
        async with self._locks.hold((model.name, record_id)):
            query = preconditions.query(record_id, owner=owner, max_entries=self.max_files)
            doc = await self.collection(model).find_one_and_update(query, update)
            if doc is None:
                raise await self._refusal(model, record_id, preconditions, owner)
            record = Record.from_document(model, doc)
            await self._publish(ChangeKind.UPDATED, record)
        return record

    async def delete(
        self,
        access: Access,
        model: ModelSpec,
        record_id: str,
        *,
        preconditions: Preconditions = Preconditions(),
    ) -> Record:
        """Delete; returns the record as it was, with the version the delete gave it."""
        owner = access.data(model, "delete").owner
        async with self._locks.hold((model.name, record_id)):
            query = preconditions.query(record_id, owner=owner, max_entries=self.max_files)
            doc = await self.collection(model).find_one_and_delete(query)
            if doc is None:
                raise await self._refusal(model, record_id, preconditions, owner)
            doc.update(version=doc["version"] + 1, updatedAt=self._clock.now())
            record = Record.from_document(model, doc)
            await self._publish(ChangeKind.DELETED, record)
        return record

    async def _refusal(
        self, model: ModelSpec, record_id: str, preconditions: Preconditions, owner: str | None
    ) -> Exception:
        """Why a guarded write matched nothing: the record is gone, or it changed."""
        current = await self.collection(model).find_one({"_id": record_id})
        if current is None or (
            owner is not None and current.get("owner") != owner
        ):  # someone else's record is, to this caller, no record at all
            return NotFound(f"{model.name} {record_id!r} not found")
        version = current["version"]
        expected = preconditions.expected_version
        if expected is not None and expected != version:
            return Conflict(
                f"{model.name} {record_id!r} is at version {version}, not {expected}",
                currentVersion=version,
            )
        return Conflict(
            f"{model.name} {record_id!r} changed or did not meet the condition",
            currentVersion=version,
            reason="CONDITION_FAILED",
        )

    def visible(self, access: Access, model: ModelSpec) -> Callable[[Record], bool]:
        """Which of ``model``'s records the caller may read (for the events a subscriber is
        sent); refuses a caller who may read none."""
        owner = access.data(model, "read").owner
        return lambda record: owner is None or record.owner == owner

    async def _publish(self, kind: ChangeKind, record: Record) -> None:
        await self._broker.publish(ChangeEvent(kind, record.model.enum_name, record.to_document()))

    async def named(self, paths: Sequence[str]) -> dict[str, RecordRef]:
        """Of ``paths``, those some record names, each with one record naming it. A variant
        of an image (``domain.variants``) is named exactly when its original is: it lives and
        goes with it."""
        found: dict[str, RecordRef] = {}
        if not paths:
            return found
        originals = {p: original for p in paths if (original := original_of(p)) is not None}
        wanted = {originals.get(p, p) for p in paths}
        for model in self.models:
            if not model.files:
                continue
            keys = model.key_fields
            query = {"$or": [{key: {"$in": list(wanted)}} for key in keys]}
            projection = dict.fromkeys((*keys, "owner"), 1)
            async for doc in self.collection(model).iterate(query, projection=projection):
                for path in set(paths_in(model, doc)) & wanted:
                    found.setdefault(path, RecordRef(model, doc["_id"], doc.get("owner")))
        for variant, original in originals.items():
            if original in found:
                found[variant] = found[original]
        return {p: found[p] for p in paths if p in found}

    def check_file_count(self, model: ModelSpec, file: FileSpec, count: int) -> None:
        """Refuse a write that would make one file field name more than ``max_files``."""
        if count > self.max_files:
            raise BadUserInput(
                f"a {model.name}'s {file.name} names at most {self.max_files} files "
                "(GRAPHQL_FILES_MAX_FILES_PER_RECORD)",
                maxFiles=self.max_files,
            )

    def check_file_counts(self, model: ModelSpec, values: Mapping[str, Any]) -> None:
        for file in model.files:
            self.check_file_count(model, file, len(file_paths(file, values)))

    async def iterate_paths(self, model: ModelSpec) -> AsyncIterator[tuple[str, tuple[str, ...]]]:
        """Every record id of ``model`` with the file paths it names, streamed."""
        if not model.files:
            return
        keys = model.key_fields
        query = {"$or": [{key: {"$exists": True}} for key in keys]}
        async for doc in self.collection(model).iterate(query, projection=dict.fromkeys(keys, 1)):
            yield doc["_id"], paths_in(model, doc)


def _page_query(
    where: filters.Node | None,
    owner: str | None,
    next_token: str | None,
    query_key: str,
    descending: bool,
) -> dict[str, Any]:
    """The query of one page: the filter, the owner rule, and the position after the token."""
    parts = [queries.to_mongo(where)] if where is not None else []
    if owner is not None:
        parts.append({"owner": owner})
    if next_token is not None:
        after = pagination.decode(next_token, query_key)
        beyond = "$lt" if descending else "$gt"
        parts.append(
            {
                "$or": [
                    {"createdAt": {beyond: after.created_at}},
                    {"createdAt": after.created_at, "_id": {beyond: after.record_id}},
                ]
            }
        )
    return {} if not parts else parts[0] if len(parts) == 1 else {"$and": parts}


def _page(model: ModelSpec, docs: Sequence[Mapping[str, Any]], size: int, query_key: str) -> Page:
    """The first ``size`` of ``docs`` (fetched one more, to know whether a page follows)."""
    items = [Record.from_document(model, d) for d in docs[:size]]
    token = None
    if len(docs) > size:
        last = items[-1]
        token = pagination.encode(pagination.Position(last.created_at, last.id), query_key)
    return Page(items=items, next_token=token)


class _NoRecord:
    """What a create's condition is checked against: a record with no fields at all."""

    def field_value(self, name: str) -> None:
        return None


_NO_RECORD = _NoRecord()
