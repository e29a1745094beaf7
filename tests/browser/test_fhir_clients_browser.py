"""A clinic admin registers their EHR (a FHIR client) in the admin, on a phone and a laptop,
and after the EHR has read an appointment, the clinic's audit log names it."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from fhir_api.models import Client as EhrClient
from tests.factories import make_appointment, make_staff
from tests.fhir.ehr import Fhir, jwks, token_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize(("width", "height"), [(390, 844), (1280, 800)])
def test_an_admin_registers_an_ehr_and_sees_it_in_the_audit_log(
    app_server, new_page, console, artifacts, clinic, doctor, patient, width, height
):
    chief = make_staff(clinic, "chief", role="admin", display_name="Chief Admin")
    device = TOTPDevice.objects.create(user=chief.user, name="phone", confirmed=True)
    page = new_page(width=width, height=height)
    page.goto(f"{app_server.url}/login/")
    page.get_by_label("Username").fill("chief")
    page.get_by_label("Password").fill("pw-test-1")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Code from your authenticator app").fill(f"{totp(device.bin_key):06d}")
    page.get_by_role("button", name="Verify").click()

    page.goto(f"{app_server.url}/admin/fhir_api/client/add/")
    page.get_by_label("Name").fill("Epic")
    page.get_by_label("Public keys (JWK set)").fill(json.dumps(jwks()))
    page.get_by_label("Allowed scopes").fill("system/Appointment.rs")
    page.screenshot(path=str(artifacts / f"fhir-client-add-{width}.png"), full_page=True)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#result_list")).to_contain_text("Epic")
    page.screenshot(path=str(artifacts / f"fhir-client-list-{width}.png"), full_page=True)
    ehr = EhrClient.objects.get(name="Epic")
    assert ehr.clinic == clinic  # their only clinic: the one choice offered

    appointment = make_appointment(clinic, host=doctor, patient=patient)
    fhir = Fhir(Client(), token_for(ehr, "system/Appointment.rs"))
    assert fhir.get(f"Appointment/{appointment.pk}").status_code == 200
    page.goto(f"{app_server.url}/c/{clinic.slug}/audit/")
    expect(page.locator("table.audit")).to_contain_text(
        f"EHR system: Epic (client {ehr.client_id})"
    )
    # "Who" picks the EHR: only its entries remain.
    page.get_by_label("Who").select_option(label="Epic (EHR)")
    page.get_by_role("button", name="Show entries").click()
    expect(page.get_by_label("Who")).to_have_value(f"client:{ehr.client_id}")
    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Opened an appointment")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    page.screenshot(path=str(artifacts / f"fhir-audit-{width}.png"), full_page=True)
    # The Django admin has no favicon (a 404 the browser reports): anything else is a bug.
    assert [e for e in console.errors if "favicon.ico" not in e] == []
