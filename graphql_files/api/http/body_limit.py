"""Refusing oversized and stalled request bodies while they stream in, with a GraphQL error."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from ...errors import HTTP_STATUS, BadUserInput, DomainError, PayloadTooLarge, Unauthenticated
from ...settings import Settings

JSON = "application/json"
MULTIPART = "multipart/form-data"


def error_response(status: int, message: str, code: str, media_type: str = JSON) -> Response:
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    return JSONResponse(body, status_code=status, media_type=media_type)


def refused_before_body(error: DomainError, media_type: str = JSON) -> Response:
    """A refusal from the headers alone (bad credentials, say); the connection closes, so that
    the unread body is not taken for the next request."""
    status = HTTP_STATUS.get(error.code, 503)  # 503: MongoDB down (API keys), say
    response = error_response(status, error.message, error.code, media_type)
    if isinstance(error, Unauthenticated):
        response.headers["www-authenticate"] = 'Bearer realm="graphql-files"'
    response.headers["connection"] = "close"
    return response


class BodyLimit:
    """Refuse HTTP request bodies over a limit, counted as they stream in: ``max_request_bytes``
    for JSON, room for ``max_upload_files`` files of ``max_upload_bytes`` for multipart; and
    bodies that stall, with nothing arriving for ``body_idle_timeout`` seconds (408).

    Starlette's ``max_body_size`` answers in plain text; GraphQL clients expect a GraphQL error.
    uvicorn times out idle keep-alive connections but not a body that stops half way: without
    the idle timeout, a client that declares a body and sends part of it holds a task forever.
    """

    def __init__(self, app: Any, settings: Settings, *, largest_file: int | None = None) -> None:
        self.app = app
        self.idle_timeout = settings.body_idle_timeout
        self.json_limit = settings.max_request_bytes
        per_file = max(settings.max_upload_bytes, largest_file or 0)  # a field may allow more
        self.multipart_limit = settings.max_upload_files * per_file + settings.max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:  # the first of repeated names, as the view reads
            headers.setdefault(name, value)
        multipart = headers.get(b"content-type", b"").lower().startswith(MULTIPART.encode())
        limit = self.multipart_limit if multipart else self.json_limit
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(limit, scope, receive, send)
            return
        received = 0
        started = False
        body_done = False

        async def counting_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # later receives wait for a disconnect, as long as a response runs
                return await receive()
            try:
                async with asyncio.timeout(self.idle_timeout):
                    message = await receive()
            except TimeoutError as exc:
                raise BodyStalled(self.idle_timeout) from exc
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
            body_done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyFault as fault:  # met before the view read the body into an operation
            if started:
                raise
            await fault.response()(scope, receive, send)
        except ClientDisconnect:  # gone before its body arrived: there is no one to answer
            if started:
                raise

    async def _refuse(self, limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        await BodyTooLarge(limit).response()(scope, receive, send)


class BodyFault(Exception):
    """The request body broke a limit while it was read: the request's answer, wherever the
    body was being read (here, or by a resolver streaming an upload: ``uploads``)."""

    status: int
    code: str

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def response(self, media_type: str = JSON) -> Response:
        response = error_response(self.status, self.message, self.code, media_type)
        response.headers["connection"] = "close"  # the rest of the body may still come
        return response


class BodyTooLarge(BodyFault):
    status, code = 413, PayloadTooLarge.code

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than {limit} bytes")
        self.limit = limit


class BodyStalled(BodyFault):
    """Not a ``TimeoutError``: the request's own deadline must not take it for its own."""

    status, code = 408, BadUserInput.code

    def __init__(self, idle_timeout: float) -> None:
        super().__init__(
            f"the request body stalled: nothing arrived for {idle_timeout:g}s "
            "(BODY_IDLE_TIMEOUT); send the whole body without pausing"
        )
