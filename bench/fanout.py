"""Fan-out: one change to 1,000 websocket subscribers, against a bare Starlette broadcast of the
same payload to the same number of sockets; and events per second across two instances
through Redis."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from .common import HEADERS, bench_server, redis_server

GRAPHQL_TRANSPORT_WS = Subprotocol("graphql-transport-ws")
SUBSCRIBERS = 1000
ROUNDS = 7
SUBSCRIBE = {
    "type": "subscribe",
    "id": "1",
    "payload": {
        "query": 'subscription { onUpdateSong(filter: {id: {eq: "fan"}}) { id name version } }'
    },
}
UPDATE = 'mutation($n: String!) { updateSong(input: {id: "fan", name: $n}) { version } }'


async def _graphql_socket(ws_url: str) -> ClientConnection:
    ws = await connect(
        ws_url,
        subprotocols=[GRAPHQL_TRANSPORT_WS],
        max_size=None,
        open_timeout=30,
    )
    await ws.send(json.dumps({"type": "connection_init", "payload": HEADERS}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    await ws.send(json.dumps(SUBSCRIBE))
    return ws


async def _open(factory: Any, count: int) -> list[ClientConnection]:
    sockets: list[ClientConnection] = []
    for start in range(0, count, 100):  # in batches: no thundering herd of handshakes
        sockets += await asyncio.gather(*(factory() for _ in range(min(100, count - start))))
    return sockets


async def _round(sockets: list[ClientConnection], trigger: Any) -> tuple[float, str]:
    """Seconds from the trigger until the last socket holds the message; and the message."""
    waiting = [asyncio.ensure_future(ws.recv()) for ws in sockets]
    await asyncio.sleep(0)
    start = time.perf_counter()
    await trigger()
    messages = await asyncio.gather(*waiting)
    elapsed = time.perf_counter() - start
    assert len(set(messages)) == 1, "the subscribers did not all get the same message"
    return elapsed, str(messages[0])


async def _fanout(url: str) -> tuple[float, float]:
    ws_base = url.replace("http://", "ws://")
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=60) as http:
        await http.post(
            "/graphql",
            json={"query": 'mutation { createSong(input: {id: "fan", name: "start"}) { id } }'},
        )
        graphql = await _open(lambda: _graphql_socket(f"{ws_base}/graphql"), SUBSCRIBERS)
        bare = await _open(
            lambda: connect(f"{ws_base}/bare-ws", max_size=None, open_timeout=30), SUBSCRIBERS
        )
        await asyncio.sleep(1)  # every subscription registered
        graphql_times: list[float] = []
        bare_times: list[float] = []
        for n in range(ROUNDS):  # alternate: drift on a shared machine hits both alike

            async def mutate(n: int = n) -> None:
                response = await http.post(
                    "/graphql", json={"query": UPDATE, "variables": {"n": f"v{n}"}}
                )
                assert "errors" not in response.json(), response.text

            seconds, message = await _round(graphql, mutate)
            graphql_times.append(seconds)

            async def broadcast(message: str = message) -> None:
                await http.post("/bare-broadcast", content=message)

            seconds, _ = await _round(bare, broadcast)
            bare_times.append(seconds)
        for ws in graphql + bare:
            await ws.close()
    return statistics.median(graphql_times), statistics.median(bare_times)


async def _across_instances(a: str, b: str, seconds: float = 5.0) -> tuple[float, float]:
    """Mutations per second committed on A; events per second a subscriber on B received."""
    async with httpx.AsyncClient(base_url=a, headers=HEADERS, timeout=60) as http:
        for n in range(20):
            await http.post(
                "/graphql",
                json={
                    "query": f'mutation {{ createSong(input: {{id: "x{n}", name: "x"}}) {{ id }} }}'
                },
            )
        ws = await connect(
            b.replace("http://", "ws://") + "/graphql", subprotocols=[GRAPHQL_TRANSPORT_WS]
        )
        await ws.send(json.dumps({"type": "connection_init", "payload": HEADERS}))
        await ws.recv()
        await ws.send(
            json.dumps(
                {
                    "type": "subscribe",
                    "id": "1",
                    "payload": {"query": "subscription { recordChanges { cursor version } }"},
                }
            )
        )
        await asyncio.sleep(0.5)
        received = 0
        committed = 0
        stop = time.perf_counter() + seconds

        async def count() -> None:
            nonlocal received
            while True:
                await ws.recv()
                received += 1

        async def write(n: int) -> None:
            nonlocal committed
            while time.perf_counter() < stop:
                await http.post(
                    "/graphql",
                    json={
                        "query": f"mutation {{ updateSong(input: {{id: "
                        f'"x{n}", name: "y"}}) {{ version }} }}'
                    },
                )
                committed += 1

        counter = asyncio.create_task(count())
        start = time.perf_counter()
        await asyncio.gather(*(write(n) for n in range(20)))
        elapsed = time.perf_counter() - start
        deadline = time.perf_counter() + 10
        while received < committed and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        delivered_in = time.perf_counter() - start
        counter.cancel()
        await ws.close()
    return committed / elapsed, received / delivered_in


def run() -> None:
    with bench_server() as url:
        graphql, bare = asyncio.run(_fanout(url))
    print(
        f"Fan-out of one change to {SUBSCRIBERS:,} websocket subscribers, one uvicorn worker "
        f"(median of {ROUNDS}, alternating)"
    )
    print(f"  onUpdateSong (mutation -> last subscriber)   {graphql * 1000:>8.1f} ms")
    print(f"  bare Starlette broadcast, same payload       {bare * 1000:>8.1f} ms")
    print(f"  GraphQL / bare                               {graphql / bare:>8.2f}x")
    with redis_server() as redis_url:
        env = {"GRAPHQL_FILES_REDIS_URL": redis_url}
        with bench_server(env) as a, bench_server(env) as b:
            committed, delivered = asyncio.run(_across_instances(a, b))
    print("Across two instances through Redis (20 writers on A, a recordChanges subscriber on B)")
    print(f"  mutations committed on A      {committed:>8,.0f} /s")
    print(f"  events delivered on B         {delivered:>8,.0f} /s")
