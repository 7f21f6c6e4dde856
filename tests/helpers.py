"""Test helpers: credentials and settings for a test, ``eventually`` for the waits that no event
signals, a small GraphQL client over httpx, a live uvicorn server, websocket clients, and files
to upload. Processes a test runs beside the app (a redis-server, the CLI's server, a hung
service) are in ``processes``."""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from PIL import Image
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from graphql_files.adapters.mongo import Collection, open_database
from graphql_files.api.schema.build import Schema
from graphql_files.api.ws.multiplex import Multiplexer
from graphql_files.app import create_app
from graphql_files.domain.variants import is_variant_key, original_of
from graphql_files.services.auth import Access, Principal, User
from graphql_files.services.wiring import Services
from graphql_files.settings import Settings

from . import stores

Json = dict[str, Any]

TEST_API_KEY = "test-static-api-key-0123456789"
TEST_JWT_SECRET = "test-jwt-secret-0123456789-0123456789"


def token(
    sub: str = "tester",
    *,
    groups: list[str] | None = None,
    expires_in: int = 3600,
    secret: str = TEST_JWT_SECRET,
    **claims: Any,
) -> str:
    """A user token as the tests' identity provider would issue it."""
    now = int(time.time())
    body: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + expires_in, **claims}
    if groups is not None:
        body["groups"] = groups
    return jwt.encode(body, secret, algorithm="HS256")


def user(sub: str = "tester", **options: Any) -> dict[str, str]:
    return {"authorization": f"Bearer {token(sub, **options)}"}


API_KEY = {"x-api-key": TEST_API_KEY}
# Most tests are about something other than authorization: an API key (data) and a signed-in
# user (storage) together may do everything under the seed's rules.
FULL_ACCESS = {**API_KEY, **user("tester")}


def make_settings(s3_endpoint: str, bucket: str, **overrides: Any) -> Settings:
    """Settings for one test: the session's MongoDB (its own database name in it), the given
    bucket, the test credentials."""
    values: dict[str, Any] = {
        "s3_bucket": bucket,
        "s3_endpoint_url": s3_endpoint,
        "mongodb_database": f"gf_test_{uuid.uuid4().hex[:16]}",
        "api_key": TEST_API_KEY,
        "jwt_secret": TEST_JWT_SECRET,
        "embedded": "memory",  # never start a store of its own
    }
    mongodb_uri = stores.current().mongodb_uri
    if mongodb_uri is not None:
        values["mongodb_uri"] = mongodb_uri
    values.update(overrides)
    return Settings(**values)


async def drop_test_database(settings: Settings) -> None:
    """Drop a test's database on a MongoDB server (the in-process one goes with the app)."""
    if settings.mongodb_uri is not None:
        async with open_database(settings) as database:
            await database.drop()


def services_in(app: Starlette) -> Services:
    """The services a running app opened: its lifespan keeps them in ``app.state``."""
    services: Services = app.state.services
    return services


def schema_of(app: Starlette) -> Schema:
    """The schema ``create_app`` built, kept in ``app.state``."""
    schema: Schema = app.state.schema
    return schema


async def eventually(
    condition: Callable[[], bool] | Callable[[], Awaitable[bool]],
    what: str,
    *,
    timeout: float = 10,
) -> None:
    """Wait until ``condition()`` (a check, or a coroutine that checks) holds, checking every
    10 ms; fail the test, saying ``what`` was awaited, after ``timeout`` seconds. For states
    that nothing announces (a subscription registered by the server, a reader reconnected, an
    object swept): the wait ends as soon as the state is reached, where a fixed sleep would be
    too long on a fast machine and too short on a slow one."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if await result if inspect.isawaitable(result) else result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.01)


async def subscribed(live: LiveServer, count: int) -> None:
    """Wait until ``live`` holds ``count`` websocket subscriptions registered with the broker
    (subscribers sharing one execution count one each): then every change committed from now
    on reaches them."""
    multiplexer = multiplexer_in(live.app)
    await eventually(
        lambda: multiplexer.subscribed == count, f"the server to hold {count} subscriptions"
    )


def multiplexer_in(app: Starlette) -> Multiplexer:
    """The multiplexer of an app's websocket subscriptions."""
    multiplexer: Multiplexer = app.state.multiplexer
    return multiplexer


