"""Image variants: made when a workflow stores an original, gone when the original goes.

The protocol, in the order that never hands out a URL that fails (``attachments`` runs it):

1. The workflow stores the original under its claim (uploaded from the request, or copied from
   a presigned upload and verified), as for any file.
2. If the file field declares variants and the original's name says it is an image
   (``domain.variants.image_format_of``: the key alone decides, so a variant's URL is signed
   without asking S3), ``make`` reads the original back into a spool (in memory while small,
   then on disk), makes each variant off the event loop (at most ``IMAGE_WORKERS`` at once,
   across the server) and stores it beside the original (``domain.variants.key_of``). An
   original whose name says image but whose bytes are none the server can resize, or that
   declares more than ``MAX_IMAGE_PIXELS`` (checked before a pixel is decoded), is refused with
   ``BAD_USER_INPUT``, and the workflow's compensation deletes what it stored.
3. Only then does the record name the original: from the answer on, every declared variant's
   URL opens.
4. An original is deleted with its variants: ``Storage.delete_if_unnamed`` (the one way an
   object goes) deletes ``keys_of`` each doomed original in the same call. A variant counts
   as named exactly when its original is (``Records.named``), so nothing deletes the variant of
   a named original, and the sweeper removes what a crash left (variants whose original is
   gone, or no longer declared) after its grace period.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from tempfile import SpooledTemporaryFile
from typing import IO, Any

from ..adapters import images
from ..adapters.s3 import Files
from ..domain.models import ModelSpec
from ..domain.object_keys import folder_model
from ..domain.variants import (
    VariantSpec,
    content_type_of,
    image_format_of,
    is_variant_key,
    key_of,
)
from ..errors import BadUserInput, excerpt
from ..settings import Settings

log = logging.getLogger(__name__)

SPOOL_BYTES = 4 * 1024 * 1024  # an original being resized stays in memory up to this


class Variants:
    def __init__(
        self, *, files: Files, settings: Settings, models: Sequence[ModelSpec] = ()
    ) -> None:
        self._files = files
        self._prefix = settings.attachment_prefix
        self._max_pixels = settings.max_image_pixels
        self._workers = asyncio.Semaphore(settings.image_workers)
        # every variant a model declares, by name: deleting a file of its folder deletes them
        self._declared: dict[str, tuple[VariantSpec, ...]] = {
            model.name: tuple({v.name: v for f in model.files for v in f.variants}.values())
            for model in models
        }

    def keys_of(self, path: str) -> list[str]:
        """Where the variants of ``path`` live, for every variant its model's folder declares
        (none for a key that is no image, or outside a record's folder)."""
        if is_variant_key(path) or image_format_of(path) is None:
            return []
        return [key_of(spec, path) for spec in self._model_variants(path)]

    def path_of(self, path: str, name: str, declared: Sequence[VariantSpec] | None = None) -> str:
        """The key of variant ``name`` of ``path``; ``declared``: the variants of the file
        field naming it (else those its folder's model declares). ``BadUserInput`` for a name
        not declared, or a file that is no image (it has no variants)."""
        if declared is None:
            declared = self._model_variants(path)
        spec = next((v for v in declared if v.name == name), None)
        if spec is None:
            known = ", ".join(v.name for v in declared) or "none"
            raise BadUserInput(
                f"no variant {excerpt(name)} is declared for {path} (declared: {known})",
                path=path,
            )
        if is_variant_key(path) or image_format_of(path) is None:
            raise BadUserInput(f"{path} is no image the server resizes: it has no variants")
        return key_of(spec, path)

    def _model_variants(self, path: str) -> tuple[VariantSpec, ...]:
        type_name = folder_model(self._prefix, path)
        return () if type_name is None else self._declared.get(type_name, ())

    async def make(
        self,
        path: str,
        specs: Sequence[VariantSpec],
        *,
        max_bytes: int,
        source: IO[bytes] | None = None,
    ) -> list[str]:
        """Make and store ``specs`` of the original at ``path`` (step 2 above); the keys made.
        ``source``: the original's bytes at hand (an upload, spooled); else they are read back
        from S3. Nothing for a file whose name says it is no image."""
        original = image_format_of(path)
        if not specs or original is None:
            return []
        made: list[str] = []
        with SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            if source is None:
                await self._files.read_into(path, spool, max_bytes=max_bytes)
            for spec in specs:
                fixed = replace(spec, format=spec.output_format(original))
                read = spool if source is None else source
                async with self._workers:
                    read.seek(0)
                    data = await asyncio.to_thread(
                        images.make_variant, read, fixed, max_pixels=self._max_pixels
                    )
                key = key_of(spec, path)
                assert fixed.format is not None
                await self._files.upload(
                    key,
                    _Bytes(data),
                    content_type=content_type_of(fixed.format),
                    max_bytes=len(data),
                )
                made.append(key)
        log.info("made %s of %s", ", ".join(s.name for s in specs), path)
        return made


class _Bytes:
    """Bytes made here, as the ``Readable`` an upload reads."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    async def read(self, size: int = -1) -> bytes:
        return self._data.read(size)


def reread(spool: IO[bytes]) -> IO[bytes] | None:
    """A reader of ``spool``'s bytes with a position of its own (``os.pread``), so a thread
    reads it while the upload goes on reading the spool itself; None for a spool with no file
    behind it. A spooled temporary file still in memory is moved to its file first
    (``fileno``), keeping its position."""
    try:
        fd = spool.fileno()
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
        return None
    return io.BufferedReader(_Positional(fd))


class _Positional(io.RawIOBase):
    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = os.pread(self._fd, len(buffer), self._at)
        buffer[: len(data)] = data
        self._at += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._at = offset
        elif whence == io.SEEK_CUR:
            self._at += offset
        else:
            self._at = os.fstat(self._fd).st_size + offset
        return self._at

    def tell(self) -> int:
        return self._at
