"""Patient messages in the browser: the appointment page's line of how the messages went
(sent, delivered, a failure in red), the patient form's message choices, and the patient's
"Add to my calendar" download from the join page, parsed back with icalendar. Screenshots at
phone and laptop sizes (checked by eye)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from django.utils import timezone
from icalendar import Calendar
from playwright.sync_api import expect

from appointments import links
from appointments.messaging import delivery
from appointments.models import MessageDelivery
from tests.factories import make_appointment, make_patient

from .test_portal_browser import sign_in

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SIZES = {"phone": (390, 844), "laptop": (1366, 768)}


def test_staff_see_how_the_messages_went_and_the_patient_adds_it_to_a_calendar(
    app_server, new_page, console, artifacts, settings, smtp_server, clinic, doctor
):
    settings.SMS_PROVIDER = ""  # the text fails: staff must see it
    settings.PUBLIC_BASE_URL = app_server.url
    patient = make_patient(
        clinic,
        name="Ana Lima",
        email="ana@example.com",
        phone="+55 81 99876 5432",
        time_zone="America/Recife",
    )
    starts_at = (timezone.now() + dt.timedelta(minutes=8)).replace(second=0, microsecond=0)
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=starts_at)
    for row in MessageDelivery.objects.filter(appointment=appointment):
        delivery.deliver(row.pk)
    sent = timezone.localtime(
        MessageDelivery.objects.get(appointment=appointment, channel="email").sent_at, clinic.tz
    )

    for size, (width, height) in SIZES.items():
        page = new_page(width, height)
        sign_in(page, app_server.url, "drhouse")
        page.goto(f"{app_server.url}/c/clinic-a/appointments/{appointment.pk}/")
        line = page.locator("#appointment-messages")
        expect(line).to_have_text(
            f"Confirmation emailed {sent:%H:%M} · SMS failed: no SMS provider configured"
        )
        expect(line.locator(".message-failed")).to_have_css("color", "rgb(180, 35, 24)")
        page.screenshot(path=str(artifacts / f"messages-appointment-{size}.png"), full_page=True)
        page.goto(f"{app_server.url}/c/clinic-a/patients/{patient.pk}/edit/")
        expect(page.get_by_label("Text confirmations, changes and reminders (SMS)")).to_be_checked()
        page.screenshot(path=str(artifacts / f"messages-patient-form-{size}.png"), full_page=True)

    # The patient opens their link and downloads the invite.
    page = new_page(*SIZES["phone"])
    page.goto(app_server.url + links.join_link_path(appointment))
    link = page.get_by_role("link", name="Add to my calendar")
    expect(link).to_be_visible()
    page.screenshot(path=str(artifacts / "messages-join-phone.png"), full_page=True)
    with page.expect_download() as download:
        link.click()
    assert re.fullmatch(r"appointment-[a-z2-9]{12}\.ics", download.value.suggested_filename)
    calendar = Calendar.from_ical(Path(download.value.path()).read_bytes())
    (event,) = calendar.walk("VEVENT")
    assert event.decoded("DTSTART") == starts_at
    assert event["DTSTART"].params["TZID"] == "America/Recife"
    assert str(event["URL"]).startswith(f"{app_server.url}/join/{appointment.pk}/?t=")
    assert console.errors == []
