"""The record-file workflows as mutations: one call each, returning the record after it."""

from __future__ import annotations

import strawberry
from strawberry.file_uploads import Upload

from ..domain.models import PHOTO_ALBUM, SONG
from ..services.attachments import many_sources, one_source
from .context import Info
from .storage_ops import optional_upload, optional_uploads
from .types import PhotoAlbum, Song

_EXPECTED = "Act only if the record is still at this version (else CONFLICT, nothing uploaded)."


@strawberry.input(
    description="New cover art: a `file` sent with this request, or the "
    "`uploadedPath` of a presigned upload inside the song's folder."
)
class AttachSongCoverArtInput:
    songId: strawberry.ID
    file: Upload | None = None
    uploadedPath: str | None = None
    deletePrevious: bool = strawberry.field(
        default=True,
        description="Delete the replaced file (only if it lies in the song's "
        "folder and no record names it) after the song stops naming it.",
    )
    expectedVersion: int | None = strawberry.field(default=None, description=_EXPECTED)


@strawberry.input
class DetachSongCoverArtInput:
    songId: strawberry.ID
    deleteFile: bool = strawberry.field(
        default=False, description="Also delete the file, after the song stops naming it."
    )
    expectedVersion: int | None = strawberry.field(default=None, description=_EXPECTED)


@strawberry.input(
    description="New images: `files` sent with this request, or the "
    "`uploadedPaths` of presigned uploads inside the album's folder."
)
class AddPhotoAlbumImagesInput:
    albumId: strawberry.ID
    files: list[Upload] | None = None
    uploadedPaths: list[str] | None = None
    expectedVersion: int | None = strawberry.field(default=None, description=_EXPECTED)


@strawberry.input
class ReplacePhotoAlbumImageInput:
    albumId: strawberry.ID
    path: str = strawberry.field(description="The image to replace, as the album names it.")
    file: Upload | None = None
    uploadedPath: str | None = None
    deletePrevious: bool = True
    expectedVersion: int | None = strawberry.field(default=None, description=_EXPECTED)


@strawberry.input
class RemovePhotoAlbumImagesInput:
    albumId: strawberry.ID
    paths: list[str]
    deleteFiles: bool = strawberry.field(
        default=False, description="Also delete the files, after the album stops naming them."
    )
    expectedVersion: int | None = strawberry.field(default=None, description=_EXPECTED)


@strawberry.type
class WorkflowMutation:
    @strawberry.mutation(
        description="Upload (or adopt) new cover art, point the song at it, "
        "then delete the previous file."
    )
    async def attachSongCoverArt(self, info: Info, input: AttachSongCoverArtInput) -> Song | None:
        record = await info.context.services.attachments.attach(
            info.context.access,
            SONG,
            str(input.songId),
            one_source(optional_upload(input.file), input.uploadedPath),
            delete_previous=input.deletePrevious,
            expected_version=input.expectedVersion,
        )
        return Song.from_record(record)

    @strawberry.mutation(description="Remove the association (and, if asked, then the file).")
    async def detachSongCoverArt(self, info: Info, input: DetachSongCoverArtInput) -> Song | None:
        record = await info.context.services.attachments.detach(
            info.context.access,
            SONG,
            str(input.songId),
            delete_file=input.deleteFile,
            expected_version=input.expectedVersion,
        )
        return Song.from_record(record)

    @strawberry.mutation(
        description="Upload (or adopt) images and add them to the album in one "
        "atomic update: concurrent calls never lose each other's images."
    )
    async def addPhotoAlbumImages(
        self, info: Info, input: AddPhotoAlbumImagesInput
    ) -> PhotoAlbum | None:
        record = await info.context.services.attachments.add(
            info.context.access,
            PHOTO_ALBUM,
            str(input.albumId),
            many_sources(optional_uploads(input.files), input.uploadedPaths),
            expected_version=input.expectedVersion,
        )
        return PhotoAlbum.from_record(record)

    @strawberry.mutation(description="Swap one image for a new upload, then delete the old one.")
    async def replacePhotoAlbumImage(
        self, info: Info, input: ReplacePhotoAlbumImageInput
    ) -> PhotoAlbum | None:
        record = await info.context.services.attachments.replace(
            info.context.access,
            PHOTO_ALBUM,
            str(input.albumId),
            input.path,
            one_source(optional_upload(input.file), input.uploadedPath),
            delete_previous=input.deletePrevious,
            expected_version=input.expectedVersion,
        )
        return PhotoAlbum.from_record(record)

    @strawberry.mutation(
        description="Remove images from the album (and, if asked, then the files)."
    )
    async def removePhotoAlbumImages(
        self, info: Info, input: RemovePhotoAlbumImagesInput
    ) -> PhotoAlbum | None:
        record = await info.context.services.attachments.remove(
            info.context.access,
            PHOTO_ALBUM,
            str(input.albumId),
            input.paths,
            delete_files=input.deleteFiles,
            expected_version=input.expectedVersion,
        )
        return PhotoAlbum.from_record(record)
