"""Multiplexed subscriptions, over real websockets against a real uvicorn: subscribers of the
same operation, variables and access class share one execution per event, on all three
protocols; the others are kept apart; a slow member is cut off alone."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from strawberry.types import ExecutionResult
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from graphql_files.api.schema.bindings import api_for
from graphql_files.api.ws.multiplex import Delivery
from graphql_files.domain.declaration import BUILTIN, SONG
from graphql_files.domain.models import Record
from graphql_files.services.auth import Access, Principal
from graphql_files.settings import Settings

from ..adapters.test_redis_log import drain, stalled_client
from ..helpers import (
    API_KEY,
    FULL_ACCESS,
    LegacyWsClient,
    LiveServer,
    TransportWsClient,
    make_settings,
    multiplexer_in,
    start_live_server,
    subscribed,
    user,
    ws_client,
)
from .test_appsync import appsync, receive, start
from .test_rules import RULES

ON_CREATE = "subscription { onCreateSong { id name version } }"
ON_CREATE_FILTERED = """subscription($f: ModelSubscriptionSongFilterInput) {
  onCreateSong(filter: $f) { id name } }"""
FEED = """subscription($after: String) {
  recordChanges(after: $after) { cursor version song { name } } }"""


@pytest.fixture
def executions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the songs that subscription resolvers turned into ``Song`` objects: one per
    execution of an ``onCreateSong`` selection (the writes below go past GraphQL)."""
    song_type = api_for(BUILTIN).by_enum(SONG.enum_name).object_type
    original = song_type.from_record
    seen: list[str] = []

    def counting(record: Record) -> Any:
        seen.append(record.id)
        return original(record)

    monkeypatch.setattr(song_type, "from_record", counting)
    return seen


async def create_songs(live: LiveServer, *names: str) -> None:
    """Committed through the records service (so no GraphQL resolver runs for the write)."""
    services = live.services
    access = Access(services.policy, Principal(api_key="static"))
    for name in names:
        await services.records.create(access, SONG, {"name": name}, record_id=name)


def stats(live: LiveServer) -> dict[str, int]:
    return multiplexer_in(live.app).stats()


async def test_one_execution_per_event_for_subscribers_of_one_operation(
    live: LiveServer, executions: list[str]
) -> None:
    """Three subscribers with the same document and caller, one on each protocol: each event
    is executed once, and each gets it, framed for its own protocol."""
    async with (
        ws_client(live) as transport,
        ws_client(live, LegacyWsClient) as legacy,
        appsync(live, dict(FULL_ACCESS)) as realtime,
    ):
        await transport.subscribe(ON_CREATE)
        await legacy.subscribe(ON_CREATE)
        await realtime.send(start("rt", ON_CREATE))
        assert await receive(realtime) == {"type": "start_ack", "id": "rt"}
        await subscribed(live, 3)
        assert stats(live)["groups"] == 1

        await create_songs(live, "one", "two", "three")
        for ws in (transport, legacy):
            got = [(await ws.next_payload())["data"]["onCreateSong"] for _ in range(3)]
            assert got == [{"id": n, "name": n, "version": 1} for n in ("one", "two", "three")]
        for name in ("one", "two", "three"):
            message = await receive(realtime)
            assert message["type"] == "data"
            assert message["id"] == "rt"
            assert message["payload"] == {
                "data": {"onCreateSong": {"id": name, "name": name, "version": 1}}
            }
        assert executions == ["one", "two", "three"]  # once per event, not once per subscriber
        assert stats(live) == {"groups": 1, "members": 3, "executions": 3}


