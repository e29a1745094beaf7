"""Demo data for the embedded default: two clinics, staff (printed logins), patients and
today's appointments, one of them starting a few minutes from now.

Safe to re-run: existing people are kept, and a new "starting soon" appointment is booked
whenever none is due in the next few minutes. Development only (refuses with DEBUG off; the
demo passwords are refused at sign-in with DEBUG off too: appointments.demo).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from appointments import demo
from appointments.models import Appointment, Clinic, Patient, StaffMember
from appointments.services.booking import Booking, appointment_book
from appointments.services.patients import patient_create
from appointments.services.staff import clinic_create, staff_create
from appointments.services.status import appointment_call_action

ADMIN = (demo.ADMIN_USERNAME, demo.ADMIN_PASSWORD)  # Django admin superuser
STAFF_PASSWORD = demo.STAFF_PASSWORD
SOON_MINUTES = 3


class Command(BaseCommand):
    help = "Create demo clinics, staff, patients and today's appointments (development only)."

    def handle(self, *args: object, **options: object) -> None:
        if not demo.demo_credentials_allowed():
            raise CommandError("seed_demo creates known passwords; it runs only with DEBUG on")
        user_model = get_user_model()
        if not user_model.objects.filter(username=ADMIN[0]).exists():
            user_model.objects.create_superuser(ADMIN[0], "", ADMIN[1])

        riverside = self._clinic("riverside", "Riverside Clinic", "Europe/Paris")
        hillside = self._clinic("hillside", "Hillside Clinic", "Europe/Paris")
        ito = self._staff("ito", "Dr Aiko Ito", {riverside: "clinician", hillside: "clinician"})
        okafor = self._staff("okafor", "Dr Chidi Okafor", {riverside: "clinician"})
        self._staff("desk", "Sam (front desk)", {riverside: "coordinator"})
        self._staff("hill", "Dr Ines Hill", {hillside: "clinician"})
        self._staff("lee", "Jo Lee (clinic admin)", {riverside: "admin"})
        patients = [
            self._patient(riverside, "Ana Lima", "ana@example.org", "Europe/Lisbon"),
            self._patient(riverside, "Ben Carter", "ben@example.org", "Europe/London"),
            self._patient(riverside, "Chloé Martin", "chloe@example.org", "Europe/Paris"),
            self._patient(hillside, "Dev Patel", "dev@example.org", "Europe/Paris"),
        ]
        now = timezone.now()
        if not Appointment.objects.filter(clinic=riverside).exists():
            self._book_the_day(
                riverside,
                [(-2, okafor, patients[1]), (2, ito, patients[2]), (4, okafor, patients[0])],
                now,
            )
        soon = Appointment.objects.filter(
            clinic=riverside,
            starts_at__gte=now,
            starts_at__lte=now + timedelta(minutes=10),
            status=Appointment.Status.SCHEDULED,
        ).first()
        if soon is None:
            soon = self._book(
                riverside, ito, patients[0], now + timedelta(minutes=SOON_MINUTES), now
            )
        self._print_summary(riverside, patients[0], soon)

    def _book_the_day(
        self,
        clinic: Clinic,
        slots: list[tuple[int, StaffMember, Patient]],
        now: datetime,
    ) -> None:
        """Appointments `hours` from the current hour; those already past took place."""
        day = timezone.localtime(now, clinic.tz).replace(minute=0, second=0, microsecond=0)
        for hours, host, patient in slots:
            booked = self._book(clinic, host, patient, day + timedelta(hours=hours), now)
            if booked.starts_at < now:  # a visit that already took place
                for action in ("go_live", "end"):
                    appointment_call_action(appointment=booked, staff=host, action=action)

    def _print_summary(self, clinic: Clinic, patient: Patient, soon: Appointment) -> None:
        w = self.stdout.write
        w("")
        w("  Demo data")
        w(f"    Django admin:  /admin/   user {ADMIN[0]!r}  password {ADMIN[1]!r}")
        w(
            "                   (development only: with DEBUG on, this demo superuser skips the "
            "two-factor step that every other superuser and clinic admin must pass)"
        )
        w(f"    Staff portal:  /login/   password {STAFF_PASSWORD!r} for every staff login:")
        for staff in StaffMember.objects.select_related("user").order_by("display_name"):
            clinics = ", ".join(c.name for c in staff.clinics.order_by("name"))
            w(f"      {staff.user.username:8s} {staff.display_name} ({clinics})")
        w(
            "                   clinic admins set up two-factor sign-in (an authenticator app) "
            "the first time"
        )
        w(
            f"    Patient API:   /api/patient/v1/  sign in with e.g. {patient.email}; the "
            "code is printed below when requested"
        )
        w(
            f"    Calls API:     api_key {settings.CALLS_API_KEY!r}  "
            f"secret {settings.CALLS_API_SECRET!r}"
        )
        starts = timezone.localtime(soon.starts_at, clinic.tz)
        w(f"    Starting soon: appointment {soon.id} at {starts:%H:%M} ({clinic.time_zone})")

    def _clinic(self, slug: str, name: str, tz: str) -> Clinic:
        return Clinic.objects.filter(slug=slug).first() or clinic_create(
            slug=slug, name=name, time_zone=tz
        )

    def _staff(self, username: str, name: str, clinics: dict[Clinic, str]) -> StaffMember:
        existing = StaffMember.objects.filter(user__username=username).first()
        return existing or staff_create(
            username=username, password=STAFF_PASSWORD, display_name=name, memberships=clinics
        )

    def _patient(self, clinic: Clinic, name: str, email: str, tz: str) -> Patient:
        existing = Patient.objects.filter(clinic=clinic, email=email).first()
        return existing or patient_create(clinic=clinic, name=name, email=email, time_zone=tz)

    def _book(
        self,
        clinic: Clinic,
        host: StaffMember,
        patient: Patient,
        starts_at: datetime,
        now: datetime,
    ) -> Appointment:
        booking = Booking(
            clinic=clinic,
            patient=patient,
            starts_at=starts_at,
            host=host,
            duration_minutes=20,
            reason="Demo follow-up",
        )
        # Past demo slots are allowed: book them as of an hour before they start.
        return appointment_book(
            booking=booking, by=host, now=min(now, starts_at - timedelta(hours=1))
        )
