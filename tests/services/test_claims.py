"""Shared and exclusive holds on one key, on the session's MongoDB (``claims``'s docstring):
shared holders never wait for each other, and never work beside an exclusive holder."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any

import pytest

from graphql_files.errors import Busy, DatabaseUnavailable
from graphql_files.services.claims import Claims
from graphql_files.services.wiring import open_services

from ..helpers import drop_test_database, make_settings

pytestmark = pytest.mark.memory
KEY = "Post/p1"


@pytest.fixture
async def claims(s3_endpoint: str, bucket: str) -> AsyncIterator[Claims]:
    settings = make_settings(s3_endpoint, bucket, claim_wait=0.1)
    async with open_services(settings) as services:
        yield services.relations.claims
    await drop_test_database(settings)


async def test_shared_holders_work_side_by_side(claims: Claims) -> None:
    async with (
        claims.hold([KEY], purpose="one", shared=True),
        claims.hold([KEY], purpose="two", shared=True),
    ):
        with pytest.raises(Busy):  # an exclusive holder waits for both, then gives up
            async with claims.hold([KEY], purpose="delete"):
                pass
    async with claims.hold([KEY], purpose="delete"):  # both gone: no wait
        pass


async def test_a_shared_holder_waits_for_the_exclusive_one(claims: Claims) -> None:
    async with claims.hold([KEY], purpose="delete"):
        with pytest.raises(Busy):
            async with claims.hold([KEY], purpose="write", shared=True):
                pass
    async with claims.hold([KEY], purpose="write", shared=True):
        pass


async def test_an_exclusive_holder_that_gave_up_leaves_no_claim(claims: Claims) -> None:
    """Having waited in vain for a shared holder, the exclusive one releases what it took: the
    next shared holder does not wait for it."""
    async with claims.hold([KEY], purpose="write", shared=True):
        with pytest.raises(Busy):
            async with claims.hold([KEY], purpose="delete"):
                pass
        async with claims.hold([KEY], purpose="another write", shared=True):
            pass


async def test_a_shared_hold_kept_on_doubt_blocks_until_its_lease_runs_out(
    claims: Claims, monkeypatch: pytest.MonkeyPatch
) -> None:

    async def lost_answer() -> None:
        async with claims.hold([KEY], purpose="write", shared=True) as claim, claim.committing():
            raise DatabaseUnavailable("the write's answer was lost")

    with pytest.raises(DatabaseUnavailable):
        await lost_answer()
    with pytest.raises(Busy):
        async with claims.hold([KEY], purpose="delete"):
            pass
    later = claims.clock() + claims.lease + timedelta(seconds=1)
    monkeypatch.setattr(claims, "clock", lambda: later)
    async with claims.hold([KEY], purpose="delete"):  # the doubtful write's lease ran out
        pass


async def test_shared_holds_need_a_collection_that_has_them(s3_endpoint: str, bucket: str) -> None:
    settings = make_settings(s3_endpoint, bucket)
    async with open_services(settings) as services:
        with pytest.raises(ValueError, match="shared"):
            async with services.storage.claims.hold([KEY], purpose="x", shared=True):
                pass
    await drop_test_database(settings)


async def test_a_withdrawal_that_failed_does_not_confuse_the_next_attempt(
    claims: Claims, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shared holder that finds the exclusive claim withdraws its document; if that delete
    fails, its next attempt finds its own document still there, renews it, and goes on waiting
    (found by the stateful test: it answered a bare CONFLICT 'a document with this id already
    exists')."""
    collection = claims._collection
    real_delete = collection.delete_many
    failures = iter([DatabaseUnavailable("injected: the withdrawal failed")])

    async def delete_many(query: Mapping[str, Any]) -> int:
        if "holder" in query and (failure := next(failures, None)) is not None:
            raise failure
        return await real_delete(query)

    async with claims.hold([KEY], purpose="delete"):
        monkeypatch.setattr(collection, "delete_many", delete_many)
        with pytest.raises(Busy):
            async with claims.hold([KEY], purpose="write", shared=True):
                pass
