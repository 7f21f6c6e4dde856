"""Local URL signing gives botocore's exact URLs, and follows rotating credentials."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, quote, urlsplit

import aioboto3
import pytest
from aiobotocore.credentials import AioRefreshableCredentials
from botocore.config import Config
from hypothesis import given
from hypothesis import strategies as st

from graphql_files.adapters.s3 import Files
from graphql_files.adapters.signing import PROBE_KEY, Credentials, UrlSigner, quote_key

from ..helpers import eventually

NOW = datetime(2026, 11, 24, 23, 5, 7, tzinfo=UTC)
KEYS = [
    "images/a b/ü+x.png",
    "a/b/c",
    "sp ace/%25/~tilde/é",
    "images/x/(1)!*'.png",
    "images/s1/3f2a-My+Cover.png",
    "日本/語.jpg",
]
CONFIGS = [
    ("http://127.0.0.1:9000", "us-east-1", "path", None),
    (None, "us-east-1", "virtual", None),
    (None, "eu-west-2", "auto", "session/token+=="),
    ("https://minio.example:443", "us-east-1", "path", None),
    ("http://localhost:9000", "ap-southeast-2", "path", "tok"),
]


@asynccontextmanager
async def botocore_at(
    now: datetime, endpoint: str | None, region: str, style: str, token: str | None
) -> AsyncIterator[tuple[Any, str]]:
    """A botocore S3 client whose clock reads ``now``, and the URL it presigns for
    ``PROBE_KEY`` (what ``UrlSigner`` is built from)."""
    session = aioboto3.Session(
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="se/cret+",
        aws_session_token=token,
        region_name=region,
    )
    config = Config(s3={"addressing_style": style}, signature_version="s3v4")
    async with session.client("s3", endpoint_url=endpoint, config=config) as client:
        with mock.patch(
            "botocore.auth.get_current_datetime", return_value=now.replace(tzinfo=None)
        ):
            probe = await client.generate_presigned_url(
                "get_object", Params={"Bucket": "my-bucket", "Key": PROBE_KEY}, ExpiresIn=60
            )
            yield client, probe


@pytest.mark.parametrize(("endpoint", "region", "style", "token"), CONFIGS)
async def test_urls_are_byte_identical_to_botocore(
    endpoint: str | None, region: str, style: str, token: str | None
) -> None:
    async with botocore_at(NOW, endpoint, region, style, token) as (client, probe):
        signer = UrlSigner(probe, region)
        for key in KEYS:
            for disposition in (None, 'attachment; filename="a b.png"'):
                for expires in (1, 900, 604800):
                    params = {"Bucket": "my-bucket", "Key": key}
                    if disposition:
                        params["ResponseContentDisposition"] = disposition
                    expected = await client.generate_presigned_url(
                        "get_object", Params=params, ExpiresIn=expires
                    )
                    actual = signer.sign(
                        key,
                        credentials=Credentials("AKIDEXAMPLE", "se/cret+", token),
                        expires_in=expires,
                        now=NOW,
                        content_disposition=disposition,
                    )
                    assert actual == expected, key


@pytest.mark.parametrize(("endpoint", "region", "style", "token"), CONFIGS)
async def test_a_batch_signs_every_key_as_botocore_does(
    endpoint: str | None, region: str, style: str, token: str | None
) -> None:
    """A page of keys through one ``SigningBatch`` (one clock reading, the HMAC resumed from a
    shared state) gives, key for key, botocore's URLs for that clock."""
    keys = [*KEYS, "".join(chr(c) for c in range(32, 127)), "images/x/" + "a" * 300]
    async with botocore_at(NOW, endpoint, region, style, token) as (client, probe):
        for disposition in (None, 'inline; filename="x.png"'):
            batch = UrlSigner(probe, region).batch(
                credentials=Credentials("AKIDEXAMPLE", "se/cret+", token),
                expires_in=900,
                now=NOW,
                content_disposition=disposition,
            )
            for key in keys:
                params = {"Bucket": "my-bucket", "Key": key}
                if disposition:
                    params["ResponseContentDisposition"] = disposition
                expected = await client.generate_presigned_url(
                    "get_object", Params=params, ExpiresIn=900
                )
                assert batch.sign(key) == expected, key


@given(st.text())
def test_key_quoting_is_urllibs(key: str) -> None:
    assert quote_key(key) == quote(key.encode("utf-8"), safe="/~")


def test_a_different_clock_gives_a_different_signature() -> None:
    signer = UrlSigner(f"https://b.s3.amazonaws.com/{PROBE_KEY}?X-Amz-Signature=x", "us-east-1")
    creds = Credentials("AK", "SK", None)
    first = signer.sign("k", credentials=creds, expires_in=60, now=NOW)
    later = signer.sign("k", credentials=creds, expires_in=60, now=NOW + timedelta(seconds=1))
    assert first != later
    assert parse_qs(urlsplit(later).query)["X-Amz-Date"] == ["20261124T230508Z"]


async def test_signed_urls_follow_rotating_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    start = datetime.now(UTC)
    rotations = iter([("KEY1", start + timedelta(hours=1)), ("KEY2", start + timedelta(hours=3))])

    async def refresh() -> dict[str, Any]:
        key, expiry = next(rotations)
        return {
            "access_key": key,
            "secret_key": f"secret-{key}",
            "token": None,
            "expiry_time": expiry.isoformat(),
        }

    clock = [start]
    first_keys = await refresh()
    credentials = AioRefreshableCredentials(
        first_keys["access_key"],
        first_keys["secret_key"],
        first_keys["token"],
        datetime.fromisoformat(first_keys["expiry_time"]),
        refresh,
        "test",
        time_fetcher=lambda: clock[0],
    )
    signer = UrlSigner(f"https://b.s3.amazonaws.com/{PROBE_KEY}", "us-east-1")
    files = Files(
        client=None,
        credentials=credentials,
        signer=signer,
        bucket="b",
        endpoint_url=None,
        embedded=False,
    )
    checks = 0
    refresh_needed = credentials.refresh_needed

    def counted_refresh_needed(*args: Any, **kwargs: Any) -> bool:
        nonlocal checks
        checks += 1
        return bool(refresh_needed(*args, **kwargs))

    monkeypatch.setattr(credentials, "refresh_needed", counted_refresh_needed)

    def signed_with() -> str:
        return files.signed_url("images/x.png", expires_in=60).url

    await files.refresh_signing_credentials()
    assert "KEY1%2F" in signed_with()
    checked_before = checks
    refresher = asyncio.create_task(files.keep_signing_credentials_fresh(every=0.01))
    try:
        await eventually(
            lambda: checks >= checked_before + 3, "the refresher to check the credentials"
        )
        assert "KEY1%2F" in signed_with()  # still valid
        # 55 minutes later, KEY1 is within botocore's refresh window: the refresher, off the
        # request path, takes KEY2, and signing goes on without awaiting anything
        clock[0] = start + timedelta(minutes=55)
        await eventually(lambda: "KEY1%2F" not in signed_with(), "the refresher to take KEY2")
        assert "KEY2%2F" in signed_with()
    finally:
        refresher.cancel()
