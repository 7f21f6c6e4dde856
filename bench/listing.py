"""listPhotoAlbums(limit: 100), 10 images each: with image URLs vs without, over real HTTP."""

from __future__ import annotations

import httpx

from .common import HEADERS, bench_server, wrk

WITH_URLS = {
    "query": "{ listPhotoAlbums(limit: 100) { items { id name imagePaths "
    "images { path url { url expiresAt } } } } }"
}
WITHOUT_URLS = {
    "query": "{ listPhotoAlbums(limit: 100) { items { id name imagePaths images { path } } } }"
}


def run(seconds: int = 5, rounds: int = 3) -> None:
    with bench_server() as url:
        httpx.post(f"{url}/seed-albums", timeout=60)
        body = httpx.post(f"{url}/graphql", json=WITH_URLS, timeout=60, headers=HEADERS).json()
        urls = [
            i["url"]["url"] for a in body["data"]["listPhotoAlbums"]["items"] for i in a["images"]
        ]
        assert len(urls) == 1000, len(urls)
        best_with = best_without = 0.0
        for _ in range(rounds):
            best_with = max(
                best_with, wrk(f"{url}/graphql", seconds=seconds, connections=4, body=WITH_URLS)
            )
            best_without = max(
                best_without,
                wrk(f"{url}/graphql", seconds=seconds, connections=4, body=WITHOUT_URLS),
            )
    ratio = best_without / best_with  # time per request with URLs / without
    print(
        "listPhotoAlbums(limit: 100) x 10 images over HTTP (wrk -t1 -c4; best of "
        f"{rounds} x {seconds}s)"
    )
    print(f"  without URLs            {best_without:>8,.1f} req/s")
    print(f"  with 1,000 signed URLs  {best_with:>8,.1f} req/s")
    print(f"  with / without (time)   {ratio:>8.2f}x   (goal: <= 2.0)")