async def test_different_variables_are_different_groups(
    live: LiveServer, executions: list[str]
) -> None:
    async with ws_client(live) as a, ws_client(live) as b, ws_client(live) as c:
        await a.subscribe(ON_CREATE_FILTERED, {"f": {"name": {"beginsWith": "a"}}})
        await b.subscribe(ON_CREATE_FILTERED, {"f": {"name": {"beginsWith": "b"}}})
        await c.subscribe(ON_CREATE_FILTERED, {"f": {"name": {"beginsWith": "a"}}})
        await subscribed(live, 3)
        assert stats(live)["groups"] == 2

        await create_songs(live, "a1", "b1", "a2")
        for ws, wanted in ((a, ["a1", "a2"]), (b, ["b1"]), (c, ["a1", "a2"])):
            got = [(await ws.next_payload())["data"]["onCreateSong"]["id"] for _ in wanted]
            assert got == wanted
        with pytest.raises(TimeoutError):
            await b.next_payload(timeout=0.3)
        assert sorted(executions) == ["a1", "a2", "b1"]  # a and c shared theirs


async def test_callers_the_rules_tell_apart_are_different_groups(live: LiveServer) -> None:
    """Under the built-in rules, an API key with or without a user differ (storage is the
    user's), but two users with the same rights do not: they share."""
    callers = [API_KEY, {**API_KEY, **user("alice")}, {**API_KEY, **user("bob")}]
    async with (
        ws_client(live, payload=callers[0]) as key_only,
        ws_client(live, payload=callers[1]) as alice,
        ws_client(live, payload=callers[2]) as bob,
    ):
        for ws in (key_only, alice, bob):
            await ws.subscribe(ON_CREATE)
        await subscribed(live, 3)
        assert stats(live)["groups"] == 2
        await create_songs(live, "s1")
        for ws in (key_only, alice, bob):
            assert (await ws.next_payload())["data"]["onCreateSong"]["id"] == "s1"


@pytest.fixture
def rules_settings(s3_endpoint: str, bucket: str, tmp_path: Path) -> Settings:
    rules = tmp_path / "access.toml"
    rules.write_text(RULES)  # Song: owner, groups.admins, guest reads
    return make_settings(s3_endpoint, bucket, access_file=rules)


async def test_owner_rule_subscribers_never_share(rules_settings: Settings) -> None:
    async with start_live_server(rules_settings) as live:
        alice, bob = live.client(user("alice")), live.client(user("bob"))
        async with (
            ws_client(live, payload=user("bob")) as bob_1,
            ws_client(live, payload=user("bob")) as bob_2,
            ws_client(live, payload=user("carol")) as carol,
            ws_client(live, payload=user("root", groups=["admins"])) as admin_1,
            ws_client(live, payload=user("root", groups=["admins"])) as admin_2,
        ):
            query = "subscription { onCreateSong { id owner } }"
            for ws in (bob_1, bob_2, carol, admin_1, admin_2):
                await ws.subscribe(query)
            await subscribed(live, 5)
            # bob, bob and carol read their own records only: one group each; the admins
            # read every record: they share
            assert stats(live) == {"groups": 4, "members": 5, "executions": 0}

            await alice.data('mutation { createSong(input: {id: "a1", name: "x"}) { id } }')
            await bob.data('mutation { createSong(input: {id: "b1", name: "y"}) { id } }')
            for ws in (bob_1, bob_2):
                got = await ws.next_payload()
                assert got["data"]["onCreateSong"] == {"id": "b1", "owner": "bob"}
            for ws in (admin_1, admin_2):
                ids = [(await ws.next_payload())["data"]["onCreateSong"]["id"] for _ in range(2)]
                assert ids == ["a1", "b1"]
            with pytest.raises(TimeoutError):
                await carol.next_payload(timeout=0.3)
        for client in (alice, bob):
            await client.http.aclose()


async def test_replays_never_share(live: LiveServer) -> None:
    await create_songs(live, "s1")
    async with ws_client(live) as first:
        await first.subscribe(FEED)
        await subscribed(live, 1)
        await create_songs(live, "s2")
        cursor = (await first.next_payload())["data"]["recordChanges"]["cursor"]
        async with (
            ws_client(live) as live_only,
            ws_client(live) as replay_1,
            ws_client(live) as replay_2,
        ):
            await live_only.subscribe(FEED)
            await replay_1.subscribe(FEED, {"after": cursor})
            await replay_2.subscribe(FEED, {"after": cursor})
            await subscribed(live, 4)
            assert stats(live)["groups"] == 3  # the live ones share; each replay is alone
            await create_songs(live, "s3")
            for ws in (first, live_only, replay_1, replay_2):
                got = (await ws.next_payload())["data"]["recordChanges"]
                assert got["song"] == {"name": "s3"}


