"""The demo data's known credentials (`seed_demo`, the embedded default). They work only with
DEBUG on: the sign-in backend refuses these passwords otherwise
(appointments.portal.security.StaffBackend), and `seed_demo` refuses to run."""

from __future__ import annotations

from django.conf import settings

ADMIN_USERNAME = "admin"  # the Django admin superuser
ADMIN_PASSWORD = "admin"  # noqa: S105 - printed development credential
STAFF_PASSWORD = "demo-pass-1"  # noqa: S105 - printed development credential
PASSWORDS = frozenset({ADMIN_PASSWORD, STAFF_PASSWORD})


def demo_credentials_allowed() -> bool:
    return bool(settings.DEBUG)
