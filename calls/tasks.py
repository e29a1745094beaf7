from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(acks_late=True, time_limit=300, soft_time_limit=280)
def run_task(task_id: str) -> None:
    """Run an API task (GET /api/v2/tasks/{id}); quiet when it is gone or already done."""
    services.call_hard_delete_run(task_id=task_id)


@shared_task(acks_late=True, time_limit=60, soft_time_limit=50)
def relay_events(event_ids: list[int]) -> int:
    """Hand committed events to their consumers (calls.relay); quiet when already done."""
    from .relay import relay

    return relay(event_ids)
