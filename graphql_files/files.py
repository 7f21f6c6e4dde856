"""S3 access: the one place that calls botocore, over one aioboto3 client for the app's life."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .embedded import EMBEDDED_ACCESS_KEY, EMBEDDED_BUCKET, EMBEDDED_SECRET_KEY, moto_s3_server
from .errors import StorageUnavailable
from .settings import Settings

log = logging.getLogger(__name__)


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """botocore's exceptions, as domain errors (callers handle expected codes first)."""
    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "?")
        log.warning("S3 refused %s: %s", operation, code)
        raise StorageUnavailable(f"storage refused {operation} ({code})") from exc
    except (BotoCoreError, OSError) as exc:
        log.warning("S3 unreachable during %s: %s", operation, exc)
        raise StorageUnavailable("storage did not answer; try again shortly") from exc


class Files:
    """The bucket: every S3 operation the server makes goes through here."""

    def __init__(self, *, client: Any, bucket: str, endpoint_url: str | None, embedded: bool):
        self._client = client
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.embedded = embedded

    async def ping(self) -> None:
        with translated("head_bucket"):
            await self._client.head_bucket(Bucket=self.bucket)

    async def ensure_bucket(self) -> None:
        with translated("create_bucket"):
            try:
                await self._client.head_bucket(Bucket=self.bucket)
            except ClientError:
                await self._client.create_bucket(Bucket=self.bucket)


@asynccontextmanager
async def open_files(settings: Settings) -> AsyncIterator[Files]:
    """Open the S3 client (starting the embedded moto server when no bucket is configured)."""
    async with AsyncExitStack() as stack:
        client_options: dict[str, Any] = {}
        if settings.s3_bucket is None:
            endpoint: str | None = stack.enter_context(moto_s3_server())
            bucket = EMBEDDED_BUCKET
            session = aioboto3.Session(
                aws_access_key_id=EMBEDDED_ACCESS_KEY,
                aws_secret_access_key=EMBEDDED_SECRET_KEY,
                region_name=settings.s3_region,
            )
        else:
            endpoint, bucket = settings.s3_endpoint_url, settings.s3_bucket
            session = aioboto3.Session(region_name=settings.s3_region)
        config = Config(
            s3={"addressing_style": "path"} if endpoint else {},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
            signature_version="s3v4",
        )
        client = await stack.enter_async_context(
            session.client("s3", endpoint_url=endpoint, config=config, **client_options)
        )
        files = Files(
            client=client, bucket=bucket, endpoint_url=endpoint, embedded=settings.s3_bucket is None
        )
        if files.embedded:
            await files.ensure_bucket()
        yield files
