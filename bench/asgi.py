"""The production ASGI app (config.asgi) with the benchmark's yardstick routed beside it
(bench/urls.py): what bench/api_throughput.py serves through bin/web (`WEB_APP`)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django
from django.conf import settings

django.setup(set_prefix=False)
settings.ROOT_URLCONF = "bench.urls"

from config.asgi import application  # noqa: E402

__all__ = ["application"]
