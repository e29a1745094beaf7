"""Demo data for the embedded default: an admin, two calls-API users, a call due soon.

Safe to re-run. Development only: refuses to run with DJANGO_DEBUG=false.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from calls import services
from calls.capabilities import SERVER
from calls.models import Call

ADMIN_USERNAME = "admin"
ADMIN_PASSWORD = "admin"  # noqa: S105 - printed dev credential, never used with DEBUG off


class Command(BaseCommand):
    help = "Create demo data (development only)."

    def handle(self, *args: object, **options: object) -> None:
        if not settings.DEBUG:
            raise CommandError("seed_demo creates known credentials; it runs only with DEBUG on")
        user_model = get_user_model()
        if not user_model.objects.filter(username=ADMIN_USERNAME).exists():
            user_model.objects.create_superuser(ADMIN_USERNAME, "", ADMIN_PASSWORD)
        services.users_upsert(
            actor=SERVER,
            users=[
                services.UserSpec(id="dr-ito", name="Dr Ito", teams=["demo-clinic"]),
                services.UserSpec(id="patient-1", name="Demo Patient", teams=["demo-clinic"]),
            ],
        )
        call_id = "demo-" + timezone.now().strftime("%Y%m%d%H%M")
        if not Call.objects.filter(call_id=call_id).exists():
            services.call_get_or_create(
                actor=SERVER,
                type_name="appointment",
                call_id=call_id,
                created_by_id="dr-ito",
                team="demo-clinic",
                members=[
                    services.MemberSpec(user_id="dr-ito", role="host"),
                    services.MemberSpec(user_id="patient-1"),
                ],
                starts_at=timezone.now() + timedelta(minutes=5),
            )
        self.stdout.write(
            f"  admin:       /admin/  user {ADMIN_USERNAME!r} password {ADMIN_PASSWORD!r}"
        )
        self.stdout.write(
            f"  calls API:   api_key {settings.CALLS_API_KEY!r}, "
            f"secret {settings.CALLS_API_SECRET!r}"
        )
        self.stdout.write(f"  demo call:   appointment:{call_id}")
