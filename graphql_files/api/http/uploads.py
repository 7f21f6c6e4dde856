"""GraphQL multipart requests, read as they arrive: files stream through to S3.

The GraphQL multipart request spec sends ``operations`` and ``map`` first, then the files. The
request adapter reads the body up to the first file part (``MultipartBody.open``), so the
operation runs while the files are still arriving; a resolver reading an upload
(``StreamedUpload``) pulls its bytes from the request body as they come, and S3 gets them part
by part. Files arrive in order: a resolver that wants file k while an earlier file j is still
unread makes the body spool j (a ``SpooledTemporaryFile``: memory, then disk) on its way to k,
so nothing deadlocks and memory stays bounded.

Limits hold while streaming: each file part is counted as it arrives and the request stops as
soon as one passes the upload limit (413); the number of files and fields, and each field's
size, are Starlette's limits with Starlette's messages. A fault in the body (one of those, bad
multipart, a map naming a part that never comes) is kept: a resolver reading meets an error,
and the view answers with the fault, as it did when the whole body was parsed first
(``finish``). ``place_files`` puts the files where ``map`` says, refusing a ``map`` or
``operations`` that does not fit the spec with a 400.
"""

from __future__ import annotations

import codecs
import re
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from tempfile import SpooledTemporaryFile
from typing import IO, Any

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.types import Scope

from ...errors import BadUserInput, DomainError, PayloadTooLarge, excerpt
from ...settings import Settings
from ..connection import services_of
from ..engine._compat import (
    FormData,
    FormParserError,
    HTTPException,
    MultipartParser,
    MultipartState,
    StarletteRequestAdapter,
    parse_options_header,
)
from .body_limit import BodyFault, BodyStalled, BodyTooLarge
from .deadline import restart_deadline

UPLOADS_KEY = "graphql_files.uploads"  # the request's MultipartBody, in the scope
SPOOL_BYTES = 1024 * 1024  # a spooled file stays in memory up to this, then goes to disk
MAX_FIELDS = 10
_INDEX = re.compile(r"[0-9]{1,9}")
MAP_SHAPE = (
    "the multipart 'map' must be a JSON object of file field names to lists of paths, "
    'such as {"0": ["variables.file"]}'
)


def _file_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"a file in this request is larger than {limit} bytes", maxBytes=limit)


def _invalid(message: str) -> HTTPException:
    return HTTPException(400, f"invalid multipart request: {message}")


def _not_a_file_part(name: str) -> HTTPException:
    return HTTPException(400, f"the map names {excerpt(name)}, which is not a file part")


def _decode(data: bytes, charset: str) -> str:
    try:
        return data.decode(charset)
    except (UnicodeDecodeError, LookupError):
        return data.decode("latin-1")


