"""getSong over real HTTP vs a bare Starlette route reading the same record, same server."""

from __future__ import annotations

import httpx

from .common import HEADERS, bench_server, wrk

GET_SONG = {
    "query": 'query { getSong(id: "bench") { id name coverArtPath version createdAt updatedAt } }'
}


def run(seconds: int = 5, rounds: int = 3) -> None:
    with bench_server() as url:
        httpx.post(f"{url}/seed")
        graphql = httpx.post(f"{url}/graphql", json=GET_SONG, headers=HEADERS).json()
        bare = httpx.get(f"{url}/bare/song/bench").json()
        assert graphql == bare, (graphql, bare)  # the same JSON, or the comparison means nothing
        wrk(f"{url}/graphql", seconds=1, body=GET_SONG)  # warm up both paths
        wrk(f"{url}/bare/song/bench", seconds=1)
        best_graphql = best_bare = 0.0
        for _ in range(rounds):  # alternate, so drift on a shared machine hits both alike
            best_graphql = max(best_graphql, wrk(f"{url}/graphql", seconds=seconds, body=GET_SONG))
            best_bare = max(best_bare, wrk(f"{url}/bare/song/bench", seconds=seconds))
    print(
        "getSong over HTTP (uvicorn, 1 worker, uvloop+httptools; wrk -t1 -c32; best of "
        f"{rounds} x {seconds}s)"
    )
    print(f"  GraphQL getSong        {best_graphql:>9,.0f} req/s")
    print(f"  bare Starlette route   {best_bare:>9,.0f} req/s")
    print(f"  GraphQL / bare         {best_graphql / best_bare:>9.2f}   (goal: >= 0.50)")
