"""How an events socket writes what its process fan-out hands it (`EventsConsumer.deliver`
and `_drain`), without a server: the connection's ASGI send is a recorder, the access reads
are counted stand-ins. bench/scheduler.py measures the same with 100 go-lives a second."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import orjson
import pytest

from calls import selectors
from calls.capabilities import Actor
from calls.realtime import consumer
from calls.realtime.publish import EVENT_MESSAGE
from calls.realtime.wsprotocol import SEND_FRAMES

TEAM = "clinic-a"


def _socket(writes: list[list[int]]) -> consumer.EventsConsumer:
    """A connected events socket of a user with a live team subscription (no floor)."""
    sock = consumer.EventsConsumer.__new__(consumer.EventsConsumer)
    sock.scope = {"extensions": {SEND_FRAMES: {}}}

    async def raw_send(message: dict[str, Any]) -> None:
        writes.append([orjson.loads(text)["id"] for text in message["texts"]])

    sock._raw_send = raw_send
    sock.inbox = deque()
    sock.draining = None
    sock.slow = False
    sock.actor = Actor()  # a user's; the reads below are stand-ins
    sock.call_subs = {}
    sock.team_subs = {TEAM: consumer.TeamSub(floor=None, since=0)}
    sock.last_sent = {}
    return sock


def _event(call_pk: int, event_id: int) -> dict[str, Any]:
    cid = f"appointment:c{call_pk}"
    frame = orjson.dumps({"type": "event", "id": event_id, "event": {"call_cid": cid}})
    return {
        "type": EVENT_MESSAGE,
        "id": event_id,
        "cid": cid,
        "call": call_pk,
        "team": TEAM,
        "prev": None,
        "kind": "call.live_started",
        "frame": frame,
    }


@pytest.fixture
def reads(monkeypatch):
    """The access reads a socket makes: call pks per read, one-call and batch. Call 13 is
    one the user may not read."""
    seen: dict[str, list[list[int]]] = {"one": [], "batch": []}

    def call_readable(*, actor, call_pk):
        seen["one"].append([call_pk])
        return call_pk != 13

    def calls_readable(*, actor, call_pks):
        seen["batch"].append(sorted(call_pks))
        return {pk for pk in call_pks if pk != 13}

    monkeypatch.setattr(selectors, "call_readable", call_readable)
    monkeypatch.setattr(selectors, "calls_readable", calls_readable)
    return seen


def test_a_burst_of_new_calls_is_checked_in_one_read_and_written_at_once(reads):
    writes: list[list[int]] = []

    async def main() -> None:
        sock = _socket(writes)
        for n in range(10, 20):
            sock.deliver(_event(call_pk=n, event_id=100 + n))
        await sock.draining

    asyncio.run(main())
    assert reads == {"one": [], "batch": [list(range(10, 20))]}
    assert writes == [[100 + n for n in range(10, 20) if n != 13]]  # not 13's: not readable


def test_events_that_arrive_while_a_round_is_handled_are_written_in_the_next_round(
    reads, monkeypatch
):
    """A steady stream is written as it comes: before, a drain handled events until none
    were queued, so while they kept coming (each new call's check waits for the database)
    nothing was written until the stream stopped."""
    writes: list[list[int]] = []
    sock = _socket(writes)
    real_check = consumer.EventsConsumer._check_teams
    rounds: list[int] = []

    async def check_then_more_arrive(self, messages):
        rounds.append(len(messages))
        await real_check(self, messages)
        if len(rounds) < 3:  # while this round is handled, the next events come
            for _ in range(2):
                n = 20 + len(rounds) * 2 + _
                self.deliver(_event(call_pk=n, event_id=100 + n))

    monkeypatch.setattr(consumer.EventsConsumer, "_check_teams", check_then_more_arrive)

    async def main() -> None:
        for n in (10, 11):
            sock.deliver(_event(call_pk=n, event_id=100 + n))
        await sock.draining

    asyncio.run(main())
    assert rounds == [2, 2, 2]
    assert writes == [[110, 111], [122, 123], [124, 125]]
    assert reads["one"] == []  # each round's new calls in one read
    assert reads["batch"] == [[10, 11], [22, 23], [24, 25]]


def test_one_new_call_is_checked_as_before(reads):
    writes: list[list[int]] = []

    async def main() -> None:
        sock = _socket(writes)
        sock.deliver(_event(call_pk=10, event_id=110))
        await sock.draining
        sock.deliver(_event(call_pk=10, event_id=111))  # known now: no read
        await sock.draining

    asyncio.run(main())
    assert reads == {"one": [[10]], "batch": []}
    assert writes == [[110], [111]]
