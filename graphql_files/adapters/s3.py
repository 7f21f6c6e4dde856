"""S3 access: the one module that calls botocore, over one aioboto3 client for the app's life.

Every botocore exception is translated here: a missing object is ``None`` (or ``NotFound``), a
failed ``If-None-Match`` is ``Conflict``, anything else is ``StorageUnavailable``. Uploads stream
in parts of ``PART_SIZE`` (a single PUT below it, a multipart upload above), ``PARTS_IN_FLIGHT``
sent while the next is read, so memory per upload is bounded by a few parts whatever the file's
size.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import IO, Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.handlers import add_expect_header

from ..domain.objects import ObjectInfo, PresignedPost, Readable, SignedUrl
from ..errors import Conflict, NotFound, PayloadTooLarge, StorageUnavailable
from ..settings import CLOCK_SKEW_SECONDS, S3_ATTEMPTS, Settings
from .embedded import S3Target, configured_s3
from .signing import PROBE_KEY, Credentials, UrlSigner

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024  # S3's multipart minimum is 5 MiB
PARTS_IN_FLIGHT = 2  # parts sent at once while the next is read: memory is bounded by 3 parts
DELETE_BATCH = 1000  # DeleteObjects' limit
HEAD_CONCURRENCY = 16
CREDENTIAL_CHECK_SECONDS = 30.0  # botocore refreshes 15 minutes before expiry: ample margin
READ_CHUNK = 256 * 1024
_MISSING = {"404", "NoSuchKey", "NotFound"}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "?"))


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """botocore's exceptions as domain errors (callers handle expected codes first)."""
    try:
        yield
    except ClientError as exc:
        log.warning("S3 refused %s: %s", operation, _code(exc))
        if _code(exc) == "RequestTimeTooSkewed":
            raise StorageUnavailable(
                f"storage refused {operation}: this server's clock and storage's differ by more "
                "than 15 minutes (keep the server's clock synchronised, e.g. with NTP)"
            ) from exc
        raise StorageUnavailable(f"storage refused {operation} ({_code(exc)})") from exc
    except (BotoCoreError, OSError) as exc:
        log.warning("S3 unreachable during %s: %s", operation, exc)
        raise StorageUnavailable("storage did not answer; try again shortly") from exc


