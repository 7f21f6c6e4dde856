"""The record-file workflows, each one call, in the order that never leaves a dangling record.

1. Stage the new files: upload them to fresh keys in the record's folder, or verify presigned
   uploads there (HEAD, size, sniffed type). Nothing names them yet.
2. Write the record in one guarded MongoDB update. If that fails (conflict, missing record,
   database down), delete what step 1 uploaded and answer the error.
3. Only then delete what the write unlinked (when asked, and only inside the record's folder,
   and only objects no record names any more). A failure here leaves an orphan for the sweeper,
   never a record pointing at nothing.

The same machinery serves one file per record (Song.coverArtPath) and many (PhotoAlbum.imagePaths).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from . import filters
from .auth import Access
from .errors import BadUserInput, Conflict, DomainError, NotFound
from .keys import check_key, in_folder, new_attachment_key, record_folder
from .models import MAX_LIST_LENGTH, ModelSpec, Record
from .records import Preconditions, Records
from .settings import Settings
from .storage import Storage, Upload

log = logging.getLogger(__name__)

MAX_FILES_PER_CALL = 100
RETRIES = 5  # re-reads when another client changed the file field between our read and write


@dataclass(frozen=True)
class Source:
    """Where a workflow's new file comes from: this request, or a presigned upload."""

    upload: Upload | None = None
    uploaded_path: str | None = None


def one_source(upload: Upload | None, uploaded_path: str | None) -> Source:
    if (upload is None) == (uploaded_path is None):
        raise BadUserInput("give exactly one of file and uploadedPath")
    return Source(upload=upload, uploaded_path=uploaded_path)


def many_sources(uploads: Sequence[Upload] | None, paths: Sequence[str] | None) -> list[Source]:
    if (uploads is None) == (paths is None):
        raise BadUserInput("give exactly one of files and uploadedPaths")
    sources = [Source(upload=u) for u in uploads or ()] + [
        Source(uploaded_path=p) for p in paths or ()
    ]
    if not 1 <= len(sources) <= MAX_FILES_PER_CALL:
        raise BadUserInput(f"give between 1 and {MAX_FILES_PER_CALL} files")
    return sources


