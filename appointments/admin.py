"""Admin for clinics, staff, patients and appointments. Writes go through the services, so an
appointment and its call never disagree, whichever screen changed them.

Superusers see every clinic. A clinic admin (`ClinicMembership.Role.ADMIN`, given the admin site
by `services.staff`) sees only the clinics they administer: every list, every change page and
every choice of clinic, patient or staff is limited to them (`ClinicScoped`). Opening a patient
or an appointment is audited."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms.models import construct_instance
from django.http import HttpRequest

from audit.record import Action, record

from . import languages
from .models import Appointment, AppointmentMember, Clinic, ClinicMembership, Patient, StaffMember
from .phones import phone_normalise
from .services.booking import (
    Booking,
    appointment_book,
    appointment_cancel,
    appointment_update,
    booking_of,
    booking_validate,
)
from .services.patients import patient_create, patient_update
from .services.staff import staff_create
from .services.status import appointment_call_action


def admin_clinic_ids(request: HttpRequest) -> list[int] | None:
    """The clinics the signed-in user administers (None: all of them, a superuser)."""
    if request.user.is_superuser:
        return None
    cache = request.__dict__
    if "_admin_clinic_ids" not in cache:
        cache["_admin_clinic_ids"] = list(
            ClinicMembership.objects.filter(
                staff__user=request.user, role=ClinicMembership.Role.ADMIN
            ).values_list("clinic_id", flat=True)
        )
    return cache["_admin_clinic_ids"]


class ClinicScoped(admin.ModelAdmin):
    """Rows, and the choices of related clinics, patients and staff, limited to the clinics
    the user administers. `clinic_path` leads from the model to its clinic."""

    clinic_path = "clinic"

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        qs = super().get_queryset(request)
        ids = admin_clinic_ids(request)
        if ids is None:
            return qs
        return qs.filter(**{f"{self.clinic_path}__in": ids}).distinct()

    def scope_choices(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        ids = admin_clinic_ids(request)
        if ids is None:
            return queryset
        model = queryset.model
        if model is Clinic:
            return queryset.filter(pk__in=ids)
        if model is Patient:
            return queryset.filter(clinic__in=ids)
        if model is StaffMember:
            return queryset.filter(memberships__clinic__in=ids).distinct()
        return queryset.none()

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if field is not None and hasattr(field, "queryset"):
            field.queryset = self.scope_choices(request, field.queryset)
        return field

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, **kwargs)
        scope = self.scope_choices

        class Scoped(form):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kw: Any) -> None:
                super().__init__(*args, **kw)
                for field in self.fields.values():
                    if isinstance(field, forms.ModelChoiceField):
                        field.queryset = scope(request, field.queryset)

        Scoped.__name__ = form.__name__
        return Scoped


class AuditedChangeView(admin.ModelAdmin):
    """Opening a row's change page is a view of patient data: audit it."""

    audit_object_type = ""

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            obj = self.get_object(request, object_id)
            record(
                action=Action.APPOINTMENT_VIEWED
                if self.audit_object_type == "appointment"
                else Action.PATIENT_VIEWED,
                clinic=obj.clinic.slug if obj is not None else "",
                object_type=self.audit_object_type,
                object_id=object_id,
            )
        return response


