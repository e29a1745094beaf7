"""The scheduler process: `python manage.py run_scheduler`. Run as many as you like."""

from __future__ import annotations

import signal
from typing import Any

from django.core.management.base import BaseCommand

from calls.scheduling import scheduler


class Command(BaseCommand):
    help = "Apply due call actions (go live, ring, reminders) at their time."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--max-sleep",
            type=float,
            default=None,
            help="Longest sleep between passes in seconds (default: CALLS_SCHEDULER_MAX_SLEEP).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write("scheduler started")
        scheduler.run_forever(max_sleep=options["max_sleep"], stop=lambda: stopping)
        self.stdout.write("scheduler stopped")
