"""The record models, described once as data so every layer serves Song and PhotoAlbum alike.

A ``ModelSpec`` names a model's collection, its user-writable fields and which field holds its
file paths (one path for Song, a list for PhotoAlbum). Services, filters, GraphQL inputs and
workflows all read the spec; none of them mentions a model by name.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import BadUserInput, excerpt
from .object_keys import check_key


class Kind(enum.Enum):
    ID = "ID"
    STRING = "String"
    INT = "Int"
    DATETIME = "DateTime"
    STRING_LIST = "[String!]"


@dataclass(frozen=True)
class FieldSpec:
    name: str  # as in GraphQL and in the MongoDB document
    kind: Kind
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class ModelSpec:
    name: str  # GraphQL type name: "Song"
    plural: str  # "Songs", for listSongs
    collection: str
    enum_name: str  # ModelName value: "SONG"
    fields: tuple[FieldSpec, ...]  # user-writable fields
    file_field: str  # the field naming this record's objects
    """Field naming this record's S3 objects: a string (one file) or a list (many)."""

    def field(self, name: str) -> FieldSpec:
        for spec in (*self.fields, *SYSTEM_FIELDS):
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def filterable(self) -> tuple[FieldSpec, ...]:
        return (SYSTEM_FIELDS[0], *self.fields, *SYSTEM_FIELDS[1:])


SYSTEM_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("id", Kind.ID, required=True),
    FieldSpec("owner", Kind.STRING, description="The `sub` of the user who created the record."),
    FieldSpec("version", Kind.INT, required=True, description="1 on create, +1 on every write."),
    FieldSpec("createdAt", Kind.DATETIME, required=True),
    FieldSpec("updatedAt", Kind.DATETIME, required=True),
)

SONG = ModelSpec(
    name="Song",
    plural="Songs",
    collection="songs",
    enum_name="SONG",
    fields=(
        FieldSpec("name", Kind.STRING, required=True),
        FieldSpec(
            "coverArtPath",
            Kind.STRING,
            description="S3 key of the cover art. Null removes the association.",
        ),
    ),
    file_field="coverArtPath",
)

PHOTO_ALBUM = ModelSpec(
    name="PhotoAlbum",
    plural="PhotoAlbums",
    collection="photo_albums",
    enum_name="PHOTO_ALBUM",
    fields=(
        FieldSpec("name", Kind.STRING, required=True),
        FieldSpec("imagePaths", Kind.STRING_LIST, description="S3 keys of the album's images."),
    ),
    file_field="imagePaths",
)

MODELS: tuple[ModelSpec, ...] = (SONG, PHOTO_ALBUM)
MODELS_BY_ENUM: Mapping[str, ModelSpec] = {m.enum_name: m for m in MODELS}

MAX_ID_LENGTH = 128
_BAD_ID_CHARS = re.compile(r"[/\x00-\x1f\x7f]")


def check_record_id(record_id: str) -> str:
    """Record ids become S3 folder names: 1-128 characters, no '/', no control characters."""
    bad = _BAD_ID_CHARS.search(record_id) or record_id in (".", "..")
    if not 1 <= len(record_id) <= MAX_ID_LENGTH or bad:
        raise BadUserInput(
            f"invalid id {excerpt(record_id, 40)}: ids are 1-{MAX_ID_LENGTH} characters "
            "with no '/' and no control characters, and not '.' or '..'"
        )
    return record_id


def paths_in(model: ModelSpec, values: Mapping[str, Any]) -> tuple[str, ...]:
    """The S3 keys a record's values (or a stored document) name."""
    value = values.get(model.file_field)
    if not value:
        return ()
    return tuple(value) if isinstance(value, list) else (value,)


@dataclass(frozen=True)
class Record:
    """One stored record, independent of MongoDB and of GraphQL."""

    model: ModelSpec
    id: str
    values: Mapping[str, Any]  # user fields that are set (absent = null)
    owner: str | None
    version: int
    created_at: str  # ISO-8601 UTC with milliseconds, as Amplify's AWSDateTime
    updated_at: str

    @property
    def file_paths(self) -> tuple[str, ...]:
        """Every S3 key this record names."""
        return paths_in(self.model, self.values)

    @classmethod
    def from_document(cls, model: ModelSpec, doc: Mapping[str, Any]) -> Record:
        return cls(
            model=model,
            id=doc["_id"],
            values={f.name: doc[f.name] for f in model.fields if doc.get(f.name) is not None},
            owner=doc.get("owner"),
            version=doc["version"],
            created_at=doc["createdAt"],
            updated_at=doc["updatedAt"],
        )

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"_id": self.id, **self.values}
        if self.owner is not None:
            doc["owner"] = self.owner
        doc.update(version=self.version, createdAt=self.created_at, updatedAt=self.updated_at)
        return doc

    def field_value(self, name: str) -> Any:
        """The value of any filterable field, by its GraphQL name (None when unset)."""
        system = {
            "id": self.id,
            "owner": self.owner,
            "version": self.version,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
        }
        return system[name] if name in system else self.values.get(name)


MAX_STRING_LENGTH = 1024
MAX_LIST_LENGTH = 1000


def check_values(model: ModelSpec, values: Mapping[str, Any]) -> None:
    """Refuse values no record should hold: required fields removed, oversized strings/lists."""
    for name, value in values.items():
        spec = model.field(name)
        if value is None:
            if spec.required:
                raise BadUserInput(f"{model.name}.{name} is required and cannot be null")
            continue
        items = value if spec.kind is Kind.STRING_LIST else [value]
        if name != model.file_field and len(items) > MAX_LIST_LENGTH:  # files: Records' limit
            raise BadUserInput(f"{model.name}.{name} holds at most {MAX_LIST_LENGTH} entries")
        for item in items:
            if isinstance(item, str) and len(item) > MAX_STRING_LENGTH:
                raise BadUserInput(
                    f"{model.name}.{name} values are at most {MAX_STRING_LENGTH} characters"
                )
            if name == model.file_field:
                check_key(item, what=f"{model.name}.{name}")
