"""Credentials never reach a log, at any level: the redaction filter, and the server under it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect

from graphql_files import cli
from graphql_files.adapters.embedded import configured_s3
from graphql_files.logs import Disclosed, RedactCredentials, redact
from graphql_files.services.wiring import Services, describe

from .helpers import TEST_API_KEY, LiveServer, TransportWsClient, token
from .processes import serving

JWT = token("someone")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # header dumps: websockets' handshake log, ASGI scopes, dicts (botocore's too)
        (f"< authorization: Bearer {JWT}", "< authorization: [redacted]"),
        (f"< x-api-key: {TEST_API_KEY}", "< x-api-key: [redacted]"),
        ("Proxy-Authorization: Basic dXNlcjpwYXNz", "Proxy-Authorization: [redacted]"),
        (
            f"[(b'host', b'h'), (b'authorization', b'Bearer {JWT}'), (b'x-api-key', b'k1')]",
            "[(b'host', b'h'), (b'authorization', b'[redacted]'), (b'x-api-key', b'[redacted]')]",
        ),
        (
            f"{{'x-api-key': '{TEST_API_KEY}', 'accept': '*/*'}}",
            "{'x-api-key': '[redacted]', 'accept': '*/*'}",
        ),
        (
            "headers={'Authorization': b'AWS4-HMAC-SHA256 Credential=AKID/x, Signature=ab12'}",
            "headers={'Authorization': b'[redacted]'}",
        ),
        ('{"password": "hunter2", "user": "u"}', '{"password": "[redacted]", "user": "u"}'),
        # credentials by their shape, wherever they are
        (f"refused Bearer {JWT} (expired)", "refused Bearer [redacted] (expired)"),
        (f"token {JWT}.", "token [redacted]."),
        ("key gfk_0a1b2c3d4e5f_Zm9v-YmFy_baz was revoked", "key gfk_[redacted] was revoked"),
        ("mongodb://app:p%40ss@db:27017/x", "mongodb://app:***@db:27017/x"),
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        (
            f"GET /graphql?x-api-key=k1&token={JWT}&q=1",
            "GET /graphql?x-api-key=[redacted]&token=[redacted]&q=1",
        ),
        (
            "/b/k?X-Amz-Signature=0a1b&X-Amz-Expires=60",
            "/b/k?X-Amz-Signature=[redacted]&X-Amz-Expires=60",
        ),
        ("Signature:\n" + "a1" * 32, "Signature:\n[redacted]"),
        (
            "protocols: graphql-ws, header-eyJob3N0IjoiYSJ9",
            "protocols: graphql-ws, header-[redacted]",
        ),
        # websocket frames, which websockets cuts short: a credential may lie across the cut
        (
            '< TEXT \'{"type": "connection_init", "payload": {"x-api-...1nb3yrUyWpAnsF-572wQ"}}\''
            " [296 bytes]",
            "< TEXT '[redacted]' [296 bytes]",
        ),
    ],
)
def test_credentials_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        '127.0.0.1:5000 - "POST /graphql HTTP/1.1" 200',
        '> TEXT \'{"type":"connection_ack"}\' [25 bytes]',
        "            (Authorization header; user 'dev-user', valid 12 hours)",
        "S3        bucket 'b' at http://minio:9000",
        "listSongs nextToken=eyJjIjoiMjAyNiJ9",  # one part: a cursor, not a JWT
    ],
)
def test_other_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


class Lines(logging.Handler):
    """A handler that keeps the lines it formats."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def redacting() -> Iterator[Lines]:
    """A handler with the filter, capturing formatted lines."""
    handler = Lines()
    handler.addFilter(RedactCredentials())
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


def test_the_filter_rewrites_the_final_message_and_the_traceback(
    redacting: Lines,
) -> None:
    logger = logging.getLogger("tests.redaction")
    logger.warning("< %s", f"authorization: Bearer {JWT}")
    try:
        raise ValueError(f"could not use redis://:hunter2@cache:6379 with {JWT}")
    except ValueError:
        logger.exception("failed for %s", "gfk_0a1b2c3d4e5f_secretsecret")
    logger.info("%s %s", "not %d a number", 3)  # args stay apart when nothing changed
    lines = redacting.lines
    text = "\n".join(lines)
    assert "hunter2" not in text
    assert JWT not in text
    assert "secretsecret" not in text
    assert lines[0] == "< authorization: [redacted]"
    assert "redis://:***@cache:6379" in lines[1]
    assert lines[2] == "not %d a number 3"


def test_a_disclosed_text_is_shown_as_it_is(redacting: Lines) -> None:
    """The start-up block shows the API key the server made for the embedded defaults: that is
    how a new user gets in. Nothing else in the same record escapes the filter."""
    logger = logging.getLogger("tests.redaction")
    welcome = Disclosed("  API key   gfk_0a1b2c3d4e5f_shownonce")
    logger.info("%s", welcome)
    logger.info("%s and gfk_0a1b2c3d4e5f_other", welcome)
    lines = redacting.lines
    assert lines == [
        "  API key   gfk_0a1b2c3d4e5f_shownonce",
        "  API key   gfk_0a1b2c3d4e5f_shownonce and gfk_[redacted]",
    ]


