"""The sweeper against real S3 (moto) and the records store: orphans, grace, dangling records."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from asgi_lifespan import LifespanManager

from graphql_files.app import create_app
from graphql_files.domain.declaration import PHOTO_ALBUM, SONG
from graphql_files.services.wiring import Services

from ..helpers import (
    eventually,
    full_access,
    make_settings,
    put_object,
    services_in,
    stored_originals,
)

GRACE = timedelta(seconds=2.5)


async def keys(services: Services) -> set[str]:
    return set(await stored_originals(services))


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
    # Time itself is under test here: the grace period is compared with S3's LastModified,
    # which has whole seconds (an object may look up to 1 s older than it is): the old objects
    # are 4 s old, the fresh one looks at most 1 s + the sweeps' own time old, grace is between.
    await asyncio.sleep(4)
    await put_object(
        services, "images/gone/fresh-orphan.png"
    )  # a presigned upload not attached yet

    dry = await services.sweeper.run(grace=GRACE, dry_run=True)
    assert [o.path for o in dry.orphans_kept] == ["images/gone/old-orphan.png"]
    assert dry.removed == []
    assert await keys(services) >= {"images/gone/old-orphan.png"}

    report = await services.sweeper.run(grace=GRACE)
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
    app = create_app(settings)
    async with LifespanManager(app):
        services = services_in(app)
        await put_object(services, "images/x/orphan.png")

        async def swept() -> bool:
            return not await keys(services)

        await eventually(swept, "the server's own sweep to remove the orphan")
        assert await keys(services) == set()


async def test_folders_of_models_no_longer_declared_are_kept(services: Services) -> None:
    """A model dropped from the declaration: the sweeper cannot know what its records name,
    so nothing in its folder is an orphan to it. Declared models' and pre-per-model-folder
    (``images/<record id>/``) orphans are still removed."""
    kept = "images/Retired/r1/cover.png"
    for path in (kept, "images/Song/s9/orphan.png", "images/s9/legacy-orphan.png"):
        await put_object(services, path)
    report = await services.sweeper.run(grace=timedelta(0))
    assert sorted(o.path for o in report.removed) == [
        "images/Song/s9/orphan.png",
        "images/s9/legacy-orphan.png",
    ]
    assert report.undeclared == 1
    assert await keys(services) == {kept}
    assert "kept 1 objects in folders of models that are not declared" in "\n".join(
        report.lines(dry_run=False)
    )
