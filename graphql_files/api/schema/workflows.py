"""The record-file workflows as mutations, generated per file field: one call each, returning
the record after it.

A one-file field ``coverArt`` of ``Song`` gives ``attachSongCoverArt`` and ``detachSongCoverArt``;
a many-file field ``images`` (singular ``Image``) of ``PhotoAlbum`` gives
``addPhotoAlbumImages``, ``replacePhotoAlbumImage`` and ``removePhotoAlbumImages``. Their inputs
name the record by the model's ``id_argument`` (``songId``, ``albumId``).

No ``from __future__ import annotations``: generated inputs carry evaluated annotations.
"""

from typing import Any, Optional

import strawberry
from strawberry.file_uploads import Upload

from ...domain.models import FileSpec, capitalized
from ...services.attachments import many_sources, one_source
from ..engine.executor import plain
from .bindings import Binding, typed
from .context import Info
from .inputs import input_type
from .storage_ops import optional_upload, optional_uploads

_EXPECTED = "Act only if the record is still at this version (else CONFLICT, nothing uploaded)."


def workflow_fields(b: Binding) -> dict[str, Any]:
    """Every workflow mutation of one model, by field name, in the declaration's order."""
    fields: dict[str, Any] = {}
    for file in b.model.files:
        if file.many:
            fields.update(_many(b, file))
        else:
            fields.update(_one(b, file))
    return fields


def _record_id(b: Binding, input: Any) -> str:
    return str(getattr(input, b.model.id_argument))


def _one(b: Binding, file: FileSpec) -> dict[str, Any]:
    model, noun = b.model, b.model.noun
    name = f"{model.name}{capitalized(file.name)}"
    attach_input = input_type(
        f"Attach{name}Input",
        {
            model.id_argument: strawberry.ID,
            "file": Optional[Upload],
            "uploadedPath": Optional[str],
            "deletePrevious": bool,
            "expectedVersion": Optional[int],
        },
        f"New {file.label}: a `file` sent with this request, or the `uploadedPath` of a "
        f"presigned upload inside the {noun}'s folder.",
        docs={
            "deletePrevious": f"Delete the replaced file (only if it lies in the {noun}'s "
            f"folder and no record names it) after the {noun} stops naming it.",
            "expectedVersion": _EXPECTED,
        },
        defaults={
            "file": None,
            "uploadedPath": None,
            "deletePrevious": True,
            "expectedVersion": None,
        },
    )
    detach_input = input_type(
        f"Detach{name}Input",
        {model.id_argument: strawberry.ID, "deleteFile": bool, "expectedVersion": Optional[int]},
        "",
        docs={
            "deleteFile": f"Also delete the file, after the {noun} stops naming it.",
            "expectedVersion": _EXPECTED,
        },
        defaults={"deleteFile": False, "expectedVersion": None},
    )

    @plain(takes_source=False, converts=True)
    async def attach(info: Info, input: Any) -> Any:
        record = await info.context.services.attachments.attach(
            info.context.access,
            model,
            file,
            _record_id(b, input),
            one_source(optional_upload(input.file), input.uploadedPath),
            delete_previous=input.deletePrevious,
            expected_version=input.expectedVersion,
        )
        return b.object_type.from_record(record)

    @plain(takes_source=False, converts=True)
    async def detach(info: Info, input: Any) -> Any:
        record = await info.context.services.attachments.detach(
            info.context.access,
            model,
            file,
            _record_id(b, input),
            delete_file=input.deleteFile,
            expected_version=input.expectedVersion,
        )
        return b.object_type.from_record(record)

    returns = b.object_type | None
    return {
        f"attach{name}": strawberry.mutation(
            resolver=typed(attach, input=attach_input, returns=returns),
            description=f"Upload (or adopt) new {file.label}, point the {noun} at it, then "
            "delete the previous file.",
        ),
        f"detach{name}": strawberry.mutation(
            resolver=typed(detach, input=detach_input, returns=returns),
            description="Remove the association (and, if asked, then the file).",
        ),
    }


def _many(b: Binding, file: FileSpec) -> dict[str, Any]:
    model, noun = b.model, b.model.noun
    plural, singular = f"{model.name}{capitalized(file.name)}", f"{model.name}{file.singular}"
    add_input = input_type(
        f"Add{plural}Input",
        {
            model.id_argument: strawberry.ID,
            "files": Optional[list[Upload]],
            "uploadedPaths": Optional[list[str]],
            "expectedVersion": Optional[int],
        },
        f"New {file.label}: `files` sent with this request, or the `uploadedPaths` of presigned "
        f"uploads inside the {noun}'s folder.",
        docs={"expectedVersion": _EXPECTED},
        defaults={"files": None, "uploadedPaths": None, "expectedVersion": None},
    )
    replace_input = input_type(
        f"Replace{singular}Input",
        {
            model.id_argument: strawberry.ID,
            "path": str,
            "file": Optional[Upload],
            "uploadedPath": Optional[str],
            "deletePrevious": bool,
            "expectedVersion": Optional[int],
        },
        "",
        docs={
            "path": f"The {file.singular_label} to replace, as the {noun} names it.",
            "expectedVersion": _EXPECTED,
        },
        defaults={
            "file": None,
            "uploadedPath": None,
            "deletePrevious": True,
            "expectedVersion": None,
        },
    )
    remove_input = input_type(
        f"Remove{plural}Input",
        {
            model.id_argument: strawberry.ID,
            "paths": list[str],
            "deleteFiles": bool,
            "expectedVersion": Optional[int],
        },
        "",
        docs={
            "deleteFiles": f"Also delete the files, after the {noun} stops naming them.",
            "expectedVersion": _EXPECTED,
        },
        defaults={"deleteFiles": False, "expectedVersion": None},
    )

    @plain(takes_source=False, converts=True)
    async def add(info: Info, input: Any) -> Any:
        record = await info.context.services.attachments.add(
            info.context.access,
            model,
            file,
            _record_id(b, input),
            many_sources(optional_uploads(input.files), input.uploadedPaths),
            expected_version=input.expectedVersion,
        )
        return b.object_type.from_record(record)

    @plain(takes_source=False, converts=True)
    async def replace(info: Info, input: Any) -> Any:
        record = await info.context.services.attachments.replace(
            info.context.access,
            model,
            file,
            _record_id(b, input),
            input.path,
            one_source(optional_upload(input.file), input.uploadedPath),
            delete_previous=input.deletePrevious,
            expected_version=input.expectedVersion,
        )
        return b.object_type.from_record(record)

    @plain(takes_source=False, converts=True)
    async def remove(info: Info, input: Any) -> Any:
        record = await info.context.services.attachments.remove(
            info.context.access,
            model,
            file,
            _record_id(b, input),
            input.paths,
            delete_files=input.deleteFiles,
            expected_version=input.expectedVersion,
        )
        return b.object_type.from_record(record)

    returns = b.object_type | None
    return {
        f"add{plural}": strawberry.mutation(
            resolver=typed(add, input=add_input, returns=returns),
            description=f"Upload (or adopt) {file.label} and add them to the {noun} in one "
            f"atomic update: concurrent calls never lose each other's {file.label}.",
        ),
        f"replace{singular}": strawberry.mutation(
            resolver=typed(replace, input=replace_input, returns=returns),
            description=f"Swap one {file.singular_label} for a new upload, then delete the old "
            "one.",
        ),
        f"remove{plural}": strawberry.mutation(
            resolver=typed(remove, input=remove_input, returns=returns),
            description=f"Remove {file.label} from the {noun} (and, if asked, then the files).",
        ),
    }
