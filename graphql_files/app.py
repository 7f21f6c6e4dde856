"""``create_app(settings)``: the Starlette application, with its services opened in the lifespan."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import TypedDict

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from .api.connection import services_of
from .api.http.body_limit import BodyLimit
from .api.http.graphiql import ASSETS as GRAPHIQL_ASSETS
from .api.http.view import GraphQLView
from .api.schema.build import build_schema
from .api.ws.appsync import AppSyncRealtime
from .api.ws.multiplex import Multiplexer, multiplexer_of
from .domain.declaration import Declaration, load_declaration
from .services.sweep import sweep_periodically
from .services.wiring import Services, describe, open_services
from .settings import LOCALHOST_ORIGINS, Settings

log = logging.getLogger("graphql_files")


class State(TypedDict):
    services: Services


async def healthz(request: Request) -> JSONResponse:
    """Answers while the process lives."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """200 only when MongoDB and S3 both answer."""
    services = services_of(request)
    report = await services.readiness()
    ready = all(v == "ok" for v in report.values())
    # Events are reported, not required: mutations commit without them (subscribers are told).
    events = {
        "backend": services.broker.backend,
        "healthy": services.broker.healthy,
        **services.broker.stats.as_dict(),
    }
    # Websocket subscriptions: groups of subscribers sharing one execution, and their members.
    multiplexer = multiplexer_of(request)
    subscriptions = multiplexer.stats() if multiplexer is not None else {}
    # Queries and mutations by the path that ran them (chosen once per document): compiled, or
    # graphql-core's executor; and the prepared-operation cache.
    schema = request.app.state.schema
    execution = {
        **{path: schema.paths[path] for path in ("compiled", "graphql-core")},
        "prepared": len(schema.prepared),
        "preparedBytes": schema.prepared.bytes,
    }
    return JSONResponse(
        {
            "ready": ready,
            **report,
            "events": events,
            "subscriptions": subscriptions,
            "execution": execution,
        },
        status_code=200 if ready else 503,
    )


async def no_such_websocket(websocket: WebSocket) -> None:
    """A websocket to a path that serves none: 404, as HTTP would say (not Starlette's 403)."""
    await websocket.send_denial_response(PlainTextResponse("Not Found", status_code=404))


def tune_collector() -> tuple[int, int, int]:
    """Tune the cyclic garbage collector for serving; returns its former thresholds.

    What is open once the services are (the schema, the drivers, botocore's models, an embedded
    S3) lives as long as the app: frozen, full collections no longer walk it. A request
    allocates thousands of short-lived objects, nearly all freed by reference counting: young
    collections every 10,000 allocations rather than 700 cost less and find as much."""
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    return before


def create_app(settings: Settings, declaration: Declaration | None = None) -> Starlette:
    """The application for ``declaration``'s models (read from ``MODELS_FILE`` when not
    given); nothing is opened until its lifespan starts."""
    declaration = declaration or load_declaration(settings.models_file)
    view = GraphQLView(build_schema(settings, declaration), settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        async with open_services(settings, declaration) as services, AsyncExitStack() as tasks:
            if settings.sweep_interval is not None:
                sweeping = asyncio.create_task(
                    sweep_periodically(
                        services.sweeper,
                        every=settings.sweep_interval,
                        grace=timedelta(seconds=settings.sweep_grace),
                    )
                )
                tasks.callback(sweeping.cancel)
            url = f"{settings.scheme}://{settings.host}:{settings.port}/graphql"
            log.info("%s", describe(services, url=url))
            app.state.services = services
            thresholds = tune_collector()
            try:
                yield {"services": services}
            finally:
                del app.state.services
                gc.unfreeze()
                gc.set_threshold(*thresholds)

    routes = [
        Route("/graphql", BodyLimit(view, settings, largest_file=declaration.largest_file)),
        WebSocketRoute("/graphql", view),
        WebSocketRoute("/graphql/realtime", AppSyncRealtime(view)),
        Mount("/graphql/assets", StaticFiles(directory=GRAPHIQL_ASSETS), name="graphiql"),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        WebSocketRoute("/{path:path}", no_such_websocket),
    ]
    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_origin_regex=None if settings.cors_origins else LOCALHOST_ORIGINS,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
        )
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    # every websocket protocol's subscriptions, grouped to share executions
    app.state.multiplexer = Multiplexer(view.schema)
    app.state.schema = view.schema  # for tests and diagnostics: its prepared-operation cache
    return app
