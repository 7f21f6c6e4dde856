"""create_app: nothing opens before the lifespan, and a lifespan run without a server works."""

from __future__ import annotations

import httpx

from graphql_files.app import create_app
from graphql_files.settings import Settings

from .helpers import API_KEY


async def test_served_through_asgi_with_the_bare_lifespan(settings: Settings) -> None:
    app = create_app(settings)  # opens nothing: there is no connection to close if unused
    assert not hasattr(app.state, "services")
    # Starlette's own lifespan context, as tests often run it: no state reaches the scope
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            created = await http.post(
                "/graphql",
                headers=API_KEY,
                json={"query": 'mutation { createSong(input: {name: "x"}) { version } }'},
            )
            assert created.json() == {"data": {"createSong": {"version": 1}}}
            assert (await http.get("/readyz")).status_code == 200
    assert not hasattr(app.state, "services")  # closed and forgotten
