"""A private redis-server for the outage tests: its own free port, never the shared 6379, so
stopping it takes down nobody else's broker. `stop()` and `start()` again keep the port (a
restart, as an operator's would be); the data is not kept (no RDB, no AOF), as after a crash."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import current_app
from django.conf import settings
from kombu import pools

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateRedis:
    def __init__(self) -> None:
        if REDIS_SERVER is None:
            pytest.fail("redis-server is not installed (CI installs it with PostgreSQL)")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="private-redis-"))
        self.popen: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.dir)]
        self.popen = subprocess.Popen(  # noqa: S603 - the system's redis-server, our arguments
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not self.answers():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the private redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGKILL: the broker is lost, not shut down politely."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
        self.popen = None

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def answers(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock,
        ):
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        return False


@contextlib.contextmanager
def running_redis() -> Iterator[PrivateRedis]:
    redis = PrivateRedis()
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()
        shutil.rmtree(redis.dir, ignore_errors=True)


@contextlib.contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """This process publishes to `url` (real publishes, not eager) for the block."""
    conf = current_app.conf
    previous = conf.broker_url, conf.task_always_eager
    conf.broker_url, conf.task_always_eager = url, False
    _drop_connections()
    try:
        yield
    finally:
        conf.broker_url, conf.task_always_eager = previous
        _drop_connections()


def _drop_connections() -> None:
    """Forget pooled broker connections (kombu keeps them per broker URL, process-wide)."""
    pools.reset()
    current_app._pool = None
    current_app.amqp._producer_pool = None


def queued_tasks(
    server: PrivateRedis, queues: tuple[str, ...] | None = None
) -> list[tuple[str, list]]:
    """(task name, args) of the messages waiting in these queues (by default every queue of
    settings.CELERY_TASK_QUEUES: the default one, the relay's and the webhooks'), oldest
    first within each queue."""
    queues = tuple(settings.CELERY_TASK_QUEUES) if queues is None else queues
    found = []
    client = server.client()
    # kombu keeps each priority step in a list of its own: `celery`, `celery\x06\x163`, ...
    raws = [
        raw
        for queue in queues
        for key in sorted(client.keys(f"{queue}*"))
        for raw in client.lrange(key, 0, -1)
    ]
    for raw in reversed(raws):
        message = json.loads(raw)
        body = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], body[0]))
    return found
