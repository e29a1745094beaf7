"""EHR clients: a clinic admin registers their EHR's public keys and the scopes it may have,
for their own clinics only (`ClinicScoped`)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin

from appointments.admin import ClinicScoped
from appointments.models import Clinic, ClinicMembership
from calls import netguard

from . import scopes
from .auth import jwks_problem
from .jwks import forget, url_rules
from .models import Client


class ClientForm(forms.ModelForm):
    jwks_url = forms.URLField(
        label="JWKS URL",
        required=False,
        max_length=500,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"class": "vURLField"}),
        help_text="Where the EHR publishes its JWK set (https): fetched when it asks for a "
        "token, kept for a while, fetched again when it signs with a new key.",
    )

    class Meta:
        model = Client
        fields = ["clinic", "name", "jwks", "jwks_url", "scopes", "is_active"]
        help_texts = {
            "jwks": 'The EHR\'s public keys as a JWK set: {"keys": [...]} (RS384 or ES384). '
            "Leave empty when the EHR publishes them at a JWKS URL.",
            "scopes": "Space-separated, e.g. system/Appointment.cruds system/Patient.rs. "
            "system/Practitioner.c (creating staff) only for a client an admin of the "
            "clinic registers.",
        }

    # Set by the admin: who is saving (the Practitioner.c rule asks).
    user: Any = None

    def clean_jwks(self) -> Any:
        jwks = self.cleaned_data["jwks"] or {}
        if jwks == {}:
            return {}
        problem = jwks_problem(jwks)
        if problem:
            raise forms.ValidationError(problem)
        return jwks

    def clean_jwks_url(self) -> str:
        url = self.cleaned_data["jwks_url"].strip()
        if url:
            try:
                netguard.check_url(url, **url_rules())
            except (netguard.Refused, netguard.ResolveError) as exc:
                raise forms.ValidationError(str(exc)) from None
        return url

    def clean_scopes(self) -> str:
        value = " ".join(self.cleaned_data["scopes"].split())
        unknown = [s for s in value.split() if not scopes.parse(s)]
        if unknown:
            raise forms.ValidationError(f"Not a supported scope: {', '.join(unknown)}")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("jwks") and not data.get("jwks_url") and not self.errors:
            raise forms.ValidationError("Give the EHR's public keys, or its JWKS URL.")
        clinic, value = data.get("clinic"), data.get("scopes", "")
        if ("Practitioner", "c") in scopes.parse_all(value) and not (
            clinic is not None and self.user is not None and _administers(self.user, clinic)
        ):
            self.add_error(
                "scopes",
                "Only an admin of this clinic may let a client create staff "
                "(system/Practitioner.c).",
            )
        return data


def _administers(user: Any, clinic: Clinic) -> bool:
    return ClinicMembership.objects.filter(
        staff__user=user, clinic=clinic, role=ClinicMembership.Role.ADMIN
    ).exists()


@admin.register(Client)
class ClientAdmin(ClinicScoped):
    form = ClientForm
    list_display = ["name", "clinic", "client_id", "scopes", "is_active", "created_at"]
    list_filter = ["is_active"]

    def get_readonly_fields(self, request: Any, obj: Any = None) -> list[str]:
        # The client id is made at the first save: shown from then on.
        return ["client_id", "created_at", "registered_by"] if obj is not None else []

    def get_form(self, request: Any, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.user = request.user
        return form

    def save_model(self, request: Any, obj: Client, form: Any, change: bool) -> None:
        if not change:
            obj.registered_by = request.user
        super().save_model(request, obj, form, change)
        forget(obj)  # a new URL or key set: fetched afresh

    def get_changeform_initial_data(self, request: Any) -> dict[str, Any]:
        """An admin of one clinic registers for that clinic: chosen already."""
        initial = super().get_changeform_initial_data(request)
        clinics = self.scope_choices(request, Clinic.objects.all())
        if "clinic" not in initial and len(clinics[:2]) == 1:
            initial["clinic"] = clinics[0].pk
        return initial
