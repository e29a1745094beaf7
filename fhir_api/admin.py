"""EHR clients: a clinic admin registers their EHR's public keys and the scopes it may have,
for their own clinics only (`ClinicScoped`)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin

from appointments.admin import ClinicScoped

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
    readonly_fields = ["client_id", "created_at"]
