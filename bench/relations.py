"""listPosts(limit: 100), 10 comments each, over real HTTP: with the nested ``comments``
(``Post.comments``, the README's blog) vs without them, request by request, alternating."""

from __future__ import annotations

import json
import statistics
import time

import httpx

from .common import HEADERS, ROOT, bench_server

# The README's blog ("Relationships"), as the repository keeps it.
BLOG = ROOT / "examples" / "blog.toml"
WITH_COMMENTS = {
    "query": "{ listPosts(limit: 100) { items { id title "
    "comments(limit: 10) { items { id content } } } } }"
}
WITHOUT_COMMENTS = {"query": "{ listPosts(limit: 100) { items { id title } } }"}
JSON_HEADERS = {**HEADERS, "content-type": "application/json"}


def _timed(client: httpx.Client, body: bytes) -> float:
    started = time.perf_counter()
    response = client.post("/graphql", content=body, headers=JSON_HEADERS)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.text
    return elapsed


def _check(client: httpx.Client) -> None:
    """Both queries answer in full: 100 posts, and 1,000 comments on the nested side."""
    nested = client.post("/graphql", json=WITH_COMMENTS, headers=HEADERS).json()
    assert "errors" not in nested, nested
    posts = nested["data"]["listPosts"]["items"]
    assert len(posts) == 100, len(posts)
    comments = [c for p in posts for c in p["comments"]["items"]]
    assert len(comments) == 1000, len(comments)
    assert all(c["id"].startswith(p["id"]) for p in posts for c in p["comments"]["items"])
    flat = client.post("/graphql", json=WITHOUT_COMMENTS, headers=HEADERS).json()
    assert "errors" not in flat, flat
    assert len(flat["data"]["listPosts"]["items"]) == 100


def run(requests: int = 300, warmup: int = 30) -> None:
    env = {"GRAPHQL_FILES_MODELS_FILE": str(BLOG)}
    with bench_server(env) as url, httpx.Client(base_url=url, timeout=60) as client:
        seeded = client.post("/seed-posts")
        assert seeded.status_code == 200, seeded.text
        _check(client)
        with_body = json.dumps(WITH_COMMENTS).encode()
        without_body = json.dumps(WITHOUT_COMMENTS).encode()
        with_times: list[float] = []
        without_times: list[float] = []
        # one of each per pair, the order swapped every pair: drift on a shared machine,
        # and whatever one request leaves to the next (a collection), hit both alike
        for n in range(warmup + requests):
            if n % 2:
                nested = _timed(client, with_body)
                flat = _timed(client, without_body)
            else:
                flat = _timed(client, without_body)
                nested = _timed(client, with_body)
            if n >= warmup:
                with_times.append(nested)
                without_times.append(flat)
        execution = client.get("/readyz").json().get("execution")
    with_times.sort()
    without_times.sort()
    p50_with = statistics.median(with_times)
    p50_without = statistics.median(without_times)
    ratio = p50_with / p50_without
    print(
        "listPosts(limit: 100) x 10 comments over HTTP (README's blog; one client, "
        f"{requests} requests each, alternating; p50 / p90)"
    )
    print(f"  without comments         {p50_without * 1000:>7.2f} ms   ", end="")
    print(f"{without_times[int(len(without_times) * 0.9)] * 1000:>7.2f} ms")
    print(f"  with 1,000 comments      {p50_with * 1000:>7.2f} ms   ", end="")
    print(f"{with_times[int(len(with_times) * 0.9)] * 1000:>7.2f} ms")
    print(
        f"  with / without (p50)     {ratio:>7.2f}x   (goal: <= 2.5)"
        + (f"   (server: {execution})" if execution else "")
    )
