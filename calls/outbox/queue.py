"""Hand a job to the workers by its task's name.

Celery tasks (`calls.outbox.tasks`, `calls.tasks`, `appointments.tasks`) import the code they
run; the code that enqueues them names them here instead of importing them, so the imports run
one way (tasks → relay / webhooks / push / services, never back). The tasks are registered
when the apps are ready (their `apps.py`); an unknown name is a KeyError, never a silent send
to nowhere. With
`CELERY_TASK_ALWAYS_EAGER` (the embedded default, tests) the task runs in-process.
"""

from __future__ import annotations

from typing import Any

from celery import current_app


def enqueue(task: str, *args: Any) -> None:
    """`task` is the task's full name, e.g. `calls.outbox.tasks.relay_events`."""
    current_app.tasks[task].delay(*args)
