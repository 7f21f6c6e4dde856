"""GraphQL object types, kept apart from stored documents: ``from_record`` is the one bridge.

No ``from __future__ import annotations`` here: ``connection_type`` builds a class whose
annotation names a local variable, which strawberry must see evaluated.
"""

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

import strawberry

from ..domain import objects
from ..domain.models import PHOTO_ALBUM, SONG, ModelSpec, Record
from ..domain.objects import ObjectInfo
from .budget import current_budget, yielding
from .context import Info
from .cost import HEAD_COST, URL_COST


def _serialize_datetime(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_datetime(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("DateTime must be an ISO-8601 string")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("DateTime needs a time zone, e.g. 2026-01-31T12:00:00.000Z")
    return parsed


DATETIME_SCALAR = strawberry.scalar(
    name="DateTime",
    description="An ISO-8601 instant in UTC with milliseconds, as Amplify's AWSDateTime: "
    "2026-01-31T12:00:00.000Z.",
    serialize=_serialize_datetime,
    parse_value=_parse_datetime,
)


@strawberry.enum(description="The order of `list*` results, by `createdAt` then `id`.")
class ModelSortDirection(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.enum(description="The record models, as named in the change feed.")
class ModelName(enum.Enum):
    SONG = "SONG"
    PHOTO_ALBUM = "PHOTO_ALBUM"


@strawberry.type(description="An object's properties, from S3.")
class FileProperties:
    path: str
    size: int = strawberry.field(description="Bytes.")
    contentType: str | None = strawberry.field(description="Null in listings (S3 lists none).")
    eTag: str | None
    lastModified: datetime

    @classmethod
    def from_info(cls, info: ObjectInfo) -> Self:
        return cls(
            path=info.path,
            size=info.size,
            contentType=info.content_type,
            eTag=info.etag,
            lastModified=info.last_modified,
        )


@strawberry.type(name="SignedUrl", description="A short-lived presigned GET URL.")
class SignedUrlType:
    """GraphQL's ``SignedUrl``, made from the storage service's ``SignedUrl`` value."""

    url: str
    expiresAt: datetime

    @classmethod
    def from_signed(cls, signed: objects.SignedUrl) -> Self:
        return cls(url=signed.url, expiresAt=signed.expires_at)


@strawberry.type(description="A file a record names.")
class FileRef:
    path: str

    @strawberry.field(
        description="A presigned GET URL, signed locally. `expiresIn` (seconds) is capped by "
        "the server's SIGNED_URL_TTL; `contentDisposition` has at most 1024 characters and no "
        "line breaks or control characters. Null with an error when storage rules deny it."
    )
    def url(
        self,
        info: Info,
        expiresIn: int | None = None,
        contentDisposition: str | None = None,
    ) -> SignedUrlType | None:
        current_budget().spend(URL_COST)
        signed = info.context.services.storage.file_url(
            info.context.access,
            self.path,
            expires_in=expiresIn,
            content_disposition=contentDisposition,
        )
        return SignedUrlType.from_signed(signed)

    @strawberry.field(
        description="The object's properties; null when the object is missing. Batched: "
        "many of these in one request run concurrently, each path once."
    )
    async def properties(self, info: Info) -> FileProperties | None:
        current_budget().spend(HEAD_COST)
        found = await info.context.properties.load(self.path)
        return None if found is None else FileProperties.from_info(found)


@strawberry.type
class RecordType:
    """Fields every record has; the server maintains all of them."""

    model: ClassVar[ModelSpec]

    id: strawberry.ID
    owner: str | None = strawberry.field(
        description="The `sub` of the signed-in user who created the record, if any."
    )
    version: int = strawberry.field(
        description="1 when created, one higher after every write (a delete included). "
        "Pass it back as `expectedVersion` to write only over what you read."
    )
    createdAt: datetime
    updatedAt: datetime

    @classmethod
    def from_record(cls, record: Record) -> Self:
        values: dict[str, Any] = {f.name: record.values.get(f.name) for f in cls.model.fields}
        return cls(
            id=strawberry.ID(record.id),
            owner=record.owner,
            version=record.version,
            createdAt=datetime.fromisoformat(record.created_at),
            updatedAt=datetime.fromisoformat(record.updated_at),
            **values,
        )


@strawberry.type(description="A song with optional cover art stored in S3.")
class Song(RecordType):
    model: ClassVar[ModelSpec] = SONG

    name: str
    coverArtPath: str | None = strawberry.field(
        description="S3 key of the cover art. Null removes the association."
    )

    @strawberry.field(description="The cover art, with its URL and properties.")
    def coverArt(self) -> FileRef | None:
        if self.coverArtPath is None:
            return None
        return yielding(FileRef(path=self.coverArtPath))  # type: ignore[return-value]


@strawberry.type(description="A photo album naming any number of images stored in S3.")
class PhotoAlbum(RecordType):
    model: ClassVar[ModelSpec] = PHOTO_ALBUM

    name: str
    imagePaths: list[str] | None = strawberry.field(description="S3 keys of the album's images.")

    @strawberry.field(description="The images, in order, with their URLs and properties.")
    def images(self) -> list[FileRef]:
        return yielding([FileRef(path=path) for path in self.imagePaths or ()])  # type: ignore[return-value]


def connection_type(item: type[RecordType]) -> type:
    """``ModelSongConnection { items nextToken }``: one page of a ``list*`` query."""

    @strawberry.type(
        name=f"Model{item.__name__}Connection",
        description=f"One page of {item.__name__} records.",
    )
    class Connection:
        items: list[item]  # type: ignore[valid-type]
        nextToken: str | None = strawberry.field(
            description="Pass to the same query to get the next page; null on the last page."
        )

    return Connection
