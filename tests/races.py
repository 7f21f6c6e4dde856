"""The races' machinery: two requests at a varied offset, what each answered, and what dangles.

A race runs two mutations at once, the second started at an offset from the first drawn from
``[-MAX_OFFSET, MAX_OFFSET]`` (sometimes before it), against a real uvicorn, ``ROUNDS`` times.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from graphql_files.services.wiring import Services

from .helpers import GraphQLClient

ROUNDS = 200
MAX_OFFSET = 0.012  # seconds; both requests take a few milliseconds each


def folder(model: str, record_id: str) -> str:
    return f"images/{model}/{record_id}/"


@dataclass
class Tally:
    """What the rounds of one race ended in."""

    dangling: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)

    def saw(self, first: dict[str, Any], second: dict[str, Any]) -> None:
        key = f"{_outcome(first)} / {_outcome(second)}"
        self.outcomes[key] = self.outcomes.get(key, 0) + 1


def _outcome(body: dict[str, Any]) -> str:
    errors = body.get("errors")
    return errors[0]["extensions"]["code"] if errors else "ok"


async def race(
    first: Callable[[], Awaitable[dict[str, Any]]],
    second: Callable[[], Awaitable[dict[str, Any]]],
    rng: random.Random,
    max_offset: float = MAX_OFFSET,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run both, the second started ``offset`` seconds after the first (or before it)."""
    offset = rng.uniform(-max_offset, max_offset)

    async def delayed(call: Callable[[], Awaitable[dict[str, Any]]], by: float) -> dict[str, Any]:
        if by > 0:
            await asyncio.sleep(by)  # the offset between the two is what this test varies
        return await call()

    a, b = await asyncio.gather(delayed(first, -offset), delayed(second, offset))
    return a, b


async def missing(services: Services, paths: list[str]) -> list[str]:
    """Of the files a record names (all attached by workflows), and the image variants its
    model declares of them, those missing: each a URL that would fail."""
    wanted = [v for p in paths for v in (p, *services.storage.variants.keys_of(p))]
    found = await services.files.head_many(wanted)
    return [p for p, info in zip(wanted, found, strict=True) if info is None]


async def body(client: GraphQLClient, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(query, variables)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    for error in result.get("errors", []):  # refusals are fine; a 500 is not
        assert error["extensions"]["code"] != "INTERNAL_SERVER_ERROR", error
    return result
