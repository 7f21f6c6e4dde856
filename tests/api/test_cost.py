"""One request must not stall the server: the static cost limit, the run-time budget of
per-file work, yielding while a large response is built, and the bound on a record's files."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from graphql_files.adapters.s3 import Files
from graphql_files.app import create_app
from graphql_files.domain.declaration import PHOTO_ALBUM
from graphql_files.domain.objects import ObjectInfo
from graphql_files.services.wiring import Services
from graphql_files.settings import Settings

from ..helpers import (
    FULL_ACCESS,
    GraphQLClient,
    full_access,
    services_in,
    start_live_server,
    subscribed,
    ws_client,
)

LISTING = "listPhotoAlbums(limit: 1000) { items { images { url { url } } } }"
ATTACK = "query { " + " ".join(f"a{n}: {LISTING}" for n in range(30)) + " }"


async def albums(services: Services, count: int, images: int) -> None:
    """Albums naming made-up objects (createX paths are not checked against S3)."""
    for n in range(count):
        paths = [f"images/PhotoAlbum/a{n}/{i}.png" for i in range(images)]
        await services.records.create(
            full_access(services),
            PHOTO_ALBUM,
            {"name": "x", "imagePaths": paths},
            record_id=f"a{n}",
        )


async def test_thirty_aliases_of_a_large_listing_are_refused_before_running(
    client: GraphQLClient, services: Services
) -> None:
    await albums(services, 2, 5)
    body = await client.run(ATTACK)
    assert "data" not in body or body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["reason"] == "QUERY_TOO_COSTLY"
    assert error["extensions"]["cost"] == 30 * 32_001
    assert error["extensions"]["maxCost"] == 100_000
    assert "960,030" in error["message"]
    assert "100,000" in error["message"]
    # one of them is allowed
    listing = await client.data("query { " + LISTING + " }")
    assert len(listing["listPhotoAlbums"]["items"]) == 2


PROPS = "items { images { properties { size } } }"


@pytest.mark.parametrize(
    ("query", "variables", "refused"),
    [
        # a variable counts as the most allowed, unless it has a default
        (f"query($n: Int) {{ listPhotoAlbums(limit: $n) {{ {PROPS} }} }}", {"n": 5}, True),
        (f"query($n: Int = 5) {{ listPhotoAlbums(limit: $n) {{ {PROPS} }} }}", {"n": 5}, False),
        (f"{{ listPhotoAlbums(limit: 400) {{ {PROPS} }} }}", None, False),
        (f"{{ listPhotoAlbums(limit: 500) {{ {PROPS} }} }}", None, True),
        ('{ listFiles(input: {path: "images/", pageSize: 1000}) { items { path } } }', None, False),
        # fragments count
        (
            "fragment F on PhotoAlbum { images { properties { size } } } "
            "{ listPhotoAlbums(limit: 500) { items { ...F } } }",
            None,
            True,
        ),
    ],
)
async def test_the_estimate_reads_limits_variables_and_fragments(
    client: GraphQLClient, query: str, variables: dict[str, Any] | None, refused: bool
) -> None:
    body = await client.run(query, variables)
    codes = [e["extensions"].get("reason") for e in body.get("errors", [])]
    assert (codes == ["QUERY_TOO_COSTLY"]) is refused, body


@dataclass
class Tight:
    """An app allowing 1,000 units of per-file work per execution, and its services."""

    client: GraphQLClient
    services: Services


@pytest.fixture
async def tight(settings: Settings) -> AsyncIterator[Tight]:
    app = create_app(settings.model_copy(update={"max_file_work": 1000}))
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=FULL_ACCESS
        ) as http:
            yield Tight(GraphQLClient(http), services_in(app))


async def test_per_file_work_past_the_budget_ends_the_request_with_one_error(
    tight: Tight,
) -> None:
    await albums(tight.services, 3, 400)  # 1,200 URLs: 2,400 units, over 1,000
    body = await tight.client.run("{ listPhotoAlbums { items { images { url { url } } } } }")
    assert body["data"] is None
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert error["extensions"]["reason"] == "FILE_WORK_LIMIT"
    # within the budget, the same shape works: the budget is per execution, not per client
    for _ in range(3):
        fits = await tight.client.data('{ getPhotoAlbum(id: "a0") { images { url { url } } } }')
        assert len(fits["getPhotoAlbum"]["images"]) == 400


async def test_properties_past_the_budget_stop_the_heads(
    tight: Tight, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,000 units pay for 50 HEADs: two albums of 100 files do not make 200."""
    await albums(tight.services, 2, 100)
    heads: list[str] = []
    original = Files.head

    async def counting(self: Files, key: str) -> ObjectInfo | None:
        heads.append(key)
        return await original(self, key)

    monkeypatch.setattr(Files, "head", counting)
    body = await tight.client.run(
        "{ listPhotoAlbums { items { images { properties { size } } } } }"
    )
    assert [e["extensions"]["reason"] for e in body["errors"]] == ["FILE_WORK_LIMIT"]
    assert len(heads) <= 50


async def test_the_budget_is_per_subscription_event(settings: Settings) -> None:
    """Each event is an execution of its own: 20 URLs (40 units) per event under a budget of
    50 go on event after event."""
    async with start_live_server(settings.model_copy(update={"max_file_work": 50})) as live:
        await albums(live.services, 1, 20)
        async with ws_client(live) as ws, live.client() as http:
            await ws.subscribe("subscription { onUpdatePhotoAlbum { images { url { url } } } }")
            await subscribed(live, 1)
            for n in range(3):
                await http.data(
                    'mutation($n: String!) { updatePhotoAlbum(input: {id: "a0", name: $n}) '
                    "{ version } }",
                    {"n": f"n{n}"},
                )
                payload = await ws.next_payload()
                assert "errors" not in payload, payload
                assert len(payload["data"]["onUpdatePhotoAlbum"]["images"]) == 20


async def test_health_is_served_while_a_large_response_is_built(settings: Settings) -> None:
    """A listing of 12,000 signed URLs (allowed) yields to the event loop between records:
    health checks sent meanwhile are answered while it runs, not once it is done. (Measured
    against the listing's own duration, so the machine's speed does not matter: before the
    listing yielded, the first answer came at 0.9 of it.)"""
    roomy = settings.model_copy(update={"max_file_work": 100_000})
    async with start_live_server(roomy) as live, live.client() as http:
        await albums(live.services, 30, 400)
        loop = asyncio.get_running_loop()
        started = loop.time()
        health_answers: list[float] = []
        done: list[float] = []

        async def listing() -> None:
            await http.data(
                "{ listPhotoAlbums(limit: 30) { items { images { url { url expiresAt } } } } }"
            )
            done.append(loop.time())

        async def health() -> None:
            while not done:
                response = await http.http.get("/healthz")
                assert response.status_code == 200
                health_answers.append(loop.time())

        await asyncio.gather(listing(), health())
        first_answer = (health_answers[0] - started) / (done[0] - started)
        assert first_answer < 0.5, f"the first health check waited {first_answer:.0%} of it"


async def test_a_record_names_at_most_max_files(client: GraphQLClient) -> None:
    many = [f"images/PhotoAlbum/big/{n}.png" for n in range(1001)]
    error = await client.error(
        'mutation($p: [String!]) { createPhotoAlbum(input: {id: "big", name: "x", '
        "imagePaths: $p}) { id } }",
        {"p": many},
    )
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "at most 1000 files" in error["message"]