@dataclass
class GraphQLClient:
    http: httpx.AsyncClient
    headers: dict[str, str] = field(default_factory=dict)

    async def __aenter__(self) -> GraphQLClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def post(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        body: Json = {"query": query}
        if variables is not None:
            body["variables"] = dict(variables)
        return await self.http.post(
            "/graphql", json=body, headers={**self.headers, **(headers or {})}
        )

    async def run(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Json:
        """The response body; fails the test on an HTTP-level error."""
        response = await self.post(query, variables, headers)
        assert response.status_code == 200, response.text
        body: Json = response.json()
        return body

    async def data(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Json:
        """``data``, asserting there were no errors."""
        body = await self.run(query, variables, headers)
        assert "errors" not in body, body["errors"]
        data: Json = body["data"]
        return data

    async def error(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Json:
        """The single error of a refused request (and asserts the field's data is null)."""
        body = await self.run(query, variables, headers)
        assert body.get("errors"), f"expected an error, got {body}"
        assert len(body["errors"]) == 1, body["errors"]
        error: Json = body["errors"][0]
        return error


@asynccontextmanager
async def client_of(
    settings: Settings, headers: Mapping[str, str] = FULL_ACCESS
) -> AsyncIterator[GraphQLClient]:
    """A client of an app of its own on ``settings``, served in process (its lifespan running);
    its database is dropped afterwards."""
    async with LifespanManager(create_app(settings)) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers=dict(headers)
        ) as http:
            yield GraphQLClient(http)
    await drop_test_database(settings)


def codes(body: Json) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors", [])]


@dataclass
class LiveServer:
    url: str  # http://127.0.0.1:<port>
    app: Starlette

    @property
    def services(self) -> Services:
        return services_in(self.app)

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/graphql"

    def client(
        self, headers: Mapping[str, str] | None = None, *, timeout: float = 10
    ) -> GraphQLClient:
        chosen = FULL_ACCESS if headers is None else headers
        return GraphQLClient(httpx.AsyncClient(base_url=self.url, timeout=timeout), dict(chosen))


@asynccontextmanager
async def start_live_server(settings: Settings) -> AsyncIterator[LiveServer]:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_config=None,
        lifespan="on",
        ws_ping_interval=None,
        ssl_certfile=settings.tls_cert_file,
        ssl_keyfile=settings.tls_key_file,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or task.done(), "uvicorn to start")
        if task.done():
            task.result()  # surfaces the start-up error
        port = server.servers[0].sockets[0].getsockname()[1]
        yield LiveServer(url=f"{settings.scheme}://127.0.0.1:{port}", app=app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


class TransportWsClient:
    """A client of the ``graphql-transport-ws`` protocol."""

    protocol = Subprotocol("graphql-transport-ws")
    start_type, stop_type = "subscribe", "complete"

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = 0

    async def init(self, payload: Json | None = None) -> Json:
        """Send ``connection_init``; the server's answer, keep-alives skipped."""
        await self.ws.send(json.dumps({"type": "connection_init", "payload": payload or {}}))
        while True:
            message = await self.receive()
            if message["type"] != "ka":
                return message

    async def subscribe(self, query: str, variables: Json | None = None) -> str:
        self._ids += 1
        op_id = str(self._ids)
        message = {
            "type": self.start_type,
            "id": op_id,
            "payload": {"query": query, "variables": variables or {}},
        }
        await self.ws.send(json.dumps(message))
        return op_id

    async def stop(self, op_id: str) -> None:
        await self.ws.send(json.dumps({"type": self.stop_type, "id": op_id}))

    async def receive(self, timeout: float = 5) -> Json:
        message: Json = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        return message

    async def error_code(self, timeout: float = 5) -> str:
        """The code of the error that ends an operation (an ``error`` message, or a ``next``
        whose payload carries errors)."""
        message = await self.receive(timeout)
        if message["type"] == "error":
            errors = message["payload"]
        else:
            assert message["type"] in ("next", "data"), message
            errors = message["payload"]["errors"]
        code: str = errors[0]["extensions"]["code"]
        return code

    async def next_payload(self, timeout: float = 5) -> Json:
        """The next ``next`` payload, skipping pings/keep-alives."""
        while True:
            message = await self.receive(timeout)
            if message["type"] in ("next", "data"):
                payload: Json = message["payload"]
                return payload
            if message["type"] in ("ping", "pong", "ka"):
                continue
            raise AssertionError(f"unexpected message {message}")


class LegacyWsClient(TransportWsClient):
    """A client of the legacy ``graphql-ws`` (subscriptions-transport-ws) protocol."""

    protocol = Subprotocol("graphql-ws")
    start_type, stop_type = "start", "stop"


@asynccontextmanager
async def ws_client(
    live: LiveServer,
    protocol: type[TransportWsClient] = TransportWsClient,
    payload: Json | None = None,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[TransportWsClient]:
    async with connect(
        live.ws_url,
        subprotocols=[protocol.protocol],
        additional_headers=dict(headers or {}),
    ) as ws:
        client = protocol(ws)
        ack = await client.init(dict(FULL_ACCESS) if payload is None else payload)
        assert ack["type"] == "connection_ack", ack
        yield client


def _image(image_format: str) -> bytes:
    """A real 4x4 image: the server decodes images before it stores them."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 40, 40)).save(buffer, image_format)
    return buffer.getvalue()


PNG = _image("PNG")
JPEG = _image("JPEG")
# Audio is checked by its magic number only: a tag header and filler is enough.
MP3 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 4

PREFLIGHT = {"apollo-require-preflight": "true"}

# A nextToken of 100,000 nested JSON arrays: json.loads raises RecursionError on it.
DEEP_NEXT_TOKEN = base64.urlsafe_b64encode(b"[" * 100_000).decode().rstrip("=")


class BytesReader:
    """An async reader over bytes, as Files.upload reads uploads."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, size: int = -1) -> bytes:
        chunk, self.data = (self.data, b"") if size < 0 else (self.data[:size], self.data[size:])
        return chunk


def full_access(services: Services) -> Access:
    """A caller the built-in rules let do everything: an API key and a signed-in user."""
    user = User("tester", frozenset(), None)
    return Access(services.policy, Principal(api_key="static", user=user))


async def put_object(
    services: Services, path: str, data: bytes = PNG, *, content_type: str = "image/png"
) -> None:
    """Plant an object straight in the bucket, past every API check."""
    await services.files.upload(path, BytesReader(data), content_type=content_type, max_bytes=10**6)


async def multipart(
    client: GraphQLClient,
    query: str,
    variables: Json,
    files: Mapping[str, tuple[str, bytes, str]],
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """A GraphQL multipart request: ``files`` maps a variable path ("variables.input.file")
    to (file name, bytes, content type)."""
    names = {str(n): path for n, path in enumerate(files)}
    data = {
        "operations": json.dumps({"query": query, "variables": variables}),
        "map": json.dumps({n: [path] for n, path in names.items()}),
    }
    parts = {n: files[path] for n, path in names.items()}
    return await client.http.post(
        "/graphql",
        data=data,
        files=parts,
        headers={**client.headers, **PREFLIGHT, **(headers or {})},
    )


async def upload_data(
    client: GraphQLClient, query: str, variables: Json, files: Mapping[str, tuple[str, bytes, str]]
) -> Json:
    response = await multipart(client, query, variables, files)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    assert "errors" not in body, body["errors"]
    data: Json = body["data"]
    return data


async def stored_originals(services: Services, prefix: str = "") -> list[str]:
    """The objects under ``prefix`` but the server's image variants, once every deletion begun
    after an answer is done; fails the test when a variant outlived its original."""
    await services.background.drain()
    return originals_of([o.path async for o in services.files.iterate(prefix)])


def originals_of(keys: list[str]) -> list[str]:
    """``keys`` but image variants; fails the test when a variant is there without its
    original (no variant may outlive it)."""
    originals = [k for k in keys if not is_variant_key(k)]
    strays = [k for k in keys if is_variant_key(k) and original_of(k) not in originals]
    assert not strays, f"variants outlived their originals: {strays}"
    return originals


def count_mongodb_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every read the services send MongoDB from now on, by collection and operation."""
    calls: Counter[str] = Counter()
    for name in ("find", "find_one", "first_per_group", "count", "iterate"):
        real = getattr(Collection, name)

        def counted(
            self: Collection, *args: Any, __real: Any = real, __name: str = name, **kwargs: Any
        ) -> Any:
            calls[f"{self.name}.{__name}"] += 1
            return __real(self, *args, **kwargs)

        monkeypatch.setattr(Collection, name, counted)
    return calls
