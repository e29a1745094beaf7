"""What one client can make the sockets hold (docs/limits.md), against a real uvicorn server and
real clients: a client that stops reading is closed as a slow consumer once its queue is full
(the queue never grows past the bound), a user's sockets are capped across processes, and a
message too large, too deep or not JSON is answered with an error, never a 1011."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.utils.timezone import now
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from calls import realtime
from calls.models import CallEvent
from calls.realtime import consumer
from tests.factories import CallFactory, CallUserFactory

from .realtime_server import RECV_TIMEOUT_S, token_for, ws_connect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

QUEUE = 8


def wait_for(condition, what: str, timeout: float = 10.0) -> None:
    """Wait for a state of the server (not a timing assertion: the deadline only ends a hang)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


@pytest.fixture
def call():
    CallUserFactory(id="dr-host")
    return CallFactory(call_id="slow-1", created_by_id="dr-host")


def test_a_client_that_stops_reading_is_closed_as_a_slow_consumer(
    base, call, settings, monkeypatch
):
    settings.CALLS_WS_SEND_QUEUE = QUEUE
    queued: list[int] = []
    deliver = consumer.EventsConsumer.deliver

    def counting(self, message):
        deliver(self, message)
        queued.append(len(self.inbox))

    monkeypatch.setattr(consumer.EventsConsumer, "deliver", counting)
    # A client whose socket buffers are small, and that reads nothing after `subscribed`.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = base.split(":")
    sock.connect((host, int(port)))
    query = urlencode({"api_key": settings.CALLS_API_KEY, "token": token_for(None)})
    with connect(f"ws://{base}/ws/v1/events?{query}", sock=sock, max_queue=2) as conn:
        assert json.loads(conn.recv(timeout=RECV_TIMEOUT_S))["type"] == "connected"
        conn.send(json.dumps({"type": "subscribe", "cid": call.cid}))
        assert json.loads(conn.recv(timeout=RECV_TIMEOUT_S))["type"] == "subscribed"
        # Events of 64 KiB (as the attack's), straight from the outbox to the groups.
        payload = {"type": "custom", "call_cid": call.cid, "custom": {"note": "x" * 65536}}
        sent = 0
        while not any(c.slow for c in consumer_connections()):
            event = CallEvent.objects.create(
                call=call, call_cid=call.cid, type="custom", payload=payload, created_at=now()
            )
            realtime.publish(event)
            sent += 1
            assert sent < 1000, f"never closed as slow; queued at most {max(queued)}"
        # Reading again: what was already on the wire, then the close.
        codes = []
        try:
            while True:
                conn.recv(timeout=RECV_TIMEOUT_S)
        except ConnectionClosed as exc:
            codes.append(exc.rcvd.code if exc.rcvd else None)
    assert codes == [consumer.CLOSE_SLOW_CONSUMER] == [4008]
    assert max(queued) <= QUEUE  # counted, never above the bound


def consumer_connections() -> list:
    """The events sockets registered with this process's fan-outs."""
    from calls.realtime import fanout

    members = set()
    for fan in list(fanout._fanouts.values()):
        for group in fan.members.values():
            members |= group
    return [m for m in members if isinstance(m, consumer.EventsConsumer)]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", 4),
        ("[" * 50_000 + "]" * 50_000, 4),  # deeper than any parser should go
        ('{"type": "ping", "x": NaN}', 4),
        ('{"type": "ping", "x": Infinity}', 4),
        ('{"type": "subscribe", "cid": "a\\u0000b"}', 4),
        ('{"type": "subscribe", "cid": "\\ud800"}', 4),
        (json.dumps({"type": "ping", "pad": "x" * 200_000}), 22),
        (b"\x00\x01binary", 4),
    ],
    ids=["garbled", "deep", "nan", "infinity", "nul", "surrogate", "huge", "binary"],
)
def test_a_bad_message_gets_an_error_and_the_connection_stays(base, frame, code):
    with ws_connect(base, user_id=None) as ws:
        ws.conn.send(frame)
        error = ws.expect("error")
        assert error["code"] == code
        ws.send({"type": "ping"})
        assert ws.expect("pong") == {"type": "pong"}
        assert settings.CALLS_WS_MAX_MESSAGE_BYTES < 200_000