async def test_a_replay_from_a_variables_default_is_a_replay(live: LiveServer) -> None:
    """``$a: String = "C"`` sent with no variables replays from C, for every socket that sends
    it: sharing is decided on the coerced variables, not on the request's text (issue 20.1:
    the second socket joined the first one's group and got only what came after it)."""
    await create_songs(live, "s1")
    async with ws_client(live) as first:
        await first.subscribe(FEED)
        await subscribed(live, 1)
        await create_songs(live, "s2")
        cursor = (await first.next_payload())["data"]["recordChanges"]["cursor"]
        await create_songs(live, "s3", "s4")
        replay = f"""subscription($a: String = {json.dumps(cursor)}) {{
          recordChanges(after: $a) {{ cursor song {{ name }} }} }}"""
        async with ws_client(live) as replay_1, ws_client(live) as replay_2:
            await replay_1.subscribe(replay)
            replayed = [await replay_1.next_payload() for _ in range(2)]
            await replay_2.subscribe(replay)  # once the first has had its replay
            await subscribed(live, 3)
            await create_songs(live, "s5")
            replayed.append(await replay_1.next_payload())
            for got in (replayed, [await replay_2.next_payload() for _ in range(3)]):
                names = [payload["data"]["recordChanges"]["song"]["name"] for payload in got]
                assert names == ["s3", "s4", "s5"]


async def test_a_slow_member_is_cut_off_and_the_others_get_every_event(
    s3_endpoint: str, bucket: str
) -> None:
    settings = make_settings(s3_endpoint, bucket, subscriber_buffer=4)
    async with start_live_server(settings) as live:
        http = live.client()
        await http.data('mutation { createPhotoAlbum(input: {id: "p", name: "x"}) { id } }')
        feed = "subscription { recordChanges { cursor version photoAlbum { imagePaths } } }"
        async with (
            stalled_client(live) as stalled,
            ws_client(live) as healthy,
            ws_client(live, LegacyWsClient) as also_healthy,
        ):
            for ws in (stalled, healthy, also_healthy):
                await ws.subscribe(feed)
            await subscribed(live, 3)
            assert stats(live)["groups"] == 1
            paths = [f"images/p/{'x' * 900}-{n}.png" for n in range(100)]  # ~90 KB an event
            cursors: list[str] = []
            cut_off = 0
            for n in range(2, 150):
                await http.data(
                    'mutation($p: [String!]) { updatePhotoAlbum(input: {id: "p", '
                    "imagePaths: $p}) { version } }",
                    {"p": paths},
                )
                for ws in (healthy, also_healthy):  # neither is ever held up
                    got = (await ws.next_payload())["data"]["recordChanges"]
                    assert got["version"] == n
                cursors.append(got["cursor"])
                cut_off = (await http.http.get("/readyz")).json()["events"]["cut_off"]
                if cut_off:
                    break
            assert cut_off == 1, "the stalled subscriber was never cut off"
            assert stats(live)["members"] == 2  # the group goes on without it
            # the stalled client, reading at last, finds its connection closed, and why
            stalled.ws.transport.resume_reading()
            with pytest.raises(ConnectionClosed) as closed:
                await drain(stalled)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4008
            reason = closed.value.rcvd.reason
            assert reason.startswith("too slow: resume after ")
            assert reason.removeprefix("too slow: resume after ") in cursors
            # and the others still get what follows
            await http.data('mutation { updatePhotoAlbum(input: {id: "p", name: "y"}) { id } }')
            for ws in (healthy, also_healthy):
                assert (await ws.next_payload())["data"]["recordChanges"]["version"] == n + 1
        await http.http.aclose()


