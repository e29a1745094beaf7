"""`manage.py patient_data export <patient id>` writes the patient's data as JSON to stdout;
`manage.py patient_data erase <patient id> --yes` erases their personal data. Both are
audited (as the system)."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from appointments.models import Patient
from appointments.services.patients import patient_erase, patient_export


class Command(BaseCommand):
    help = "Export (JSON) or erase a patient's personal data."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["export", "erase"])
        parser.add_argument("patient_id", type=int)
        parser.add_argument("--yes", action="store_true", help="Confirm an erasure.")

    def handle(self, *args: Any, **options: Any) -> None:
        patient = Patient.objects.select_related("clinic").filter(pk=options["patient_id"]).first()
        if patient is None:
            raise CommandError(f"No patient {options['patient_id']}.")
        if options["action"] == "export":
            self.stdout.write(json.dumps(patient_export(patient=patient), indent=2))
            return
        if not options["yes"]:
            raise CommandError("Erasing cannot be undone: add --yes to confirm.")
        try:
            patient_erase(patient=patient)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(f"patient {patient.pk}: personal data erased")
