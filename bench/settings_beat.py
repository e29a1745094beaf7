"""Settings for the django-celery-beat design of bench/scheduler.py, and nothing else.

The app does not use django-celery-beat (its scheduler keeps due work in DueAction rows), so
it is not in config.settings. The benchmark compares against the beat design, whose processes
(`celery beat` with the DatabaseScheduler, its worker, the benchmark driver that writes the
one-off schedules, and the migrate that creates beat's tables in the benchmark database) need
it installed: they, and only they, run with DJANGO_SETTINGS_MODULE=bench.settings_beat.
"""

from config.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "django_celery_beat"]  # noqa: F405
