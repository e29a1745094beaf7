"""Staff portal forms. They check the shape of the input and build what the services take;
the rules (past times, double booking, who may take part) stay in `services`, whose
`ValidationError`s are attached back to the fields with `attach_errors`."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils import timezone

from appointments import languages, selectors
from appointments.models import Appointment, Clinic, Patient, StaffMember
from appointments.phones import phone_normalise
from appointments.services.booking import Booking
from audit.models import AuditEntry
from audit.record import Action

TIME_ZONES = sorted(zoneinfo.available_timezones() - {"localtime", "Factory"})


def attach_errors(form: forms.Form, error: ValidationError) -> None:
    """Put a service's `ValidationError` next to the fields it names; errors about fields the
    form does not have (and plain messages) go to the top of the form."""
    if hasattr(error, "error_dict"):
        for name, messages in error.message_dict.items():
            target = name if name in form.fields else None
            if name == NON_FIELD_ERRORS:
                target = None
            form.add_error(target, messages)
    else:
        form.add_error(None, error.messages)


class DayForm(forms.Form):
    """`?date=YYYY-MM-DD` of the schedule page (today in the clinic when absent or invalid)."""

    date = forms.DateField(required=False, input_formats=["%Y-%m-%d"])

    # The page works with the day before and after, in any time zone: the ends of the
    # calendar (0001-01-01, 9999-12-31) would overflow, so they count as invalid.
    MARGIN = dt.timedelta(days=7)

    def clean_date(self) -> dt.date | None:
        day = self.cleaned_data["date"]
        if day is not None and not (dt.date.min + self.MARGIN <= day <= dt.date.max - self.MARGIN):
            raise forms.ValidationError("out of range")
        return day

    def day(self, *, clinic: Clinic) -> dt.date:
        if self.is_valid() and self.cleaned_data["date"]:
            return self.cleaned_data["date"]
        return timezone.localdate(timezone=zoneinfo.ZoneInfo(clinic.time_zone))


class SearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=100, strip=True)

    def query(self) -> str:
        return self.cleaned_data["q"] if self.is_valid() else ""


# --- schedule --------------------------------------------------------------------------------


class ClinicDateTimeField(forms.SplitDateTimeField):
    """A date input and a time input, read as wall-clock time in the clinic's zone."""

    widget = forms.SplitDateTimeWidget(
        date_attrs={"type": "date"},
        time_attrs={"type": "time", "step": "60"},
        date_format="%Y-%m-%d",
        time_format="%H:%M",
    )

    def __init__(self, *, time_zone: zoneinfo.ZoneInfo, **kwargs: Any) -> None:
        self.time_zone = time_zone
        kwargs.setdefault("input_date_formats", ["%Y-%m-%d"])
        kwargs.setdefault("input_time_formats", ["%H:%M", "%H:%M:%S"])
        super().__init__(**kwargs)

    def compress(self, data_list: list[Any]) -> dt.datetime | None:
        if not data_list:
            return None
        day, time = data_list
        if day in self.empty_values:
            raise ValidationError("Enter a date.", code="invalid_date")
        if time in self.empty_values:
            raise ValidationError("Enter a time.", code="invalid_time")
        naive = dt.datetime.combine(day, time)
        local = naive.replace(tzinfo=self.time_zone)
        # A wall time skipped by a clock change does not survive the round trip through UTC.
        back = local.astimezone(dt.UTC).astimezone(self.time_zone).replace(tzinfo=None)
        if back != naive:
            raise ValidationError(
                "%(time)s does not exist in %(zone)s (the clocks change that day).",
                code="nonexistent",
                params={"time": f"{time:%H:%M}", "zone": self.time_zone.key},
            )
        return local


class StaffChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: StaffMember) -> str:
        return obj.display_name


class StaffMultipleChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: StaffMember) -> str:
        return obj.display_name


class PatientChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Patient) -> str:
        return f"{obj.name} ({obj.email})" if obj.email else obj.name


# How many patients the schedule form lists before the search box narrows them down.
PATIENT_OPTIONS = 100


