"""The sweeper against real S3 (moto) and the records store: orphans, grace, dangling records."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import timedelta

import pytest
from asgi_lifespan import LifespanManager

from graphql_files.app import create_app
from graphql_files.domain.models import PHOTO_ALBUM, SONG
from graphql_files.services.wiring import Services
from graphql_files.settings import Settings, parse_duration

from .conftest import ROOT, make_settings, services_in
from .helpers import full_access, put_object


async def keys(services: Services) -> set[str]:
    return {o.path async for o in services.files.iterate("")}


async def test_sweep_removes_old_orphans_keeps_fresh_and_named(services: Services) -> None:
    await put_object(services, "images/s1/named.png")
    await put_object(services, "images/a1/in-album.png")
    await put_object(services, "images/gone/old-orphan.png")
    await put_object(services, "outside/prefix.png")
    await services.records.create(
        full_access(services),
        SONG,
        {"name": "A", "coverArtPath": "images/s1/named.png"},
        record_id="s1",
    )
    await services.records.create(
        full_access(services),
        PHOTO_ALBUM,
        {"name": "B", "imagePaths": ["images/a1/in-album.png", "images/a1/missing.png"]},
        record_id="a1",
    )
    await asyncio.sleep(1.5)
    await put_object(
        services, "images/gone/fresh-orphan.png"
    )  # a presigned upload not attached yet

    dry = await services.sweeper.run(grace=timedelta(seconds=1), dry_run=True)
    assert [o.path for o in dry.orphans_kept] == ["images/gone/old-orphan.png"]
    assert dry.removed == []
    assert await keys(services) >= {"images/gone/old-orphan.png"}

    report = await services.sweeper.run(grace=timedelta(seconds=1))
    assert [o.path for o in report.removed] == ["images/gone/old-orphan.png"]
    assert report.too_young == 1
    assert report.scanned == 4  # objects outside the attachment prefix are not the sweeper's
    assert report.dangling == [("PhotoAlbum a1", "images/a1/missing.png")]
    assert await keys(services) == {
        "images/s1/named.png",
        "images/a1/in-album.png",
        "images/gone/fresh-orphan.png",
        "outside/prefix.png",
    }
    lines = report.lines(dry_run=False)
    assert "removed orphan images/gone/old-orphan.png" in lines[0]
    assert any("PhotoAlbum a1 names images/a1/missing.png" in line for line in lines)


async def test_sweep_pages_through_many_objects(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graphql_files.services import sweep

    monkeypatch.setattr(sweep, "PAGE", 7)  # many pages from a few objects
    monkeypatch.setattr(sweep, "HEAD_BATCH", 3)
    for n in range(20):
        await put_object(services, f"images/o/{n:02}.png")
    await services.records.create(
        full_access(services),
        PHOTO_ALBUM,
        {
            "name": "x",
            "imagePaths": [f"images/o/{n:02}.png" for n in range(0, 20, 2)] + ["images/o/none.png"],
        },
        record_id="o",
    )
    report = await services.sweeper.run(grace=timedelta(0))
    assert report.scanned == 20
    assert sorted(o.path for o in report.removed) == [
        f"images/o/{n:02}.png" for n in range(1, 20, 2)
    ]
    assert report.dangling == [("PhotoAlbum o", "images/o/none.png")]


async def test_the_server_sweeps_when_asked(s3_endpoint: str, bucket: str) -> None:
    settings = make_settings(s3_endpoint, bucket, sweep_interval=0.2, sweep_grace=0)
    async with LifespanManager(create_app(settings)) as manager:
        services = services_in(manager)
        await put_object(services, "images/x/orphan.png")
        for _ in range(50):
            await asyncio.sleep(0.1)
            if not await keys(services):
                break
        assert await keys(services) == set()


def test_durations() -> None:
    assert parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("15m") == timedelta(minutes=15)
    assert parse_duration("1h") == timedelta(hours=1)
    assert parse_duration("2d") == timedelta(days=2)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
    assert Settings(sweep_interval="1h", sweep_grace="30m").sweep_grace == 1800


def test_cli_sweep_refuses_the_embedded_defaults() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "graphql_files", "sweep", "--dry-run"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "GRAPHQL_FILES_SWEEP_INTERVAL" in result.stderr
