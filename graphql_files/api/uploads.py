"""GraphQL multipart requests with limits enforced while the body streams in.

Starlette's parser spools every file to a temporary file before any resolver runs. This parser
counts each file part as it arrives and stops the request as soon as one passes
``MAX_UPLOAD_BYTES``, so an oversized upload costs at most the limit, never the whole body.
"""

from __future__ import annotations

from typing import Any

from cross_web import HTTPException, StarletteRequestAdapter
from cross_web.request._base import FormData
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from ..settings import Settings
from .context import services_of

UPLOADS_KEY = "graphql_files.uploads"


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
        if self._current_part.file is not None:
            self._part_bytes += end - start
            if self._part_bytes > self.max_file_bytes:
                raise FileTooLarge(self.max_file_bytes)
        super().on_part_data(data, start, end)


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
            max_file_bytes=settings.max_upload_bytes,
        )
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise HTTPException(400, f"invalid multipart request: {exc.message}") from exc
        # In the scope, not request.state: servers may share one state dict between requests.
        self.request.scope[UPLOADS_KEY] = [
            v for _, v in form.multi_items() if isinstance(v, UploadFile)
        ]
        return FormData(files=form, form=form)


async def close_uploads(request: Request) -> None:
    for upload in request.scope.get(UPLOADS_KEY, ()):
        await upload.close()