class AppointmentForm(forms.Form):
    """Schedule (no `appointment`) or edit an appointment of `clinic`. Without `clinical`
    (`access.can_see_clinical`) the form has no reason and notes: they are neither shown nor
    written, and an edit keeps the appointment's own."""

    patient = PatientChoiceField(queryset=Patient.objects.none(), empty_label="Choose a patient")
    starts_at = forms.Field()  # replaced in __init__ (needs the clinic's time zone)
    duration_minutes = forms.IntegerField(
        label="Duration (minutes)",
        min_value=Appointment.MIN_DURATION,
        max_value=Appointment.MAX_DURATION,
        initial=20,
        widget=forms.NumberInput(attrs={"step": "5"}),
    )
    host = StaffChoiceField(
        queryset=StaffMember.objects.none(),
        label="Host clinician",
        empty_label="Choose the host",
    )
    clinicians = StaffMultipleChoiceField(
        queryset=StaffMember.objects.none(),
        required=False,
        label="Additional clinicians",
        widget=forms.CheckboxSelectMultiple,
    )
    interpreter = StaffChoiceField(
        queryset=StaffMember.objects.none(), required=False, empty_label="No interpreter"
    )
    mode = forms.ChoiceField(
        choices=Appointment.Mode.choices,
        initial=Appointment.Mode.VIDEO,
        widget=forms.RadioSelect,
    )
    backstage_enabled = forms.BooleanField(
        required=False,
        initial=True,
        label="Backstage",
        help_text=(
            "Staff can enter before the start. The call goes live at the start time (or "
            "when a clinician presses Go live); the patient waits in the waiting room until "
            "a clinician is in the call."
        ),
    )
    staff_join_ahead_minutes = forms.IntegerField(
        label="Staff may join (minutes before)", min_value=0, max_value=240, initial=15
    )
    lobby_opens_minutes = forms.IntegerField(
        label="Patient lobby opens (minutes before)", min_value=0, max_value=120, initial=10
    )
    ring_at_start = forms.BooleanField(
        required=False,
        initial=True,
        label="Ring the patient at the start time",
    )
    reason = forms.CharField(
        required=False,
        label="Reason for the visit (confidential)",
        help_text="Visible to clinic staff only.",
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    notes = forms.CharField(
        required=False,
        label="Notes for staff",
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def __init__(
        self,
        *args: Any,
        clinic: Clinic,
        appointment: Appointment | None = None,
        clinical: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        if not clinical:
            del self.fields["reason"], self.fields["notes"]
            self.initial.pop("reason", None)
            self.initial.pop("notes", None)
        self.patient_choices: list[Patient] = []
        self.clinic = clinic
        self.appointment = appointment
        self.time_zone = zoneinfo.ZoneInfo(clinic.time_zone)
        self.fields["starts_at"] = ClinicDateTimeField(
            time_zone=self.time_zone, label="Start", initial=self.initial.get("starts_at")
        )
        staff = selectors.clinic_staff(clinic=clinic)
        for name in ("host", "clinicians", "interpreter"):
            self.fields[name].queryset = staff
        if appointment is not None:
            # The patient of an appointment cannot change (the call's members follow them).
            del self.fields["patient"]
        else:
            patients = selectors.clinic_patients(clinic=clinic)
            field = self.fields["patient"]
            field.queryset = patients
            # Validate against every patient of the clinic, but list only the first ones
            # (and the chosen one); the search box fetches the others.
            chosen = self._chosen_patient()
            listed = list(patients[:PATIENT_OPTIONS])
            if chosen and all(str(p.pk) != chosen for p in listed):
                listed += list(patients.filter(pk=chosen))
            self.patient_choices = listed

    def _chosen_patient(self) -> str:
        value = self["patient"].value()
        return str(value) if value and str(value).isdigit() else ""

    @property
    def patient_options(self) -> list[dict[str, Any]]:
        """The patient select's options, with each patient's time zone (shown beside the
        start time, for information)."""
        chosen = self._chosen_patient()
        label = PatientChoiceField.label_from_instance
        return [
            {
                "pk": p.pk,
                "label": label(self.fields["patient"], p),
                "time_zone": p.time_zone,
                "selected": str(p.pk) == chosen,
            }
            for p in self.patient_choices
        ]

    def _start_value(self, index: int, fmt: str) -> str:
        if self.is_bound:
            return str(self.data.get(f"starts_at_{index}", ""))
        value = self.initial.get("starts_at")
        return value.strftime(fmt) if value else ""

    @property
    def start_date_value(self) -> str:
        return self._start_value(0, "%Y-%m-%d")

    @property
    def start_time_value(self) -> str:
        return self._start_value(1, "%H:%M")

    @classmethod
    def initial_for_new(
        cls, *, clinic: Clinic, staff: StaffMember, patient_id: str | None, now: dt.datetime
    ) -> dict[str, Any]:
        """A sensible start: the next quarter hour at least 15 minutes away, the signed-in
        clinician as host, the patient picked on the patients page."""
        local = timezone.localtime(now, zoneinfo.ZoneInfo(clinic.time_zone))
        start = (local + dt.timedelta(minutes=15 + (15 - local.minute % 15) % 15)).replace(
            second=0, microsecond=0
        )
        initial: dict[str, Any] = {"starts_at": start.replace(tzinfo=None), "host": staff.pk}
        if patient_id and patient_id.isdigit():
            initial["patient"] = patient_id
        return initial

    @classmethod
    def initial_for_edit(cls, *, booking: Booking) -> dict[str, Any]:
        zone = zoneinfo.ZoneInfo(booking.clinic.time_zone)
        return {
            # Naive wall time in the clinic's zone: the split widget shows it as it is.
            "starts_at": timezone.localtime(booking.starts_at, zone).replace(tzinfo=None),
            "duration_minutes": booking.duration_minutes,
            "host": booking.host.pk,
            "clinicians": [s.pk for s in booking.clinicians],
            "interpreter": booking.interpreter.pk if booking.interpreter else None,
            "mode": booking.mode,
            "backstage_enabled": booking.backstage_enabled,
            "staff_join_ahead_minutes": booking.staff_join_ahead_minutes,
            "lobby_opens_minutes": booking.lobby_opens_minutes,
            "ring_at_start": booking.ring_at_start,
            "reason": booking.reason,
            "notes": booking.notes,
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        host = data.get("host")
        clinicians = data.get("clinicians") or []
        if host is not None and any(c.pk == host.pk for c in clinicians):
            self.add_error("clinicians", "The host is already taking part; untick them here.")
        return data

    def booking(self, *, guests: list | None = None) -> Booking:
        patient = self.appointment.patient if self.appointment else self.cleaned_data["patient"]
        kept: dict[str, str] = {}
        if "reason" not in self.fields:
            kept = {
                "reason": self.appointment.reason if self.appointment else "",
                "notes": self.appointment.notes if self.appointment else "",
            }
        return Booking.from_data(
            self.cleaned_data, clinic=self.clinic, patient=patient, guests=guests, **kept
        )


# --- patients --------------------------------------------------------------------------------


class PatientForm(forms.Form):
    # autocomplete off: the browser would offer the staff member's own details.
    name = forms.CharField(
        max_length=200, label="Full name", widget=forms.TextInput(attrs={"autocomplete": "off"})
    )
    email = forms.EmailField(
        required=False, max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "off"})
    )
    phone = forms.CharField(
        required=False,
        max_length=32,
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "off"}),
    )
    time_zone = forms.ChoiceField(
        choices=[(z, z.replace("_", " ")) for z in TIME_ZONES], label="Time zone"
    )
    preferred_language = forms.ChoiceField(
        choices=languages.choices,
        required=False,
        initial="en",
        label="Preferred language",
        help_text="Their join page, emails, texts and notifications are in this language.",
    )
    notify_email = forms.BooleanField(
        required=False, initial=True, label="Email confirmations, changes and reminders"
    )
    notify_sms = forms.BooleanField(
        required=False, initial=True, label="Text confirmations, changes and reminders (SMS)"
    )
    notify_push = forms.BooleanField(
        required=False, initial=True, label="Notifications in the patient's app"
    )

    def __init__(self, *args: Any, clinic: Clinic, patient: Patient | None = None, **kwargs):
        if patient is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": patient.name,
                "email": patient.email,
                "phone": patient.phone,
                "time_zone": patient.time_zone,
                "preferred_language": patient.preferred_language,
                "notify_email": patient.notify_email,
                "notify_sms": patient.notify_sms,
                "notify_push": patient.notify_push,
            }
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.clinic = clinic
        self.patient = patient
        self.fields["time_zone"].initial = clinic.time_zone

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        # Checked here too (the service checks it again) so it shows with the other errors.
        if selectors.patient_email_taken(
            clinic=self.clinic, email=email, exclude=self.patient.pk if self.patient else None
        ):
            raise ValidationError("Another patient of this clinic has this email.")
        return email

    def clean_phone(self) -> str:
        # The service's rule (E.164), here so it shows with the other errors.
        return phone_normalise(self.cleaned_data["phone"])

    def patient_fields(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["preferred_language"] = data["preferred_language"] or "en"
        return data


# --- audit log -------------------------------------------------------------------------------


class AuditFilterForm(forms.Form):
    """The audit log's filters (all optional): a date range in the clinic's time zone, who,
    what, and which record ("appointment k7x…" or "patient 12")."""

    start = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    end = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    actor = forms.ChoiceField(required=False, label="Who")
    action = forms.ChoiceField(
        required=False, label="What", choices=[("", "Anything"), *Action.choices]
    )
    record = forms.CharField(
        required=False,
        max_length=64,
        label="Record",
        widget=forms.TextInput(attrs={"placeholder": "Code or patient no."}),
    )

    def __init__(self, *args: Any, clinic: Clinic, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.clinic = clinic
        self.staff_names = {
            str(s.user_id): s.display_name for s in selectors.clinic_staff(clinic=clinic)
        }
        self.client_names = selectors.clinic_ehr_clients(clinic=clinic)
        choices: list[Any] = [
            ("", "Anyone"),
            ("patient", "Patients"),
            ("system", "The system"),
            ("Staff", [(f"staff:{uid}", name) for uid, name in self.staff_names.items()]),
        ]
        if self.client_names:
            choices.append(
                (
                    "EHR systems",
                    [("client", "Any EHR system")]
                    + [
                        (f"client:{cid}", f"{name} (EHR)")
                        for cid, name in self.client_names.items()
                    ],
                )
            )
        self.fields["actor"].choices = choices

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("start") and data.get("end") and data["end"] < data["start"]:
            self.add_error("end", "The end date is before the start date.")
        return data

    def filter(self, entries: Any) -> Any:
        """The entries narrowed by the valid filters (invalid ones are shown on the form)."""
        if not self.is_valid():
            return entries.none()
        data = self.cleaned_data
        zone = zoneinfo.ZoneInfo(self.clinic.time_zone)
        if data["start"]:
            entries = entries.filter(at__gte=dt.datetime.combine(data["start"], dt.time.min, zone))
        if data["end"]:
            day_after = data["end"] + dt.timedelta(days=1)
            entries = entries.filter(at__lt=dt.datetime.combine(day_after, dt.time.min, zone))
        actor = data["actor"]
        if actor.startswith("staff:"):
            entries = entries.filter(
                actor_kind=AuditEntry.ActorKind.STAFF, actor_id=actor.removeprefix("staff:")
            )
        elif actor.startswith("client:"):
            entries = entries.filter(
                actor_kind=AuditEntry.ActorKind.CLIENT, actor_id=actor.removeprefix("client:")
            )
        elif actor:
            entries = entries.filter(actor_kind=actor)
        if data["action"]:
            entries = entries.filter(action=data["action"])
        wanted = data["record"].strip().lower()
        if wanted:
            kind, _, number = wanted.rpartition(" ")
            entries = entries.filter(object_id=number)
            if kind in ("appointment", "patient"):
                entries = entries.filter(object_type=kind)
        return entries

    def query_string(self) -> str:
        """The filters, to carry over to the other pages and the download."""
        return urlencode({k: v for k, v in self.data.items() if k in self.fields and v})