def test_a_record_filtered_by_two_handlers_is_the_same() -> None:
    record = logging.LogRecord(
        "tests", logging.INFO, __file__, 1, "%s, %s", (Disclosed("gfk_a_shown"), "gfk_b_hid"), None
    )
    for _ in range(2):
        assert RedactCredentials().filter(record)
        assert record.getMessage() == "gfk_a_shown, gfk_[redacted]"


def test_a_broken_record_still_reaches_the_handler(redacting: Lines) -> None:
    """A record whose arguments do not fit its message is logging's to report, not ours."""
    record = logging.LogRecord("tests", logging.INFO, __file__, 1, "%d", ("x",), None)
    assert RedactCredentials().filter(record) is True


def test_configure_logging_installs_the_filter_on_the_root_handlers() -> None:
    root = logging.getLogger()
    level = root.level
    try:
        cli._configure_logging("info")
        cli._configure_logging("info")  # once per handler, however often it is called
        assert root.handlers
        for handler in root.handlers:
            installed = [f for f in handler.filters if isinstance(f, RedactCredentials)]
            assert len(installed) == 1, handler
    finally:
        root.setLevel(level)
        for handler in root.handlers:
            for found in [f for f in handler.filters if isinstance(f, RedactCredentials)]:
                handler.removeFilter(found)


def test_describe_never_prints_the_s3_endpoints_password(services: Services) -> None:
    settings = services.settings.model_copy(
        update={"s3_endpoint_url": "http://minio-user:minio-pass@minio:9000", "s3_bucket": "b"}
    )
    s3 = configured_s3(settings)
    assert s3 is not None
    stores = dataclasses.replace(services.stores, s3=s3)
    text = describe(dataclasses.replace(services, stores=stores), url="http://h/graphql")
    assert "minio-pass" not in text
    assert "S3        bucket 'b' at http://minio-user:***@minio:9000" in text
    assert isinstance(text, Disclosed)  # it shows the generated key, when there is one


async def test_a_debug_log_of_a_live_server_holds_no_credential(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RedactCredentials())
    caplog.set_level(logging.DEBUG)
    services = live.services
    _, api_key = await services.authenticator.api_keys.create(description="test")
    user_token = token("logged")
    secrets = {
        "static key": TEST_API_KEY,
        "stored key": api_key,
        "token": user_token,
        "token signature": user_token.rsplit(".", 1)[1],
    }
    credentials = {"x-api-key": api_key, "authorization": f"Bearer {user_token}"}

    async with httpx.AsyncClient(base_url=live.url) as http:
        response = await http.post(
            f"/graphql?token={user_token}",
            json={"query": "{ listSongs { items { id } } }"},
            headers={"x-api-key": TEST_API_KEY, "authorization": f"Bearer {user_token}"},
        )
        assert response.json() == {"data": {"listSongs": {"items": []}}}
    async with connect(
        f"{live.ws_url}?token={user_token}",
        subprotocols=[TransportWsClient.protocol],
        additional_headers=credentials,
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": credentials}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "connection_ack"}

    text = "\n".join(caplog.handler.format(r) for r in caplog.records)
    for name, secret in secrets.items():
        assert secret not in text, f"the {name} was logged"
    # The handshake's headers and frames were logged, redacted: the test saw what it guards.
    assert "< authorization: [redacted]" in text
    assert "< x-api-key: [redacted]" in text
    assert "< TEXT '[redacted]'" in text


def test_serve_at_debug_level_logs_no_credential_but_the_welcome() -> None:
    """The real command: its logging set up by the CLI, a debug log of an HTTP request and a
    websocket that carry the credentials the start-up block printed (once, on purpose)."""
    with serving(GRAPHQL_FILES_LOG_LEVEL="debug") as served:
        api_key, user_token = served.welcome()
        credentials = {"x-api-key": api_key, "authorization": f"Bearer {user_token}"}
        asyncio.run(_use_credentials(served.port, credentials))
    output = served.output
    assert output.count(api_key) == 1, "the API key was logged past the welcome"
    assert output.count(user_token) == 1, "the token was logged past the welcome"
    assert "< authorization: [redacted]" in output  # debug logging was on


async def _use_credentials(port: int, credentials: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        response = await http.post(
            "/graphql", json={"query": "{ listSongs { items { id } } }"}, headers=credentials
        )
        assert response.json() == {"data": {"listSongs": {"items": []}}}
    async with connect(
        f"ws://127.0.0.1:{port}/graphql",
        subprotocols=[TransportWsClient.protocol],
        additional_headers=credentials,
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": credentials}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "connection_ack"}
