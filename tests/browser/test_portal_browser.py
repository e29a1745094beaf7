"""The staff portal in a real browser: a clinician signs in, schedules an appointment, finds it
on today's schedule, goes live and sees the call change; staff of another clinic cannot see it.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from appointments.models import Appointment, Patient
from appointments.services.booking import appointment_cancel
from appointments.services.status import appointment_call_action
from calls.capabilities import Actor
from calls.models import Call, CallUser
from calls.services.sessions import participant_enter
from tests.factories import make_appointment, make_patient

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-test-1"


@pytest.fixture(autouse=True)
def _morning(clinic_in_its_morning):
    """The today page on the real clock shows the clinic's one day: see clinic_in_its_morning."""


def clinic_zone(clinic) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(clinic.time_zone)


def sign_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login/")
    expect(page).to_have_title(re.compile("Sign in"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def a_start_today(now: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """About 30 minutes from now, on the clinic's today (the today page shows one day)."""
    local = timezone.localtime(now, zone).replace(second=0, microsecond=0)
    start = local + dt.timedelta(minutes=30)
    if start.date() != local.date():
        start = local.replace(hour=23, minute=59)
    return start


def seed_the_day(clinic, doctor, colleague, start: dt.datetime) -> None:
    """Other appointments of the day, so the schedule looks like a working day."""
    cancelled = make_appointment(
        clinic,
        host=colleague,
        patient=make_patient(clinic, name="Bruno Costa"),
        starts_at=start + dt.timedelta(minutes=5),
        duration_minutes=15,
    )
    appointment_cancel(appointment=cancelled, by=colleague)
    live = make_appointment(
        clinic,
        host=colleague,
        patient=make_patient(clinic, name="Chloé Martin"),
        starts_at=start + dt.timedelta(minutes=25),
        mode="audio",
    )
    appointment_call_action(appointment=live, staff=colleague, action="go_live")
    make_appointment(
        clinic,
        host=doctor,
        patient=make_patient(clinic, name="Dmitri Volkov"),
        starts_at=start + dt.timedelta(minutes=50),
        clinicians=[colleague],
    )


def test_schedule_go_live_and_isolation(
    app_server,
    new_page,
    console,
    artifacts,
    eager_tasks,
    clinic,
    doctor,
    colleague,
    outsider,
    patient,
):
    # Tasks in-process (as in the embedded default): the relay publishes each change to the
    # page's WebSocket without a Celery worker.
    start = a_start_today(timezone.now(), clinic_zone(clinic))
    seed_the_day(clinic, doctor, colleague, start)
    base = app_server.url

    # --- clinic A's clinician signs in and lands on today's schedule ---
    page = new_page()
    sign_in(page, base, "drhouse")
    expect(page).to_have_url(f"{base}/c/clinic-a/today/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Today")

    # --- schedules an appointment through the form ---
    page.get_by_role("link", name="New appointment").click()
    expect(page).to_have_title(re.compile("New appointment"))
    page.get_by_label("Find a patient").fill("ana")
    expect(page.locator("#patient-search-status")).to_have_text("1 patient found.")
    page.get_by_label("Patient", exact=True).select_option(label="Ana Lima (ana@example.com)")
    expect(page.locator("#patient-tz")).to_have_text("Patient's time zone: America/Recife")
    page.get_by_label("Date").fill(f"{start:%Y-%m-%d}")
    page.get_by_label("Time", exact=True).fill(f"{start:%H:%M}")
    page.get_by_label("Duration (minutes)").fill("20")
    expect(page.get_by_label("Host clinician")).to_have_value(str(doctor.pk))
    page.get_by_label("Reason for the visit (confidential)").fill("Follow-up")
    page.screenshot(path=str(artifacts / "portal-new.png"), full_page=True)
    page.get_by_role("button", name="Schedule appointment").click()

    expect(page).to_have_url(re.compile(r"/c/clinic-a/appointments/[a-z2-9]{12}/$"))
    expect(page.get_by_role("status").first).to_contain_text("Appointment scheduled.")
    appointment = Appointment.objects.get(patient__name="Ana Lima")
    assert appointment.starts_at == start
    assert page.url == f"{base}/c/clinic-a/appointments/{appointment.id}/"

    # --- sees it on today's page ---
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Schedule").click()
    expect(page).to_have_url(f"{base}/c/clinic-a/today/")
    row = page.locator(f'tr[data-appointment="{appointment.id}"]')
    expect(row).to_contain_text("Ana Lima")
    expect(row).to_contain_text(f"{start:%H:%M}")
    status = row.locator('td[data-label="Status"]')
    expect(status).to_have_text("Scheduled")
    expect(row.locator(".phase")).to_have_count(0)  # one status, not the call's phase beside it
    page.screenshot(path=str(artifacts / "portal-today.png"), full_page=True)

    # --- opens it and goes live: the phase on the page changes ---
    row.get_by_role("link", name="Ana Lima", exact=True).click()
    expect(page).to_have_url(f"{base}/c/clinic-a/appointments/{appointment.id}/")
    call_phase = page.locator("#call-card .phase")
    expect(call_phase).to_have_text("Scheduled")
    page.get_by_role("button", name="Go live").click()
    expect(call_phase).to_have_text("Live")
    # The appointment's status follows the patient, who is not there: still Scheduled.
    expect(page.locator("#appointment-status")).to_have_text("Scheduled")
    expect(page.get_by_role("status").first).to_contain_text("The call is live")
    expect(page.get_by_role("button", name="Go live")).to_have_count(0)
    expect(page.get_by_role("button", name=re.compile("Stop live"))).to_be_visible()
    assert Call.objects.get(type_id="appointment", call_id=appointment.id).backstage is False

    # --- invites the patient's daughter: she has a link of her own ---
    page.get_by_label("Guest's name").fill("Maria Lima")
    page.get_by_role("button", name="Invite").click()
    expect(page.get_by_role("status").first).to_contain_text("Maria Lima is invited")
    guests = page.locator("#guests")
    expect(guests.locator("code")).to_contain_text(f"/join/{appointment.id}/guest/?t=")
    expect(guests.get_by_role("button", name="Remove Maria Lima")).to_be_visible()
    page.screenshot(path=str(artifacts / "portal-detail.png"), full_page=True)

    # --- the schedule refreshes itself: a change elsewhere shows up without a reload ---
    # (the patient opens the live call, where no clinician is yet: the waiting room, since when,
    # in the clinic's time)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Schedule").click()
    expect(status).to_have_text("Scheduled")
    page.evaluate("window.__notReloaded = true")
    arrived = timezone.localtime(timezone.now(), clinic_zone(clinic))
    participant_enter(
        actor=Actor.of(CallUser.objects.get(pk=patient.call_user_id)),
        type_name="appointment",
        call_id=appointment.id,
        channel_name="test",
    )
    expect(status).to_contain_text("Patient waiting", timeout=12_000)
    expect(status).to_contain_text(re.compile(r"since \d\d:\d\d"))
    assert page.evaluate("window.__notReloaded") is True
    # "Updated" in the clinic's time zone and the 24-hour clock, like the rest of the page.
    hours = f"{arrived:%H}|{arrived + dt.timedelta(hours=1):%H}"  # (the hour may turn)
    expect(page.locator("#refresh-status")).to_contain_text(
        re.compile(rf"Updated ({hours}):\d\d:\d\d")
    )

    # --- the same page on a phone ---
    phone = new_page(width=390, height=844)
    phone.context.add_cookies(page.context.cookies())
    phone.goto(f"{base}/c/clinic-a/today/")
    expect(phone.locator(f'tr[data-appointment="{appointment.id}"]')).to_be_visible()
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    phone.screenshot(path=str(artifacts / "portal-today-phone.png"), full_page=True)

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{base}/login/")

    # --- staff of clinic B: a 404 for the appointment, and it is not on their schedule ---
    other = new_page()
    sign_in(other, base, "drbee")
    expect(other).to_have_url(f"{base}/c/clinic-b/today/")
    expect(other.locator("#schedule-rows")).not_to_contain_text("Ana Lima")
    expect(other.locator("#schedule-rows")).to_contain_text("No appointments today")
    for url in (
        f"{base}/c/clinic-a/appointments/{appointment.id}/",
        f"{base}/c/clinic-b/appointments/{appointment.id}/",
        f"{base}/c/clinic-a/today/",
    ):
        response = other.goto(url)
        assert response.status == 404, url
        expect(other.get_by_role("heading", level=1)).to_have_text("Not found")
        expect(other.locator("body")).not_to_contain_text("Ana Lima")

    # The browser's own report of a 404 document is expected; nothing else may go wrong.
    unexpected = [e for e in console.errors if "status of 404" not in e]
    assert unexpected == []


def test_schedule_form_errors_are_shown_next_to_their_fields(
    app_server, new_page, console, artifacts, doctor, patient
):
    page = new_page()
    sign_in(page, app_server.url, "drhouse")
    page.goto(f"{app_server.url}/c/clinic-a/appointments/new/")
    page.get_by_label("Date").fill("2020-01-06")
    page.get_by_label("Host clinician").select_option("")
    page.get_by_role("button", name="Schedule appointment").click()

    alert = page.locator("#form-errors")
    expect(alert).to_be_focused()  # the summary takes focus, so it is read out
    expect(page.locator("#id_patient_error")).to_contain_text("This field is required.")
    expect(page.locator("#id_host_error")).to_contain_text("This field is required.")
    expect(page.get_by_label("Patient", exact=True)).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Host clinician")).to_have_attribute(
        "aria-describedby", "id_host_error"
    )
    page.screenshot(path=str(artifacts / "portal-form-errors.png"), full_page=True)
    assert Appointment.objects.count() == 0

    # A new patient from the schedule form comes back to it, chosen.
    page.get_by_role("link", name="Add a new patient").click()
    page.get_by_label("Full name").fill("Bruno Costa")
    page.get_by_role("textbox", name="Email").fill("bruno@example.com")
    page.get_by_label("Time zone").select_option("Europe/Lisbon")
    page.get_by_role("button", name="Add patient and schedule").click()
    expect(page).to_have_title(re.compile("New appointment"))
    expect(page.get_by_label("Patient", exact=True)).to_have_value(
        str(Patient.objects.get(name="Bruno Costa").pk)
    )
    expect(page.locator("#patient-tz")).to_have_text("Patient's time zone: Europe/Lisbon")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Patients").click()
    expect(page.locator("table")).to_contain_text("Bruno Costa")
    page.get_by_label("Search patients").fill("ana")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("table")).to_contain_text("Ana Lima")
    expect(page.locator("table")).not_to_contain_text("Bruno Costa")
    page.get_by_role("link", name="Clear").click()
    page.screenshot(path=str(artifacts / "portal-patients.png"), full_page=True)
    assert console.errors == []
