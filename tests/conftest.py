"""Shared fixtures: the stores (SecantusDB and SeaweedFS, see ``stores``) and one redis-server
per session, a fresh app (database, bucket) per test. The helpers they use, and that tests
import, live in ``helpers``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aioboto3
import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette

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
from .stores import OWN_S3_ENDPOINT, TEST_S3_CREDENTIALS, SessionStores, session_stores

# The tests pass every setting explicitly; none may leak in from the developer's shell.
for _name in [n for n in os.environ if n.startswith("GRAPHQL_FILES_") and "TEST" not in n]:
    del os.environ[_name]
# The session's SeaweedFS accepts these, and every boto3 client of the suite signs with them
# (one's own S3 takes the credentials of one's own environment).
if OWN_S3_ENDPOINT is None:
    os.environ.update(
        AWS_ACCESS_KEY_ID=TEST_S3_CREDENTIALS[0],
        AWS_SECRET_ACCESS_KEY=TEST_S3_CREDENTIALS[1],
        AWS_DEFAULT_REGION="us-east-1",
    )
    for _name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        os.environ.pop(_name, None)


@pytest.fixture(scope="session")
async def stores(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SessionStores]:
    """The session's MongoDB and S3 (``tests/stores.py``); ``make_settings`` points at them."""
    async with session_stores(tmp_path_factory.mktemp("stores")) as started:
        yield started
        residue = started.buckets.residue
        assert not residue, f"objects written after their test ended: {residue}"


@pytest.fixture(scope="session")
def s3_endpoint(stores: SessionStores) -> str:
    return stores.s3_endpoint


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
def bucket(stores: SessionStores) -> Iterator[str]:
    """A bucket of the test's own, empty (from the session's pool)."""
    with stores.buckets.lease() as name:
        yield name


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
