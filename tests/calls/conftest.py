"""Fixtures shared by the calls tests."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers, get_channel_layer

from .realtime_server import running_server


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
    with running_server() as address:
        yield address
    channel_layers.backends.clear()
