"""Fixtures shared by the calls tests."""

from __future__ import annotations

import pytest
import redis
from asgiref.sync import async_to_sync
from channels.layers import channel_layers, get_channel_layer
from django.conf import settings

from calls.outbox import webhooks
from calls.realtime import connections

from .realtime_server import running_server
from .webhook_receiver import Receiver


@pytest.fixture
def base(eager_tasks):
    """A real uvicorn server (HTTP and WebSockets) on a free port: `host:port`. The relay runs
    in-process at commit. A fresh channel layer bound to this test's server loop, and (Redis)
    no groups or messages left over from an earlier test: cids repeat from test to test."""
    channel_layers.backends.clear()
    layer = get_channel_layer()
    if hasattr(layer, "flush"):
        async_to_sync(layer.flush)()
    channel_layers.backends.clear()
    _forget_socket_leases()
    with running_server() as address:
        yield address
    channel_layers.backends.clear()


def _forget_socket_leases() -> None:
    """Sockets of an earlier test's server (stopped without their goodbyes) hold places among
    their user's sockets until the leases lapse: a new server starts with none."""
    connections._local.clear()
    if settings.REDIS_URL:
        client = redis.Redis.from_url(settings.REDIS_URL)
        keys = list(client.scan_iter(match=f"{connections.KEY_PREFIX}*"))
        if keys:
            client.delete(*keys)


@pytest.fixture(scope="module")
def receiver():
    """A local webhook receiver (one per test module)."""
    server = Receiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def hook_settings(settings, receiver, eager_tasks):
    """Webhooks on, to the receiver on 127.0.0.1 over http (private networks allowed)."""
    settings.CALLS_EVENT_CONSUMERS = ["calls.outbox.webhooks.on_event"]
    settings.DEBUG = False
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_MAX_ATTEMPTS = 4
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.0
    receiver.reset(settings.CALLS_API_SECRET)
    # No connection kept from an earlier test: a stopped test server's kept connections live
    # on in its handler threads, and a new server may take its port.
    webhooks._pool.close()
    yield settings
    assert receiver.errors == []
