"""GraphQL multipart requests with limits enforced while the body streams in.

Starlette's parser spools every file to a temporary file before any resolver runs. This parser
counts each file part as it arrives and stops the request as soon as one passes
``MAX_UPLOAD_BYTES``, so an oversized upload costs at most the limit, never the whole body.
``place_files`` puts the files where the request's ``map`` says, refusing a ``map`` or
``operations`` that does not fit the GraphQL multipart request spec with a 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cross_web import FormData, HTTPException, StarletteRequestAdapter
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from ..errors import excerpt
from ..settings import Settings
from .context import services_of
from .deadline import restart_deadline

UPLOADS_KEY = "graphql_files.uploads"
_INDEX = re.compile(r"[0-9]{1,9}")
MAP_SHAPE = (
    "the multipart 'map' must be a JSON object of file field names to lists of paths, "
    'such as {"0": ["variables.file"]}'
)


class FileTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"a file in this request is larger than {limit} bytes")
        self.limit = limit


class LimitedMultiPartParser(MultiPartParser):
    def __init__(self, *args: Any, max_file_bytes: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_file_bytes = max_file_bytes
        self._part_bytes = 0

    def on_part_begin(self) -> None:
        super().on_part_begin()
        self._part_bytes = 0

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if part_is_a_file(self):
            self._part_bytes += end - start
            if self._part_bytes > self.max_file_bytes:
                raise FileTooLarge(self.max_file_bytes)
        super().on_part_data(data, start, end)


def part_is_a_file(parser: MultiPartParser) -> bool:
    """Whether the part being parsed is a file (not a form field). Starlette keeps that part in
    a private attribute and offers no public way to ask: this is the one place that reads it
    (``tests/api/test_library_hooks.py`` fails loudly if an upgrade removes it; Starlette is
    pinned to the version tested)."""
    return parser._current_part.file is not None


class UploadRequestAdapter(StarletteRequestAdapter):
    """strawberry's request adapter, parsing multipart bodies with ``LimitedMultiPartParser``."""

    def __init__(self, request: Request) -> None:
        super().__init__(request)
        self.request = request

    async def get_form_data(self) -> FormData:
        settings: Settings = services_of(self.request).settings
        parser = LimitedMultiPartParser(
            self.request.headers,
            self.request.stream(),
            max_files=settings.max_upload_files,
            max_fields=10,
            max_part_size=settings.max_request_bytes,
            max_file_bytes=services_of(self.request).storage.upload_limit,
        )
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise HTTPException(400, f"invalid multipart request: {exc.message}") from exc
        restart_deadline(self.request.scope)
        # In the scope, not request.state: servers may share one state dict between requests.
        self.request.scope[UPLOADS_KEY] = [
            v for _, v in form.multi_items() if isinstance(v, UploadFile)
        ]
        return FormData(files=form, form=form)


async def close_uploads(request: Request) -> None:
    for upload in request.scope.get(UPLOADS_KEY, ()):
        await upload.close()


def place_files(operations: object, files_map: object, files: Mapping[str, Any]) -> dict[str, Any]:
    """``operations`` with each file put at the paths ``map`` gives it (strawberry's own
    version indexes blindly: a bad map is a 500 there)."""
    if not isinstance(operations, dict):
        raise HTTPException(
            400, "the multipart 'operations' must be a JSON object (batching is not enabled)"
        )
    if not isinstance(files_map, dict) or not all(
        isinstance(paths, list) and all(isinstance(p, str) for p in paths)
        for paths in files_map.values()
    ):
        raise HTTPException(400, MAP_SHAPE)
    for name, paths in files_map.items():
        upload = files.get(name)
        if not isinstance(upload, UploadFile):
            raise HTTPException(400, f"the map names {excerpt(name)}, which is not a file part")
        for path in paths:
            _place(operations, path, upload)
    return operations


def _place(operations: dict[str, Any], path: str, upload: UploadFile) -> None:
    *steps, last = path.split(".")
    if not steps or steps[0] != "variables":
        raise HTTPException(400, f"map path {excerpt(path)} must lead into 'variables'")
    target: Any = operations
    for key in steps:
        target = target[_slot(target, key, path)]
    target[_slot(target, last, path, new=True)] = upload


def _slot(container: object, key: str, path: str, *, new: bool = False) -> str | int:
    """``key`` as an index into ``container``; with ``new``, an object may lack it (clients
    send a null placeholder there, but the spec does not insist)."""
    if isinstance(container, dict) and (new or key in container):
        return key
    if isinstance(container, list) and _INDEX.fullmatch(key) and int(key) < len(container):
        return int(key)
    raise HTTPException(
        400, f"map path {excerpt(path)} does not lead to a variable in 'operations'"
    )
