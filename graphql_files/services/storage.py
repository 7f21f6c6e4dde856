"""The storage operations after Amplify Storage: validation and limits over ``Files``.

Every path is checked with ``keys.check_key``; every upload is checked for size and content type
(declared and sniffed, and an image must decode: see ``media``) before a byte reaches S3; a
presigned upload is checked the same way when a workflow adopts it. A listing leaves out the keys
the caller may not list. Every deletion goes through ``delete_unnamed``, which deletes only objects
no record names, under the claim protocol of ``claims``, so no storage call can leave a record
pointing at a missing file.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from tempfile import SpooledTemporaryFile
from typing import IO, Protocol

from ..adapters.s3 import Files
from ..domain import media, pagination
from ..domain.models import ModelSpec
from ..domain.object_keys import check_key, folder_model
from ..domain.objects import FilePage, ObjectInfo, PresignedPost, Readable, SignedUrl
from ..domain.variants import VARIANTS_SEGMENT, VariantSpec, is_variant_key, original_of
from ..errors import (
    BadUserInput,
    Busy,
    Conflict,
    DomainError,
    NotFound,
    PayloadTooLarge,
    StorageUnavailable,
    excerpt,
)
from ..settings import SEVEN_DAYS, Settings
from .auth import Access
from .claims import Claim, Claims
from .records import RecordRef, Records
from .variants import Variants, reread

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
SPOOL_BYTES = 1024 * 1024  # a presigned image being verified stays in memory up to this
MAX_DISPOSITION = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class Upload(Readable, Protocol):
    """A file sent with a GraphQL multipart request, read as it arrives (``api.uploads``)."""

    @property
    def filename(self) -> str | None: ...

    @property
    def size(self) -> int | None: ...  # None until the whole file has arrived

    @property
    def content_type(self) -> str | None: ...

    async def begin(self) -> None:
        """Wait until the file has begun to arrive: then its name and type are known."""
        ...

    async def peek(self, size: int) -> bytes:
        """The first ``size`` bytes, left to be read."""
        ...

    async def spool(self) -> IO[bytes]:
        """The whole file in a temporary file (memory, then disk), for checks that need all of
        it; reads then come from there."""
        ...

    async def check_rest(self) -> None:
        """Read the request body after this file to its end and check it, within the request's
        limits (a later file the request still reads is kept for it, the others are counted and
        dropped): raises the body's fault (``PayloadTooLarge``, ``BadUserInput``) if it has one.
        Called once the file has been read, before anything made from it is committed: bad
        input changes nothing."""
        ...


class _Counted:
    """An upload read up to a limit: past it, ``PayloadTooLarge`` as ``accept`` words it."""

    def __init__(self, upload: Upload, limit: int) -> None:
        self._upload = upload
        self._limit = limit
        self._read = 0

    async def read(self, size: int = -1) -> bytes:
        chunk = await self._upload.read(size)
        self._read += len(chunk)
        if self._read > self._limit:
            raise _too_large(self._upload, self._limit)
        return chunk


def _too_large(upload: Upload, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"{_name(upload)} is larger than {limit} bytes", maxBytes=limit)


def _name(upload: Upload) -> str:
    """An upload's file name, quoted and cut short, for an error message."""
    return excerpt(upload.filename) if upload.filename else "the file"


@dataclass
class Deletion:
    """What ``Storage.delete_unnamed`` did with each path it was given."""

    deleted: list[str] = field(default_factory=list)
    named: dict[str, RecordRef] = field(default_factory=dict)  # kept: a record names it
    busy: list[str] = field(default_factory=list)  # kept: another request holds its claim
    failed: list[str] = field(default_factory=list)  # kept: S3 did not delete it


@dataclass(frozen=True)
class Limits:
    """What one upload may be: its accepted content types and its largest size."""

    types: tuple[str, ...]
    max_bytes: int