@admin.register(Clinic)
class ClinicAdmin(ClinicScoped):
    clinic_path = "pk"

    list_display = ["name", "slug", "time_zone", "created_at"]
    search_fields = ["name", "slug"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # The slug is the calls team id of every appointment of the clinic: fixed once made.
        return ["slug"] if obj else []

    def has_add_permission(self, request: HttpRequest) -> bool:
        # New clinics are a superuser's matter.
        return request.user.is_superuser


class ClinicMembershipInline(admin.TabularInline):
    model = ClinicMembership
    extra = 0
    fields = ["clinic", "role"]
    readonly_fields = ["clinic", "role"]
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # A clinic admin sees a shared colleague's memberships of their own clinics only.
        ids = admin_clinic_ids(request)
        qs = super().get_queryset(request)
        return qs if ids is None else qs.filter(clinic__in=ids)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class StaffCreationForm(forms.ModelForm):
    username = forms.CharField(max_length=150)
    password = forms.CharField(widget=forms.PasswordInput, min_length=8)
    clinic = forms.ModelChoiceField(queryset=Clinic.objects.all())
    role = forms.ChoiceField(choices=ClinicMembership.Role.choices)

    class Meta:
        model = StaffMember
        fields = ["display_name"]


@admin.register(StaffMember)
class StaffMemberAdmin(ClinicScoped):
    clinic_path = "memberships__clinic"
    list_display = ["display_name", "user", "call_user"]
    search_fields = ["display_name", "user__username"]
    list_filter = [("memberships__clinic", admin.RelatedOnlyFieldListFilter), "memberships__role"]
    readonly_fields = ["user", "call_user"]

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> list:
        return [ClinicMembershipInline] if obj else []

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = StaffCreationForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        if obj is None:
            return ["display_name", "username", "password", "clinic", "role"]
        return ["display_name", "user", "call_user"]

    def save_model(self, request: HttpRequest, obj: StaffMember, form: Any, change: bool) -> None:
        if change:
            obj.save()
            return
        data = form.cleaned_data
        staff = staff_create(
            username=data["username"],
            password=data["password"],
            display_name=data["display_name"],
            memberships={data["clinic"]: data["role"]},
        )
        obj.pk = staff.pk
        obj.user_id = staff.user_id
        obj.call_user_id = staff.call_user_id


PATIENT_ADMIN_FIELDS = (
    "name",
    "email",
    "phone",
    "time_zone",
    "preferred_language",
    "notify_email",
    "notify_sms",
    "notify_push",
)


class PatientAdminForm(forms.ModelForm):
    # One of our languages (appointments.languages), or none.
    preferred_language = forms.ChoiceField(
        choices=[("", "—"), *languages.choices()], required=False
    )

    class Meta:
        model = Patient
        fields = ["clinic", *PATIENT_ADMIN_FIELDS]

    def clean_phone(self) -> str:
        return phone_normalise(self.cleaned_data.get("phone", ""))


@admin.register(Patient)
class PatientAdmin(AuditedChangeView, ClinicScoped):
    audit_object_type = "patient"
    form = PatientAdminForm
    list_display = ["name", "clinic", "email", "phone", "time_zone"]
    list_filter = [("clinic", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "email", "phone"]
    fields = ["clinic", *PATIENT_ADMIN_FIELDS, "sms_opted_out_at"]
    list_select_related = ["clinic"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["clinic", "sms_opted_out_at"] if obj else ["sms_opted_out_at"]

    def save_model(self, request: HttpRequest, obj: Patient, form: Any, change: bool) -> None:
        fields = {k: form.cleaned_data[k] for k in PATIENT_ADMIN_FIELDS}
        if change:
            patient_update(patient=obj, **fields)
        else:
            created = patient_create(clinic=form.cleaned_data["clinic"], **fields)
            obj.pk = created.pk
            obj.call_user_id = created.call_user_id


class AppointmentMemberInline(admin.TabularInline):
    model = AppointmentMember
    extra = 0
    fields = ["kind", "staff", "call_user"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AppointmentForm(forms.ModelForm):
    """The booking, as the admin edits it; saved by `appointment_book` / `appointment_update`."""

    host = forms.ModelChoiceField(queryset=StaffMember.objects.all())
    clinicians = forms.ModelMultipleChoiceField(queryset=StaffMember.objects.all(), required=False)
    interpreter = forms.ModelChoiceField(queryset=StaffMember.objects.all(), required=False)

    class Meta:
        model = Appointment
        fields = [
            "clinic",
            "patient",
            "starts_at",
            "duration_minutes",
            "mode",
            "backstage_enabled",
            "staff_join_ahead_minutes",
            "lobby_opens_minutes",
            "ring_at_start",
            "reason",
            "notes",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.instance._state.adding:
            booking = booking_of(self.instance)
            self.initial.update(
                host=booking.host, clinicians=booking.clinicians, interpreter=booking.interpreter
            )

    def booking(self) -> Booking:
        # Guests are not edited here: an edit keeps the appointment's own.
        guests = [] if self.instance._state.adding else booking_of(self.instance).guests
        return Booking.from_data(self.cleaned_data, guests=guests)

    def _post_clean(self) -> None:
        """Validate the booking as the service will (inside the admin's transaction, so the
        double-booking locks hold until the save), instead of the model's own full_clean."""
        self.instance = construct_instance(self, self.instance, self._meta.fields)
        if self.errors:
            return
        try:
            booking_validate(
                booking=self.booking(),
                appointment=None if self.instance._state.adding else self.instance,
            )
        except ValidationError as exc:
            self.add_error(None, exc)


def _run(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, action: str, verb: str
) -> None:
    staff = getattr(request.user, "staff", None)
    done = 0
    for appointment in queryset:
        try:
            if action == "cancel":
                appointment_cancel(appointment=appointment, by=staff)
            elif staff is None:
                raise ValidationError("Only staff members can run call actions.")
            else:
                appointment_call_action(appointment=appointment, staff=staff, action=action)
            done += 1
        except ValidationError as exc:
            modeladmin.message_user(
                request, f"{appointment.id}: {' '.join(exc.messages)}", messages.ERROR
            )
    if done:
        modeladmin.message_user(request, f"{verb} {done} appointment(s).", messages.SUCCESS)


@admin.register(Appointment)
class AppointmentAdmin(AuditedChangeView, ClinicScoped):
    audit_object_type = "appointment"
    form = AppointmentForm
    list_display = ["id", "starts_at", "clinic", "patient", "status", "mode"]
    list_filter = [("clinic", admin.RelatedOnlyFieldListFilter), "status", "mode", "starts_at"]
    date_hierarchy = "starts_at"
    search_fields = ["id", "patient__name", "patient__email"]
    list_select_related = ["clinic", "patient"]
    actions = ["cancel", "go_live", "end_call"]
    fieldsets = [
        (None, {"fields": ["clinic", "patient", "starts_at", "duration_minutes", "mode"]}),
        ("People", {"fields": ["host", "clinicians", "interpreter"]}),
        (
            "Call",
            {
                "fields": [
                    "backstage_enabled",
                    "staff_join_ahead_minutes",
                    "lobby_opens_minutes",
                    "ring_at_start",
                ]
            },
        ),
        ("Confidential", {"fields": ["reason", "notes"]}),
    ]

    def save_model(self, request: HttpRequest, obj: Appointment, form: Any, change: bool) -> None:
        if change:
            appointment_update(appointment=obj, booking=form.booking())
        else:
            saved = appointment_book(
                booking=form.booking(), by=getattr(request.user, "staff", None)
            )
            obj.pk, obj.ends_at = saved.pk, saved.ends_at
            obj._state.adding = False

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> list:
        # Members are written by the service from the People fields; the inline only shows them.
        return [AppointmentMemberInline] if obj else []

    @admin.action(description="Cancel (ends the call)")
    def cancel(self, request: HttpRequest, queryset: QuerySet) -> None:
        _run(self, request, queryset, "cancel", "Cancelled")

    @admin.action(description="Go live")
    def go_live(self, request: HttpRequest, queryset: QuerySet) -> None:
        _run(self, request, queryset, "go_live", "Went live with")

    @admin.action(description="End call")
    def end_call(self, request: HttpRequest, queryset: QuerySet) -> None:
        _run(self, request, queryset, "end", "Ended the call of")