class StreamedUpload:
    """One file of the request, read as it arrives (what a resolver gets for an ``Upload``).
    A file the map puts in several places gets a reader for each (``replica``)."""

    def __init__(self, body: MultipartBody, name: str) -> None:
        self.name = name
        self._filename: str | None = None
        self._headers = Headers()
        self._size: int | None = None
        self.began = False
        self.complete = False
        self.wanted = False  # the map names it: its bytes are kept until read
        self._body = body
        self._chunks: deque[bytes] = deque()  # arrived while its reader pulled: not yet read
        self._spool: IO[bytes] | None = None  # arrived while someone else pulled, or replayed
        self._spooled = 0
        self._spool_read = 0
        self._lookahead = b""
        self._received = 0
        self._replicas: list[StreamedUpload] = []
        self._source: StreamedUpload | None = None
        self._private: IO[bytes] | None = None  # this reader's own copy, once spooled
        self._private_read = 0

    @property
    def filename(self) -> str | None:
        return (self._source or self)._filename

    @property
    def headers(self) -> Headers:
        return (self._source or self)._headers

    @property
    def size(self) -> int | None:
        """Known once the whole file has arrived."""
        return (self._source or self)._size

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")

    # --- fed by the body -----------------------------------------------------------------------

    def _begin(self, filename: str, headers: Headers) -> None:
        self.began, self._filename, self._headers = True, filename, headers

    def _data(self, data: bytes, *, live: bool) -> None:
        self._received += len(data)
        if live and not self._replicas and self._spool_read >= self._spooled:
            self._chunks.append(data)  # its reader is pulling, and has read all the spool
        else:  # read later, or by more than one reader
            self._to_spool(data)

    def _end(self) -> None:
        self.complete, self._size = True, self._received

    def _to_spool(self, data: bytes) -> None:
        if self._spool is None:
            self._spool = SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed by close()
        while self._chunks:  # what arrived before comes first
            self._append(self._chunks.popleft())
        self._append(data)

    def _append(self, data: bytes) -> None:
        assert self._spool is not None
        self._spool.seek(self._spooled)
        self._spool.write(data)
        self._spooled += len(data)

    # --- read by a resolver --------------------------------------------------------------------

    def replica(self) -> StreamedUpload:
        """Another reader of the same file, for a second place the map puts it: the file is
        spooled, and each reader reads it from its start."""
        copy = StreamedUpload(self._body, self.name)
        copy._source = self
        self._replicas.append(copy)
        return copy

    async def begin(self) -> None:
        """Wait for the file's part to begin (its name and type); earlier files are spooled."""
        source = self._source or self
        while not source.began:
            if self._body.done:  # pragma: no cover - the body's fault says why, first
                raise BadUserInput(f"the request body has no file {excerpt(self.name)}")
            await self._body.pump(None)

    async def peek(self, size: int) -> bytes:
        """The file's first ``size`` bytes (fewer if it is shorter), left to be read."""
        while len(self._lookahead) < size:
            chunk = await self._read_raw(size - len(self._lookahead))
            if not chunk:
                break
            self._lookahead += chunk
        return self._lookahead[:size]

    async def read(self, size: int = -1) -> bytes:
        if size < 0:
            parts = []
            while chunk := await self.read(SPOOL_BYTES):
                parts.append(chunk)
            return b"".join(parts)
        if self._lookahead:
            chunk, self._lookahead = self._lookahead[:size], self._lookahead[size:]
            return chunk
        return await self._read_raw(size)

    async def spool(self) -> IO[bytes]:
        """The rest of the file (all of it, when it was only peeked at), in a temporary file at
        its start, for checks that need the whole file; reads then come from it."""
        unread = SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - closed by close()
        unread.write(self._lookahead)
        self._lookahead = b""
        while chunk := await self._read_raw(SPOOL_BYTES):
            unread.write(chunk)
        unread.seek(0)
        self._private, self._private_read = unread, 0
        return unread

    async def _read_raw(self, size: int) -> bytes:
        if self._private is not None:
            self._private.seek(self._private_read)
            chunk = self._private.read(size)
            self._private_read += len(chunk)
            return chunk
        source = self._source or self
        while True:
            # what was spooled came before what is queued: a reader that has read its spool
            # gets the rest live, straight from the body (a file whose first bytes came with
            # its part's headers is not spooled whole for them)
            if source._spool is not None and self._spool_read < source._spooled:
                source._spool.seek(self._spool_read)
                chunk = source._spool.read(min(size, source._spooled - self._spool_read))
                self._spool_read += len(chunk)
                return chunk
            if self._source is None and self._chunks:
                chunk = self._chunks.popleft()
                if len(chunk) > size:
                    self._chunks.appendleft(chunk[size:])
                    chunk = chunk[:size]
                return chunk
            if source.complete:
                return b""
            if self._body.done:  # pragma: no cover - the body's fault says why, first
                raise BadUserInput(f"the request body ended before {excerpt(self.name)} did")
            await self._body.pump(source)

    async def check_rest(self) -> None:
        """Read the body to its end and check it, before what was made of this file commits: a
        later file a reader still wants is spooled for it, the others are counted and dropped,
        within the same limits. Raises the body's fault as a domain error; the view then
        answers with the fault itself."""
        await self._body.rest()

    def close(self) -> None:
        if self._private is not None:
            self._private.close()
        if self._spool is not None:
            self._spool.close()
        for replica in self._replicas:
            replica.close()


