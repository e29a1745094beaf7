"""The embedded default: one process serving HTTP (ASGI) with the scheduler in a thread and
Celery tasks run in-process. Production runs web, worker and scheduler as separate processes.

Start-up ends with what a newcomer needs: the URL (and, from `bin/run`, the demo sign-ins,
`--banner-file`), printed once the server accepts connections. The routine logs of the
in-process worker and scheduler (a line per task, per sweep) and uvicorn's start-up chatter
are kept quiet (warnings and errors still show); `--logs` or `SERVE_LOGS=1` shows them all."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from calls.scheduling import scheduler

# Loggers whose INFO lines are routine in the embedded default: tasks run in-process (Celery's
# trace), the scheduler's and the relay's rounds, uvicorn's and the lifespan's start-up.
ROUTINE_LOGGERS = (
    "celery",
    "kombu",
    "calls.scheduling",
    "calls.relay",
    "calls.outbox",
    "uvicorn.error",
    "config.lifespan",
)


def quiet_routine_logs() -> None:
    """Now, and in settings.LOGGING: loading the ASGI application sets Django up again, which
    applies settings.LOGGING again."""
    loggers = settings.LOGGING.setdefault("loggers", {})
    for name in ROUTINE_LOGGERS:
        loggers.setdefault(name, {})["level"] = "WARNING"
        logging.getLogger(name).setLevel(logging.WARNING)


class Command(BaseCommand):
    help = "Serve the app with an in-process scheduler (development / embedded default)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument(
            "--logs",
            action="store_true",
            default=os.environ.get("SERVE_LOGS", "") not in ("", "0", "false"),
            help="Show the worker's, the scheduler's and uvicorn's routine logs (SERVE_LOGS=1).",
        )
        parser.add_argument(
            "--banner-file",
            default="",
            help="Text printed after the URL once the server is up (bin/run: the demo sign-ins).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        import uvicorn

        if not options["logs"]:
            quiet_routine_logs()
        stopping = threading.Event()
        thread = threading.Thread(
            target=scheduler.run_forever,
            kwargs={"stop": stopping.is_set},
            name="scheduler",
            daemon=True,
        )
        thread.start()
        config = uvicorn.Config(
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
        server = uvicorn.Server(config)
        banner = threading.Thread(
            target=self._banner,
            args=(server, options, stopping),
            name="banner",
            daemon=True,
        )
        banner.start()
        try:
            server.run()
        finally:
            stopping.set()

    def _banner(self, server: Any, options: dict[str, Any], stopping: threading.Event) -> None:
        """Once the server accepts connections: the URL, the banner file, how to see logs."""
        while not server.started:
            if stopping.is_set() or server.should_exit:
                return
            time.sleep(0.05)
        lines = [
            "",
            f"  appointment-calls is running on http://{options['host']}:{options['port']}/",
        ]
        if options["banner_file"]:
            lines.append(Path(options["banner_file"]).read_text().rstrip())
        if not options["logs"]:
            lines.append(
                "  Routine worker and scheduler logs are hidden (warnings and errors still "
                "show): --logs or SERVE_LOGS=1 shows them."
            )
        lines.append("  Press Ctrl-C to stop.")
        self.stdout.write("\n".join(lines) + "\n")
        self.stdout.flush()
