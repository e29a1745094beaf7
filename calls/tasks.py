"""The calls API's background tasks (GET /api/v2/tasks/{id}). The outbox's own tasks (relay,
pushes, webhooks) are in `calls.outbox.tasks`."""

from __future__ import annotations

from celery import shared_task

from calls.services import calls as call_services


@shared_task(acks_late=True, time_limit=300, soft_time_limit=280)
def run_task(task_id: str) -> None:
    """Run an API task; quiet when it is gone or already done."""
    call_services.call_hard_delete_run(task_id=task_id)
