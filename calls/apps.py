from django.apps import AppConfig


class CallsConfig(AppConfig):
    name = "calls"
    verbose_name = "Calls"

    def ready(self) -> None:
        # Register the Celery tasks that `calls.outbox.queue.enqueue` names, in every process
        # (Celery's autodiscovery runs in workers only, and finds only `calls.tasks`).
        from calls import tasks  # noqa: F401
        from calls.outbox import tasks as outbox_tasks  # noqa: F401
