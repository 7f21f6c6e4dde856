"""MongoDB access: the one place that touches the driver.

``open_database`` yields a ``Database`` over PyMongo's ``AsyncMongoClient`` (a MongoDB server:
one configured, or the embedded SecantusDB) or mongomock-motor (``EMBEDDED=memory``).
``Collection`` exposes only the operations both implement alike, smooths the two differences
that matter (``to_list`` ignoring its length in mongomock-motor, ``close`` being sync there)
and translates every pymongo exception into a domain error.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.errors import (
    ConnectionFailure,
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    PyMongoError,
    WTimeoutError,
)

from ..errors import Conflict, DatabaseUnavailable
from ..settings import Settings
from .embedded import MongoTarget, configured_mongodb

log = logging.getLogger(__name__)

Document = dict[str, Any]
Query = Mapping[str, Any]
Sort = Sequence[tuple[str, int]]

_UNREACHABLE = (ConnectionFailure, NetworkTimeout, ExecutionTimeout, WTimeoutError)


@contextmanager
def _translated(operation: str, collection: str) -> Iterator[None]:
    try:
        yield
    except DuplicateKeyError as exc:
        raise Conflict(f"{collection}: a document with this id already exists") from exc
    except _UNREACHABLE as exc:
        log.warning("MongoDB unreachable during %s on %s: %s", operation, collection, exc)
        raise DatabaseUnavailable("The database did not answer; try again shortly.") from exc
    except PyMongoError as exc:
        log.error("MongoDB refused %s on %s: %s", operation, collection, exc)
        raise DatabaseUnavailable("The database refused the operation.") from exc


class Collection:
    """One collection, with the operations the services use."""

    def __init__(self, raw: Any, name: str, *, first_n: bool = True) -> None:
        self._raw = raw
        self.name = name
        # $firstN (MongoDB 5.2+, SecantusDB) keeps n documents per group; mongomock has only
        # $push, which keeps them all before they are cut: fine for an in-process engine's data
        self._first_n = first_n

    async def find_one(self, query: Query) -> Document | None:
        with _translated("find_one", self.name):
            doc: Document | None = await self._raw.find_one(query)
            return doc

    async def find(
        self,
        query: Query,
        *,
        sort: Sort,
        limit: int,
        projection: Mapping[str, Any] | None = None,
    ) -> list[Document]:
        with _translated("find", self.name):
            # limit on the cursor: mongomock-motor's to_list ignores its length argument
            cursor = self._raw.find(query, projection).sort(list(sort)).limit(limit)
            docs: list[Document] = await cursor.to_list(None)
            return docs

    async def count(self, query: Query) -> int:
        with _translated("count_documents", self.name):
            return int(await self._raw.count_documents(query))

    async def first_per_group(
        self, query: Query, *, group_by: str, sort: Sort, n: int
    ) -> dict[Any, list[Document]]:
        """The first ``n`` documents (in ``sort`` order) matching ``query`` for each value of
        ``group_by``, in one round trip: the children of many parents at once."""
        first_n = {"$firstN": {"input": "$$ROOT", "n": n}}
        collect: dict[str, Any] = first_n if self._first_n else {"$push": "$$ROOT"}
        pipeline: list[dict[str, Any]] = [
            {"$match": dict(query)},
            {"$sort": dict(sort)},
            {"$group": {"_id": f"${group_by}", "docs": collect}},
        ]
        with _translated("aggregate", self.name):
            cursor = self._raw.aggregate(pipeline)
            if inspect.isawaitable(cursor):  # PyMongo's async API; mongomock-motor's is not
                cursor = await cursor
            groups: list[Document] = await cursor.to_list(None)
        return {group["_id"]: group["docs"][:n] for group in groups}

    async def iterate(
        self, query: Query, *, projection: Mapping[str, Any] | None = None, batch_size: int = 500
    ) -> AsyncIterator[Document]:
        """Stream matching documents without holding them all in memory."""
        with _translated("find", self.name):
            async for doc in self._raw.find(query, projection).batch_size(batch_size):
                yield doc

    async def insert_one(self, doc: Document) -> None:
        with _translated("insert_one", self.name):
            await self._raw.insert_one(doc)

    async def find_one_and_update(self, query: Query, update: Mapping[str, Any]) -> Document | None:
        """Apply ``update`` to the one document matching ``query``; the document after it."""
        with _translated("find_one_and_update", self.name):
            doc: Document | None = await self._raw.find_one_and_update(
                query, update, return_document=ReturnDocument.AFTER
            )
            return doc

    async def find_one_and_delete(self, query: Query) -> Document | None:
        with _translated("find_one_and_delete", self.name):
            doc: Document | None = await self._raw.find_one_and_delete(query)
            return doc

    async def update_many(self, query: Query, update: Mapping[str, Any]) -> int:
        """Apply ``update`` to every document matching ``query``; how many matched."""
        with _translated("update_many", self.name):
            result = await self._raw.update_many(query, update)
            return int(result.matched_count)

    async def delete_many(self, query: Query) -> int:
        with _translated("delete_many", self.name):
            result = await self._raw.delete_many(query)
            return int(result.deleted_count)

    async def create_index(self, keys: Sort, **options: Any) -> None:
        with _translated("create_index", self.name):
            await self._raw.create_index(list(keys), **options)


class Database:
    def __init__(self, client: Any, name: str, *, embedded: bool, first_n: bool = True) -> None:
        self._client = client
        self._db = client[name]
        self.name = name
        self.embedded = embedded
        self._first_n = first_n

    def collection(self, name: str) -> Collection:
        return Collection(self._db[name], name, first_n=self._first_n)

    async def ping(self) -> None:
        with _translated("ping", "admin"):
            await self._db.command("ping")

    async def drop(self) -> None:
        """Drop the whole database (tests use this to clean up after a real server)."""
        with _translated("drop_database", self.name):
            await self._client.drop_database(self.name)

    async def close(self) -> None:
        result = self._client.close()  # a coroutine for AsyncMongoClient, sync for mongomock
        if inspect.isawaitable(result):
            await result


@asynccontextmanager
async def open_database(
    settings: Settings, target: MongoTarget | None = None
) -> AsyncIterator[Database]:
    """Connect lazily (no I/O until the first operation) and close on exit: to ``target``
    (from ``embedded.open_stores``), else to the configured ``MONGODB_URI``, else to the
    in-process engine."""
    target = target or configured_mongodb(settings)
    if target is None or target.uri is None:
        from mongomock_motor import AsyncMongoMockClient

        database = Database(
            AsyncMongoMockClient(), settings.mongodb_database, embedded=True, first_n=False
        )
    else:
        timeout = settings.mongodb_timeout_ms
        client: AsyncMongoClient[Document] = AsyncMongoClient(
            target.uri,
            appname="graphql-files",
            serverSelectionTimeoutMS=timeout,
            connectTimeoutMS=timeout,
            timeoutMS=timeout,
        )
        database = Database(client, settings.mongodb_database, embedded=target.embedded)
    try:
        yield database
    finally:
        await database.close()
