"""`manage.py audit_verify`: walk the audit trail's hash chain; exit 1 naming the first broken
row."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.record import verify


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; fails naming the first broken row."

    def handle(self, *args: Any, **options: Any) -> None:
        checked, broken = verify()
        if broken is not None:
            raise CommandError(
                f"audit trail broken at row {broken.entry_id}: {broken.reason} "
                f"({checked} rows before it are intact)"
            )
        self.stdout.write(f"audit trail intact: {checked} rows")
