"""The storage operations (after Amplify Storage) and their GraphQL types."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import strawberry
from strawberry.file_uploads import Upload
from strawberry.scalars import JSON

from ...services import storage
from ..engine.executor import plain
from .context import Info
from .types import FileProperties, SignedUrlType


def as_upload(value: Upload) -> storage.Upload:
    """strawberry types uploads as its ``Upload`` scalar; at run time they are Starlette's
    ``UploadFile``, which is what ``storage.Upload`` describes."""
    return cast(storage.Upload, value)


def optional_upload(value: Upload | None) -> storage.Upload | None:
    return None if value is None else as_upload(value)


def optional_uploads(values: list[Upload] | None) -> list[storage.Upload] | None:
    return None if values is None else [as_upload(v) for v in values]


@strawberry.input(description="A file sent with the request (GraphQL multipart request spec).")
class UploadFileInput:
    path: str = strawberry.field(description="The object key to write.")
    file: Upload
    contentType: str | None = strawberry.field(
        default=None,
        description="Overrides the part's Content-Type. Either must be a media type such as "
        "image/png (else BAD_USER_INPUT); the bytes decide the stored type, and must agree.",
    )
    preventOverwrite: bool = strawberry.field(
        default=False, description="Refuse with CONFLICT when an object exists at `path`."
    )


@strawberry.input(description="A presigned browser upload (an HTML form POST to S3).")
class CreateUploadUrlInput:
    path: str
    contentType: str = strawberry.field(
        description="A media type such as image/png, pinned by the policy. SVG is admitted only "
        "when ALLOWED_CONTENT_TYPES names it, and is then stored as an attachment."
    )
    size: int | None = strawberry.field(
        default=None,
        description="Exact size in bytes (at least 1), pinned by the policy; without it, 1 byte "
        "up to the server's upload limit.",
    )


@strawberry.type(description="Post `fields` (then the file, as the last field) to `url`.")
class PresignedUpload:
    url: str
    fields: JSON = strawberry.field(description="Form field names to values.")
    path: str
    expiresAt: datetime


@strawberry.input
class GetUrlInput:
    path: str
    expiresIn: int | None = strawberry.field(
        default=None, description="Seconds; capped by the server's SIGNED_URL_TTL."
    )
    validateObjectExistence: bool = strawberry.field(
        default=False, description="NOT_FOUND instead of a URL to nothing (costs a HEAD)."
    )
    contentDisposition: str | None = strawberry.field(
        default=None,
        description='e.g. attachment; filename="cover.png" (at most 1024 characters, no line '
        "breaks or control characters).",
    )
    variant: str | None = strawberry.field(
        default=None,
        description="The URL of a resized copy the server made of this image (a variant its "
        "record's model declares, such as `thumb`); BAD_USER_INPUT for an undeclared name or "
        "a file that is no image.",
    )


@strawberry.input
class ListFilesInput:
    path: str = strawberry.field(description="A key prefix, e.g. images/PhotoAlbum/<album id>/.")
    pageSize: int | None = strawberry.field(default=None, description="1-1000, default 100.")
    nextToken: str | None = None


@strawberry.type
class FileListing:
    items: list[FileProperties]
    nextToken: str | None


@strawberry.input
class CopyFileInput:
    source: str
    destination: str
    preventOverwrite: bool = False


@strawberry.type
class StorageQuery:
    @strawberry.field(description="A presigned GET URL for `path`, signed locally.")
    @plain(takes_source=True, converts=True)
    async def getUrl(self, info: Info, input: GetUrlInput) -> SignedUrlType:
        signed = await info.context.services.storage.get_url(
            info.context.access,
            input.path,
            expires_in=input.expiresIn,
            validate_existence=input.validateObjectExistence,
            content_disposition=input.contentDisposition,
            variant=input.variant,
        )
        return SignedUrlType.from_signed(signed)

    @strawberry.field(description="An object's properties; null with NOT_FOUND when missing.")
    @plain(takes_source=True, converts=True)
    async def getProperties(self, info: Info, path: str) -> FileProperties | None:
        return FileProperties.from_info(
            await info.context.services.storage.properties(info.context.access, path)
        )

    @strawberry.field(
        description="Objects under a prefix, in key order, a page at a time. Objects the "
        "caller may not list (under a more specific storage rule) are left out, so a page may "
        "hold fewer than `pageSize` items, even none: keep following `nextToken` until it is "
        "null."
    )
    @plain(takes_source=True, converts=True)
    async def listFiles(self, info: Info, input: ListFilesInput) -> FileListing:
        page = await info.context.services.storage.list_files(
            info.context.access, input.path, page_size=input.pageSize, token=input.nextToken
        )
        return FileListing(
            items=[FileProperties.from_info(i) for i in page.items], nextToken=page.next_token
        )


@strawberry.type
class StorageMutation:
    @strawberry.mutation(description="Upload a file sent with this (multipart) request.")
    @plain(takes_source=True, converts=True)
    async def uploadFile(self, info: Info, input: UploadFileInput) -> FileProperties:
        stored = await info.context.services.storage.upload(
            info.context.access,
            input.path,
            as_upload(input.file),
            content_type=input.contentType,
            prevent_overwrite=input.preventOverwrite,
        )
        return FileProperties.from_info(stored)

    @strawberry.mutation(
        description="A presigned POST for a browser upload; its policy pins the key, the "
        "content type and the size."
    )
    @plain(takes_source=True, converts=True)
    async def createUploadUrl(self, info: Info, input: CreateUploadUrlInput) -> PresignedUpload:
        post = await info.context.services.storage.create_upload_url(
            info.context.access, input.path, content_type=input.contentType, size=input.size
        )
        return PresignedUpload(
            url=post.url, fields=cast(JSON, post.fields), path=post.path, expiresAt=post.expires_at
        )

    @strawberry.mutation(description="Copy an object within the bucket.")
    @plain(takes_source=True, converts=True)
    async def copyFile(self, info: Info, input: CopyFileInput) -> FileProperties:
        copied = await info.context.services.storage.copy(
            info.context.access,
            input.source,
            input.destination,
            prevent_overwrite=input.preventOverwrite,
        )
        return FileProperties.from_info(copied)

    @strawberry.mutation(
        description="Delete an object; refused with CONFLICT while a record names it."
    )
    @plain(takes_source=True, converts=True)
    async def removeFile(self, info: Info, path: str) -> str:
        return await info.context.services.storage.remove(info.context.access, path)