class _Part:
    """The part being parsed: its headers, then its name and (for a field) its value."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.name = ""
        self.value = bytearray()
        self.upload: StreamedUpload | None = None
        self.is_file = False


class MultipartBody:
    """A multipart request body, parsed chunk by chunk as its readers pull."""

    def __init__(self, request: Request, settings: Settings, max_file_bytes: int) -> None:
        _, params = parse_options_header(request.headers.get("content-type", ""))
        charset = params.get(b"charset", b"utf-8")
        try:
            self._charset = codecs.lookup(charset.decode("latin-1")).name
        except LookupError:
            self._charset = "latin-1"
        boundary = params.get(b"boundary")
        if not boundary:
            raise _invalid("Missing boundary in multipart.")
        self._scope: Scope = request.scope
        self._stream: AsyncIterator[bytes] = request.stream().__aiter__()
        self._max_files = settings.max_upload_files
        self._max_field_bytes = settings.max_request_bytes
        self._max_file_bytes = max_file_bytes
        self.fields: dict[str, str] = {}
        self.files: dict[str, StreamedUpload] = {}
        self._file_count = 0
        self._field_count = 0
        self._part = _Part()
        self._header_name = b""
        self._header_value = b""
        self._reader: StreamedUpload | None = None
        self._draining = False
        self.opened = False
        self.done = False
        self.fault: Exception | None = None
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
            },
        )

    # --- the parser's callbacks ------------------------------------------------------------------

    def _on_part_begin(self) -> None:
        self._part = _Part()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._part.headers.append((self._header_name.lower(), self._header_value))
        self._header_name = self._header_value = b""

    def _on_headers_finished(self) -> None:
        part = self._part
        disposition = dict(part.headers).get(b"content-disposition", b"")
        _, options = parse_options_header(disposition)
        if b"name" not in options:
            raise _invalid('The Content-Disposition header field "name" must be provided.')
        part.name = _decode(options[b"name"], self._charset)
        if b"filename" not in options:
            self._field_count += 1
            if self._field_count > MAX_FIELDS:
                raise _invalid(f"Too many fields. Maximum number of fields is {MAX_FIELDS}.")
            if self.files.get(part.name) is not None and self.files[part.name].wanted:
                raise _not_a_file_part(part.name)
            return
        self._file_count += 1
        if self._file_count > self._max_files:
            raise _invalid(f"Too many files. Maximum number of files is {self._max_files}.")
        part.is_file = True
        upload = self.files.get(part.name)
        if upload is None:
            upload = self.files[part.name] = StreamedUpload(self, part.name)
        elif upload.began:  # a second part of the same name: Starlette kept the first too
            return
        upload._begin(_decode(options[b"filename"], self._charset), Headers(raw=part.headers))
        part.upload = upload

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if not part.is_file:
            if len(part.value) + end - start > self._max_field_bytes:
                kb = int(self._max_field_bytes / 1024)
                raise _invalid(f"Part exceeded maximum size of {kb}KB.")
            part.value += data[start:end]
            return
        upload = part.upload
        if upload is None:
            return
        if upload._received + end - start > self._max_file_bytes:
            raise _file_too_large(self._max_file_bytes)
        if self._draining or (self.opened and not upload.wanted):
            upload._received += end - start  # nobody will read it: counted, not kept
        else:
            upload._data(data[start:end], live=upload is self._reader)

    def _on_part_end(self) -> None:
        part = self._part
        if part.upload is not None:
            part.upload._end()
        elif not part.is_file:
            self.fields[part.name] = _decode(bytes(part.value), self._charset)

    # --- pulling -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Read up to the files: until ``operations`` and ``map`` have arrived (files sent
        before them are spooled), or the body ends. Raises the body's fault."""
        while not self.done and not {"operations", "map"} <= self.fields.keys():
            await self._pull()
            if self.fault is not None:
                raise self.fault
        self.opened = True

    async def pump(self, reader: StreamedUpload | None) -> None:
        """Parse the next chunk of the body for ``reader`` (what arrives for other files is
        spooled); raises, as a domain error, the body's fault."""
        if self.fault is None and not self.done:
            self._reader = reader
            try:
                await self._pull()
            finally:
                self._reader = None
        if self.fault is not None:
            raise _as_domain_error(self.fault)

    async def rest(self) -> None:
        """Parse the body to its end for nobody in particular (wanted files are spooled) and
        raise its fault, if it has one, as a domain error (see ``pump``)."""
        await self.pump(None)  # a fault already met is raised at once
        while not self.done:
            await self.pump(None)

    async def read_all(self) -> None:
        """Read the body to its end before the operation runs (the files it names are spooled
        for it) and raise its fault, if it has one: the request's answer is then that fault."""
        while self.fault is None and not self.done:
            await self._pull()
        if self.fault is not None:
            raise self.fault

    async def finish(self) -> None:
        """Read the rest of the body (what nobody read is counted, not kept) and raise its
        fault, if it has one: the request's answer is then that fault."""
        self._draining = True
        while self.fault is None and not self.done:
            await self._pull()
        if self.fault is not None:
            raise self.fault

    async def _pull(self) -> None:
        try:
            chunk = await anext(self._stream)
        except StopAsyncIteration:
            self._ended()
            return
        except (ClientDisconnect, BodyFault) as gone:  # gone, stalled, or over the body's limit
            self.fault = gone
            return
        try:
            if chunk:
                self._parser.write(chunk)
        except (HTTPException, PayloadTooLarge) as fault:
            self.fault = fault
        except FormParserError:
            self.fault = _invalid("Invalid multipart data.")

    def _ended(self) -> None:
        self.done = True
        restart_deadline(self._scope)  # the execution's clock starts once the body is in
        try:
            self._parser.finalize()
        except FormParserError:
            self.fault = _invalid("Invalid multipart data.")
            return
        if self._parser.state != MultipartState.END:  # python-multipart does not check it
            self.fault = _invalid("the body ended before its closing boundary.")
            return
        for name, upload in self.files.items():
            if upload.wanted and not upload.complete:
                self.fault = _not_a_file_part(name)
                return

    def uploads(self) -> Iterator[StreamedUpload]:
        return iter(self.files.values())

    def close(self) -> None:
        for upload in self.files.values():
            upload.close()


