"""The embedded stand-ins used when no real service is configured.

MongoDB's stand-in (mongomock-motor) is opened by ``mongo.open_database``; this module starts
moto's S3 server on a loopback port, so signed URLs are real HTTP URLs a browser can open.
Everything here lives in the server's process: its data is gone when the process exits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

EMBEDDED_BUCKET = "graphql-files"
# moto accepts any credentials; these only have to be the same for signer and server.
EMBEDDED_ACCESS_KEY = "graphql-files-embedded"
EMBEDDED_SECRET_KEY = "graphql-files-embedded-secret"  # noqa: S105 - not a secret


@contextmanager
def moto_s3_server(host: str = "127.0.0.1") -> Iterator[str]:
    """Run moto's S3 server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer  # heavy import, only when needed

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    bound_host, port = server.get_host_and_port()
    try:
        yield f"http://{bound_host}:{port}"
    finally:
        server.stop()
