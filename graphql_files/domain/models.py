"""The record models, described as data, so every layer serves any declared model alike.

A ``ModelSpec`` names a model's collection, its fields (scalars, declared enums, lists of
these) and its file fields: each holds one file (its key stored in a ``String`` field, as
``Song.coverArtPath``) or many (their keys in a ``[String!]`` field, as
``PhotoAlbum.imagePaths``). Models come from a declaration (``declaration``: the built-in Song
and PhotoAlbum, or the user's TOML file); services, filters, GraphQL types and inputs and the
workflows all read the specs, and none of them mentions a model by name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import BadUserInput, excerpt
from .object_keys import check_key
from .variants import VariantSpec

SCALARS = ("ID", "String", "Int", "Float", "Boolean", "DateTime")
MAX_ID_LENGTH = 128
MAX_STRING_LENGTH = 1024
MAX_LIST_LENGTH = 1000
_BAD_ID_CHARS = re.compile(r"[/\x00-\x1f\x7f]")
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def words(name: str) -> str:
    """``coverArt`` -> ``cover art``; ``PhotoAlbum`` -> ``photo album``."""
    return " ".join(w.lower() for w in _WORDS.findall(name))


def capitalized(name: str) -> str:
    return name[:1].upper() + name[1:]


@dataclass(frozen=True)
class EnumSpec:
    name: str
    values: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class FieldType:
    """A field's GraphQL type: a scalar or a declared enum, maybe a list of them."""

    name: str  # one of SCALARS, or an enum's name
    is_list: bool = False
    required: bool = False  # the field (the list, for a list) is non-null
    items_required: bool = True  # [T!] rather than [T]
    enum: EnumSpec | None = None

    @property
    def sdl(self) -> str:
        item = self.name
        if self.is_list:
            item = f"[{item}{'!' if self.items_required else ''}]"
        return item + ("!" if self.required else "")


@dataclass(frozen=True)
class FieldSpec:
    name: str  # as in GraphQL and in the MongoDB document
    type: FieldType
    description: str = ""

    @property
    def required(self) -> bool:
        return self.type.required

    @property
    def is_list(self) -> bool:
        return self.type.is_list


@dataclass(frozen=True)
class FileSpec:
    """A file field: ``coverArt`` holding one file whose key is in ``coverArtPath``, or
    ``images`` holding many whose keys are in ``imagePaths``."""

    name: str  # the FileRef field: "coverArt", "images"
    key_field: str  # the field storing the key(s): "coverArtPath", "imagePaths"
    many: bool
    singular: str  # one item of a many-file field, in workflow names: "Image"
    types: tuple[str, ...] | None = None  # accepted content types; None: ALLOWED_CONTENT_TYPES
    max_bytes: int | None = None  # largest file; None: MAX_UPLOAD_BYTES
    description: str = ""
    variants: tuple[VariantSpec, ...] = ()  # resized copies the server makes of an image

    def variant(self, name: str) -> VariantSpec | None:
        return next((v for v in self.variants if v.name == name), None)

    @property
    def label(self) -> str:
        """How descriptions name it: "cover art", "images"."""
        return words(self.name)

    @property
    def singular_label(self) -> str:
        return words(self.singular)


RelationKind = Literal["has_many", "has_one", "belongs_to"]
OnDelete = Literal["restrict", "cascade", "nullify"]
MAX_CASCADE_DEPTH = 4  # models below a record a delete may carry away


@dataclass(frozen=True)
class RelationSpec:
    """A relation field: ``Post.comments`` (``has_many`` Comment through ``Comment.postId``),
    ``User.profile`` (``has_one``), ``Comment.post`` (``belongs_to`` Post through its own
    ``postId``). The reference field is always on the child's side."""

    name: str  # the GraphQL field: "comments", "post"
    kind: RelationKind
    source: str  # the model declaring it
    target: str  # the related model
    references: str  # the child's ID field naming its parent: "postId"
    on_delete: OnDelete = "restrict"  # has_many/has_one: what deleting the parent does
    description: str = ""

    @property
    def to_children(self) -> bool:
        return self.kind != "belongs_to"

    @property
    def parent(self) -> str:
        return self.target if self.kind == "belongs_to" else self.source

    @property
    def child(self) -> str:
        return self.source if self.kind == "belongs_to" else self.target


