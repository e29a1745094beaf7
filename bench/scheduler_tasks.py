"""Celery tasks of the baselines bench/scheduler.py measures ours against.

Not app code: the app's go-live at start is a DueAction row applied by `run_scheduler`.
`go_live` does what people usually write instead (an ETA task per call) and calls the same
service the scheduler calls; `trivial` does nothing but note when it ran, so its ETA design
is the floor of scheduling with Celery. Workers find them with
`celery -A config worker --include bench.scheduler_tasks`.
"""

from __future__ import annotations

import time
from functools import cache

from celery import shared_task
from django.conf import settings

from calls.capabilities import SERVER
from calls.models import Call
from calls.services.live import call_go_live

QUEUE = "bench-sched"
RAN_KEY = "bench-sched:ran"  # call id -> time.time() of the trivial task's first run
RUNS_KEY = "bench-sched:runs"  # call id -> how many times it ran (more than 1: doubled)


@cache
def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL)


@shared_task(name="bench.scheduler_tasks.trivial")
def trivial(call_id: str) -> None:
    """The scheduling floor: note when the task ran, and how many times."""
    now = time.time()
    client = _redis()
    pipe = client.pipeline(transaction=False)
    pipe.hsetnx(RAN_KEY, call_id, repr(now))
    pipe.hincrby(RUNS_KEY, call_id, 1)
    pipe.execute()


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
