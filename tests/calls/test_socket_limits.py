"""What one client can make the sockets hold (docs/limits.md), against a real uvicorn server and
real clients: a client that stops reading is closed as a slow consumer once its queue is full
(the queue never grows past the bound), a user's sockets are capped across processes, and a
message too large, too deep or not JSON is answered with an error, never a 1011."""

from __future__ import annotations

import json
import socket
import time
from contextlib import contextmanager
from urllib.parse import urlencode

import pytest
import redis
from django.conf import settings
from django.utils.timezone import now
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from calls import realtime
from calls.models import CallEvent
from calls.realtime import connections, consumer, outbound, wsprotocol
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
    settings.CALLS_WS_STALL_SECONDS = 0  # over the bound while a write waits: slow at once
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
    before = set(consumer_connections())  # earlier tests' servers may leave theirs
    with connect(f"ws://{base}/ws/v1/events?{query}", sock=sock, max_queue=2) as conn:
        assert json.loads(conn.recv(timeout=RECV_TIMEOUT_S))["type"] == "connected"
        conn.send(json.dumps({"type": "subscribe", "cid": call.cid}))
        assert json.loads(conn.recv(timeout=RECV_TIMEOUT_S))["type"] == "subscribed"
        # Events of 64 KiB (as the attack's), straight from the outbox to the groups.
        payload = {"type": "custom", "call_cid": call.cid, "custom": {"note": "x" * 65536}}
        sent = 0
        (reader,) = set(consumer_connections()) - before  # until it is closed
        while not reader.slow:
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
        (b"\x00\x01binary", 4),
    ],
    ids=["garbled", "deep", "nan", "infinity", "nul", "surrogate", "binary"],
)
def test_a_bad_message_gets_an_error_and_the_connection_stays(base, frame, code):
    with ws_connect(base, user_id=None) as ws:
        ws.conn.send(frame)
        error = ws.expect("error")
        assert error["code"] == code
        ws.send({"type": "ping"})
        assert ws.expect("pong") == {"type": "pong"}


def test_a_message_over_the_limit_closes_with_1009(base):
    # uvicorn refuses the frame itself (--ws-max-size, settings.UVICORN_WS_OPTIONS): the
    # message is never buffered whole, let alone parsed.
    with ws_connect(base, user_id=None) as ws:
        ws.send({"type": "ping", "pad": "x" * settings.CALLS_WS_MAX_MESSAGE_BYTES})
        assert ws.closed_with()[1] == 1009


# --- sockets per user ------------------------------------------------------------------------


def open_events(base: str, user_id: str):
    query = urlencode({"api_key": settings.CALLS_API_KEY, "token": token_for(user_id)})
    return connect(f"ws://{base}/ws/v1/events?{query}", open_timeout=RECV_TIMEOUT_S)


def refused_with(conn) -> tuple[dict, int | None]:
    message = json.loads(conn.recv(timeout=RECV_TIMEOUT_S))
    try:
        conn.recv(timeout=RECV_TIMEOUT_S)
    except ConnectionClosed as exc:
        return message, exc.rcvd.code if exc.rcvd else None
    raise AssertionError("not closed")


def test_a_user_has_at_most_the_cap_of_sockets_events_and_call_together(base, call, settings):
    settings.CALLS_WS_MAX_CONNECTIONS_PER_USER = 2
    CallUserFactory(id="patient-a")
    with open_events(base, "dr-host") as first, open_events(base, "dr-host") as second:
        for conn in (first, second):
            assert json.loads(conn.recv(timeout=RECV_TIMEOUT_S))["type"] == "connected"
        with open_events(base, "dr-host") as third:
            message, code = refused_with(third)
        assert message == {"type": "error", "code": 9, "message": "at most 2 open sockets per user"}
        assert code == consumer.CLOSE_TOO_MANY_CONNECTIONS == 4009
        # The call socket counts too.
        with connect(f"ws://{base}/ws/v1/rtc", open_timeout=RECV_TIMEOUT_S) as rtc:
            rtc.send(
                json.dumps({"type": "join", "token": token_for("dr-host"), "call_cid": call.cid})
            )
            message, code = refused_with(rtc)
        assert (message["code"], code) == (9, 4009)
        # Another user is not affected; a server token is never counted.
        with open_events(base, "patient-a") as other, open_events(base, None) as server:
            for conn in (other, server):
                assert json.loads(conn.recv(timeout=RECV_TIMEOUT_S))["type"] == "connected"
    # Closed sockets give their places back.
    wait_for(lambda: not connections._local and not redis_leases("dr-host"), "places released")
    with open_events(base, "dr-host") as again:
        assert json.loads(again.recv(timeout=RECV_TIMEOUT_S))["type"] == "connected"