@pytest.mark.parametrize("protocol", [TransportWsClient, LegacyWsClient], ids=lambda p: p.protocol)
async def test_errors_at_subscribe_time_reach_every_member(
    live: LiveServer, protocol: type[TransportWsClient]
) -> None:
    """A refusal (a user with no API key), bad input, and a document that does not validate:
    each subscriber gets the error it would get alone, in the message type it always got."""
    bad_input = "BAD_USER_INPUT"
    cases: list[tuple[dict[str, str], str, dict[str, Any] | None, str, str]] = [
        (user("alice"), ON_CREATE, None, "FORBIDDEN", "next"),
        (FULL_ACCESS, ON_CREATE_FILTERED, {"f": {"name": {"between": []}}}, bad_input, "next"),
        (FULL_ACCESS, "subscription { onCreateSong { nope } }", None, bad_input, "error"),
    ]
    for payload, query, variables, code, kind in cases:
        async with ws_client(live, protocol, payload) as a, ws_client(live, protocol, payload) as b:
            await a.subscribe(query, variables)
            await b.subscribe(query, variables)
            got = [await _first(a), await _first(b)]
            assert got[0] == got[1]
            expected = "data" if (kind, protocol) == ("next", LegacyWsClient) else kind
            assert got[0]["type"] == expected, got[0]
            errors = got[0]["payload"] if kind == "error" else got[0]["payload"]["errors"]
            error = errors[0] if isinstance(errors, list) else errors  # graphql-ws: one
            assert error["extensions"]["code"] == code, error


async def _first(ws: TransportWsClient) -> dict[str, Any]:
    """The first message that is not a keep-alive."""
    while True:
        message = await ws.receive()
        if message["type"] != "ka":
            return message


@pytest.mark.parametrize("protocol", [TransportWsClient, LegacyWsClient], ids=lambda p: p.protocol)
async def test_every_message_is_a_text_frame(
    live: LiveServer, protocol: type[TransportWsClient]
) -> None:
    """Browsers' clients ignore binary frames: the acknowledgement, the shared payloads and the
    completion are all text, however the view encodes its JSON."""
    async with connect(live.ws_url, subprotocols=[protocol.protocol]) as ws:

        async def frame() -> str | bytes:
            while True:
                received = await asyncio.wait_for(ws.recv(), 5)
                if json.loads(received)["type"] != "ka":
                    return received

        await ws.send(json.dumps({"type": "connection_init", "payload": FULL_ACCESS}))
        frames = [await frame()]
        client = protocol(ws)
        op_id = await client.subscribe(ON_CREATE)
        await subscribed(live, 1)
        await create_songs(live, "s1")
        frames.append(await frame())
        if protocol is LegacyWsClient:
            await client.stop(op_id)  # answered with "complete"
        else:
            await ws.send(json.dumps({"type": "ping"}))  # answered with "pong"
        frames.append(await frame())
        assert [json.loads(f)["type"] for f in frames] in (
            ["connection_ack", "next", "pong"],
            ["connection_ack", "data", "complete"],
        )
        assert all(isinstance(f, str) for f in frames), frames


async def test_readyz_counts_groups_and_members(live: LiveServer) -> None:
    http = live.client()
    async with ws_client(live) as a, ws_client(live, LegacyWsClient) as b:
        await a.subscribe(ON_CREATE)
        await b.subscribe(ON_CREATE)
        await a.subscribe(FEED)
        await subscribed(live, 3)
        body = (await http.http.get("/readyz")).json()
        assert body["subscriptions"] == {"groups": 2, "members": 3, "executions": 0}
    await subscribed(live, 0)
    body = (await http.http.get("/readyz")).json()
    assert body["subscriptions"]["groups"] == 0
    assert body["subscriptions"]["members"] == 0
    assert live.services.broker.subscriber_count == 0  # the last one out left the broker
    await http.http.aclose()


def test_a_payload_is_encoded_once_for_every_member() -> None:
    delivery = Delivery(ExecutionResult(data={"onCreateSong": {"id": "é"}}, errors=None), "c-1")
    assert json.loads(delivery.payload) == {"data": {"onCreateSong": {"id": "é"}}}
    assert delivery.payload is delivery.payload  # encoded once
    assert json.loads(delivery.data_payload) == {"data": {"onCreateSong": {"id": "é"}}}