async def _read_up_to(source: Readable, size: int) -> bytes:
    """Up to ``size`` bytes; fewer only at the end of the stream."""
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = await source.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class Files:
    """The bucket: every S3 operation the server makes goes through here."""

    def __init__(
        self,
        *,
        client: Any,
        credentials: Any,
        signer: UrlSigner,
        bucket: str,
        endpoint_url: str | None,
        embedded: bool,
    ) -> None:
        self._client = client
        self._credentials = credentials
        self._signer = signer
        self._signing_credentials: Credentials | None = None
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.embedded = embedded
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        # S3's clock minus ours (``measure_clock``): URLs and forms are dated by S3's clock
        self.clock_offset = timedelta(0)

    def now(self) -> datetime:
        """The time by S3's clock, to the second (as SigV4 dates are)."""
        return (self.clock() + self.clock_offset).replace(microsecond=0)

    async def measure_clock(self) -> None:
        """Read S3's clock (the ``Date`` header of its answer to a HEAD, refusals included)
        and date signed URLs and upload forms by it from now on: a URL that says it opens for
        60 s does, even when this machine's clock is minutes off. Past ``CLOCK_SKEW_SECONDS``
        the log says so once: S3 refuses requests signed more than 15 minutes off."""
        asked = self.clock()
        try:
            response = await self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            response = exc.response
        except (BotoCoreError, OSError) as exc:
            log.warning("could not read S3's clock (%s): URLs are dated by this server's", exc)
            return
        answered = _date_header(response)
        if answered is None:
            return
        offset = answered - asked.replace(microsecond=0)
        # the header has whole seconds and the answer took a moment: small offsets are noise
        self.clock_offset = offset if abs(offset) > timedelta(seconds=2) else timedelta(0)
        if abs(offset) > timedelta(seconds=CLOCK_SKEW_SECONDS):
            side = "behind" if offset > timedelta(0) else "ahead of"
            log.warning(
                "this server's clock is %ds %s S3's: signed URLs are dated by S3's clock, but S3 "
                "refuses requests signed more than 15 minutes off; keep the clock synchronised "
                "(NTP)",
                abs(offset.total_seconds()),
                side,
            )

    async def ping(self) -> None:
        with translated("head_bucket"):
            await self._client.head_bucket(Bucket=self.bucket)

    async def ensure_bucket(self) -> None:
        with translated("create_bucket"):
            try:
                await self._client.head_bucket(Bucket=self.bucket)
            except ClientError:
                await self._client.create_bucket(Bucket=self.bucket)

    # --- reading -----------------------------------------------------------------------------

    async def head(self, key: str) -> ObjectInfo | None:
        """The object's properties, or ``None`` when there is no such object."""
        with translated("head_object"):
            try:
                response = await self._client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    return None
                raise
        return ObjectInfo(
            path=key,
            size=int(response["ContentLength"]),
            content_type=response.get("ContentType"),
            etag=response.get("ETag"),
            last_modified=response["LastModified"],
        )

    async def head_many(self, keys: Sequence[str]) -> list[ObjectInfo | None]:
        """HEAD each key, at most ``HEAD_CONCURRENCY`` at a time (S3 has no batch HEAD)."""
        limit = asyncio.Semaphore(HEAD_CONCURRENCY)

        async def one(key: str) -> ObjectInfo | None:
            async with limit:
                return await self.head(key)

        return list(await asyncio.gather(*(one(k) for k in keys)))

    async def read_start(self, key: str, size: int) -> bytes:
        """The first ``size`` bytes of an object (a ranged GET)."""
        with translated("get_object"):
            response = await self._client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes=0-{size - 1}"
            )
            async with response["Body"] as body:
                data: bytes = await body.read()
                return data

    async def read_into(self, key: str, sink: IO[bytes], *, max_bytes: int) -> None:
        """Stream the object into ``sink``, a chunk at a time; ``PayloadTooLarge`` past
        ``max_bytes`` (the object may have grown since it was HEADed)."""
        received = 0
        with translated("get_object"):
            try:
                response = await self._client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    raise NotFound(f"no object at {key}", path=key) from exc
                raise
            body = response["Body"]  # botocore's StreamingBody: read(n) reads at most n
            async with body:
                while chunk := await body.read(READ_CHUNK):
                    received += len(chunk)
                    _check_size(received, max_bytes)
                    sink.write(chunk)

    async def list_page(
        self, prefix: str, *, page_size: int, after: str | None = None
    ) -> tuple[list[ObjectInfo], str | None]:
        """Up to ``page_size`` objects under ``prefix`` whose keys come after ``after``, in key
        order, and the key the next page starts after (``None`` on the last page).

        One more key than the page is asked for, so a page is full unless it is the last and
        the last page is never empty (S3's own continuation can end on an empty page, and a
        store that pages over the empty folders deletions leave behind, as SeaweedFS does,
        ends on one more often)."""
        items: list[ObjectInfo] = []
        options: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if after:
            options["StartAfter"] = after
        while True:
            options["MaxKeys"] = page_size + 1 - len(items)
            with translated("list_objects_v2"):
                response = await self._client.list_objects_v2(**options)
            items += [
                ObjectInfo(
                    path=o["Key"],
                    size=int(o["Size"]),
                    content_type=None,  # listings carry no content type
                    etag=o.get("ETag"),
                    last_modified=o["LastModified"],
                )
                for o in response.get("Contents", [])
            ]
            if len(items) > page_size:
                return items[:page_size], items[page_size - 1].path
            token = response.get("NextContinuationToken")
            if not response.get("IsTruncated") or not token:
                return items, None
            options["ContinuationToken"] = token

    async def iterate(self, prefix: str, *, page_size: int = 1000) -> AsyncIterator[ObjectInfo]:
        """Every object under ``prefix``, one page in memory at a time."""
        after: str | None = None
        while True:
            items, after = await self.list_page(prefix, page_size=page_size, after=after)
            for item in items:
                yield item
            if after is None:
                return

    # --- writing -----------------------------------------------------------------------------

    async def upload(
        self,
        key: str,
        source: Readable,
        *,
        content_type: str,
        max_bytes: int,
        prevent_overwrite: bool = False,
        content_disposition: str | None = None,
        before_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> ObjectInfo:
        """Stream ``source`` to ``key``; ``Conflict`` if ``prevent_overwrite`` and it exists.
        ``content_disposition`` is stored with the object (``attachment`` for scriptable types).
        ``before_commit`` is awaited once ``source`` is read to its end and before the object
        becomes visible (the single PUT, or the multipart upload's completion): if it raises,
        nothing is stored (a multipart upload is aborted).

        The properties returned come from S3's answer to the PUT (or to the multipart upload's
        completion) and the bytes counted on the way: S3 has the object once it answers, so no
        HEAD follows."""
        guard = {"IfNoneMatch": "*"} if prevent_overwrite else {}
        headers = {"ContentType": content_type}
        if content_disposition is not None:
            headers["ContentDisposition"] = content_disposition
        first = await _read_up_to(source, PART_SIZE)
        second = await _read_up_to(source, PART_SIZE) if len(first) == PART_SIZE else b""
        with translated("upload"), self._precondition(key):
            if not second:
                _check_size(len(first), max_bytes)
                if before_commit is not None:
                    await before_commit()
                response = await self._client.put_object(
                    Bucket=self.bucket, Key=key, Body=first, **headers, **guard
                )
                size = len(first)
            else:
                response, size = await self._multipart_upload(
                    key, source, [first, second], headers, max_bytes, guard, before_commit
                )
        return ObjectInfo(
            path=key,
            size=size,
            content_type=content_type,
            etag=response.get("ETag"),
            last_modified=_answered_at(response),
        )

    async def _multipart_upload(
        self,
        key: str,
        source: Readable,
        head: list[bytes],
        headers: dict[str, str],
        max_bytes: int,
        guard: dict[str, str],
        before_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> tuple[dict[str, Any], int]:
        """The completion's answer and the bytes sent."""
        created = await self._client.create_multipart_upload(Bucket=self.bucket, Key=key, **headers)
        upload_id = created["UploadId"]
        sending: dict[int, asyncio.Task[Any]] = {}
        sent = 0
        try:
            pending: list[bytes] = list(head)
            while True:
                chunk = pending.pop(0) if pending else await _read_up_to(source, PART_SIZE)
                if not chunk:
                    break
                sent += len(chunk)
                _check_size(sent, max_bytes)
                number = len(sending) + 1
                sending[number] = asyncio.create_task(
                    self._client.upload_part(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                    )
                )
                del chunk
                # the next part is read while these are sent; memory: (this + 1) parts
                in_flight = [t for t in sending.values() if not t.done()]
                if len(in_flight) >= PARTS_IN_FLIGHT:
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for task in sending.values():
                    if task.done():
                        task.result()  # a failed part fails the upload now
            if before_commit is not None:  # while the last parts are still being sent
                await before_commit()
            await asyncio.gather(*sending.values())
            parts = [
                {"ETag": task.result()["ETag"], "PartNumber": number}
                for number, task in sending.items()
            ]
            completed: dict[str, Any] = await self._client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **guard,
            )
            return completed, sent
        except BaseException:
            for task in sending.values():
                task.cancel()
            await asyncio.gather(*sending.values(), return_exceptions=True)
            try:
                await self._client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id
                )
            except (ClientError, BotoCoreError, OSError) as exc:
                log.warning("could not abort the multipart upload of %s: %s", key, exc)
            raise

    @contextmanager
    def _precondition(self, key: str) -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise Conflict(f"an object already exists at {key}", path=key) from exc
            raise

    async def copy(self, source: str, destination: str, *, prevent_overwrite: bool) -> ObjectInfo:
        guard = {"IfNoneMatch": "*"} if prevent_overwrite else {}
        with translated("copy_object"), self._precondition(destination):
            try:
                await self._client.copy_object(
                    Bucket=self.bucket,
                    Key=destination,
                    CopySource={"Bucket": self.bucket, "Key": source},
                    **guard,
                )
            except ClientError as exc:
                if _code(exc) in _MISSING:
                    raise NotFound(f"no object at {source}", path=source) from exc
                raise
        info = await self.head(destination)
        if info is None:  # pragma: no cover
            raise StorageUnavailable(f"{destination} vanished right after its copy")
        return info

    async def delete(self, key: str) -> None:
        with translated("delete_object"):
            await self._client.delete_object(Bucket=self.bucket, Key=key)

    async def delete_many(self, keys: Sequence[str]) -> list[str]:
        """Delete in batches of 1,000; returns the keys that could not be deleted."""
        failed: list[str] = []
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            with translated("delete_objects"):
                response = await self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            for error in response.get("Errors", []):
                log.warning("S3 did not delete %s: %s", error.get("Key"), error.get("Code"))
                failed.append(error["Key"])
        return failed

    # --- signing -----------------------------------------------------------------------------

    async def refresh_signing_credentials(self) -> None:
        """Take the credentials URLs are signed with. Refreshable ones (instance roles, STS)
        renew themselves here when they are near expiry."""
        frozen = await self._credentials.get_frozen_credentials()
        self._signing_credentials = Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    def signing_credentials_due(self) -> bool:
        """Whether the signing credentials are missing or within botocore's refresh window."""
        refresh_needed = getattr(self._credentials, "refresh_needed", None)
        return self._signing_credentials is None or bool(refresh_needed and refresh_needed())

    async def keep_signing_credentials_fresh(self, every: float = CREDENTIAL_CHECK_SECONDS) -> None:
        """Refresh the signing credentials before they expire, off the request path, so that
        signing a URL stays a plain function. Runs until cancelled."""
        while True:
            await asyncio.sleep(every)
            if not self.signing_credentials_due():
                continue
            try:
                await self.refresh_signing_credentials()
            except (BotoCoreError, OSError) as exc:  # the old ones are valid until they expire
                log.warning("could not refresh the S3 credentials (retrying): %s", exc)

    def signed_url(
        self, key: str, *, expires_in: int, content_disposition: str | None = None
    ) -> SignedUrl:
        """A presigned GET URL, signed locally: no network call, no await."""
        return self.url_batch(expires_in=expires_in, content_disposition=content_disposition)(key)

    def url_batch(
        self, *, expires_in: int, content_disposition: str | None = None
    ) -> Callable[[str], SignedUrl]:
        """Signs GET URLs for many keys with these options and one reading of the clock (a
        page of URLs, all expiring together): locally, per key only a hash and an HMAC."""
        if self._signing_credentials is None:  # pragma: no cover - open_files takes them first
            raise StorageUnavailable("no credentials to sign URLs with yet")
        now = self.now()
        batch = self._signer.batch(
            credentials=self._signing_credentials,
            expires_in=expires_in,
            now=now,
            content_disposition=content_disposition,
        )
        expires_at = now + timedelta(seconds=expires_in)

        def sign(key: str) -> SignedUrl:
            return SignedUrl(url=batch.sign(key), expires_at=expires_at)

        return sign

    async def botocore_signed_url(self, key: str, *, expires_in: int) -> str:
        """The same URL as botocore's own ``generate_presigned_url`` makes it: the reference the
        local signer is tested and measured against."""
        url: str = await self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
        )
        return url

    async def presigned_post(
        self,
        key: str,
        *,
        content_type: str,
        min_size: int,
        max_size: int,
        expires_in: int,
        content_disposition: str | None = None,
    ) -> PresignedPost:
        """A browser upload form whose policy pins the key, content type and size range (and
        the ``Content-Disposition`` to store, when given). botocore dates the policy by this
        machine's clock: its lifetime is corrected by the offset from S3's."""
        now = self.now()
        lifetime = max(1, expires_in + int(self.clock_offset.total_seconds()))
        fields = {"Content-Type": content_type}
        if content_disposition is not None:
            fields["Content-Disposition"] = content_disposition
        conditions: list[Any] = [{name: value} for name, value in fields.items()]
        with translated("generate_presigned_post"):
            post = await self._client.generate_presigned_post(
                Bucket=self.bucket,
                Key=key,
                Fields=fields,
                Conditions=[*conditions, ["content-length-range", min_size, max_size]],
                ExpiresIn=lifetime,
            )
        return PresignedPost(
            url=post["url"],
            fields=dict(post["fields"]),
            path=key,
            expires_at=now + timedelta(seconds=expires_in),
        )