def redis_leases(user_id: str) -> list:
    if not settings.REDIS_URL:
        return []
    return redis.Redis.from_url(settings.REDIS_URL).zrange(connections.user_key(user_id), 0, -1)


@pytest.mark.skipif(not settings.REDIS_URL, reason="places shared by processes live in Redis")
def test_the_cap_counts_other_processes_and_forgets_a_crashed_one(base, call, settings):
    settings.CALLS_WS_MAX_CONNECTIONS_PER_USER = 2
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = connections.user_key("dr-host")
    client.delete(key)
    now_ms = int(client.time()[0]) * 1000
    # Another process holds two live leases: no place left here.
    client.zadd(key, {"other-1": now_ms + 60_000, "other-2": now_ms + 60_000})
    with open_events(base, "dr-host") as conn:
        assert refused_with(conn)[1] == 4009
    # That process died: its leases lapse (ends in the past) and count no more.
    client.zadd(key, {"other-1": now_ms - 1, "other-2": now_ms - 1})
    with open_events(base, "dr-host") as conn:
        assert json.loads(conn.recv(timeout=RECV_TIMEOUT_S))["type"] == "connected"
        (lease,) = client.zrange(key, 0, -1, withscores=True)  # lapsed ones dropped
        assert lease[1] > now_ms
        assert 0 < client.pttl(key) <= connections.LEASE_S * 1000


def test_a_call_socket_peer_that_stops_reading_is_closed_and_never_fails_the_sender(
    base, call, settings, monkeypatch
):
    """The call socket's messages to its client wait in a bounded queue (outbound): a peer
    that stops reading is closed with 4008 once CALLS_WS_SEND_QUEUE messages wait, and the
    participant signaling to it carries on."""
    settings.CALLS_WS_SEND_QUEUE = QUEUE
    CallUserFactory(id="patient-a")
    queued: list[int] = []
    put = outbound.BoundedSend.__call__

    queues: list[outbound.BoundedSend] = []

    async def counting(self, message):
        await put(self, message)
        queued.append(self.queue.qsize())
        queues.append(self)

    monkeypatch.setattr(outbound.BoundedSend, "__call__", counting)
    rtc_url = f"ws://{base}/ws/v1/rtc"

    def join(conn, user_id: str) -> str:
        token = token_for(user_id, call_cids=[call.cid])
        conn.send(json.dumps({"type": "join", "token": token, "call_cid": call.cid}))
        while (message := json.loads(conn.recv(timeout=RECV_TIMEOUT_S)))["type"] != "joined":
            assert message["type"] != "error", message
        return message["user_session_id"]

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = base.split(":")
    sock.connect((host, int(port)))
    with connect(rtc_url, sock=sock, max_queue=2) as peer, connect(rtc_url) as sender:
        peer_session = join(peer, "patient-a")  # and reads nothing more
        join(sender, "dr-host")
        signal = json.dumps({"type": "signal", "to": peer_session, "data": {"sdp": "x" * 60_000}})
        for _ in range(1000):
            sender.send(signal)
            sender.send(json.dumps({"type": "ping"}))  # the sender is answered every time
            while (message := json.loads(sender.recv(timeout=RECV_TIMEOUT_S)))["type"] != "pong":
                assert message["type"] != "error", message
            if any(q.slow for q in queues):
                break
        assert any(q.slow for q in queues), "the peer's queue never filled"
        # The server's side: the close has been written, though the peer still reads nothing.
        (slow,) = {q for q in queues if q.slow}
        wait_for(lambda: slow.writer is not None and slow.writer.done(), "the close written")
        codes = []
        try:
            while True:
                peer.recv(timeout=RECV_TIMEOUT_S)
        except ConnectionClosed as exc:
            codes.append(exc.rcvd.code if exc.rcvd else None)
    assert codes == [4008]
    assert max(queued) <= QUEUE


