"""The production web process (`bin/web`: uvicorn with the app's logging) as a real subprocess:
SIGTERM ends it promptly even with a socket whose client stopped reading, every socket is told
it closes, and the access log never shows the tokens in URLs.

The slow reader gets its events through the Redis channel layer from this test process, as it
would from the relay of any other process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.utils import timezone
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from calls.capabilities import SERVER
from calls.realtime import groups
from calls.realtime.publish import EVENT_MESSAGE, frame
from calls.services.calls import MemberSpec, call_get_or_create
from calls.tokens import mint_user_token
from tests.calls.realtime_server import free_port
from tests.factories import CallUserFactory

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 60
EXIT_WAIT_S = 30  # a bound on the wait, not a performance figure: the fix takes ~2 s

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = db["USER"] or "postgres"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return f"postgres://{user}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def start_web(port: int, **extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "DJANGO_DEBUG": "false",
        "SECRET_KEY": "test-secret-key-for-the-web-process-0123456789-abcdefghijklmnop",
        "CALLS_API_KEY": settings.CALLS_API_KEY,
        "CALLS_API_SECRET": settings.CALLS_API_SECRET,
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "DB_POOL_MIN_SIZE": "1",
        "DB_POOL_MAX_SIZE": "4",
        "WEB_HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_GC_FREEZE": "false",
        **extra,
    }
    process = subprocess.Popen(  # noqa: S603 - our own script
        [str(ROOT / "bin" / "web")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"bin/web did not start:\n{process.communicate()[0]}") from None
            time.sleep(0.1)


@pytest.fixture
def call_cid() -> str:
    for user_id in ("dr-host", "patient-a"):
        CallUserFactory(id=user_id, teams=["clinic-a"])
    call_get_or_create(
        actor=SERVER,
        type_name="appointment",
        call_id="visit-1",
        created_by_id="dr-host",
        team="clinic-a",
        starts_at=timezone.now() + timedelta(minutes=5),
        members=[MemberSpec(user_id="dr-host", role="host"), MemberSpec(user_id="patient-a")],
    )
    return "appointment:visit-1"


def events_socket(port: int, token: str, cid: str, *, rcvbuf: int | None = None):
    sock = socket.socket()
    if rcvbuf is not None:  # a client that stops reading fills this at once
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    url = f"ws://127.0.0.1:{port}/ws/v1/events?api_key={settings.CALLS_API_KEY}&token={token}"
    conn = connect(url, sock=sock, open_timeout=10, close_timeout=1)
    assert json.loads(conn.recv(timeout=10))["type"] == "connected"
    conn.send(json.dumps({"type": "subscribe", "cid": cid}))
    assert json.loads(conn.recv(timeout=10))["type"] == "subscribed"
    return conn


def drain(conn) -> None:
    """Reads until the server closes the connection (ConnectionClosed)."""
    while True:
        conn.recv(timeout=EXIT_WAIT_S)


def test_sigterm_ends_the_web_process_promptly_and_the_log_shows_no_tokens(call_cid):
    if not settings.REDIS_URL:
        pytest.skip("the slow reader's events come through the Redis channel layer")
    port = free_port()
    web = start_web(port, WEB_GRACEFUL_SHUTDOWN_SECONDS="2")
    token = mint_user_token("dr-host")
    try:
        # A join link and a socket with their secrets in the URL, as browsers send them.
        httpx.get(f"http://127.0.0.1:{port}/join/visit-1/?t=LINK-SECRET-123", timeout=10)
        reader = events_socket(port, token, call_cid)
        slow = events_socket(port, token, call_cid, rcvbuf=4096)
        # 8 MB of events for a client that reads none of them: the server's buffer stays full.
        layer = get_channel_layer()
        blob = "x" * 64_000
        for i in range(1, 129):
            message = {"type": EVENT_MESSAGE, "id": 10**6 + i, "cid": call_cid, "call": None}
            payload = {"type": "custom", "custom": {"b": blob}}
            message.update(team=None, prev=None, kind="custom", frame=frame(10**6 + i, payload))
            async_to_sync(layer.group_send)(groups.call_group(call_cid), message)
        # The reader gets them (and so the server has sent the slow one's share too).
        received = 0
        while received < 128:
            received += json.loads(reader.recv(timeout=20))["type"] == "event"

        web.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            drain(reader)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1012  # service restart: the client reconnects
        try:
            web.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the web process ignored SIGTERM for {EXIT_WAIT_S} s")
        slow.close()
    finally:
        if web.poll() is None:
            web.kill()
        log = web.communicate(timeout=10)[0]
    assert "GET /join/visit-1/?t=[redacted]" in log
    assert "token=[redacted]" in log
    assert "LINK-SECRET-123" not in log
    assert token not in log
