"""Declared models: the TOML file (``GRAPHQL_FILES_MODELS_FILE``) that says which records exist,
their fields, and which fields hold files. Without a file, ``BUILTIN`` applies: Song and
PhotoAlbum, exactly as the schema has always had them.

    [models.Post]
    fields.title = "String!"
    fields.tags = "[String!]"
    fields.status = "PostStatus"
    files.image = { one = "imagePath", types = ["image/*"], max_bytes = 10485760 }
    files.attachments = { many = "attachmentPaths", singular = "Attachment" }
    relations.comments = { has_many = "Comment", references = "postId", on_delete = "cascade" }

    [models.Comment]
    fields.content = "String!"
    fields.postId = "ID"
    relations.post = { belongs_to = "Post", references = "postId" }

    [enums.PostStatus]
    values = ["DRAFT", "PUBLISHED"]

Per model: ``fields.<name>`` is a type (``String``, ``Int``, ``Float``, ``Boolean``, ``ID``,
``DateTime``, a declared enum, or a list of these such as ``[String!]``; ``!`` marks required),
or ``{ type = ..., description = ... }``; ``files.<name>`` holds one file (``one = "<key
field>"``) or many (``many = "<keys field>"``, ``singular``), with its own ``types`` and
``max_bytes`` if wanted; ``relations.<name>`` relates it to another model: ``has_many`` or
``has_one`` on the parent (with ``on_delete``: ``restrict``, the default, ``cascade`` or
``nullify``), ``belongs_to`` on the child, both naming the child's ``ID`` field that
``references`` the parent. Optional: ``id_argument`` (the workflows' record-id argument; default
``<model in camelCase>Id``), ``plural``, ``noun`` (how descriptions name a record) and
``description``. A file replaces the built-in declaration whole. A malformed one raises
``DeclarationError``, whose message names the file, the line and the fault.
"""

from __future__ import annotations

import keyword
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from .models import (
    MAX_CASCADE_DEPTH,
    SCALARS,
    SYSTEM_FIELDS,
    EnumSpec,
    FieldSpec,
    FieldType,
    FileSpec,
    ModelSpec,
    OnDelete,
    RelationKind,
    RelationSpec,
    capitalized,
    words,
)
from .toml_source import TomlSource
from .variants import VariantSpec

BUILTIN_TEXT = """\
# The built-in declaration: the seed's two examples.
[models.Song]
description = "A song with optional cover art stored in S3."
fields.name = "String!"

[models.Song.files.coverArt]
one = "coverArtPath"
variants.thumb = { width = 256, height = 256, fit = "cover", format = "webp" }

[models.PhotoAlbum]
description = "A photo album naming any number of images stored in S3."
noun = "album"
id_argument = "albumId"
fields.name = "String!"

[models.PhotoAlbum.files.images]
many = "imagePaths"
singular = "Image"
variants.thumb = { width = 256, height = 256, fit = "cover", format = "webp" }
"""

