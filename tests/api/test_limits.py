"""Limits a hostile client meets over real HTTP and websockets: credentials are checked before a
multipart body is read, a body that stops arriving is timed out, a websocket's subscriptions
are capped, and errors never echo a file name in full."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from starlette.types import Message

from graphql_files.settings import Settings

from ..helpers import (
    FULL_ACCESS,
    PNG,
    PREFLIGHT,
    Json,
    LegacyWsClient,
    LiveServer,
    TransportWsClient,
    make_settings,
    multipart,
    start_live_server,
    token,
    ws_client,
)

ANSWER_WITHIN = 5.0  # seconds; a server that waits for the rest of the body never answers
BOUNDARY = "limits-boundary"
ON_CREATE = "subscription { onCreateSong { id } }"
UPLOAD = "mutation($i: UploadFileInput!) { uploadFile(input: $i) { path } }"


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: Json
    closed: bool  # the server closed the connection after answering


@asynccontextmanager
async def raw_connection(
    live: LiveServer,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    host, port = live.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        yield reader, writer
    finally:
        writer.close()
        await writer.wait_closed()


def request_head(content_type: str, length: int, headers: Mapping[str, str]) -> bytes:
    lines = [
        "POST /graphql HTTP/1.1",
        "host: 127.0.0.1",
        f"content-type: {content_type}",
        f"content-length: {length}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], Json]:
    """The server's answer (status, headers, JSON body), within ``ANSWER_WITHIN`` seconds."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_WITHIN)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in filter(None, header_lines):
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, json.loads(body)


async def read_response(reader: asyncio.StreamReader) -> RawResponse:
    """The server's answer, and whether it then closed the connection."""
    status, headers, body = await read_answer(reader)
    rest = await asyncio.wait_for(reader.read(1), ANSWER_WITHIN)
    return RawResponse(status, headers, body, closed=rest == b"")


def multipart_start() -> bytes:
    """The first bytes of a GraphQL multipart request: the start of its operations field."""
    return (
        f'--{BOUNDARY}\r\ncontent-disposition: form-data; name="operations"\r\n\r\n{{"query": '
    ).encode()


def only_error(response: RawResponse) -> Json:
    errors = response.body["errors"]
    assert len(errors) == 1, errors
    error: Json = errors[0]
    return error


# --- 1. credentials are checked before a multipart body is read --------------------------------

UNREAD_BODY = 50_000_000  # declared, never sent: under the multipart limit, so only auth stops it


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "signed-in user"),
        ({"x-api-key": "not-a-key-0123456789abcdef"}, "invalid API key"),
        ({"authorization": "Bearer not-a-token"}, "invalid token"),
        ({"authorization": f"Bearer {token(secret='another-secret-' + '0' * 32)}"}, "token"),
    ],
    ids=["anonymous", "bad-api-key", "malformed-token", "wrongly-signed-token"],
)
async def test_a_multipart_body_is_not_read_before_credentials_are_checked(
    live: LiveServer, headers: dict[str, str], message: str
) -> None:
    async with raw_connection(live) as (reader, writer):
        content_type = f"multipart/form-data; boundary={BOUNDARY}"
        writer.write(request_head(content_type, UNREAD_BODY, {**PREFLIGHT, **headers}))
        writer.write(multipart_start())
        await writer.drain()
        response = await read_response(reader)
    assert response.status == 401, response
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = only_error(response)
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert message in error["message"]
    assert response.closed  # the unread body is not parsed as a next request


@pytest.fixture
def guest_write_settings(s3_endpoint: str, bucket: str, tmp_path: Path) -> Settings:
    rules = tmp_path / "access.toml"
    rules.write_text('[storage."public/*"]\nguest = ["read", "write"]\n')
    return make_settings(s3_endpoint, bucket, access_file=rules)


async def test_guests_may_upload_where_the_rules_let_them(guest_write_settings: Settings) -> None:
    async with start_live_server(guest_write_settings) as live:
        anonymous = live.client(headers={})
        async with anonymous:
            response = await multipart(
                anonymous,
                UPLOAD,
                {"i": {"path": "public/a.png", "file": None}},
                {"variables.i.file": ("a.png", PNG, "image/png")},
            )
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"uploadFile": {"path": "public/a.png"}}}


async def test_signed_in_users_still_upload(live: LiveServer) -> None:
    async with live.client() as client:
        response = await multipart(
            client,
            UPLOAD,
            {"i": {"path": "images/a.png", "file": None}},
            {"variables.i.file": ("a.png", PNG, "image/png")},
        )
    assert response.json() == {"data": {"uploadFile": {"path": "images/a.png"}}}


# --- 2. a body that stops arriving is timed out -------------------------------------------------


@pytest.fixture
async def impatient(s3_endpoint: str, bucket: str) -> AsyncIterator[LiveServer]:
    settings = make_settings(s3_endpoint, bucket, body_idle_timeout=0.5)
    async with start_live_server(settings) as server:
        yield server


