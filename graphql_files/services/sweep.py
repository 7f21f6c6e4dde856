"""The sweeper: finds what a crash left behind.

- Orphans: objects under the attachment prefix that no record names, older than a grace period
  (a presigned upload the client has not attached yet is younger). They are removed.
- Dangling records: records naming an object that does not exist. They are reported, never
  changed: only a person knows whether the file or the reference is what is wrong.
- Folders of models no longer declared (``images/Retired/...``, a model dropped from the
  declaration): the sweeper cannot know what such records name, so it keeps every object in
  them, and says how many it kept.

Both sides stream, a page at a time: S3's listing in pages of 1,000 keys, each page checked
against MongoDB with one indexed ``$in`` query per model; records in cursor batches, their paths
checked with concurrent HEADs. Memory stays one page, whatever the bucket's size.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..domain.declaration import TYPE_NAME
from ..domain.objects import ObjectInfo
from ..errors import DomainError
from .claims import Claims
from .records import Records
from .storage import Storage

log = logging.getLogger(__name__)

PAGE = 1000
HEAD_BATCH = 200


@dataclass
class SweepReport:
    scanned: int = 0
    removed: list[ObjectInfo] = field(default_factory=list)
    orphans_kept: list[ObjectInfo] = field(default_factory=list)  # dry run, or delete failed
    too_young: int = 0
    busy: int = 0  # unnamed, but another request held its claim: left for the next sweep
    undeclared: int = 0  # in the folder of a model the declaration no longer has: kept
    dangling: list[tuple[str, str]] = field(default_factory=list)  # ("Song 1", path)

    def lines(self, *, dry_run: bool) -> list[str]:
        verb = "would remove" if dry_run else "removed"
        out = [
            f"{verb} orphan {o.path} ({o.size} bytes, last modified {o.last_modified.isoformat()})"
            for o in (self.orphans_kept if dry_run else self.removed)
        ]
        out += [
            f"kept orphan {o.path}: could not delete it"
            for o in ([] if dry_run else self.orphans_kept)
        ]
        out += [
            f"dangling: {record} names {path}, which does not exist"
            for record, path in self.dangling
        ]
        out.append(
            f"scanned {self.scanned} objects: {len(self.removed)} orphans removed, "
            f"{len(self.orphans_kept)} orphans kept, {self.too_young} unnamed but within the "
            f"grace period, {self.busy} in use by a request; {len(self.dangling)} records name a "
            "missing object"
        )
        if self.undeclared:
            out.append(
                f"kept {self.undeclared} objects in folders of models that are not declared "
                f"(declare the model again, or delete them yourself)"
            )
        return out


class Sweeper:
    def __init__(
        self,
        *,
        records: Records,
        storage: Storage,
        prefix: str,
        record_claims: Claims | None = None,
    ) -> None:
        self._records = records
        self._storage = storage
        self._record_claims = record_claims
        self._prefix = prefix
        self._declared = frozenset(m.name for m in records.models)

    async def run(
        self, *, grace: timedelta, dry_run: bool = False, now: datetime | None = None
    ) -> SweepReport:
        report = SweepReport()
        cutoff = (now or datetime.now(UTC)) - grace
        page: list[ObjectInfo] = []
        async for item in self._storage.objects_under(self._prefix, page_size=PAGE):
            page.append(item)
            if len(page) == PAGE:
                await self._sweep_page(page, cutoff, dry_run, report)
                page = []
        await self._sweep_page(page, cutoff, dry_run, report)
        await self._find_dangling(report)
        if not dry_run:
            await self._storage.claims.purge_expired()
            if self._record_claims is not None:
                await self._record_claims.purge_expired()
        return report

    async def _sweep_page(
        self, page: list[ObjectInfo], cutoff: datetime, dry_run: bool, report: SweepReport
    ) -> None:
        if not page:
            return
        report.scanned += len(page)
        ours = [o for o in page if not self._undeclared(o.path)]
        report.undeclared += len(page) - len(ours)
        page = ours
        named = await self._records.named([o.path for o in page])
        unnamed = [o for o in page if o.path not in named]
        old = [o for o in unnamed if o.last_modified <= cutoff]
        report.too_young += len(unnamed) - len(old)
        if dry_run or not old:
            report.orphans_kept += old
            return
        # Deleted only under each object's claim, after asking again whether a record names
        # it: a workflow may be adopting one right now (and then holds its claim).
        outcome = await self._storage.delete_unnamed(
            [o.path for o in old], reason="sweep", wait=False
        )
        deleted, failed = set(outcome.deleted), set(outcome.failed)
        report.busy += len(outcome.busy)
        report.removed += [o for o in old if o.path in deleted]
        report.orphans_kept += [o for o in old if o.path in failed]

    def _undeclared(self, path: str) -> bool:
        """Is ``path`` in the folder of a model that is not declared (``images/Retired/...``)?
        A first segment shaped as a type name that no declared model has is taken as one;
        any other (``images/<record id>/...``, the layout before per-model folders) is swept."""
        folder = path[len(self._prefix) :].split("/", 1)[0]
        return folder not in self._declared and TYPE_NAME.fullmatch(folder) is not None

    async def _find_dangling(self, report: SweepReport) -> None:
        batch: list[tuple[str, str]] = []
        for model in self._records.models:
            async for record_id, paths in self._records.iterate_paths(model):
                batch += [(f"{model.name} {record_id}", p) for p in paths]
                if len(batch) >= HEAD_BATCH:
                    await self._check(batch, report)
                    batch = []
        await self._check(batch, report)

    async def _check(self, batch: list[tuple[str, str]], report: SweepReport) -> None:
        if not batch:
            return
        found = await self._storage.look_up([path for _, path in batch])
        report.dangling += [entry for entry, info in zip(batch, found, strict=True) if info is None]


async def sweep_periodically(sweeper: Sweeper, *, every: float, grace: timedelta) -> None:
    """The in-server sweep (``SWEEP_INTERVAL``); failures are logged and retried next time."""
    while True:
        await asyncio.sleep(every)
        try:
            report = await sweeper.run(grace=grace)
        except DomainError as exc:
            log.warning("sweep failed: %s", exc)
            continue
        for line in report.lines(dry_run=False):
            log.info("sweep: %s", line)
