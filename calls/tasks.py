from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(acks_late=True, time_limit=300, soft_time_limit=280)
def run_task(task_id: str) -> None:
    """Run an API task (GET /api/v2/tasks/{id}); quiet when it is gone or already done."""
    services.call_hard_delete_run(task_id=task_id)
