"""A real ASGI server (uvicorn in a thread) and real clients (websockets' sync client, httpx)
for the WebSocket tests."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import uvicorn
from django.conf import settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from calls.tokens import mint_server_token, mint_user_token

RECV_TIMEOUT_S = 5.0
QUIET_S = 0.6  # how long "receives nothing" waits


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server() -> Iterator[str]:
    """uvicorn serving config.asgi.application on a free port; yields `host:port`."""
    from config.asgi import application

    port = free_port()
    config = uvicorn.Config(
        app=application,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        **settings.UVICORN_WS_OPTIONS,  # as in production (README, `serve`)
        # Channels-redis receives block up to 5 s; do not wait for them at shutdown.
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def token_for(user_id: str | None, **kwargs: Any) -> str:
    return mint_server_token() if user_id is None else mint_user_token(user_id, **kwargs)


@dataclass
class Rest:
    """The calls REST API over real HTTP, as Stream's SDK sends it."""

    base: str

    def request(
        self, method: str, path: str, body: Any = None, *, as_user: str | None = None
    ) -> dict[str, Any]:
        response = httpx.request(
            method,
            f"http://{self.base}{path}",
            params={"api_key": settings.CALLS_API_KEY},
            headers={"Authorization": token_for(as_user), "stream-auth-type": "jwt"},
            content=b"" if body is None else json.dumps(body).encode(),
            timeout=10,
        )
        assert response.status_code < 300, (response.status_code, response.text[:500])
        return response.json()


class Socket:
    """One client connection to /ws/v1/events, speaking JSON."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn

    def send(self, message: dict[str, Any]) -> None:
        self.conn.send(json.dumps(message))

    def recv(self, timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        return json.loads(self.conn.recv(timeout=timeout))

    def expect(self, kind: str, timeout: float = RECV_TIMEOUT_S) -> dict[str, Any]:
        message = self.recv(timeout)
        assert message["type"] == kind, message
        return message

    def events(self, count: int) -> list[dict[str, Any]]:
        return [self.expect("event") for _ in range(count)]

    def nothing(self, within: float = QUIET_S) -> None:
        try:
            message = self.conn.recv(timeout=within)
        except TimeoutError:
            return
        raise AssertionError(f"expected nothing, received {message}")

    def subscribe(self, cid: str, last_event_id: int | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "subscribe", "cid": cid}
        if last_event_id is not None:
            message["last_event_id"] = last_event_id
        self.send(message)
        return self.expect("subscribed")

    def closed_with(self, timeout: float = RECV_TIMEOUT_S) -> tuple[list[dict], int | None]:
        """Everything received until the server closed, and its close code."""
        received = []
        try:
            while True:
                received.append(self.recv(timeout))
        except ConnectionClosed as exc:
            return received, exc.rcvd.code if exc.rcvd else None

    def close(self) -> None:
        self.conn.close()


@contextmanager
def ws_connect(
    base: str,
    *,
    user_id: str | None = "__server__",
    token: str | None = None,
    api_key: str | None = None,
    origin: str | None = None,
    in_url: bool = True,
    expect_connected: bool = True,
) -> Iterator[Socket]:
    """Connect (as a user, the server when user_id is None, or with an explicit token)."""
    if token is None and user_id != "__server__":
        token = token_for(user_id)
    query = {"api_key": settings.CALLS_API_KEY if api_key is None else api_key}
    if token is not None and in_url:
        query["token"] = token
    headers = {"Origin": origin} if origin else None
    with connect(
        f"ws://{base}/ws/v1/events?{urlencode(query)}",
        additional_headers=headers,
        open_timeout=RECV_TIMEOUT_S,
    ) as conn:
        sock = Socket(conn)
        if expect_connected:
            sock.expect("connected")
        yield sock
