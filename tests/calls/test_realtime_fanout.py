"""The process-local fan-out of channel-layer groups (calls.realtime.fanout): one group
membership per process, however many connections of the process subscribe, and group
messages still reach ordinary channel-layer members and every web process.

Real layers (in-memory, or Redis when REDIS_URL is set), a real uvicorn server in a thread,
and for several processes a second uvicorn server in a subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.db import connection

from calls import selectors
from calls.models import CallEvent
from calls.realtime import fanout, groups
from calls.realtime.publish import event_payload, server_loop
from tests.factories import CallUserFactory

from .realtime_server import Rest, free_port, ws_connect

ROOT = Path(__file__).resolve().parents[2]
CID = "default:fan-1"
CALL_PATH = "/api/v2/video/call/default/fan-1"
SERVER_TIMEOUT_S = 30


# --- helpers ---------------------------------------------------------------------------------


def on_server_loop(coro: Any) -> Any:
    """Run a coroutine on the WebSocket server's loop (where the layer's queues live)."""
    loop = server_loop()
    assert loop is not None, "no WebSocket connection yet"
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=10)


async def group_channels(name: str) -> set[str]:
    """The channels the layer itself has in a group (read from its storage)."""
    layer = get_channel_layer()
    if isinstance(layer, InMemoryChannelLayer):
        return set(layer.groups.get(name, {}))
    redis = layer.connection(layer.consistent_hash(name))
    return {c.decode() for c in await redis.zrange(layer._group_key(name), 0, -1)}


def server_fanout() -> fanout.Fanout:
    loop = server_loop()
    assert loop is not None
    return fanout._fanouts[loop]


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


# --- the fan-out on its own, on a real in-memory layer ---------------------------------------


class Collector:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def deliver(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


def event(event_id: int, cid: str = "default:x", team: str | None = "t") -> dict[str, Any]:
    return {"type": "calls.event", "id": event_id, "cid": cid, "team": team, "payload": {}}


async def settle(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


def test_the_process_joins_a_group_once_and_hands_each_event_to_every_member_once():
    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        hub = fanout.Fanout(layer)
        call, team = groups.call_group("default:x"), groups.team_group("t")
        one, two, staff = Collector(), Collector(), Collector()
        # Joined concurrently: each returns only once the process is in the group.
        await asyncio.gather(hub.add(call, one), hub.add(call, two), hub.add(team, staff))
        assert layer.groups[call].keys() == layer.groups[team].keys() == {hub.channel}
        # As publish sends an event: to the call's group and to the team's.
        for event_id in (1, 2):
            await layer.group_send(call, event(event_id))
            await layer.group_send(team, event(event_id))
        await layer.group_send(call, {"type": "rtc.signal", "cid": "default:x"})  # not ours
        await settle(lambda: len(one.messages) == len(two.messages) == len(staff.messages) == 2)
        await asyncio.sleep(0.05)  # any second copy would have arrived by now
        for member in (one, two, staff):
            assert [m["id"] for m in member.messages] == [1, 2]
        await hub.discard(call, one)
        assert layer.groups[call].keys() == {hub.channel}  # two is still here
        await hub.discard(call, two)
        assert not layer.groups.get(call)  # the last one left: so did the process
        assert hub.local_members(call) == set()
        await layer.group_send(call, event(3, team=None))
        await layer.group_send(team, event(4, cid="default:y"))
        await settle(lambda: len(staff.messages) == 3)
        assert [m["id"] for m in staff.messages] == [1, 2, 4]
        assert [m["id"] for m in one.messages] == [1, 2]
        # A new member joins anew.
        three = Collector()
        await hub.add(call, three)
        await layer.group_send(call, event(5, team=None))
        await settle(lambda: three.messages)
        assert [m["id"] for m in three.messages] == [5]
        for task in hub.tasks:
            task.cancel()

    asyncio.run(scenario())


def test_a_join_during_the_last_leave_waits_for_it_and_ends_in_the_group():
    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        hub = fanout.Fanout(layer)
        name = groups.call_group("default:x")
        first, second = Collector(), Collector()
        await hub.add(name, first)
        await asyncio.gather(hub.discard(name, first), hub.add(name, second))
        assert layer.groups[name].keys() == {hub.channel}
        assert hub.local_members(name) == {second}
        for task in hub.tasks:
            task.cancel()

    asyncio.run(scenario())


# --- through the real server -------------------------------------------------------------------


@pytest.fixture
def call(base) -> Rest:
    CallUserFactory(id="dr-fan", teams=["clinic-f"])
    rest = Rest(base)
    rest.request(
        "POST",
        CALL_PATH,
        {"data": {"created_by_id": "dr-fan", "team": "clinic-f"}},
    )
    return rest


def event_ids() -> list[int]:
    return list(CallEvent.objects.filter(call_cid=CID).order_by("pk").values_list("pk", flat=True))


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_two_connections_of_one_process_share_one_membership_and_each_get_every_event_once(
    base, call
):
    name = groups.call_group(CID)
    with ws_connect(base, user_id="dr-fan") as one, ws_connect(base, user_id="dr-fan") as two:
        one.subscribe(CID)
        two.subscribe(CID)
        # The layer has one channel in the call's group: the process's, not one per socket.
        members = on_server_loop(group_channels(name))
        assert members == {server_fanout().channel}
        for step in range(5):
            call.request("PATCH", CALL_PATH, {"custom": {"step": step}})
        got_one = one.events(5)
        got_two = two.events(5)
        one.nothing()
        two.nothing()
        expected = event_ids()[-5:]
        assert [m["id"] for m in got_one] == expected  # in order, no gap, no duplicate
        assert [m["id"] for m in got_two] == expected
        assert [m["event"]["call"]["custom"]["step"] for m in got_one] == [0, 1, 2, 3, 4]
        # One leaves: the other still gets events; the membership stays.
        one.send({"type": "unsubscribe", "cid": CID})
        one.send({"type": "ping"})
        one.expect("pong")
        call.request("PATCH", CALL_PATH, {"custom": {"step": 5}})
        assert two.expect("event")["id"] == event_ids()[-1]
        one.nothing()
        assert on_server_loop(group_channels(name)) == members
    # Both gone: the process left the group.
    wait_until(lambda: not server_fanout().local_members(name))
    assert on_server_loop(group_channels(name)) == set()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_an_ordinary_channel_layer_member_of_the_call_group_still_gets_the_events(base, call):
    """Another consumer (WebRTC signaling) joins call_group(cid) with its own channel and
    receives `calls.event` through the layer, beside the fan-out."""
    layer = get_channel_layer()
    name = groups.call_group(CID)
    with ws_connect(base, user_id="dr-fan") as ws:
        ws.subscribe(CID)
        channel = on_server_loop(layer.new_channel())
        on_server_loop(layer.group_add(name, channel))
        call.request("POST", f"{CALL_PATH}/go_live")
        message = on_server_loop(asyncio.wait_for(layer.receive(channel), 5))
        ws_last_event = ws.expect("event")
        assert ws_last_event["id"] == message["id"] == event_ids()[-1]
        on_server_loop(layer.group_discard(name, channel))
    assert message["type"] == "calls.event"
    assert message["cid"] == CID
    assert message["kind"] == "call.live_started"
    # The event travels rendered once (the client's message), decoded by those who read it.
    assert json.loads(message["frame"]) == ws_last_event
    assert event_payload(message)["type"] == "call.live_started"


# --- several web processes -----------------------------------------------------------------


def _redis_layer() -> bool:
    return settings.CHANNEL_LAYERS["default"]["BACKEND"].startswith("channels_redis")


def _database_url() -> str:
    db = settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{db['USER']}{password}@{host}:{port}/{db['NAME']}"


def start_second_server() -> tuple[subprocess.Popen, str]:
    """Another web process (uvicorn, config.asgi) on the test database and the same Redis."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": _database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "SECRET_KEY": settings.SECRET_KEY,
            "CALLS_API_KEY": settings.CALLS_API_KEY,
            "CALLS_API_SECRET": settings.CALLS_API_SECRET,
            "DJANGO_DEBUG": "false",
            # Production refuses to start without an email backend chosen (docs/security.md).
            "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
            "LOG_LEVEL": "WARNING",
        }
    )
    cmd = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(port)]
    cmd += ["--lifespan", "on", "--log-level", "warning", "--no-access-log"]  # as in production
    process = subprocess.Popen(cmd, cwd=ROOT, env=env)  # noqa: S603 - our own server
    base = f"127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the second server exited with {process.returncode}")
        try:
            httpx.get(f"http://{base}/api/v2/video/calls", timeout=1)
            return process, base
        except httpx.TransportError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("the second server did not start") from None
            time.sleep(0.2)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