class Storage:
    def __init__(
        self,
        *,
        files: Files,
        records: Records,
        claims: Claims,
        settings: Settings,
        models: Sequence[ModelSpec] = (),
    ) -> None:
        self._files = files  # the S3 adapter: no other service reaches it
        self.variants = Variants(files=files, settings=settings, models=models)
        self.claims = claims
        self._records = records
        self._settings = settings
        self._default = Limits(tuple(settings.allowed_content_types), settings.max_upload_bytes)
        self._folders = {m.name: self._model_limits(m) for m in models}
        # what any one upload may reach: a declared file field may allow more than the default
        self.upload_limit = max(x.max_bytes for x in (self._default, *self._folders.values()))

    @property
    def max_bytes(self) -> int:
        return self._settings.max_upload_bytes

    def _types(self, types: Sequence[str] | None) -> Sequence[str]:
        return self._settings.allowed_content_types if types is None else types

    def _model_limits(self, model: ModelSpec) -> Limits:
        """What the folders of ``model``'s records accept: whatever one of its file fields
        accepts, so that a client's own upload there (uploadFile, createUploadUrl) can be
        adopted into any of them."""
        if not model.files:
            return self._default
        types = (t for f in model.files for t in (f.types or self._default.types))
        sizes = (f.max_bytes or self._default.max_bytes for f in model.files)
        return Limits(tuple(dict.fromkeys(types)), max(sizes))

    def limits(self, path: str) -> Limits:
        """What an upload to ``path`` may be: in a record's folder
        (``<ATTACHMENT_PREFIX><TypeName>/<id>/``), what its model's file fields accept;
        elsewhere ``ALLOWED_CONTENT_TYPES`` up to ``MAX_UPLOAD_BYTES``."""
        type_name = folder_model(self._settings.attachment_prefix, path)
        return self._default if type_name is None else self._folders.get(type_name, self._default)

    async def accept(
        self,
        upload: Upload,
        declared: str | None = None,
        *,
        types: Sequence[str] | None = None,
        max_bytes: int | None = None,
    ) -> tuple[str, IO[bytes] | None]:
        """The content type to store ``upload`` under, and the whole file when it was spooled;
        refuses oversize and mistyped files (``types`` and ``max_bytes``: a file field's own,
        else the server's). Its first bytes decide (they are peeked at as they arrive); an image
        that must decode is spooled whole first, so it reaches S3 only once it has; anything
        else streams on, its size counted as it goes (``upload``)."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        if upload.size is not None and upload.size > limit:
            raise _too_large(upload, limit)
        head = await upload.peek(media.SNIFF_BYTES)
        if not head:
            raise BadUserInput(f"{_name(upload)} is empty")
        content_type = media.check_upload(declared or upload.content_type, head, self._types(types))
        if not media.decodable(content_type):
            return content_type, None
        whole = await upload.spool()
        if upload.size is not None and upload.size > limit:
            raise _too_large(upload, limit)
        await asyncio.to_thread(media.verify_image, whole, content_type)
        return content_type, whole

    async def upload(
        self,
        access: Access,
        path: str,
        upload: Upload,
        *,
        content_type: str | None = None,
        prevent_overwrite: bool = False,
        types: Sequence[str] | None = None,
        max_bytes: int | None = None,
        check_rest: bool = True,
        variants: Sequence[VariantSpec] = (),
    ) -> ObjectInfo:
        """Store ``upload`` at ``path``. With ``check_rest`` (uploadFile), the rest of the
        request body is read and checked before the object becomes visible, so a fault there
        leaves nothing stored; a workflow checks it itself, once its files are all staged. Then
        the ``variants`` (a workflow's file field's) are made, from the spooled upload."""
        _writable(path)
        access.storage(path, "write")
        named = None if prevent_overwrite else await self._named_by(path)
        limits = self.limits(path)
        types = limits.types if types is None else types
        max_bytes = limits.max_bytes if max_bytes is None else max_bytes
        stored_type, whole = await self.accept(
            upload, content_type, types=types, max_bytes=max_bytes
        )
        # the variants are made while the original goes to S3, from a reader of their own
        apart = None if whole is None or not variants else reread(whole)
        making = (
            None
            if apart is None
            else asyncio.ensure_future(
                self.variants.make(path, variants, max_bytes=max_bytes, source=apart)
            )
        )
        try:
            stored = await self._files.upload(
                path,
                _Counted(upload, max_bytes),
                content_type=stored_type,
                max_bytes=max_bytes,
                # a key a record names may be filled, never replaced (S3 holds to that)
                prevent_overwrite=prevent_overwrite or named is not None,
                content_disposition=media.disposition(stored_type),
                before_commit=upload.check_rest if check_rest else None,
            )
        except BaseException as exc:
            if making is not None:  # what it stores goes with the original (compensation)
                await asyncio.gather(making, return_exceptions=True)
            if isinstance(exc, Conflict) and named is not None:
                raise self._never_changes(access, named, path) from exc
            raise
        if making is not None:
            await making
        else:  # from the spool now, or (no image by its bytes) read back: refused then
            await self.variants.make(path, variants, max_bytes=max_bytes, source=whole)
        return stored

    async def adopt(
        self,
        source: str,
        destination: str,
        *,
        types: Sequence[str] | None,
        max_bytes: int | None,
        variants: Sequence[VariantSpec] = (),
    ) -> ObjectInfo:
        """A presigned upload at ``source`` (a checked key) copied to ``destination``, a fresh
        key, and the copy checked as an upload through the API would be: the record will name
        the copy, which no presigned form can reach, so the object checked is the one named
        (the source may change under us; the copy cannot)."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        found = await self._files.head(source)  # refuse early what could not pass, uncopied
        if found is None:
            raise NotFound(f"nothing was uploaded to {source}", path=source)
        if found.size > limit:
            raise PayloadTooLarge(f"{source} is larger than {limit} bytes", path=source)
        try:
            await self._files.copy(source, destination, prevent_overwrite=True)
        except NotFound as exc:  # gone since the HEAD
            raise NotFound(f"nothing was uploaded to {source}", path=source) from exc
        info = await self.verify_uploaded(destination, types=types, max_bytes=max_bytes)
        await self.variants.make(destination, variants, max_bytes=limit)
        return info

    async def verify_uploaded(
        self, path: str, *, types: Sequence[str] | None = None, max_bytes: int | None = None
    ) -> ObjectInfo:
        """A presigned upload at ``path`` (a checked key), checked as an upload through the API
        would be (against a file field's own ``types`` and ``max_bytes``, when it has them)."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        info = await self._files.head(path)
        if info is None:
            raise NotFound(f"nothing was uploaded to {path}", path=path)
        if info.size > limit:
            raise PayloadTooLarge(f"{path} is larger than {limit} bytes", path=path)
        if info.size == 0:
            raise BadUserInput(f"{path} is empty", path=path)
        head = await self._files.read_start(path, media.SNIFF_BYTES)
        content_type = media.check_upload(info.content_type, head, self._types(types))
        if media.decodable(content_type):
            await self._verify_stored_image(path, content_type, limit)
        return info

    async def _verify_stored_image(self, path: str, content_type: str, limit: int) -> None:
        """Decode the object as an upload's image is decoded: whole, off the event loop, from
        a spooled copy (in memory while small, then on disk)."""
        with SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            await self._files.read_into(path, spool, max_bytes=limit)
            await asyncio.to_thread(media.verify_image, spool, content_type)

    async def _named_by(self, path: str) -> RecordRef | None:
        """The record that names ``path``, if one does. The object a record names, once it
        exists, never changes: a write to that key may create it (a record created naming a
        key before its upload), never replace it. (Workflows name only keys of their own,
        made as they name them: see ``attachments``.)"""
        return (await self._records.named([path])).get(path)

    @staticmethod
    def _never_changes(access: Access, named: RecordRef, path: str) -> Conflict:
        return Conflict(
            f"{_describe(access, named)} names {path}, and a file a record names never "
            "changes: upload under another key (and adopt it with uploadedPath)",
            path=path,
        )

    async def create_upload_url(
        self, access: Access, path: str, *, content_type: str, size: int | None
    ) -> PresignedPost:
        _writable(path)
        access.storage(path, "write")  # a presigned upload is a write, granted now
        named = await self._named_by(path)
        if named is not None and await self._files.head(path) is not None:
            # (a form cannot be conditional: one for a named key that is still missing can
            # fill it, and then land again within its lifetime; adopt instead, which copies)
            raise self._never_changes(access, named, path)
        limits = self.limits(path)
        stored_type = media.check_content_type(content_type, limits.types)
        if size is not None and size < 1:
            raise BadUserInput("size must be at least 1 byte", argument="size")
        if size is not None and size > limits.max_bytes:
            raise PayloadTooLarge(
                f"size must be at most {limits.max_bytes} bytes", maxBytes=limits.max_bytes
            )
        low, high = (size, size) if size is not None else (1, limits.max_bytes)
        return await self._files.presigned_post(
            path,
            content_type=stored_type,
            min_size=low,
            max_size=high,
            expires_in=self._settings.signed_url_ttl,
            content_disposition=media.disposition(stored_type),
        )

    def url_lifetime(self, expires_in: int | None) -> int:
        """``expiresIn`` capped by ``SIGNED_URL_TTL`` (itself at most 7 days)."""
        ttl = self._settings.signed_url_ttl
        if expires_in is None:
            return ttl
        if expires_in < 1:
            raise BadUserInput("expiresIn must be at least 1 second", argument="expiresIn")
        return min(expires_in, ttl, SEVEN_DAYS)

    async def get_url(
        self,
        access: Access,
        path: str,
        *,
        expires_in: int | None = None,
        validate_existence: bool = False,
        content_disposition: str | None = None,
        variant: str | None = None,
    ) -> SignedUrl:
        check_key(path)
        if variant is not None:  # the declared variant of an image in a record's folder
            path = self.variants.path_of(path, variant)
        signed = self.file_url(  # checks access and the options first
            access, path, expires_in=expires_in, content_disposition=content_disposition
        )
        if validate_existence and await self._files.head(path) is None:
            raise NotFound(f"no object at {path}", path=path)
        return signed

    def file_url(
        self,
        access: Access,
        path: str,
        *,
        expires_in: int | None = None,
        content_disposition: str | None = None,
    ) -> SignedUrl:
        """One URL, signed locally, at once (no coroutine per URL on a page of thousands)."""
        sign = self.url_batch(
            access, expires_in=expires_in, content_disposition=content_disposition
        )
        return sign(path)

    def url_batch(
        self,
        access: Access,
        *,
        expires_in: int | None = None,
        content_disposition: str | None = None,
    ) -> Callable[[str], SignedUrl]:
        """``file_url`` for many paths with the same options (``FileRef.url`` across a page):
        the options are checked once, the storage rules once per folder, the clock read once.
        Each path gets the answer ``file_url`` would give it, refusals included, in its order:
        access first, then the options."""
        may_get = access.storage_check("get")
        refusal: DomainError | None = None
        try:
            lifetime = self.url_lifetime(expires_in)
            self._check_disposition(content_disposition)
        except DomainError as exc:
            refusal = exc
        signer: Callable[[str], SignedUrl] | None = None

        def sign(path: str) -> SignedUrl:
            nonlocal signer
            may_get(path)
            if refusal is not None:
                raise refusal
            if signer is None:
                signer = self._files.url_batch(
                    expires_in=lifetime, content_disposition=content_disposition
                )
            return signer(path)

        return sign

    @staticmethod
    def _check_disposition(content_disposition: str | None) -> None:
        """S3 echoes the value as a response header: a line break would split it, and a
        control character or a huge value makes a URL that S3 refuses."""
        if content_disposition is None:
            return
        if not content_disposition.strip():
            raise BadUserInput(
                "contentDisposition must not be blank", argument="contentDisposition"
            )
        if len(content_disposition) > MAX_DISPOSITION or _CONTROL.search(content_disposition):
            raise BadUserInput(
                f"contentDisposition must be at most {MAX_DISPOSITION} characters, with no "
                "line breaks or control characters",
                argument="contentDisposition",
            )

    async def properties(self, access: Access, path: str) -> ObjectInfo:
        check_key(path)
        access.storage(path, "get")
        info = await self._files.head(path)
        if info is None:
            raise NotFound(f"no object at {path}", path=path)
        return info

    async def properties_many(
        self, access: Access, paths: Sequence[str]
    ) -> list[ObjectInfo | DomainError | None]:
        """``FileRef.properties`` for many files at once (one concurrent batch): each the
        object's properties, ``None`` when it is missing, or the refusal when storage rules
        deny the caller."""
        allowed = [p for p in paths if access.may_storage(p, "get")]
        found = dict(zip(allowed, await self._files.head_many(allowed), strict=True))
        results: list[ObjectInfo | DomainError | None] = []
        for path in paths:
            if path in found:
                results.append(found[path])
            else:
                try:
                    access.storage(path, "get")  # raises the refusal, worded for this caller
                except DomainError as refusal:
                    results.append(refusal)
        return results

    async def look_up(self, paths: Sequence[str]) -> list[ObjectInfo | None]:
        """The objects at ``paths`` (None where missing), for the server's own checks."""
        return await self._files.head_many(paths)

    def objects_under(self, prefix: str, *, page_size: int = 1000) -> AsyncIterator[ObjectInfo]:
        """Every object under ``prefix``, a page in memory at a time (the sweeper's walk)."""
        return self._files.iterate(prefix, page_size=page_size)

    async def list_files(
        self, access: Access, prefix: str, *, page_size: int | None = None, token: str | None = None
    ) -> FilePage:
        check_key(prefix, folder=True)
        access.storage(prefix, "list")
        size = DEFAULT_PAGE_SIZE if page_size is None else page_size
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise BadUserInput(f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
        query_key = f"files|{prefix}"
        after = pagination.unseal(token, query_key, ("a",))["a"] if token else None
        items, last = await self._files.list_page(prefix, page_size=size, after=after)
        # The prefix's rule is not each key's: a deeper, more specific rule (an entity path,
        # say) may deny this caller keys under a prefix it may list.
        visible = [i for i in items if access.may_storage(i.path, "list")]
        next_token = pagination.seal({"a": last}, query_key) if last else None
        return FilePage(visible, next_token)

    async def copy(
        self, access: Access, source: str, destination: str, *, prevent_overwrite: bool
    ) -> ObjectInfo:
        check_key(source, what="source")
        _writable(destination, what="destination")
        access.storage(source, "get")
        access.storage(destination, "write")
        named = await self._named_by(destination)
        prevent_overwrite = prevent_overwrite or named is not None
        if await self._files.head(source) is None:
            raise NotFound(f"no object at {source}", path=source)
        # S3 also enforces If-None-Match on the copy itself; this check answers early and
        # covers stores that ignore it (moto does).
        try:
            if prevent_overwrite and await self._files.head(destination) is not None:
                raise Conflict(f"an object already exists at {destination}", path=destination)
            return await self._files.copy(source, destination, prevent_overwrite=prevent_overwrite)
        except Conflict as exc:
            raise self._never_changes(access, named, destination) if named else exc from exc

    async def remove(self, access: Access, path: str) -> str:
        """Delete an object no record names (records are detached first, then files go)."""
        check_key(path)
        access.storage(path, "delete")
        outcome = await self.delete_unnamed([path], reason="removeFile")
        if outcome.busy:
            raise Busy(path)
        if path in outcome.named:
            raise Conflict(
                f"{_describe(access, outcome.named[path])} still names {path}: detach it first "
                "(or delete through the record's workflow with deleteFile/deleteFiles)",
                path=path,
            )
        if outcome.failed:
            raise StorageUnavailable(f"storage did not delete {path}; try again", path=path)
        return path

    async def delete_unnamed(
        self, paths: Sequence[str], *, reason: str, wait: bool = True
    ) -> Deletion:
        """The one way an object is deleted (removeFile, deletePrevious/deleteFile/deleteFiles,
        deleteX(deleteFiles), the sweeper): under each path's claim, ask MongoDB whether any
        record names it, and delete only those none names. Adoption takes the same claim, so
        no record can start naming a path between that question and the delete.

        Paths whose claim another request holds are skipped (``busy``) once ``wait`` runs out;
        raises only when MongoDB cannot be asked or S3 did not answer."""
        if not paths:
            return Deletion()
        # a variant is held through its original's claim: it is made, and goes, with it
        owners = {path: original_of(path) or path for path in paths}
        wanted = list(dict.fromkeys(owners.values()))
        async with self.claims.hold_some(wanted, purpose=f"delete ({reason})", wait=wait) as claim:
            held = set(claim.keys)
            ours = [path for path in dict.fromkeys(paths) if owners[path] in held]
            outcome = await self.delete_if_unnamed(claim, ours, reason=reason)
        outcome.busy = [path for path in dict.fromkeys(paths) if owners[path] not in held]
        return outcome

    async def delete_if_unnamed(
        self, claim: Claim, paths: Sequence[str], *, reason: str
    ) -> Deletion:
        """Under ``claim``, which holds ``paths``: delete those no record names."""
        outcome = Deletion(named=await self._records.named(paths))
        for path, by in outcome.named.items():
            log.info("kept %s: %s still names it", path, by)
        doomed = [p for p in paths if p not in outcome.named]
        # an original goes with its variants (``variants``), in the same call
        doomed = list(dict.fromkeys(d for p in doomed for d in (p, *self.variants.keys_of(p))))
        if doomed:
            async with claim.committing():
                outcome.failed = await self._files.delete_many(doomed)
            outcome.deleted = [p for p in paths if p in doomed and p not in outcome.failed]
        if outcome.deleted:
            log.info("deleted %s (%s)", outcome.deleted, reason)
        return outcome


def _writable(path: str, *, what: str = "path") -> str:
    """A key a client may write: valid, and not in the variants' namespace (the server's)."""
    check_key(path, what=what)
    if is_variant_key(path):
        raise BadUserInput(
            f"{what} lies in a {VARIANTS_SEGMENT}/ folder, where the server keeps the variants "
            "it makes of images: choose another key",
            path=path,
        )
    return path


def _describe(access: Access, ref: RecordRef) -> str:
    """The record, if the caller may read it; "a record" otherwise (never tell a caller about
    a record it may not see)."""
    try:
        grant = access.data(ref.model, "read")
    except DomainError:
        return "a record"
    if grant.owner is not None and grant.owner != ref.owner:
        return "a record"
    return str(ref)
