"""The record-file workflows, each one call, in the order that never leaves a dangling record.

1. Claim and stage the new files: take the claims on fresh keys in the record's folder (see
   ``claims``), then upload the request's files to them, or copy presigned uploads from the
   folder to them and verify the copies (HEAD, size, sniffed type, decoded image), and make
   the image variants the field declares beside them (``variants``: from the upload's spool,
   or read back from the copy). Nothing names them yet, and nothing can delete them while they
   are claimed. A record only ever names a key
   of this kind: no presigned form (valid for minutes after adoption) and no other upload can
   name it, and uploads to a named key are refused, so a file a record names never changes.
   Then the rest of the request body is read and checked: a fault anywhere in it (a later part
   too large or malformed, a body cut short) fails the workflow here, before its write. While
   files of the request arrive, the claims are renewed; their hold limit runs from when the
   body is in, as the request's deadline does.
2. Write the record in one guarded MongoDB update, still holding the claims. If it is refused
   (conflict, missing record), delete what step 1 uploaded and answer the error. If its outcome
   is unknown (the database timed out), keep the claims until they expire: the write may yet
   land, and nothing may delete those files before it has.
3. Only then delete what the write unlinked (when asked, only inside the record's folder, and
   only objects no record names any more), and the presigned uploads it adopted copies of,
   through ``Storage.delete_unnamed``, which takes each object's claim before asking. This
   runs after the answer, in the background (see
   ``background``): the client waits for the write, not for S3. A failure here leaves an orphan
   for the sweeper, never a record pointing at nothing.

The same machinery serves every file field of every model: one file (Song.coverArt, its key in
coverArtPath) or many (PhotoAlbum.images, in imagePaths), each with its own types and size.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from ..domain import filters
from ..domain.models import FileSpec, ModelSpec, Record
from ..domain.object_keys import check_key, in_folder, new_attachment_key, record_folder
from ..domain.variants import is_variant_key
from ..errors import BadUserInput, Conflict, DomainError, NotFound
from ..settings import Settings
from .auth import Access
from .background import Background
from .claims import Claim
from .records import Preconditions, Records
from .storage import Storage, Upload

log = logging.getLogger(__name__)

MAX_FILES_PER_CALL = 100
_FIRST_RETRY_DELAY = 0.002
_MAX_RETRY_DELAY = 0.05


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


@dataclass(frozen=True)
class Staged:
    """New files, in place and claimed: ``claim.committing()`` guards the write naming them."""

    paths: list[str]
    claim: Claim


class Attachments:
    def __init__(
        self, *, records: Records, storage: Storage, settings: Settings, background: Background
    ) -> None:
        self._records = records
        self._storage = storage
        self._background = background
        self._prefix = settings.attachment_prefix
        self._retry_seconds = settings.request_timeout

    # --- the workflows -------------------------------------------------------------------------

    async def attach(
        self,
        access: Access,
        model: ModelSpec,
        file: FileSpec,
        record_id: str,
        source: Source,
        *,
        delete_previous: bool = True,
        expected_version: int | None = None,
    ) -> Record:
        """Point a one-file field at a new file (attachSongCoverArt)."""
        current = await self._current(access, model, record_id, expected_version)
        if delete_previous:
            self.check_deletable(access, model, record_id, current.paths_of(file))
        async with self._staged(access, model, file, record_id, [source]) as staged:
            (new_path,) = staged.paths
            record, previous = await self._swap(
                current, file, lambda _: new_path, expected_version, access, staged.claim
            )
        if delete_previous and previous not in (None, new_path):
            self.discard(access, model, record_id, [previous])
        return record

    async def detach(
        self,
        access: Access,
        model: ModelSpec,
        file: FileSpec,
        record_id: str,
        *,
        delete_file: bool = False,
        expected_version: int | None = None,
    ) -> Record:
        """Stop naming a one-file field's file, then maybe delete it (detachSongCoverArt)."""
        current = await self._current(access, model, record_id, expected_version)
        if current.values.get(file.key_field) is None:
            return current  # nothing to detach: no write, no event
        if delete_file:
            self.check_deletable(access, model, record_id, current.paths_of(file))
        record, previous = await self._swap(current, file, lambda _: None, expected_version, access)
        if delete_file and previous is not None:
            self.discard(access, model, record_id, [previous])
        return record

    async def add(
        self,
        access: Access,
        model: ModelSpec,
        file: FileSpec,
        record_id: str,
        sources: Sequence[Source],
        *,
        expected_version: int | None = None,
    ) -> Record:
        """Add files to a many-file field in one atomic update (addPhotoAlbumImages)."""
        current = await self._current(access, model, record_id, expected_version)
        self._records.check_file_count(model, file, len(current.paths_of(file)) + len(sources))
        async with (
            self._staged(access, model, file, record_id, sources) as staged,
            staged.claim.committing(),
        ):
            return await self._records.update(
                access,
                model,
                record_id,
                add={file.key_field: staged.paths},
                preconditions=Preconditions(
                    expected_version=expected_version, room={file.key_field: len(staged.paths)}
                ),
            )

    async def replace(
        self,
        access: Access,
        model: ModelSpec,
        file: FileSpec,
        record_id: str,
        old_path: str,
        source: Source,
        *,
        delete_previous: bool = True,
        expected_version: int | None = None,
    ) -> Record:
        """Swap one of a many-file field's files for another, in place (replacePhotoAlbumImage)."""
        current = await self._current(access, model, record_id, expected_version)
        self._require_named(current, file, old_path)  # refuse before uploading anything
        if delete_previous:
            self.check_deletable(access, model, record_id, [old_path])
        async with self._staged(access, model, file, record_id, [source]) as staged:
            (new_path,) = staged.paths

            def swapped(paths: list[str] | None) -> list[str]:
                # re-checked on every try: another client may have removed it meanwhile
                self._require_named(current, file, old_path, paths or [])
                return [new_path if p == old_path else p for p in paths or ()]

            record, _ = await self._swap(
                current, file, swapped, expected_version, access, staged.claim
            )
        if delete_previous and old_path != new_path:
            self.discard(access, model, record_id, [old_path])
        return record

    async def remove(
        self,
        access: Access,
        model: ModelSpec,
        file: FileSpec,
        record_id: str,
        paths: Sequence[str],
        *,
        delete_files: bool = False,
        expected_version: int | None = None,
    ) -> Record:
        """Stop naming some of a many-file field's files, then maybe delete them."""
        if not 1 <= len(paths) <= MAX_FILES_PER_CALL:
            raise BadUserInput(f"give between 1 and {MAX_FILES_PER_CALL} paths")
        current = await self._current(access, model, record_id, expected_version)
        for path in paths:
            self._require_named(current, file, path)
        if delete_files:
            self.check_deletable(access, model, record_id, paths)
        record = await self._records.update(
            access,
            model,
            record_id,
            pull={file.key_field: list(paths)},
            preconditions=Preconditions(
                expected_version=expected_version, naming={file.key_field: list(paths)}
            ),
        )
        if delete_files:
            self.discard(access, model, record_id, paths)
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
        if delete_files:  # refuse before deleting anything when storage rules protect its files
            current = await self._records.get(access, model, record_id, purpose="delete")
            self.check_deletable(access, model, record_id, current.file_paths)
        record = await self._records.delete(
            access,
            model,
            record_id,
            preconditions=Preconditions(expected_version=expected_version, condition=condition),
        )
        if delete_files:
            self.discard(access, model, record_id, record.file_paths)
        return record

    # --- the machinery -----------------------------------------------------------------------

    def folder(self, model: ModelSpec, record_id: str) -> str:
        """The folder a record owns: what its workflows may adopt from and delete in."""
        return record_folder(self._prefix, model.name, record_id)

    async def _current(
        self, access: Access, model: ModelSpec, record_id: str, expected_version: int | None
    ) -> Record:
        """The record now, if the caller may change it; refuses early (before any upload) when
        its version has moved on."""
        current = await self._records.get(access, model, record_id, purpose="update")
        if expected_version is not None and current.version != expected_version:
            raise Conflict(
                f"{model.name} {record_id!r} is at version {current.version}, "
                f"not {expected_version}",
                currentVersion=current.version,
            )
        return current

    def check_deletable(
        self, access: Access, model: ModelSpec, record_id: str, paths: Sequence[str]
    ) -> None:
        """Refuse before changing anything when asked to delete what storage rules protect."""
        folder = self.folder(model, record_id)
        for path in paths:
            if in_folder(path, folder):
                access.storage(path, "delete")

    @staticmethod
    def _require_named(
        record: Record, file: FileSpec, path: str, paths: Sequence[str] | None = None
    ) -> None:
        if path not in (record.paths_of(file) if paths is None else paths):
            raise NotFound(f"{record.model.name} {record.id!r} does not name {path}", path=path)

    async def _swap(
        self,
        current: Record,
        file: FileSpec,
        change: Callable[[Any], Any],
        expected_version: int | None,
        access: Access,
        claim: Claim | None = None,
    ) -> tuple[Record, Any]:
        """Set the file field to ``change(previous)`` in one write guarded by ``previous``, so we
        know exactly what we unlinked. When another client changed the field first, re-read and
        try again (with jittered backoff, until the request's deadline) unless the caller pinned
        ``expected_version``: without it, the caller asked the server to serialize. Returns
        (record, previous)."""
        model = current.model
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._retry_seconds
        delay = _FIRST_RETRY_DELAY
        while True:
            previous = current.values.get(file.key_field)
            value = change(previous)
            preconditions = Preconditions(
                expected_version=expected_version, unchanged={file.key_field: previous}
            )
            write = self._records.update(
                access,
                model,
                current.id,
                set_values=None if value is None else {file.key_field: value},
                unset=[file.key_field] if value is None else (),
                preconditions=preconditions,
            )
            try:
                if claim is None:
                    return await write, previous
                async with claim.committing():
                    return await write, previous
            except Conflict:
                if expected_version is not None or loop.time() + delay > give_up:
                    raise
            await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # noqa: S311 - jitter
            delay = min(delay * 2, _MAX_RETRY_DELAY)
            current = await self._records.get(access, model, current.id, purpose="update")

    @asynccontextmanager
    async def _staged(
        self,
        access: Access,
        model: ModelSpec,
        file: FileSpec,
        record_id: str,
        sources: Sequence[Source],
    ) -> AsyncIterator[Staged]:
        """New files in the record's folder, claimed until the block (the record write) ends;
        what this request uploaded is deleted if the write is refused."""
        folder = self.folder(model, record_id)
        planned: list[tuple[str, Source]] = []
        for source in sources:  # every check before any claim or upload
            if source.upload is not None:
                await source.upload.begin()  # its name, for the key (earlier files spool)
                name = source.upload.filename
            else:
                assert source.uploaded_path is not None
                adopted = check_key(source.uploaded_path, what="uploadedPath")
                if not in_folder(adopted, folder) or is_variant_key(adopted):
                    raise BadUserInput(
                        f"uploadedPath must lie in the record's folder {folder} (not in a "
                        "variants folder)",
                        path=adopted,
                    )
                access.storage(adopted, "write")  # adopting a file is writing it
                name = adopted.rpartition("/")[2]
            key = new_attachment_key(folder, name)  # a key of its own, no form can name
            access.storage(key, "write")
            planned.append((key, source))
        purpose = f"adopt into {model.name} {record_id}"
        # With files in this request, its hold limit runs from when the body is in: a slow
        # client is not a stalled one (the claims are renewed while the files arrive).
        streamed = any(source.upload is not None for _, source in planned)
        keys = [k for k, _ in planned]
        async with self._storage.claims.hold(
            keys, purpose=purpose, open_until_started=streamed
        ) as claim:
            stored: list[str] = []
            try:
                for key, source in planned:
                    stored.append(key)  # before the write: a failed one may still land
                    if source.upload is not None:
                        await self._storage.upload(
                            access,
                            key,
                            source.upload,
                            types=file.types,
                            max_bytes=file.max_bytes,
                            check_rest=False,
                            prevent_overwrite=True,
                            variants=file.variants,
                        )
                    else:
                        assert source.uploaded_path is not None
                        await self._storage.adopt(
                            source.uploaded_path,
                            key,
                            types=file.types,
                            max_bytes=file.max_bytes,
                            variants=file.variants,
                        )
                uploads = [source.upload for _, source in planned if source.upload is not None]
                if uploads:  # the body past them, read and checked before the record write
                    await uploads[-1].check_rest()
                await claim.start_clock()  # the body is in: the hold limit runs from now
                yield Staged(keys, claim)
            except BaseException as failure:
                if stored and not claim.keep:
                    await self._compensate(claim, stored, failure)
                raise
        # The write named the copies: the uploads they were made from go (what a presigned
        # form may still write to is nothing a record names).
        originals = [s.uploaded_path for _, s in planned if s.uploaded_path is not None]
        if originals:
            self.discard(access, model, record_id, originals)

    async def _compensate(self, claim: Claim, uploaded: list[str], failure: BaseException) -> None:
        """Delete what a failed request uploaded, still under its claim (best effort: what is
        left is an orphan the sweeper removes)."""
        if not claim.in_time:
            log.warning("left %s for the sweeper: the request ran out of time", uploaded)
            return
        try:
            await self._storage.delete_if_unnamed(
                claim, uploaded, reason=f"the request failed: {type(failure).__name__}"
            )
        except DomainError as exc:
            log.warning("could not delete %s (%s); the sweeper will", uploaded, exc)

    def discard(
        self, access: Access, model: ModelSpec, record_id: str, paths: Sequence[str]
    ) -> None:
        """Delete, after the answer, the unlinked files that lie in the record's folder, that
        the caller may delete, and that no record names (the write that unlinked them has
        committed: the caller calls this only after it)."""
        folder = self.folder(model, record_id)
        owned = []
        for path in dict.fromkeys(paths):
            if not in_folder(path, folder):
                log.info("kept %s: it lies outside %s, the folder %s owns", path, folder, record_id)
            elif _may(access, path, "delete"):
                owned.append(path)
        if owned:
            self._background.start(
                self._delete_unlinked(model, record_id, owned),
                name=f"delete {len(owned)} file(s) unlinked from {model.name} {record_id}",
            )

    async def _delete_unlinked(self, model: ModelSpec, record_id: str, owned: list[str]) -> None:
        try:
            outcome = await self._storage.delete_unnamed(owned, reason="unlinked")
        except DomainError as exc:
            log.warning("kept %d file(s) of %s %s: %s", len(owned), model.name, record_id, exc)
            return
        for path in outcome.busy:
            log.info("kept %s: another request holds it; the sweeper will decide", path)
        for path in outcome.failed:
            log.warning("kept %s: storage did not delete it; the sweeper will", path)


def _may(access: Access, path: str, action: str) -> bool:
    try:
        access.storage(path, action)
    except DomainError:
        log.info("kept %s: the caller may not %s it", path, action)
        return False
    return True