TYPE_NAME = re.compile(r"[A-Z][A-Za-z0-9]*")
FIELD_NAME = re.compile(r"[a-z][A-Za-z0-9]*")
ENUM_VALUE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
FIELD_TYPE = re.compile(r"(\[)?\s*([A-Za-z][A-Za-z0-9]*)\s*(!)?\s*(\])?\s*(!)?")
MEDIA_PATTERN = re.compile(r"[a-z0-9!#$&^_.+-]+/(\*|[a-z0-9!#$&^_.+-]+)", re.IGNORECASE)
# Names the schema uses itself; a declared model or enum may not take them.
RESERVED = frozenset(
    {
        *SCALARS,
        "Query",
        "Mutation",
        "Subscription",
        "FileRef",
        "FileProperties",
        "SignedUrl",
        "PresignedUpload",
        "FileListing",
        "RecordChange",
        "ModelName",
        "ChangeKind",
        "ModelSortDirection",
        "JSON",
        "Upload",
    }
)
SYSTEM_NAMES = frozenset(f.name for f in SYSTEM_FIELDS)
# Names the generated GraphQL classes use beside a model's own fields (each model's type keeps
# its ``model`` and ``enums``; its inputs add ``expectedVersion``, ``deleteFiles`` and the
# filters' ``and``/``or``/``not``), and Python's keywords (a field becomes a Python attribute).
# tests/api/test_declared_names.py checks the generated classes against this list.
GENERATED_NAMES = frozenset(
    {"model", "enums", "expectedVersion", "deleteFiles", "and", "or", "not"}
)
RESERVED_FIELDS = SYSTEM_NAMES | GENERATED_NAMES | frozenset(keyword.kwlist)
# The fields of the workflows' inputs, beside the record-id argument a model names.
WORKFLOW_INPUT_FIELDS = frozenset(
    {
        "file",
        "files",
        "uploadedPath",
        "uploadedPaths",
        "path",
        "paths",
        "deletePrevious",
        "deleteFile",
        "deleteFiles",
        "expectedVersion",
    }
)
MODEL_KEYS = frozenset(
    {"fields", "files", "relations", "id_argument", "plural", "noun", "description"}
)
FILE_KEYS = frozenset({"one", "many", "singular", "types", "max_bytes", "description", "variants"})
RELATION_KINDS: tuple[RelationKind, ...] = ("has_many", "has_one", "belongs_to")
RELATION_KEYS = frozenset({*RELATION_KINDS, "references", "on_delete", "description"})
ON_DELETE: tuple[OnDelete, ...] = ("restrict", "cascade", "nullify")
RESERVED_COLLECTIONS = frozenset({"claims", "record_claims", "api_keys"})


