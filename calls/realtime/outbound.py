"""A bounded queue between a socket consumer and the client: the consumer never waits on a
client that stops reading, and a client that falls `CALLS_WS_SEND_QUEUE` messages behind is
closed with 4008 ("slow consumer", docs/limits.md).

The call socket reads its channel-layer channel one message at a time; without this, a send
to a client that reads nothing blocks that reader, and the layer quietly drops what comes
next (channels-redis keeps the newest messages of a full channel). With it, every ASGI
message the consumer sends (accept excepted) is queued in order and one task writes them; a
close is queued behind the messages before it, so an `error` always precedes its close. The
slow consumer's close is the exception: the queue is dropped and the close written at once,
behind what the client has not read yet (docs/limits.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

logger = logging.getLogger("calls.realtime")

# Not a Stream error: the client fell CALLS_WS_SEND_QUEUE messages behind (docs/limits.md).
CLOSE_SLOW_CONSUMER = 4008

Send = Callable[[dict[str, Any]], Awaitable[None]]


class BoundedSend:
    """Wraps an ASGI `send`: `await bounded(message)` returns at once."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.writer: asyncio.Task[None] | None = None
        self.slow = False
        self.closed = False

    async def __call__(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "websocket.accept" and self.writer is None:
            await self.send(message)
            return
        if self.closed:
            return
        if kind == "websocket.close":
            self.closed = True
        elif self.queue.qsize() >= settings.CALLS_WS_SEND_QUEUE:
            self.slow = self.closed = True
            logger.info("closing a slow socket (%d queued)", self.queue.qsize())
            while not self.queue.empty():
                self.queue.get_nowait()
            message = {"type": "websocket.close", "code": CLOSE_SLOW_CONSUMER}
            if self.writer is not None:
                # Its send waits for the client to read; the close (calls.realtime.wsprotocol)
                # goes out at once, behind what is already written.
                self.writer.cancel()
                self.writer = None
        self.queue.put_nowait(message)
        if self.writer is None:
            self.writer = asyncio.create_task(self._write(), name="calls socket writer")

    async def _write(self) -> None:
        while True:
            message = await self.queue.get()
            try:
                await self.send(message)
            except Exception:  # the client is gone (uvicorn's ClientDisconnected, OSError)
                logger.debug("socket write failed", exc_info=True)
                return
            if message.get("type") == "websocket.close":
                return

    def stop(self) -> None:
        if self.writer is not None and not self.writer.done():
            self.writer.cancel()
        with contextlib.suppress(Exception):
            while not self.queue.empty():
                self.queue.get_nowait()
