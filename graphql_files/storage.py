"""The storage operations after Amplify Storage: validation and limits over ``Files``.

Every path is checked with ``keys.check_key``; every upload is checked for size and content type
(declared and sniffed) before a byte reaches S3; a presigned upload is checked the same way when
a workflow adopts it. ``remove`` refuses an object a record still names, so no storage call can
leave a record pointing at a missing file.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

from . import media, pagination
from .auth import Access
from .errors import BadUserInput, Conflict, NotFound, PayloadTooLarge
from .files import Files, ObjectInfo, PresignedPost, Readable, SignedUrl
from .keys import check_key
from .records import Records
from .settings import SEVEN_DAYS, Settings

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class Upload(Readable, Protocol):
    """What a GraphQL multipart upload gives a resolver (Starlette's ``UploadFile``)."""

    filename: str | None
    content_type: str | None
    size: int | None

    async def seek(self, offset: int) -> None: ...


@dataclass(frozen=True)
class FilePage:
    items: list[ObjectInfo]
    next_token: str | None


class Storage:
    def __init__(self, *, files: Files, records: Records, settings: Settings) -> None:
        self.files = files
        self._records = records
        self._settings = settings

    @property
    def max_bytes(self) -> int:
        return self._settings.max_upload_bytes

    async def accept(self, upload: Upload, declared: str | None = None) -> str:
        """The content type to store ``upload`` under; refuses oversize and mistyped files."""
        if upload.size is not None and upload.size > self.max_bytes:
            raise PayloadTooLarge(
                f"{upload.filename or 'the file'} is larger than {self.max_bytes} bytes",
                maxBytes=self.max_bytes,
            )
        head = await upload.read(media.SNIFF_BYTES)
        await upload.seek(0)
        if not head:
            raise BadUserInput(f"{upload.filename or 'the file'} is empty")
        return media.check_upload(
            declared or upload.content_type, head, self._settings.allowed_content_types
        )

    async def upload(
        self,
        access: Access,
        path: str,
        upload: Upload,
        *,
        content_type: str | None = None,
        prevent_overwrite: bool = False,
    ) -> ObjectInfo:
        check_key(path)
        access.storage(path, "write")
        stored_type = await self.accept(upload, content_type)
        return await self.files.upload(
            path,
            upload,
            content_type=stored_type,
            max_bytes=self.max_bytes,
            prevent_overwrite=prevent_overwrite,
        )

    async def verify_uploaded(self, path: str) -> ObjectInfo:
        """A presigned upload at ``path`` (a checked key), checked as an upload through the API
        would be."""
        info = await self.files.head(path)
        if info is None:
            raise NotFound(f"nothing was uploaded to {path}", path=path)
        if info.size > self.max_bytes:
            raise PayloadTooLarge(f"{path} is larger than {self.max_bytes} bytes", path=path)
        if info.size == 0:
            raise BadUserInput(f"{path} is empty", path=path)
        head = await self.files.read_start(path, media.SNIFF_BYTES)
        media.check_upload(info.content_type, head, self._settings.allowed_content_types)
        return info

    async def create_upload_url(
        self, access: Access, path: str, *, content_type: str, size: int | None
    ) -> PresignedPost:
        check_key(path)
        access.storage(path, "write")  # a presigned upload is a write, granted now
        stored_type = media.check_content_type(content_type, self._settings.allowed_content_types)
        if size is not None and not 1 <= size <= self.max_bytes:
            raise PayloadTooLarge(
                f"size must be between 1 and {self.max_bytes} bytes", maxBytes=self.max_bytes
            )
        low, high = (size, size) if size is not None else (1, self.max_bytes)
        return await self.files.presigned_post(
            path,
            content_type=stored_type,
            min_size=low,
            max_size=high,
            expires_in=self._settings.signed_url_ttl,
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
    ) -> SignedUrl:
        check_key(path)
        signed = self.file_url(  # checks access and the options first
            access, path, expires_in=expires_in, content_disposition=content_disposition
        )
        if not isinstance(signed, SignedUrl):
            signed = await signed
        if validate_existence and await self.files.head(path) is None:
            raise NotFound(f"no object at {path}", path=path)
        return signed

    def file_url(
        self,
        access: Access,
        path: str,
        *,
        expires_in: int | None = None,
        content_disposition: str | None = None,
    ) -> SignedUrl | Awaitable[SignedUrl]:
        """``FileRef.url``: the URL at once when the signing credentials are in hand (no
        coroutine per URL on a page of thousands), an awaitable when they must refresh first."""
        access.storage(path, "get")
        lifetime = self.url_lifetime(expires_in)
        self._check_disposition(content_disposition)
        signed = self.files.signed_url_now(
            path, expires_in=lifetime, content_disposition=content_disposition
        )
        if signed is not None:
            return signed
        return self.files.signed_url(
            path, expires_in=lifetime, content_disposition=content_disposition
        )

    @staticmethod
    def _check_disposition(content_disposition: str | None) -> None:
        if content_disposition is not None and not content_disposition.strip():
            raise BadUserInput("contentDisposition must not be blank")

    async def properties(self, access: Access, path: str) -> ObjectInfo:
        check_key(path)
        access.storage(path, "get")
        info = await self.files.head(path)
        if info is None:
            raise NotFound(f"no object at {path}", path=path)
        return info

    async def list_files(
        self, access: Access, prefix: str, *, page_size: int | None = None, token: str | None = None
    ) -> FilePage:
        check_key(prefix, folder=True)
        access.storage(prefix, "list")
        size = DEFAULT_PAGE_SIZE if page_size is None else page_size
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise BadUserInput(f"pageSize must be between 1 and {MAX_PAGE_SIZE}")
        query_key = f"files|{prefix}"
        s3_token = pagination.unseal(token, query_key, ("s",))["s"] if token else None
        items, next_s3_token = await self.files.list_page(prefix, page_size=size, token=s3_token)
        next_token = pagination.seal({"s": next_s3_token}, query_key) if next_s3_token else None
        return FilePage(items, next_token)

    async def copy(
        self, access: Access, source: str, destination: str, *, prevent_overwrite: bool
    ) -> ObjectInfo:
        check_key(source, what="source")
        check_key(destination, what="destination")
        access.storage(source, "get")
        access.storage(destination, "write")
        if await self.files.head(source) is None:
            raise NotFound(f"no object at {source}", path=source)
        # S3 also enforces If-None-Match on the copy itself; this check answers early and
        # covers stores that ignore it (moto does).
        if prevent_overwrite and await self.files.head(destination) is not None:
            raise Conflict(f"an object already exists at {destination}", path=destination)
        return await self.files.copy(source, destination, prevent_overwrite=prevent_overwrite)

    async def remove(self, access: Access, path: str) -> str:
        """Delete an object no record names (records are detached first, then files go)."""
        check_key(path)
        access.storage(path, "delete")
        named_by = (await self._records.named([path])).get(path)
        if named_by is not None:
            raise Conflict(
                f"{named_by} still names {path}: detach it first (or delete through the "
                "record's workflow with deleteFile/deleteFiles)",
                path=path,
            )
        await self.files.delete(path)
        return path
