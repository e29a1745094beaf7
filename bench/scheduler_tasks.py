"""Celery tasks of the two designs bench/scheduler.py compares ours against (eta and beat).

Not app code: the app's go-live at start is a DueAction row applied by `run_scheduler`. These
tasks do what people usually write instead, and call the same service the scheduler calls.
Workers find them with `celery -A config worker --include bench.scheduler_tasks`.
"""

from __future__ import annotations

from celery import shared_task

from calls.capabilities import SERVER
from calls.models import Call
from calls.services.live import call_go_live

QUEUE = "bench-sched"


@shared_task(name="bench.scheduler_tasks.go_live")
def go_live(type_name: str, call_id: str) -> None:
    """Flip the call live unless it already is: the same check our scheduler makes before it
    calls the service (`calls.scheduling.scheduler._apply`), so a task run twice after a
    redelivery is a no-op unless two runs overlap."""
    call = (
        Call.objects.filter(type_id=type_name, call_id=call_id, deleted_at__isnull=True)
        .only("backstage", "ended_at")
        .first()
    )
    if call is None or not call.backstage or call.ended_at is not None:
        return
    call_go_live(actor=SERVER, type_name=type_name, call_id=call_id)
