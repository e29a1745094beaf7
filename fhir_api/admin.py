"""EHR clients: a clinic admin registers their EHR's public keys and the scopes it may have,
for their own clinics only (`ClinicScoped`)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin

from appointments.admin import ClinicScoped
from appointments.models import Clinic

from . import scopes
from .auth import jwks_problem
from .models import Client


class ClientForm(forms.ModelForm):
    class Meta:
        model = Client
        fields = ["clinic", "name", "jwks", "scopes", "is_active"]
        help_texts = {
            "jwks": 'The EHR\'s public keys as a JWK set: {"keys": [...]} (RS384 or ES384).',
            "scopes": "Space-separated, e.g. system/Appointment.cruds system/Patient.rs",
        }

    def clean_jwks(self) -> Any:
        jwks = self.cleaned_data["jwks"]
        problem = jwks_problem(jwks)
        if problem:
            raise forms.ValidationError(problem)
        return jwks

    def clean_scopes(self) -> str:
        value = " ".join(self.cleaned_data["scopes"].split())
        unknown = [s for s in value.split() if not scopes.parse(s)]
        if unknown:
            raise forms.ValidationError(f"Not a supported scope: {', '.join(unknown)}")
        return value


@admin.register(Client)
class ClientAdmin(ClinicScoped):
    form = ClientForm
    list_display = ["name", "clinic", "client_id", "scopes", "is_active", "created_at"]
    list_filter = ["is_active"]

    def get_readonly_fields(self, request: Any, obj: Any = None) -> list[str]:
        # The client id is made at the first save: shown from then on.
        return ["client_id", "created_at"] if obj is not None else []

    def get_changeform_initial_data(self, request: Any) -> dict[str, Any]:
        """An admin of one clinic registers for that clinic: chosen already."""
        initial = super().get_changeform_initial_data(request)
        clinics = self.scope_choices(request, Clinic.objects.all())
        if "clinic" not in initial and len(clinics[:2]) == 1:
            initial["clinic"] = clinics[0].pk
        return initial
