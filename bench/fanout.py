"""Fan-out: one change to 1,000 and to 5,000 websocket subscribers, against a bare Starlette
broadcast of the same payload to the same number of sockets; and events per second across two
instances through Redis."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from .common import HEADERS, bench_server, raise_open_files_limit, redis_server

GRAPHQL_TRANSPORT_WS = Subprotocol("graphql-transport-ws")
SUBSCRIBERS = (1000, 5000)
ROUNDS = 7
BATCH = 100  # sockets opened at once: no thundering herd of handshakes
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
    for start in range(0, count, BATCH):
        sockets += await asyncio.gather(*(factory() for _ in range(min(BATCH, count - start))))
    return sockets


async def _round(
    http: httpx.AsyncClient, sockets: list[ClientConnection], trigger: Any
) -> tuple[float, str]:
    """Seconds from the trigger until the last socket holds the message; and the message.
    Each round starts after a full collection in the server, for both sides alike."""
    await http.post("/collect-garbage")
    waiting = [asyncio.ensure_future(ws.recv()) for ws in sockets]
    await asyncio.sleep(0)
    start = time.perf_counter()
    await trigger()
    messages = await asyncio.gather(*waiting)
    elapsed = time.perf_counter() - start
    assert len(set(messages)) == 1, "the subscribers did not all get the same message"
    return elapsed, str(messages[0])


async def _fanout(url: str, subscribers: int) -> tuple[float, float, Any]:
    """Median seconds for one change to reach ``subscribers`` GraphQL subscribers, and for a
    bare broadcast of the same message to reach as many bare sockets; and the server's
    subscription figures (``/readyz``) while they were all there."""
    ws_base = url.replace("http://", "ws://")
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=60) as http:
        await http.post(
            "/graphql",
            json={"query": 'mutation { createSong(input: {id: "fan", name: "start"}) { id } }'},
        )
        graphql = await _open(lambda: _graphql_socket(f"{ws_base}/graphql"), subscribers)
        bare = await _open(
            lambda: connect(f"{ws_base}/bare-ws", max_size=None, open_timeout=30), subscribers
        )
        graphql_times: list[float] = []
        bare_times: list[float] = []
        # round -1 warms up, untimed: once every subscriber has had it, all are registered
        for n in range(-1, ROUNDS):  # alternate: drift on a shared machine hits both alike

            async def mutate(n: int = n) -> None:
                response = await http.post(
                    "/graphql", json={"query": UPDATE, "variables": {"n": f"v{n}"}}
                )
                assert "errors" not in response.json(), response.text

            graphql_seconds, message = await _round(http, graphql, mutate)

            async def broadcast(message: str = message) -> None:
                await http.post("/bare-broadcast", content=message)

            bare_seconds, _ = await _round(http, bare, broadcast)
            if n >= 0:
                graphql_times.append(graphql_seconds)
                bare_times.append(bare_seconds)
        stats = (await http.get("/readyz")).json().get("subscriptions")
        for start in range(0, len(graphql + bare), BATCH):
            await asyncio.gather(*(ws.close() for ws in (graphql + bare)[start : start + BATCH]))
    return statistics.median(graphql_times), statistics.median(bare_times), stats


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
    raise_open_files_limit()
    print(
        "Fan-out of one change to websocket subscribers (onUpdateSong, graphql-transport-ws), "
        f"one uvicorn worker, against a bare Starlette broadcast of the same payload to as many "
        f"sockets (median of {ROUNDS} rounds, alternating; time until the last one has it)"
    )
    print(f"  {'subscribers':>11}  {'GraphQL':>10}  {'bare':>10}  {'GraphQL / bare':>14}")
    for subscribers in SUBSCRIBERS:
        with bench_server() as url:  # a fresh server each: none of the other run's sockets
            graphql, bare, stats = asyncio.run(_fanout(url, subscribers))
        print(
            f"  {subscribers:>11,}  {graphql * 1000:>7.1f} ms  {bare * 1000:>7.1f} ms  "
            f"{graphql / bare:>13.2f}x" + (f"   (server: {stats})" if stats else "")
        )
    with redis_server() as redis_url:
        env = {"GRAPHQL_FILES_REDIS_URL": redis_url}
        with bench_server(env) as a, bench_server(env) as b:
            committed, delivered = asyncio.run(_across_instances(a, b))
    print("Across two instances through Redis (20 writers on A, a recordChanges subscriber on B)")
    print(f"  mutations committed on A      {committed:>8,.0f} /s")
    print(f"  events delivered on B         {delivered:>8,.0f} /s")
