"""What the server knows of stored objects, apart from how S3 is called: the values the storage
service hands out and the GraphQL layer shows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol


class Readable(Protocol):
    """A source of bytes to upload (an upload's spooled file, a test's bytes)."""

    async def read(self, size: int = -1) -> bytes: ...


@dataclass(frozen=True)
class ObjectInfo:
    path: str
    size: int
    content_type: str | None
    etag: str | None
    last_modified: datetime


class SignedUrl(NamedTuple):  # a tuple: made a thousand times for a page of URLs
    url: str
    expires_at: datetime


@dataclass(frozen=True)
class PresignedPost:
    url: str
    fields: dict[str, str]
    path: str
    expires_at: datetime


@dataclass(frozen=True)
class FilePage:
    items: list[ObjectInfo]
    next_token: str | None