@dataclass(frozen=True)
class ModelSpec:
    name: str  # GraphQL type name: "Song"
    plural: str  # "Songs", for listSongs
    collection: str  # "songs"
    enum_name: str  # ModelName value: "SONG"
    id_argument: str  # the workflows' record-id argument: "songId", "albumId"
    noun: str  # how descriptions name one record: "song", "album"
    fields: tuple[FieldSpec, ...]  # user-writable fields, file key fields included
    files: tuple[FileSpec, ...] = ()
    relations: tuple[RelationSpec, ...] = ()
    description: str = ""

    @property
    def parents(self) -> tuple[RelationSpec, ...]:
        """The ``belongs_to`` relations: the records this model's records name."""
        return tuple(r for r in self.relations if r.kind == "belongs_to")

    @property
    def children(self) -> tuple[RelationSpec, ...]:
        """The ``has_many``/``has_one`` relations: the records that name this model's."""
        return tuple(r for r in self.relations if r.to_children)

    def field(self, name: str) -> FieldSpec:
        for spec in (*self.fields, *SYSTEM_FIELDS):
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def filterable(self) -> tuple[FieldSpec, ...]:
        return (SYSTEM_FIELDS[0], *self.fields, *SYSTEM_FIELDS[1:])

    @property
    def key_fields(self) -> tuple[str, ...]:
        """The fields that name this model's objects."""
        return tuple(f.key_field for f in self.files)

    def file_of(self, key_field: str) -> FileSpec | None:
        return next((f for f in self.files if f.key_field == key_field), None)

    @property
    def field_name(self) -> str:
        """The model in camelCase, as a field holding one of it is named: ``photoAlbum``."""
        return self.name[:1].lower() + self.name[1:]


def _scalar(name: str, *, required: bool = False) -> FieldType:
    return FieldType(name, required=required)


SYSTEM_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("id", _scalar("ID", required=True)),
    FieldSpec(
        "owner", _scalar("String"), description="The `sub` of the user who created the record."
    ),
    FieldSpec(
        "version",
        _scalar("Int", required=True),
        description="1 on create, +1 on every write.",
    ),
    FieldSpec("createdAt", _scalar("DateTime", required=True)),
    FieldSpec("updatedAt", _scalar("DateTime", required=True)),
)


def check_record_id(record_id: str) -> str:
    """Record ids become S3 folder names: 1-128 characters, no '/', no control characters."""
    bad = _BAD_ID_CHARS.search(record_id) or record_id in (".", "..")
    if not 1 <= len(record_id) <= MAX_ID_LENGTH or bad:
        raise BadUserInput(
            f"invalid id {excerpt(record_id, 40)}: ids are 1-{MAX_ID_LENGTH} characters "
            "with no '/' and no control characters, and not '.' or '..'"
        )
    return record_id


def file_paths(file: FileSpec, values: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys one file field of a record (or a stored document) names."""
    value = values.get(file.key_field)
    if not value:
        return ()
    return tuple(value) if isinstance(value, list) else (value,)


def paths_in(model: ModelSpec, values: Mapping[str, Any]) -> tuple[str, ...]:
    """Every S3 key a record's values (or a stored document) name, in all its file fields."""
    return tuple(p for file in model.files for p in file_paths(file, values))


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

    def paths_of(self, file: FileSpec) -> tuple[str, ...]:
        return file_paths(file, self.values)

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


def check_values(model: ModelSpec, values: Mapping[str, Any]) -> None:
    """Refuse values no record should hold: required fields removed, oversized strings and
    lists, values outside an enum, file keys that are no keys."""
    for name, value in values.items():
        spec = model.field(name)
        if value is None:
            if spec.required:
                raise BadUserInput(f"{model.name}.{name} is required and cannot be null")
            continue
        items = value if spec.is_list else [value]
        file = model.file_of(name)
        if file is None and len(items) > MAX_LIST_LENGTH:  # files: Records' own limit
            raise BadUserInput(f"{model.name}.{name} holds at most {MAX_LIST_LENGTH} entries")
        for item in items:
            if isinstance(item, str) and len(item) > MAX_STRING_LENGTH:
                raise BadUserInput(
                    f"{model.name}.{name} values are at most {MAX_STRING_LENGTH} characters"
                )
            enum = spec.type.enum
            if enum is not None and item is not None and item not in enum.values:
                raise BadUserInput(f"{model.name}.{name} must be one of {', '.join(enum.values)}")
            if file is not None:
                check_key(item, what=f"{model.name}.{name}")
