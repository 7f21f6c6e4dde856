"""Refusing oversized request bodies while they stream in, with a GraphQL error."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope, Send

from ..settings import Settings

JSON = "application/json"
MULTIPART = "multipart/form-data"


def error_response(status: int, message: str, code: str, media_type: str = JSON) -> Response:
    body = {"errors": [{"message": message, "extensions": {"code": code}}]}
    return JSONResponse(body, status_code=status, media_type=media_type)


class BodyLimit:
    """Refuse HTTP request bodies over a limit, counted as they stream in: ``max_request_bytes``
    for JSON, room for ``max_upload_files`` files of ``max_upload_bytes`` for multipart.

    Starlette's ``max_body_size`` answers in plain text; GraphQL clients expect a GraphQL error.
    """

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.json_limit = settings.max_request_bytes
        self.multipart_limit = (
            settings.max_upload_files * settings.max_upload_bytes + settings.max_request_bytes
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        multipart = headers.get(b"content-type", b"").lower().startswith(MULTIPART.encode())
        limit = self.multipart_limit if multipart else self.json_limit
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(limit, scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await self._refuse(limit, scope, receive, send)

    @staticmethod
    async def _refuse(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, f"request body is larger than {limit} bytes", "PAYLOAD_TOO_LARGE"
        )
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass
