"""The web process's ASGI lifespan: what runs once the app is loaded, before it serves.

uvicorn sends `lifespan.startup` in each worker process (its default `--lifespan auto`, and
`serve`). Tests that run uvicorn inside the test process turn lifespan off, so the test
process's collector is left alone.

Shutdown needs nothing here: on SIGTERM uvicorn itself closes every WebSocket with 1012 (service
restart) before it waits for connections, and `lifespan.shutdown` only comes after that wait.
What bounds the wait is uvicorn's `--timeout-graceful-shutdown` (bin/web, `serve`): without
it a socket whose client stopped reading keeps its unsent data, and the worker, forever
(tests/test_web_process.py).
"""

from __future__ import annotations

import gc
import logging
from typing import Any

from django.conf import settings

logger = logging.getLogger("config.lifespan")


def tune_gc(*, freeze: bool, gen0_threshold: int) -> None:
    """Freeze what is alive now (the loaded app: modules, classes, URL patterns, settings)
    so full collections never walk it again, and set the first generation's threshold
    (0 keeps Python's). Measured in bench/events.py: 500 sockets on one call, a full
    collection took ~110 ms before, ~50-70 ms after the freeze, and with the larger first
    generation none happened in 300 changes."""
    if freeze:
        gc.collect()
        gc.freeze()
    if gen0_threshold > 0:
        _gen0, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(gen0_threshold, gen1, gen2)
    logger.info(
        "garbage collector: %d objects frozen, thresholds %s",
        gc.get_freeze_count(),
        gc.get_threshold(),
    )


async def lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            tune_gc(freeze=settings.WEB_GC_FREEZE, gen0_threshold=settings.WEB_GC_GEN0_THRESHOLD)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
