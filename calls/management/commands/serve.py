"""The embedded default: one process serving HTTP (ASGI) with the scheduler in a thread and
Celery tasks run in-process. Production runs web, worker and scheduler as separate processes."""

from __future__ import annotations

import os
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from calls.scheduling import scheduler


class Command(BaseCommand):
    help = "Serve the app with an in-process scheduler (development / embedded default)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args: Any, **options: Any) -> None:
        import uvicorn

        stopping = threading.Event()
        thread = threading.Thread(
            target=scheduler.run_forever,
            kwargs={"stop": stopping.is_set},
            name="scheduler",
            daemon=True,
        )
        thread.start()
        try:
            uvicorn.run(
                "config.asgi:application",
                host=options["host"],
                port=options["port"],
                lifespan="on",  # config.lifespan: the garbage collector's tuning
                # Message size and queue limits (docs/limits.md); no per-message deflate:
                # compressing each event once per connection costs more CPU than the fan-out.
                **settings.UVICORN_WS_OPTIONS,
                # On Ctrl-C / SIGTERM, sockets get 1012 at once; one whose client stopped
                # reading would hold the process open for good without a bound (bin/web).
                timeout_graceful_shutdown=settings.WEB_GRACEFUL_SHUTDOWN_SECONDS,
                # The app's settings.LOGGING, configured by Django, stays: its filter blanks
                # tokens in URLs, the access log's included (config/log_filters.py).
                log_config=None,
            )
        finally:
            stopping.set()