def _as_domain_error(fault: Exception) -> DomainError:
    """What a resolver reading an upload meets when the body has a fault (the view answers
    with the fault itself)."""
    if isinstance(fault, PayloadTooLarge):
        return fault
    if isinstance(fault, BodyTooLarge):
        return PayloadTooLarge(fault.message, maxBytes=fault.limit)
    if isinstance(fault, BodyStalled):
        return BadUserInput(fault.message)
    if isinstance(fault, HTTPException):
        return BadUserInput(fault.reason)
    return BadUserInput("the client went away before its request body arrived")


class _WantedFiles(Mapping[str, Any]):
    """The request's files as ``place_files`` looks them up: a name the map gives is wanted
    (its bytes are kept until read); a field's name is its text, so the map is refused."""

    def __init__(self, body: MultipartBody) -> None:
        self._body = body

    def __getitem__(self, name: str) -> Any:
        if name in self._body.fields:
            return self._body.fields[name]
        upload = self._body.files.get(name)
        if upload is None:
            if self._body.done:
                raise KeyError(name)
            upload = self._body.files[name] = StreamedUpload(self._body, name)
        upload.wanted = True
        return upload

    def __iter__(self) -> Iterator[str]:
        return iter(self._body.files)

    def __len__(self) -> int:
        return len(self._body.files)


class UploadRequestAdapter(StarletteRequestAdapter):
    """strawberry's request adapter, reading a multipart body only up to its files."""

    def __init__(self, request: Request) -> None:
        super().__init__(request)
        self.request = request

    async def get_form_data(self) -> FormData:
        services = services_of(self.request)
        body = MultipartBody(self.request, services.settings, services.storage.upload_limit)
        # In the scope, not request.state: servers may share one state dict between requests.
        self.request.scope[UPLOADS_KEY] = body
        await body.open()
        return FormData(files=_WantedFiles(body), form=body.fields)


async def read_whole_body(request: Request) -> None:
    """Read all of a multipart body before its operation runs (``MultipartBody.read_all``)."""
    body: MultipartBody | None = request.scope.get(UPLOADS_KEY)
    if body is not None:
        await body.read_all()


async def finish_uploads(request: Request) -> None:
    """Read what is left of a multipart body; raises its fault (see ``MultipartBody.finish``)."""
    body: MultipartBody | None = request.scope.get(UPLOADS_KEY)
    if body is not None:
        await body.finish()


async def first_refusal(request: Any, refusal: HTTPException) -> HTTPException:
    """The refusal a multipart request gets when its ``operations`` or ``map`` is refused: a
    map naming a part that never comes is said first, as when the whole body was read first
    (so the rest of the body is read, to know)."""
    adapter = request if isinstance(request, Request) else getattr(request, "request", None)
    body: MultipartBody | None = None if adapter is None else adapter.scope.get(UPLOADS_KEY)
    if body is None:
        return refusal
    try:
        await body.finish()
    except HTTPException as fault:
        return fault
    return refusal


async def close_uploads(request: Request) -> None:
    body: MultipartBody | None = request.scope.get(UPLOADS_KEY)
    if body is not None:
        body.close()


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
        if not isinstance(upload, StreamedUpload):
            raise _not_a_file_part(name)
        for n, path in enumerate(paths):
            _place(operations, path, upload if n == 0 else upload.replica())
    return operations


def _place(operations: dict[str, Any], path: str, upload: StreamedUpload) -> None:
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