@pytest.mark.parametrize(
    ("content_type", "start"),
    [
        ("application/json", b'{"query": "{ listSongs { items { id } } }"'[:20]),
        (f"multipart/form-data; boundary={BOUNDARY}", multipart_start()),
    ],
    ids=["json", "multipart"],
)
async def test_a_body_that_stops_arriving_is_answered_408(
    impatient: LiveServer, content_type: str, start: bytes
) -> None:
    async with raw_connection(impatient) as (reader, writer):
        writer.write(request_head(content_type, 1000, {**FULL_ACCESS, **PREFLIGHT}))
        writer.write(start)  # and then nothing
        await writer.drain()
        response = await read_response(reader)
    assert response.status == 408, response
    error = only_error(response)
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "0.5" in error["message"]
    assert response.closed


async def test_a_slow_body_that_keeps_arriving_is_read(s3_endpoint: str, bucket: str) -> None:
    """The timeout is between reads, not for the whole body."""
    settings = make_settings(s3_endpoint, bucket, body_idle_timeout=1.0)
    body = json.dumps({"query": "{ listSongs { items { id } } }"}).encode()
    pieces = [body[i : i + 10] for i in range(0, len(body), 10)]
    assert len(pieces) >= 4
    async with (
        start_live_server(settings) as live,
        raw_connection(live) as (reader, writer),
    ):
        writer.write(request_head("application/json", len(body), FULL_ACCESS))
        for piece in pieces:  # 0.4 s apart: more than a second in all, never idle for one
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.4)
        status, _, answer = await read_answer(reader)
    assert (status, answer) == (200, {"data": {"listSongs": {"items": []}}})


async def test_a_client_gone_mid_body_is_no_error(app: LifespanManager) -> None:
    """Nobody is left to answer, and nothing went wrong on the server: no exception escapes
    (uvicorn would log it with a traceback as a server error)."""
    content_type = f"multipart/form-data; boundary={BOUNDARY}".encode()
    headers = [(b"content-type", content_type), (b"content-length", b"1000")]
    headers += [(k.encode(), v.encode()) for k, v in {**FULL_ACCESS, **PREFLIGHT}.items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    messages: list[Message] = [
        {"type": "http.request", "body": multipart_start(), "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await app.app(scope, receive, send)
    assert sent == []


# --- 3. subscriptions per websocket are capped --------------------------------------------------


@pytest.fixture
async def capped(s3_endpoint: str, bucket: str) -> AsyncIterator[LiveServer]:
    settings = make_settings(s3_endpoint, bucket, max_subscriptions_per_connection=3)
    async with start_live_server(settings) as server:
        yield server


async def next_message(ws: TransportWsClient, skip: tuple[str, ...] = ("ka", "pong")) -> Json:
    while True:
        message = await ws.receive()
        if message["type"] not in skip:
            return message


@pytest.mark.parametrize("protocol", [TransportWsClient, LegacyWsClient], ids=lambda p: p.protocol)
async def test_subscriptions_past_the_cap_are_refused_and_the_socket_stays(
    capped: LiveServer, protocol: type[TransportWsClient]
) -> None:
    async with ws_client(capped, protocol) as ws:
        ids = [await ws.subscribe(ON_CREATE) for _ in range(3)]
        refused = await ws.subscribe(ON_CREATE)
        message = await next_message(ws)
        assert message["type"] == "error", message
        assert message["id"] == refused
        [error] = message["payload"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "3 subscriptions" in error["message"]

        # The socket lives on, and a stopped subscription makes room for another: the next
        # one over the cap is refused, not the one that took the room (answers come in order).
        await ws.stop(ids[0])
        if protocol is LegacyWsClient:  # the legacy protocol confirms a stop
            assert await next_message(ws) == {"type": "complete", "id": ids[0]}
        await ws.subscribe(ON_CREATE)
        over = await ws.subscribe(ON_CREATE)
        message = await next_message(ws)
        assert (message["type"], message["id"]) == ("error", over)


async def test_a_cap_above_strawberrys_own_default_is_honoured(
    s3_endpoint: str, bucket: str
) -> None:
    settings = make_settings(s3_endpoint, bucket, max_subscriptions_per_connection=105)
    async with start_live_server(settings) as live, ws_client(live) as ws:
        for _ in range(105):
            await ws.subscribe(ON_CREATE)
        refused = await ws.subscribe(ON_CREATE)
        message = await next_message(ws)
        assert (message["type"], message["id"]) == ("error", refused)
        assert message["payload"][0]["extensions"]["code"] == "BAD_USER_INPUT"


# --- 5c. errors never echo a file name in full --------------------------------------------------


async def test_an_error_about_a_file_quotes_its_name_cut_short(live: LiveServer) -> None:
    name = "n" * 4000 + ".png"  # near the multipart parser's own header limit (4,224 bytes)
    async with live.client() as client:
        response = await multipart(
            client,
            UPLOAD,
            {"i": {"path": "images/a.png", "file": None}},
            {"variables.i.file": (name, b"", "image/png")},
        )
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "is empty" in error["message"]
    assert len(error["message"]) < 300
    assert f"({len(name)} characters)" in error["message"]