def _date_header(response: dict[str, Any]) -> datetime | None:
    """When S3 answered (its ``Date`` header), if it said."""
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return parsedate_to_datetime(date).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def _answered_at(response: dict[str, Any]) -> datetime:
    """When S3 answered a write (to the second, as ``Last-Modified`` is): the object's
    last-modified time, which the answer to a PUT does not otherwise carry."""
    return _date_header(response) or datetime.now(UTC).replace(microsecond=0)


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise PayloadTooLarge(f"the file is larger than {max_bytes} bytes", maxBytes=max_bytes)


@asynccontextmanager
async def open_files(settings: Settings, target: S3Target | None = None) -> AsyncIterator[Files]:
    """Open the S3 client for ``target`` (from ``embedded.open_stores``; else the configured
    bucket), for the app's life; an embedded store's bucket is created if missing."""
    target = target or configured_s3(settings)
    if target is None:
        raise StorageUnavailable("no S3 bucket: set GRAPHQL_FILES_S3_BUCKET")
    async with AsyncExitStack() as stack:
        endpoint, bucket = target.endpoint_url, target.bucket
        if target.credentials is not None:
            access_key, secret_key = target.credentials
            session = aioboto3.Session(
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                region_name=settings.s3_region,
            )
        else:
            session = aioboto3.Session(region_name=settings.s3_region)
        credentials = await session.get_credentials()
        if credentials is None:
            raise StorageUnavailable(
                "no AWS credentials for S3: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                "a profile, or run with an instance role"
            )
        config = Config(
            s3={"addressing_style": "path"} if endpoint else {},
            # A hung S3 answers STORAGE_UNAVAILABLE in seconds, not minutes: every call waits at
            # most S3_TIMEOUT per attempt, and is tried S3_ATTEMPTS times in all.
            retries={"total_max_attempts": S3_ATTEMPTS, "mode": "standard"},
            connect_timeout=settings.s3_timeout,
            read_timeout=settings.s3_timeout,
            signature_version="s3v4",
        )
        client = await stack.enter_async_context(
            session.client("s3", endpoint_url=endpoint, config=config)
        )
        # botocore asks S3 for a "100 Continue" before sending a body, and aiohttp waits for
        # it with no timeout at all: a hung S3 held every upload for good. Send bodies at once;
        # then the read timeout covers the wait for S3's answer.
        client.meta.events.unregister("before-call.s3", add_expect_header)
        probe = await client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": PROBE_KEY}, ExpiresIn=60
        )
        files = Files(
            client=client,
            credentials=credentials,
            signer=UrlSigner(probe, settings.s3_region),
            bucket=bucket,
            endpoint_url=endpoint,
            embedded=target.embedded,
        )
        await files.refresh_signing_credentials()
        # in the background: a hung S3 must not hold up start-up (until then, offset 0)
        measuring = asyncio.create_task(files.measure_clock())
        stack.callback(measuring.cancel)
        if getattr(credentials, "refresh_needed", None) is not None:
            refresher = asyncio.create_task(files.keep_signing_credentials_fresh())
            stack.callback(refresher.cancel)
        if files.embedded:
            await files.ensure_bucket()
        yield files