@contextmanager
def stopped_reader(base: str, call, settings):
    """A client with small socket buffers, subscribed to `call`, that reads nothing more until
    the test says so, and events of 64 KiB published until the server finds it slow. Its own
    keepalive is off: its pings would go unanswered (the server's pongs wait behind the data it
    does not read) and it would fail the connection itself, discarding what it reads."""
    settings.CALLS_WS_SEND_QUEUE = QUEUE
    settings.CALLS_WS_STALL_SECONDS = 0
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = base.split(":")
    sock.connect((host, int(port)))
    query = urlencode({"api_key": settings.CALLS_API_KEY, "token": token_for(None)})
    url = f"ws://{base}/ws/v1/events?{query}"
    before = set(consumer_connections())  # earlier tests' servers may leave theirs
    with connect(url, sock=sock, max_queue=2, ping_interval=None) as conn:
        assert json.loads(conn.recv(timeout=RECV_TIMEOUT_S))["type"] == "connected"
        conn.send(json.dumps({"type": "subscribe", "cid": call.cid}))
        assert json.loads(conn.recv(timeout=RECV_TIMEOUT_S))["type"] == "subscribed"
        (slow,) = set(consumer_connections()) - before
        payload = {"type": "custom", "call_cid": call.cid, "custom": {"note": "x" * 65536}}
        for _ in range(1000):
            event = CallEvent.objects.create(
                call=call, call_cid=call.cid, type="custom", payload=payload, created_at=now()
            )
            realtime.publish(event)
            if slow.slow:
                break
        assert slow.slow, "never closed as slow"
        yield conn, slow


def read_until_closed(conn) -> tuple[int, int | None]:
    received = 0
    try:
        while True:
            conn.recv(timeout=RECV_TIMEOUT_S)
            received += 1
    except ConnectionClosed as exc:
        return received, exc.rcvd.code if exc.rcvd else None


def test_a_slow_consumer_close_is_written_at_once_and_read_after_the_data(base, call, settings):
    """The server's close does not wait for the client to read: it is written behind the data
    already sent, and a client that reads again later gets that data, then 4008."""
    with stopped_reader(base, call, settings) as (conn, slow):
        # The server's side: the close has been handed to the transport (it waited for the
        # client to read before).
        wait_for(lambda: slow.closer is not None and slow.closer.done(), "the close written")
        received, code = read_until_closed(conn)
    assert received > 0  # what was already written comes first
    assert code == consumer.CLOSE_SLOW_CONSUMER == 4008


def test_a_slow_consumer_that_never_reads_again_is_dropped(base, call, settings, monkeypatch):
    """A client that does not read up to the close frame (and answer it) within uvicorn's close
    timeout is dropped (TCP reset, calls.realtime.wsprotocol): the server's connection ends
    without the client reading, and the client's socket then reports the end, without a code."""
    lost: list[object] = []
    sansio = wsprotocol.WebSocketsSansIOProtocol  # uvicorn's, whose end the fix bounds
    connection_lost = sansio.connection_lost

    def recording(self, exc):
        lost.append(self)
        connection_lost(self, exc)

    monkeypatch.setattr(sansio, "connection_lost", recording)
    with stopped_reader(base, call, settings) as (conn, _slow):
        wait_for(lambda: lost, "the server's side of the connection ended", timeout=30)
        _received, code = read_until_closed(conn)
    assert code is None  # reset: what reached the client's buffer, then no close frame
