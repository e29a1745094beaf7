"""The clinic's audit log in a real browser, on a phone and a laptop: a clinic admin opens it
from the menu, narrows it to what one colleague did, and the page fits the screen."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from tests.factories import make_appointment, make_staff

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-test-1"


@pytest.mark.parametrize(("width", "height"), [(390, 844), (1366, 900)])
def test_an_admin_reads_and_filters_the_log(
    app_server, new_page, console, artifacts, clinic, doctor, patient, width, height
):
    from django.test import Client

    chief = make_staff(clinic, "chief", role="admin", display_name="Chief Admin")
    device = TOTPDevice.objects.create(user=chief.user, name="phone", confirmed=True)
    appointment = make_appointment(clinic, host=doctor, patient=patient, reason="Follow-up")
    colleague = Client()
    colleague.force_login(doctor.user)
    colleague.get(reverse("portal:appointment", args=[clinic.slug, appointment.pk]))

    page = new_page(width=width, height=height)
    page.goto(f"{app_server.url}/login/")
    page.get_by_label("Username").fill(chief.user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    # A clinic admin's second step: the code of their authenticator app.
    page.get_by_label("Code from your authenticator app").fill(f"{totp(device.bin_key):06d}")
    page.get_by_role("button", name="Verify").click()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    expect(page).to_have_title(re.compile("Audit log"))
    expect(page.locator("table.audit")).to_contain_text("Opened an appointment")

    page.get_by_label("Who").select_option(label="Dr House")
    page.get_by_label("What").select_option(label="Opened an appointment")
    page.get_by_role("button", name="Show entries").click()
    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("Dr House")
    expect(rows.first.get_by_role("link")).to_have_text(f"Appointment {appointment.pk}")
    # Nothing runs off the side of the screen.
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    page.screenshot(path=str(artifacts / f"audit-{width}.png"), full_page=True)
    assert console.errors == []
