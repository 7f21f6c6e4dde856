"""The embedded stores as a user meets them through ``graphql-files serve`` (``make run``):
SecantusDB and SeaweedFS as child processes with their data kept, one server per data
directory, no store outliving its server; the in-memory engines on ``EMBEDDED=memory``, and
in place of a store whose package is missing."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from graphql_files.adapters import embedded
from graphql_files.adapters.embedded import open_stores
from graphql_files.settings import Settings

from ..helpers import PNG, PREFLIGHT, eventually
from ..processes import ROOT, Served, free_port, serving

ATTACH = """mutation($f: Upload!) { attachSongCoverArt(input: {songId: "blue", file: $f}) {
  coverArtPath version } }"""
COVER = '{ getSong(id: "blue") { name coverArtPath coverArt { url { url } } } }'


def post(served: Served, query: str, headers: dict[str, str]) -> dict[str, object]:
    response = httpx.post(f"{served.url}/graphql", headers=headers, json={"query": query})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    assert "errors" not in body, body
    return body


def both(served: Served) -> dict[str, str]:
    api_key, token = served.welcome()
    return {"x-api-key": api_key, "authorization": f"Bearer {token}"}


def children_of(pid: int) -> list[int]:
    """The processes ``pid`` started (Linux: /proc/<pid>/task/*/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def serve_cli(data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GRAPHQL_FILES_")}
    return subprocess.run(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "graphql_files", "serve", "--port", str(free_port())],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**environment, "GRAPHQL_FILES_DATA_DIR": str(data_dir), **env},
        timeout=60,
        check=False,
    )


def test_a_song_and_its_cover_survive_a_restart(tmp_path: Path) -> None:
    with serving(tmp_path) as first:
        headers = both(first)
        post(first, 'mutation { createSong(input: {id: "blue", name: "Blue"}) { id } }', headers)
        attached = httpx.post(
            f"{first.url}/graphql",
            headers={**headers, **PREFLIGHT},
            data={
                "operations": json.dumps({"query": ATTACH, "variables": {"f": None}}),
                "map": json.dumps({"0": ["variables.f"]}),
            },
            files={"0": ("cover.png", PNG, "image/png")},
        )
        assert "errors" not in attached.json(), attached.text
    assert first.output.count("kept across restarts") == 2, first.output  # MongoDB and S3
    assert "SecantusDB" in first.output
    assert "SeaweedFS" in first.output

    with serving(tmp_path) as second:
        assert both(second)["x-api-key"] == headers["x-api-key"]  # the same development key
        # and the first run's key and token still open it: they are kept with the data
        song = post(second, COVER, headers)["data"]["getSong"]  # type: ignore[index]
        assert song["name"] == "Blue", song
        cover = httpx.get(song["coverArt"]["url"]["url"])
        assert cover.status_code == 200, cover.text
        assert cover.content == PNG
        tampered = httpx.get(song["coverArt"]["url"]["url"].replace("Signature=", "Signature=0"))
        assert tampered.status_code == 403  # the embedded S3 verifies signatures


def test_a_second_server_on_the_same_data_directory_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    with serving(tmp_path) as first:
        refused = serve_cli(tmp_path)
        assert refused.returncode != 0
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        assert str(tmp_path) in lines[0]
        assert f"pid {first.pid}" in lines[0]
        assert "GRAPHQL_FILES_DATA_DIR" in lines[0]
        post(first, "{ __typename }", both(first))  # the first one is untouched


async def test_the_stores_die_with_their_server_however_it_ends(tmp_path: Path) -> None:
    with serving(tmp_path) as served:
        headers = both(served)
        post(served, 'mutation { createSong(input: {id: "blue", name: "Kept"}) { id } }', headers)
        stores = children_of(served.pid)
        assert len(stores) == 2, stores  # SecantusDB and SeaweedFS
        os.kill(served.pid, signal.SIGKILL)  # no lifespan shutdown, no clean-up of its own
        await eventually(lambda: not any(alive(p) for p in stores), "the stores to end")

    with serving(tmp_path) as again:  # the lock went with the process; the data is there
        song = post(again, COVER, headers)["data"]["getSong"]  # type: ignore[index]
        assert song["name"] == "Kept"


@pytest.mark.memory
def test_embedded_memory_keeps_nothing_and_says_so(tmp_path: Path) -> None:
    with serving(tmp_path, GRAPHQL_FILES_EMBEDDED="memory") as served:
        post(served, 'mutation { createSong(input: {name: "x"}) { id } }', both(served))
        assert children_of(served.pid) == []
    assert served.output.count("data is lost when the server exits") == 2, served.output
    assert not (tmp_path / "mongodb").exists()


@pytest.mark.memory
async def test_a_store_not_installed_runs_in_memory_and_the_log_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(embedded, "secantusdb_version", lambda: None)
    settings = Settings(data_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger=embedded.__name__):
        async with open_stores(settings) as stores:
            assert stores.mongodb.uri is None
            assert "in memory" in stores.mongodb.summary
            assert "SeaweedFS" in stores.s3.summary
            assert "kept across restarts" in stores.s3.summary
    (line,) = [r.getMessage() for r in caplog.records]
    assert "SecantusDB is not installed" in line
    assert "pip install 'graphql-files[embedded]'" in line

    monkeypatch.setattr(embedded, "weed_binary", lambda: None)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=embedded.__name__):
        async with open_stores(settings) as stores:
            assert stores.s3.summary.startswith("embedded, in memory"), stores.s3.summary
    assert len(caplog.records) == 2  # one line for each store
    assert not (tmp_path / "mongodb").exists()