@pytest.mark.skipif(
    connection.vendor != "postgresql" or not _redis_layer(),
    reason="two processes share PostgreSQL and the Redis layer (CI runs it with both)",
)
def test_every_web_process_receives_every_event(base, call):
    process, other = start_second_server()
    try:
        name = groups.call_group(CID)
        with (
            ws_connect(base, user_id="dr-fan") as here,
            ws_connect(base, user_id="dr-fan") as here_too,
            ws_connect(other, user_id="dr-fan") as there,
            ws_connect(other, user_id="dr-fan") as there_too,
        ):
            for ws in (here, here_too, there, there_too):
                ws.subscribe(CID)
            # One membership per process.
            assert len(on_server_loop(group_channels(name))) == 2
            call.request("POST", f"{CALL_PATH}/go_live")
            call.request("PATCH", CALL_PATH, {"custom": {"after": "live"}})
            expected = event_ids()[-2:]
            for ws in (here, here_too, there, there_too):
                assert [m["id"] for m in ws.events(2)] == expected
            for ws in (here, here_too, there, there_too):
                ws.nothing()
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_live_event_that_fails_closes_the_connection_and_a_reconnect_catches_up(
    base, call, monkeypatch
):
    """An error while handling a live event (here: reading a gap from the outbox) ends the
    connection with 1011, as an error in a Channels handler would; the client reconnects with
    its last id and loses nothing."""
    from calls import realtime
    from calls.outbox import relay

    real_publish = realtime.publish

    def lossy(event):
        if event.type == "call.live_started":
            return  # lost on the way: the next event's `prev` shows the gap
        real_publish(event)

    def broken(*args, **kwargs):
        raise RuntimeError("outbox unavailable")

    with monkeypatch.context() as patch:
        patch.setattr("calls.realtime.publish", lossy)
        relay._load.cache_clear()
        with ws_connect(base, user_id="dr-fan") as ws:
            last_seen = ws.subscribe(CID)["last_event_id"]
            patch.setattr(selectors, "call_events_after", broken)
            call.request("POST", f"{CALL_PATH}/go_live")
            call.request("PATCH", CALL_PATH, {"custom": {"after": "gap"}})
            received, close_code = ws.closed_with()
    relay._load.cache_clear()
    assert (received, close_code) == ([], 1011)
    with ws_connect(base, user_id="dr-fan") as again:
        again.send({"type": "subscribe", "cid": CID, "last_event_id": last_seen})
        types = [m["event"]["type"] for m in again.events(2)]
        assert again.expect("subscribed")["replayed"] == 2
    assert types == ["call.live_started", "call.updated"]
