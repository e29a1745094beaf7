from django.apps import AppConfig


class AppointmentsConfig(AppConfig):
    name = "appointments"
    verbose_name = "Appointments"

    def ready(self) -> None:
        # Register the Celery tasks that services enqueue by name (calls.outbox.queue).
        from appointments import tasks  # noqa: F401
