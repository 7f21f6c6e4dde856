"""The benchmark server: the real app plus a bare Starlette route over the same store.

Run as a separate process (``python -m bench.server PORT``) so the load generator and the server
do not share a CPU-bound event loop. ``/bare/song/{id}`` reads the same record from the same
MongoDB engine as ``getSong`` and returns byte-for-byte the same JSON, with no GraphQL at all.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from graphql_files.api.connection import services_of
from graphql_files.app import create_app
from graphql_files.domain.declaration import PHOTO_ALBUM, SONG
from graphql_files.services.auth import Access, Principal
from graphql_files.services.wiring import Services
from graphql_files.settings import Settings

from .common import raise_open_files_limit

SONG_FIELDS = ("id", "name", "coverArtPath", "version", "createdAt", "updatedAt")


async def bare_song(request: Request) -> JSONResponse:
    services = services_of(request)
    doc: dict[str, Any] | None = await services.records.collection(SONG).find_one(
        {"_id": request.path_params["id"]}
    )
    if doc is None:
        return JSONResponse({"data": {"getSong": None}}, status_code=404)
    doc["id"] = doc.pop("_id")
    song = {field: doc.get(field) for field in SONG_FIELDS}
    return JSONResponse({"data": {"getSong": song}})


def key_holder(services: Services) -> Access:
    """A caller with an API key: the built-in data rules let it write records."""
    return Access(services.policy, Principal(api_key="static"))


async def seed(request: Request) -> JSONResponse:
    services = services_of(request)
    record = await services.records.create(
        key_holder(services),
        SONG,
        {"name": "Benchmark", "coverArtPath": "images/bench/cover.png"},
        record_id="bench",
    )
    return JSONResponse({"id": record.id})


async def seed_albums(request: Request) -> JSONResponse:
    services = services_of(request)
    for n in range(100):
        paths = [f"images/album-{n}/{i:02}-photo {i}.png" for i in range(10)]
        await services.records.create(
            key_holder(services),
            PHOTO_ALBUM,
            {"name": f"Album {n}", "imagePaths": paths},
            record_id=f"album-{n}",
        )
    return JSONResponse({"albums": 100})


async def seed_posts(request: Request) -> JSONResponse:
    """100 posts with 10 comments each, for a declaration with the README's blog (Post,
    Comment): ``Comment.postId`` names the post."""
    services = services_of(request)
    post_model = services.declaration.model("Post")
    comment_model = services.declaration.model("Comment")
    access = key_holder(services)
    for n in range(100):
        post = f"post-{n:03}"
        await services.records.create(access, post_model, {"title": f"Post {n}"}, record_id=post)
        for i in range(10):
            await services.records.create(
                access,
                comment_model,
                {"content": f"Comment {i} on post {n}", "postId": post},
                record_id=f"{post}-comment-{i:02}",
            )
    return JSONResponse({"posts": 100, "comments": 1000})


BARE_SOCKETS: set[WebSocket] = set()


async def bare_ws(websocket: WebSocket) -> None:
    """A bare Starlette websocket: accept, then just be there for broadcasts."""
    await websocket.accept()
    BARE_SOCKETS.add(websocket)
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        BARE_SOCKETS.discard(websocket)


async def bare_broadcast(request: Request) -> JSONResponse:
    """Send the posted text to every bare socket, as a minimal fan-out."""
    payload = (await request.body()).decode()
    for websocket in tuple(BARE_SOCKETS):
        await websocket.send_text(payload)
    return JSONResponse({"sent": len(BARE_SOCKETS)})


async def collect_garbage(request: Request) -> JSONResponse:
    """A full garbage collection now, so that each timed round starts from the same state
    (otherwise a collection the previous round made due lands in the next one's time)."""
    return JSONResponse({"collected": gc.collect()})


async def memory(request: Request) -> JSONResponse:
    """This process's resident memory now and at its peak, in MiB (Linux)."""
    text = Path("/proc/self/status").read_text()  # noqa: ASYNC240 - procfs: no disk
    status = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return JSONResponse(
        {key: int(status[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM") if key in status}
    )


def main() -> None:
    raise_open_files_limit()
    port = int(sys.argv[1])
    settings = Settings(port=port, log_level="warning")
    app = create_app(settings)
    # first: the app ends with a catch-all websocket route that answers 404
    app.router.routes[:0] = [
        Route("/bare/song/{id}", bare_song),
        Route("/seed", seed, methods=["POST"]),
        Route("/seed-albums", seed_albums, methods=["POST"]),
        Route("/seed-posts", seed_posts, methods=["POST"]),
        Route("/bare-broadcast", bare_broadcast, methods=["POST"]),
        Route("/collect-garbage", collect_garbage, methods=["POST"]),
        Route("/memory", memory),
        WebSocketRoute("/bare-ws", bare_ws),
    ]
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
