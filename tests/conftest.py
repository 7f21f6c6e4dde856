"""Shared fixtures: one moto S3 server and one redis-server per session, a fresh app (database,
bucket) per test. The helpers they use, and that tests import, live in ``helpers``.

MongoDB is the embedded engine unless ``GRAPHQL_FILES_TEST_MONGODB_URI`` names a real server;
then every test gets its own database, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aioboto3
import boto3
import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette

from graphql_files.adapters.embedded import moto_s3_server
from graphql_files.app import create_app
from graphql_files.services.wiring import Services
from graphql_files.settings import Settings

from .helpers import (
    FULL_ACCESS,
    GraphQLClient,
    LiveServer,
    drop_test_database,
    make_settings,
    services_in,
    start_live_server,
)
from .processes import RedisProcess

# The tests pass every setting explicitly; none may leak in from the developer's shell.
for _name in [n for n in os.environ if n.startswith("GRAPHQL_FILES_") and "TEST" not in n]:
    del os.environ[_name]
# moto checks no signature, but botocore needs credentials to sign with.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing-key",
    AWS_SECRET_ACCESS_KEY="testing-secret",
    AWS_DEFAULT_REGION="us-east-1",
)
for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
    os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    with moto_s3_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real redis-server for the session; tests keep apart by their own stream keys."""
    server = RedisProcess(str(tmp_path_factory.mktemp("redis")))
    server.start()
    try:
        yield server.url
    finally:
        server.kill()


@pytest.fixture
def s3_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every S3 operation of the clients opened from now on, counted by botocore's own events:
    a handler registered on each new session, which every client the session makes copies."""
    calls: list[str] = []
    real_session = aioboto3.Session

    def count(model: Any, **_: Any) -> None:
        calls.append(model.name)

    def counting_session(*args: Any, **kwargs: Any) -> Any:
        session = real_session(*args, **kwargs)
        session.events.register("before-call.s3", count)
        return session

    monkeypatch.setattr(aioboto3, "Session", counting_session)
    return calls


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"test-{uuid.uuid4().hex[:20]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def settings(s3_endpoint: str, bucket: str) -> Settings:
    return make_settings(s3_endpoint, bucket)


@pytest.fixture
def starlette_app(settings: Settings) -> Starlette:
    """The application, not started: the ``app`` fixture runs its lifespan."""
    return create_app(settings)


@pytest.fixture
async def app(starlette_app: Starlette, settings: Settings) -> AsyncIterator[LifespanManager]:
    """The app with its lifespan running; ``app.app`` is what a transport should call."""
    async with LifespanManager(starlette_app) as manager:
        yield manager
    await drop_test_database(settings)


@pytest.fixture
def services(app: LifespanManager, starlette_app: Starlette) -> Services:
    """The very services the ``app`` fixture's requests use, for seeding and inspecting."""
    return services_in(starlette_app)


@pytest.fixture
async def client(app: LifespanManager) -> AsyncIterator[GraphQLClient]:
    transport = httpx.ASGITransport(app=app.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=FULL_ACCESS
    ) as http:
        yield GraphQLClient(http)


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[LiveServer]:
    """The app served by a real uvicorn on a loopback port, in this event loop."""
    async with start_live_server(settings) as server:
        yield server
    await drop_test_database(settings)