class Attachments:
    def __init__(self, *, records: Records, storage: Storage, settings: Settings) -> None:
        self._records = records
        self._storage = storage
        self._prefix = settings.attachment_prefix

    # --- the workflows -------------------------------------------------------------------------

    async def attach(
        self,
        access: Access,
        model: ModelSpec,
        record_id: str,
        source: Source,
        *,
        delete_previous: bool = True,
        expected_version: int | None = None,
    ) -> Record:
        """Point a one-file record at a new file (attachSongCoverArt)."""
        current = await self._current(access, model, record_id, expected_version)
        if delete_previous:
            self._may_delete(access, model, record_id, current.file_paths)
        async with self._staged(access, model, record_id, [source]) as (new_path,):
            record, previous = await self._swap(
                current, lambda _: new_path, expected_version, access
            )
        if delete_previous and previous not in (None, new_path):
            await self._discard(access, model, record_id, [previous])
        return record

    async def detach(
        self,
        access: Access,
        model: ModelSpec,
        record_id: str,
        *,
        delete_file: bool = False,
        expected_version: int | None = None,
    ) -> Record:
        """Stop naming a one-file record's file, then maybe delete it (detachSongCoverArt)."""
        current = await self._current(access, model, record_id, expected_version)
        if current.values.get(model.file_field) is None:
            return current  # nothing to detach: no write, no event
        if delete_file:
            self._may_delete(access, model, record_id, current.file_paths)
        record, previous = await self._swap(current, lambda _: None, expected_version, access)
        if delete_file and previous is not None:
            await self._discard(access, model, record_id, [previous])
        return record

    async def add(
        self,
        access: Access,
        model: ModelSpec,
        record_id: str,
        sources: Sequence[Source],
        *,
        expected_version: int | None = None,
    ) -> Record:
        """Add files to a many-file record in one atomic update (addPhotoAlbumImages)."""
        current = await self._current(access, model, record_id, expected_version)
        if len(current.file_paths) + len(sources) > MAX_LIST_LENGTH:
            raise BadUserInput(f"a {model.name} names at most {MAX_LIST_LENGTH} files")
        async with self._staged(access, model, record_id, sources) as new_paths:
            room = {f"{model.file_field}.{MAX_LIST_LENGTH - len(new_paths)}": {"$exists": False}}
            return await self._records.update(
                model,
                record_id,
                add={model.file_field: new_paths},
                preconditions=Preconditions(
                    expected_version=expected_version, guard=room, owner=self._owner(access, model)
                ),
            )

    async def replace(
        self,
        access: Access,
        model: ModelSpec,
        record_id: str,
        old_path: str,
        source: Source,
        *,
        delete_previous: bool = True,
        expected_version: int | None = None,
    ) -> Record:
        """Swap one of a many-file record's files for another, in place (replacePhotoAlbumImage)."""
        current = await self._current(access, model, record_id, expected_version)
        self._require_named(current, old_path)  # refuse before uploading anything
        if delete_previous:
            self._may_delete(access, model, record_id, [old_path])
        async with self._staged(access, model, record_id, [source]) as (new_path,):

            def swapped(paths: list[str] | None) -> list[str]:
                # re-checked on every try: another client may have removed it meanwhile
                self._require_named(current, old_path, paths or [])
                return [new_path if p == old_path else p for p in paths or ()]

            record, _ = await self._swap(current, swapped, expected_version, access)
        if delete_previous:
            await self._discard(access, model, record_id, [old_path])
        return record

    async def remove(
        self,
        access: Access,
        model: ModelSpec,
        record_id: str,
        paths: Sequence[str],
        *,
        delete_files: bool = False,
        expected_version: int | None = None,
    ) -> Record:
        """Stop naming some of a many-file record's files, then maybe delete them."""
        if not 1 <= len(paths) <= MAX_FILES_PER_CALL:
            raise BadUserInput(f"give between 1 and {MAX_FILES_PER_CALL} paths")
        current = await self._current(access, model, record_id, expected_version)
        for path in paths:
            self._require_named(current, path)
        if delete_files:
            self._may_delete(access, model, record_id, paths)
        record = await self._records.update(
            model,
            record_id,
            pull={model.file_field: list(paths)},
            preconditions=Preconditions(
                expected_version=expected_version,
                guard={model.file_field: {"$all": list(paths)}},
                owner=self._owner(access, model),
            ),
        )
        if delete_files:
            await self._discard(access, model, record_id, paths)
        return record

    async def delete_record(
        self,
        access: Access,
        model: ModelSpec,
        record_id: str,
        *,
        delete_files: bool,
        expected_version: int | None = None,
        condition: filters.Node | None = None,
    ) -> Record:
        """Delete the record, then (when asked) the files in its folder."""
        grant = access.data(model, "delete")
        if delete_files:  # refuse before deleting anything when storage rules protect its files
            current = await self._records.get(model, record_id, owner=grant.owner)
            self._may_delete(access, model, record_id, current.file_paths)
        record = await self._records.delete(
            model,
            record_id,
            preconditions=Preconditions(
                expected_version=expected_version, condition=condition, owner=grant.owner
            ),
        )
        if delete_files:
            await self._discard(access, model, record_id, record.file_paths)
        return record

    # --- the machinery -----------------------------------------------------------------------

    def _folder(self, record_id: str) -> str:
        return record_folder(self._prefix, record_id)

    @staticmethod
    def _owner(access: Access, model: ModelSpec) -> str | None:
        return access.data(model, "update").owner

    async def _current(
        self, access: Access, model: ModelSpec, record_id: str, expected_version: int | None
    ) -> Record:
        """The record now, if the caller may change it; refuses early (before any upload) when
        its version has moved on."""
        current = await self._records.get(model, record_id, owner=self._owner(access, model))
        if expected_version is not None and current.version != expected_version:
            raise Conflict(
                f"{model.name} {record_id!r} is at version {current.version}, "
                f"not {expected_version}",
                currentVersion=current.version,
            )
        return current

    def _may_delete(
        self, access: Access, model: ModelSpec, record_id: str, paths: Sequence[str]
    ) -> None:
        """Refuse before changing anything when asked to delete what storage rules protect."""
        folder = self._folder(record_id)
        for path in paths:
            if in_folder(path, folder):
                access.storage(path, "delete")

    @staticmethod
    def _require_named(record: Record, path: str, paths: Sequence[str] | None = None) -> None:
        if path not in (record.file_paths if paths is None else paths):
            raise NotFound(f"{record.model.name} {record.id!r} does not name {path}", path=path)

    async def _swap(
        self,
        current: Record,
        change: Callable[[Any], Any],
        expected_version: int | None,
        access: Access,
    ) -> tuple[Record, Any]:
        """Set the file field to ``change(previous)`` in one write guarded by ``previous``, so we
        know exactly what we unlinked. When another client changed the field first, re-read and
        try again, unless the caller pinned ``expected_version``. Returns (record, previous)."""
        model = current.model
        owner = self._owner(access, model)
        for _ in range(RETRIES):
            previous = current.values.get(model.file_field)
            value = change(previous)
            guard = {model.file_field: {"$exists": False} if previous is None else previous}
            preconditions = Preconditions(
                expected_version=expected_version, guard=guard, owner=owner
            )
            try:
                record = await self._records.update(
                    model,
                    current.id,
                    set_values=None if value is None else {model.file_field: value},
                    unset=[model.file_field] if value is None else (),
                    preconditions=preconditions,
                )
                return record, previous
            except Conflict:
                if expected_version is not None:
                    raise
                current = await self._records.get(model, current.id, owner=owner)
        raise Conflict(f"{model.name} {current.id!r} kept changing; try again")

    @asynccontextmanager
    async def _staged(
        self, access: Access, model: ModelSpec, record_id: str, sources: Sequence[Source]
    ) -> AsyncIterator[list[str]]:
        """New files in the record's folder; what this request uploaded is deleted if the block
        (the record write) fails."""
        folder = self._folder(record_id)
        uploaded: list[str] = []
        paths: list[str] = []
        try:
            for source in sources:
                if source.upload is not None:
                    key = new_attachment_key(self._prefix, record_id, source.upload.filename)
                    await self._storage.upload(access, key, source.upload)
                    uploaded.append(key)
                    paths.append(key)
                else:
                    assert source.uploaded_path is not None
                    path = check_key(source.uploaded_path, what="uploadedPath")
                    if not in_folder(path, folder):
                        raise BadUserInput(
                            f"uploadedPath must lie in the record's folder {folder}", path=path
                        )
                    access.storage(path, "write")  # adopting a file is writing it
                    await self._storage.verify_uploaded(path)
                    paths.append(path)
            yield paths
        except BaseException as failure:
            if uploaded:
                await self._delete_quietly(uploaded, reason=f"{type(failure).__name__}")
            raise

    async def _discard(
        self, access: Access, model: ModelSpec, record_id: str, paths: Sequence[str]
    ) -> None:
        """Delete unlinked files that lie in the record's folder, that the caller may delete,
        and that no record names."""
        folder = self._folder(record_id)
        owned = []
        for path in dict.fromkeys(paths):
            if not in_folder(path, folder):
                log.info(
                    "kept %s: it lies outside %s, which %s %s owns",
                    path,
                    folder,
                    model.name,
                    record_id,
                )
            elif _may(access, path, "delete"):
                owned.append(path)
        try:
            still_named = await self._records.named(owned)
        except DomainError as exc:
            log.warning("kept %d file(s) of %s %s: %s", len(owned), model.name, record_id, exc)
            return
        for path, by in still_named.items():
            log.info("kept %s: %s still names it", path, by)
        await self._delete_quietly([p for p in owned if p not in still_named], reason="unlinked")

    async def _delete_quietly(self, paths: Sequence[str], *, reason: str) -> None:
        """Best effort: what cannot be deleted now is an orphan the sweeper will find."""
        if not paths:
            return
        try:
            failed = await self._storage.files.delete_many(paths)
        except DomainError as exc:
            log.warning("could not delete %s (%s): %s; the sweeper will", list(paths), reason, exc)
            return
        deleted = [p for p in paths if p not in failed]
        if deleted:
            log.info("deleted %s (%s)", deleted, reason)


def _may(access: Access, path: str, action: str) -> bool:
    try:
        access.storage(path, action)
    except DomainError:
        log.info("kept %s: the caller may not %s it", path, action)
        return False
    return True