class DeclarationError(ValueError):
    """A declaration that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Declaration:
    models: tuple[ModelSpec, ...]
    enums: tuple[EnumSpec, ...] = ()

    @cached_property
    def by_name(self) -> Mapping[str, ModelSpec]:
        return {m.name: m for m in self.models}

    @cached_property
    def by_enum(self) -> Mapping[str, ModelSpec]:
        """By ``ModelName`` value (``SONG``), as change events name their model."""
        return {m.enum_name: m for m in self.models}

    def model(self, name: str) -> ModelSpec:
        return self.by_name[name]

    @property
    def largest_file(self) -> int | None:
        """The largest ``max_bytes`` any file field declares (None: none declares one)."""
        sizes = [f.max_bytes for m in self.models for f in m.files if f.max_bytes is not None]
        return max(sizes, default=None)


def plural_of(name: str) -> str:
    """English plurals as Amplify makes them for the common cases: Song -> Songs,
    Category -> Categories, Box -> Boxes."""
    if re.search(r"[^aeiou]y$", name):
        return name[:-1] + "ies"
    if re.search(r"(s|x|z|ch|sh)$", name):
        return name + "es"
    return name + "s"


def snake(name: str) -> str:
    return "_".join(words(name).split())


def load_declaration(path: Path | None) -> Declaration:
    """The declaration in ``path``; the built-in one without a path."""
    if path is None:
        return BUILTIN
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeclarationError(f"cannot read {path}: {exc.strerror}") from exc
    return parse_declaration(text, str(path))


def parse_declaration(text: str, name: str) -> Declaration:
    source = TomlSource(name, text)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DeclarationError(f"{name}: {exc}") from exc
    return _Parser(source).declaration(document)


class _Parser:
    def __init__(self, source: TomlSource) -> None:
        self.source = source

    def fail(self, message: str, *path: str) -> DeclarationError:
        return DeclarationError(self.source.error(message, *path))

    def declaration(self, document: dict[str, Any]) -> Declaration:
        for key in document:
            if key not in ("models", "enums"):
                raise self.fail(
                    f"unknown section [{key}] (expected [models.<Name>] or [enums.<Name>])", key
                )
        enums = self.enums(document.get("enums", {}))
        tables = document.get("models", {})
        if not isinstance(tables, dict) or not tables:
            raise self.fail("declare at least one model: [models.<Name>]", "models")
        models = tuple(self.model(name, table, enums) for name, table in tables.items())
        self.distinct(models, enums)
        self.related(models)
        return Declaration(models=models, enums=tuple(enums.values()))

    def enums(self, tables: Any) -> dict[str, EnumSpec]:
        if not isinstance(tables, dict):
            raise self.fail("[enums] must hold tables: [enums.<Name>]", "enums")
        enums: dict[str, EnumSpec] = {}
        for name, table in tables.items():
            where = ("enums", name)
            self.type_name(name, "an enum", *where)
            if not isinstance(table, dict) or set(table) - {"values", "description"}:
                raise self.fail(f"[enums.{name}] takes values = [...] and a description", *where)
            values = table.get("values")
            if (
                not isinstance(values, list)
                or not values
                or not all(isinstance(v, str) and ENUM_VALUE.fullmatch(v) for v in values)
                or len(set(values)) != len(values)
                or {"true", "false", "null"} & set(values)
            ):
                raise self.fail(
                    f"{name}.values must be distinct names such as DRAFT, PUBLISHED",
                    *where,
                    "values",
                )
            enums[name] = EnumSpec(name, tuple(values), str(table.get("description", "")))
        return enums

    def type_name(self, name: str, what: str, *where: str) -> None:
        if not TYPE_NAME.fullmatch(name):
            raise self.fail(f"{name!r} is not a name for {what}: use PascalCase letters", *where)
        if name in RESERVED:
            raise self.fail(f"{name!r} is a name the schema uses itself", *where)

    def model(self, name: str, table: Any, enums: Mapping[str, EnumSpec]) -> ModelSpec:
        where = ("models", name)
        self.type_name(name, "a model", *where)
        if name in enums:
            raise self.fail(f"{name!r} is declared as an enum too", *where)
        if not isinstance(table, dict):
            raise self.fail(f"[models.{name}] must be a table", *where)
        for key in table:
            if key not in MODEL_KEYS:
                raise self.fail(
                    f"unknown key {key!r} (expected {', '.join(sorted(MODEL_KEYS))})", *where, key
                )
        noun = self.text(table, "noun", where) or words(name)
        fields = self.fields(name, table.get("fields", {}), enums)
        files = self.files(name, table.get("files", {}))
        relations = self.relations(name, table.get("relations", {}))
        taken = {f.name for f in fields} | SYSTEM_NAMES
        key_fields: list[FieldSpec] = []
        for file in files:
            for field_name in (file.name, file.key_field):
                if field_name in taken:
                    raise self.fail(
                        f"{field_name!r} is already a field", *where, "files", file.name
                    )
                taken.add(field_name)
            key_type = FieldType("String", is_list=file.many)
            key_fields.append(FieldSpec(file.key_field, key_type, _key_description(file, noun)))
        for relation in relations:
            if relation.name in taken:
                raise self.fail(
                    f"{relation.name!r} is already a field", *where, "relations", relation.name
                )
            taken.add(relation.name)
        plural = self.text(table, "plural", where) or plural_of(name)
        if not TYPE_NAME.fullmatch(plural) or plural == name:
            raise self.fail(
                f"plural {plural!r} must be a PascalCase name other than {name!r}", *where, "plural"
            )
        id_argument = self.text(table, "id_argument", where) or f"{name[:1].lower()}{name[1:]}Id"
        if not FIELD_NAME.fullmatch(id_argument):
            raise self.fail(f"id_argument {id_argument!r} must be camelCase", *where, "id_argument")
        if id_argument in WORKFLOW_INPUT_FIELDS:
            raise self.fail(
                f"id_argument {id_argument!r} is a field the workflows' inputs have already "
                f"({', '.join(sorted(WORKFLOW_INPUT_FIELDS))})",
                *where,
                "id_argument",
            )
        if keyword.iskeyword(id_argument):
            raise self.fail(
                f"id_argument {id_argument!r} is a Python keyword", *where, "id_argument"
            )
        return ModelSpec(
            name=name,
            plural=plural,
            collection=snake(plural),
            enum_name=snake(name).upper(),
            id_argument=id_argument,
            noun=noun,
            fields=(*fields, *key_fields),
            files=files,
            relations=relations,
            description=self.text(table, "description", where) or "",
        )

    def text(self, table: dict[str, Any], key: str, where: tuple[str, ...]) -> str | None:
        value = table.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise self.fail(f"{key} must be a non-empty string", *where, key)
        return value

    def fields(
        self, model: str, table: Any, enums: Mapping[str, EnumSpec]
    ) -> tuple[FieldSpec, ...]:
        where = ("models", model, "fields")
        if not isinstance(table, dict):
            raise self.fail('fields must be a table: fields.<name> = "String!"', *where)
        fields = []
        for name, value in table.items():
            here = (*where, name)
            if not FIELD_NAME.fullmatch(name):
                raise self.fail(f"field {name!r} must be camelCase (a letter first)", *here)
            self.field_name_free(name, here)
            description = ""
            if isinstance(value, dict):
                if set(value) - {"type", "description"} or "type" not in value:
                    raise self.fail(
                        f'{name}: write {{ type = "String", description = "..." }}', *here
                    )
                description = str(value.get("description", ""))
                value = value["type"]
            if not isinstance(value, str):
                raise self.fail(f'{name}: a type such as "String!" or "[String!]"', *here)
            fields.append(FieldSpec(name, self.field_type(value, enums, here), description))
        return tuple(fields)

    def field_name_free(self, name: str, here: tuple[str, ...]) -> None:
        if name in SYSTEM_NAMES:
            raise self.fail(f"{name!r} is kept by the server itself", *here)
        if name in RESERVED_FIELDS:
            raise self.fail(
                f"{name!r} is a name the generated API uses itself (reserved: "
                f"{', '.join(sorted(GENERATED_NAMES))} and Python's keywords)",
                *here,
            )

    def field_type(
        self, text: str, enums: Mapping[str, EnumSpec], here: tuple[str, ...]
    ) -> FieldType:
        match = FIELD_TYPE.fullmatch(text.strip())
        if match is None or bool(match.group(1)) != bool(match.group(4)):
            raise self.fail(f"{text!r} is not a type such as String, Int!, [String!]", *here)
        opening, name, bang, _, outer_bang = match.groups()
        if name not in SCALARS and name not in enums:
            known = ", ".join((*SCALARS, *enums))
            raise self.fail(f"unknown type {name!r} (expected one of {known})", *here)
        if not opening and outer_bang:
            raise self.fail(f"{text!r} is not a type such as String, Int!, [String!]", *here)
        return FieldType(
            name,
            is_list=bool(opening),
            required=bool(outer_bang if opening else bang),
            items_required=bool(bang) if opening else True,
            enum=enums.get(name),
        )

    def files(self, model: str, table: Any) -> tuple[FileSpec, ...]:
        where = ("models", model, "files")
        if not isinstance(table, dict):
            raise self.fail('files must be a table: files.<name> = { one = "<key field>" }', *where)
        files = []
        for name, value in table.items():
            here = (*where, name)
            if not FIELD_NAME.fullmatch(name):
                raise self.fail(f"file field {name!r} must be camelCase", *here)
            self.field_name_free(name, here)
            if not isinstance(value, dict) or set(value) - FILE_KEYS:
                raise self.fail(
                    f'{name}: write {{ one = "<key field>" }} or {{ many = "<keys field>", '
                    f'singular = "<Name>" }} (keys: {", ".join(sorted(FILE_KEYS))})',
                    *here,
                )
            if ("one" in value) == ("many" in value):
                raise self.fail(f"{name}: give exactly one of one and many", *here)
            many = "many" in value
            key_field = value["many" if many else "one"]
            if not isinstance(key_field, str) or not FIELD_NAME.fullmatch(key_field):
                raise self.fail(f"{name}: the key field must be a camelCase name", *here)
            self.field_name_free(key_field, here)
            singular = value.get("singular", capitalized(name) if not many else None)
            if many and singular is None:
                singular = capitalized(name[:-1] if name.endswith("s") else name)
            if not isinstance(singular, str) or not TYPE_NAME.fullmatch(singular):
                raise self.fail(f"{name}: singular must be a PascalCase name", *here, "singular")
            files.append(
                FileSpec(
                    name=name,
                    key_field=key_field,
                    many=many,
                    singular=singular,
                    types=self.types(value.get("types"), (*here, "types")),
                    max_bytes=self.max_bytes(value.get("max_bytes"), (*here, "max_bytes")),
                    description=str(value.get("description", "")),
                    variants=self.variants(value.get("variants"), (*here, "variants")),
                )
            )
        return tuple(files)

    def variants(self, value: Any, here: tuple[str, ...]) -> tuple[VariantSpec, ...]:
        """``variants = { thumb = { width = 256, height = 256, fit = "cover" } }``."""
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise self.fail(
                "variants must be a table: variants = { thumb = { width = 256, height = 256 } }",
                *here,
            )
        found = []
        for name, table in value.items():
            if not isinstance(table, dict):
                raise self.fail(
                    f"variant {name!r} must be a table such as {{ width = 256 }}", *here, name
                )
            try:
                found.append(VariantSpec.parse(name, table))
            except ValueError as exc:
                raise self.fail(str(exc), *here, name) from None
        return tuple(found)

    def relations(self, model: str, table: Any) -> tuple[RelationSpec, ...]:
        where = ("models", model, "relations")
        example = '{ has_many = "Comment", references = "postId", on_delete = "cascade" }'
        if not isinstance(table, dict):
            raise self.fail(f"relations must be a table: relations.<name> = {example}", *where)
        relations = []
        for name, value in table.items():
            here = (*where, name)
            if not FIELD_NAME.fullmatch(name):
                raise self.fail(f"relation {name!r} must be camelCase", *here)
            self.field_name_free(name, here)
            kinds = [k for k in RELATION_KINDS if isinstance(value, dict) and k in value]
            if not isinstance(value, dict) or set(value) - RELATION_KEYS or len(kinds) != 1:
                raise self.fail(
                    f"{name}: write {example}: exactly one of has_many, has_one and belongs_to "
                    f"(keys: {', '.join(sorted(RELATION_KEYS))})",
                    *here,
                )
            (kind,) = kinds
            target, references = value[kind], value.get("references")
            if not isinstance(target, str) or not TYPE_NAME.fullmatch(target):
                raise self.fail(f'{name}: {kind} must name a model, e.g. "Comment"', *here)
            if not isinstance(references, str) or not FIELD_NAME.fullmatch(references):
                raise self.fail(
                    f'{name}: references must name the child\'s ID field, e.g. "postId"',
                    *here,
                )
            on_delete = value.get("on_delete", "restrict")
            if kind == "belongs_to" and "on_delete" in value:
                raise self.fail(
                    f"{name}: on_delete belongs on the parent's has_many or has_one", *here
                )
            if on_delete not in ON_DELETE:
                raise self.fail(
                    f"{name}: on_delete must be one of {', '.join(ON_DELETE)}", *here, "on_delete"
                )
            relations.append(
                RelationSpec(
                    name=name,
                    kind=kind,
                    source=model,
                    target=target,
                    references=references,
                    on_delete=on_delete,
                    description=str(value.get("description", "")),
                )
            )
        return tuple(relations)

    def related(self, models: tuple[ModelSpec, ...]) -> None:
        """Relations between declared models: each names a declared model, its reference is an
        ``ID`` field of the child, each side has its counterpart, and deletes cascade no deeper
        than ``MAX_CASCADE_DEPTH`` (and never in a circle)."""
        by_name = {m.name: m for m in models}
        for model in models:
            sides: dict[tuple[str, ...], str] = {}
            for relation in model.relations:
                here = ("models", model.name, "relations", relation.name)
                what = f"{model.name}.{relation.name}"
                side = (
                    (relation.references,)
                    if relation.kind == "belongs_to"
                    else (relation.target, relation.references)
                )
                if side in sides:
                    raise self.fail(
                        f"{what} and {model.name}.{sides[side]} are the same relation "
                        f"(both through {relation.references})",
                        *here,
                    )
                sides[side] = relation.name
                if relation.target not in by_name:
                    raise self.fail(
                        f"{what} names {relation.target!r}, which is not a declared model "
                        f"(declared: {', '.join(by_name)})",
                        *here,
                    )
                child = by_name[relation.child]
                ref = next((f for f in child.fields if f.name == relation.references), None)
                if ref is None or ref.type.name != "ID" or ref.is_list or child.file_of(ref.name):
                    raise self.fail(
                        f"{what} references {child.name}.{relation.references}, which must be "
                        f'an ID field of {child.name} (fields.{relation.references} = "ID")',
                        *here,
                    )
                if relation.on_delete == "nullify" and ref.required:
                    raise self.fail(
                        f"{what} cannot nullify {child.name}.{ref.name}: it is required (ID!)",
                        *here,
                    )
                counterpart = self.counterpart(relation, by_name[relation.target])
                if counterpart is None:
                    if relation.kind == "belongs_to":
                        wanted = (
                            f'a has_many or has_one = "{model.name}" with references = '
                            f'"{relation.references}" on {relation.target}'
                        )
                    else:
                        wanted = (
                            f'relations.<name> = {{ belongs_to = "{model.name}", references = '
                            f'"{relation.references}" }} on {relation.target}'
                        )
                    raise self.fail(f"{what} has no counterpart: declare {wanted}", *here)
        self.cascades(models)

    @staticmethod
    def counterpart(relation: RelationSpec, target: ModelSpec) -> RelationSpec | None:
        """The other side: a has_many/has_one's belongs_to on the child, and back."""
        return next(
            (
                other
                for other in target.relations
                if other.target == relation.source
                and other.references == relation.references
                and (other.kind == "belongs_to") != (relation.kind == "belongs_to")
            ),
            None,
        )

    def cascades(self, models: tuple[ModelSpec, ...]) -> None:
        """A delete carries its children away at most ``MAX_CASCADE_DEPTH`` models deep: a
        longer chain of cascades, or a circle of them, is refused where it goes too far."""
        by_name = {m.name: m for m in models}

        def walk(model: ModelSpec, path: tuple[str, ...]) -> None:
            for relation in model.children:
                if relation.on_delete != "cascade":
                    continue
                here = ("models", model.name, "relations", relation.name)
                chain = " -> ".join((*path, relation.target))
                if relation.target in path:
                    raise self.fail(f"deletes would cascade in a circle: {chain}", *here)
                if len(path) > MAX_CASCADE_DEPTH:
                    raise self.fail(
                        f"deletes would cascade {len(path)} models deep ({chain}); at most "
                        f"{MAX_CASCADE_DEPTH} are allowed",
                        *here,
                    )
                walk(by_name[relation.target], (*path, relation.target))

        for model in models:
            walk(model, (model.name,))

    def types(self, value: Any, here: tuple[str, ...]) -> tuple[str, ...] | None:
        if value is None:
            return None
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(v, str) and MEDIA_PATTERN.fullmatch(v) for v in value)
        ):
            raise self.fail('types must be media types or patterns, e.g. ["image/*"]', *here)
        return tuple(v.lower() for v in value)

    def max_bytes(self, value: Any, here: tuple[str, ...]) -> int | None:
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise self.fail("max_bytes must be a whole number of bytes, at least 1", *here)
        return value

    def distinct(self, models: tuple[ModelSpec, ...], enums: Mapping[str, EnumSpec]) -> None:
        """Generated names must not collide: two models' plurals, collections, ModelName
        values, or a model's plural with another's name."""
        seen: dict[str, str] = {}
        for model in models:
            for kind, value in (
                ("name", model.name),
                ("name", model.plural),
                ("collection", model.collection),
                ("ModelName", model.enum_name),
                ("field", model.field_name),
            ):
                key = f"{kind}:{value}"
                if key in seen and seen[key] != model.name:
                    raise self.fail(
                        f"{model.name} and {seen[key]} would both generate the {kind} {value!r}",
                        "models",
                        model.name,
                    )
                seen[key] = model.name
            if model.collection in RESERVED_COLLECTIONS:
                raise self.fail(
                    f"{model.name}'s collection {model.collection!r} is the server's own",
                    "models",
                    model.name,
                )


def _key_description(file: FileSpec, noun: str) -> str:
    if file.many:
        return f"S3 keys of the {noun}'s {file.label}."
    return f"S3 key of the {file.label}. Null removes the association."


BUILTIN = parse_declaration(BUILTIN_TEXT, "built-in models")
SONG = BUILTIN.model("Song")
PHOTO_ALBUM = BUILTIN.model("PhotoAlbum")
