"""GraphiQL, served entirely by this server: the page and its assets (react, graphiql, the
explorer plugin) ship inside the package (``scripts/vendor-graphiql`` refreshes them), so the
playground works where the browser cannot reach a CDN.

On the embedded defaults, served on loopback only, the page opens with the credentials made at
start-up in its Headers editor, so a newcomer's first query just works. The URL parameters
``q``, ``variables`` and ``headers`` keep working, and headers reach websocket subscriptions
(GraphiQL sends them as the ``connection_init`` payload).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path

STATIC = Path(__file__).parent / "static"
ASSETS = STATIC / "graphiql"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@cache
def _template() -> str:
    return (STATIC / "graphiql.html").read_text(encoding="utf-8")


def graphiql_page(*, assets_url: str, headers: Mapping[str, str]) -> str:
    """The page, loading its assets from ``assets_url``, its Headers editor holding
    ``headers`` (none: empty)."""
    text = json.dumps(dict(headers), indent=2) if headers else ""
    literal = json.dumps(text).replace("</", "<\\/")  # a JS string, safe inside <script>
    return _template().replace("__ASSETS__", assets_url).replace("__DEFAULT_HEADERS__", literal)
