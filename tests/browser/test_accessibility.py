"""An accessibility audit with axe-core (Deque's engine, the npm package pinned by
tests/browser/a11y/package-lock.json and installed by bin/test), injected by Playwright into
each page as a person sees it: the staff portal's pages, the patient's join page, the lobby
and the call. Serious or critical violations fail the test, listed with their nodes.

To audit another page, add a function to PAGES: it gets a `Visit` (the server, a way to open a
signed-in staff page or a patient's page, the appointment) and returns the Playwright page,
ready to be audited."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.utils import timezone
from playwright.sync_api import expect
from websockets.sync.client import connect as websockets_connect

from appointments.links import join_link_path
from appointments.models import Appointment
from appointments.services.guests import appointment_guest_invite
from calls.tokens import mint_user_token
from tests.browser.test_portal_browser import sign_in
from tests.factories import make_appointment, make_patient

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

AXE = Path(__file__).resolve().parent / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")
# WCAG 2.x A and AA, and axe's best practices.
AXE_OPTIONS = {
    "runOnly": {
        "type": "tag",
        "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"],
    },
}


def with_axe(page):
    """axe-core in every document the page opens, as an init script (the pages' Content
    Security Policy refuses injected script tags; init scripts come from the browser)."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: bin/test installs it (npm ci --prefix tests/browser/a11y)")
    page.add_init_script(path=str(AXE))
    # No transitions (the pages honour reduced motion): a button caught halfway from its
    # disabled to its enabled colours would be measured at a contrast it never rests at.
    page.emulate_media(reduced_motion="reduce")
    return page


def axe_violations(page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now."""
    result = page.evaluate("options => axe.run(document, options)", AXE_OPTIONS)
    assert result["testEngine"] == {"name": "axe-core", "version": "4.14.1"}
    assert len(result["passes"]) > 10  # the rules did run on a real page
    return [
        {
            "rule": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result["violations"]
        if v["impact"] in BLOCKING
    ]


@dataclass
class Visit:
    base: str
    staff_page: Callable[[str], object]  # path → a page signed in as the clinician
    open_page: Callable[..., object]  # a fresh Chromium (fake camera and microphone)
    appointment: Appointment


# --- the pages ---------------------------------------------------------------------------------


def login(v: Visit):
    page = v.open_page()
    page.goto(f"{v.base}/login/")
    return page


def today(v: Visit):
    return v.staff_page("/c/clinic-a/today/")


def appointment_page(v: Visit):
    return v.staff_page(f"/c/clinic-a/appointments/{v.appointment.id}/")


def appointment_form(v: Visit):
    return v.staff_page("/c/clinic-a/appointments/new/")


def appointment_form_with_errors(v: Visit):
    page = v.staff_page("/c/clinic-a/appointments/new/")
    page.get_by_label("Host clinician").select_option("")
    page.get_by_role("button", name="Schedule appointment").click()
    expect(page.locator("#form-errors")).to_be_visible()
    return page


def cancel_page(v: Visit):
    return v.staff_page(f"/c/clinic-a/appointments/{v.appointment.id}/cancel/")


def patients(v: Visit):
    return v.staff_page("/c/clinic-a/patients/")


def patient_form(v: Visit):
    return v.staff_page(f"/c/clinic-a/patients/{v.appointment.patient_id}/")


def join_page(v: Visit):
    page = v.open_page(width=390, height=844)
    page.goto(f"{v.base}{join_link_path(v.appointment)}")
    expect(page.get_by_role("button", name="Enter the waiting room")).to_be_enabled()
    return page


def lobby(v: Visit):
    page = join_page(v)
    page.get_by_role("button", name="Enter the waiting room").click()
    expect(page.get_by_role("button", name="Leave the waiting room")).to_be_visible()
    return page


def call(v: Visit):
    """The patient in the call, with the clinician (a Python client of the call socket)."""
    page = lobby(v)
    url = f"ws://{urlsplit(v.base).netloc}/ws/v1/rtc"
    token = mint_user_token(v.appointment.members.get(kind="host").call_user_id)
    host = websockets_connect(url, open_timeout=5)
    host.send(json.dumps({"type": "join", "token": token, "call_cid": v.appointment.call_cid}))
    assert json.loads(host.recv(timeout=5))["type"] == "joined"
    host.send(json.dumps({"type": "go_live"}))
    expect(page.locator("#call")).to_be_visible()
    page._host_socket = host  # closed with the test
    return page


def staff_room(v: Visit):
    page = v.staff_page(f"/c/clinic-a/appointments/{v.appointment.id}/join/")
    expect(page.get_by_role("button", name="Enter backstage")).to_be_enabled()
    return page


PAGES = [
    login,
    today,
    appointment_page,
    appointment_form,
    appointment_form_with_errors,
    cancel_page,
    patients,
    patient_form,
    join_page,
    lobby,
    call,
    staff_room,
]


@pytest.fixture
def visit(
    app_server,
    new_page,
    launch_chromium,
    eager_tasks,
    clinic_in_its_morning,
    doctor,
    colleague,
    patient,
):
    clinic = clinic_in_its_morning
    # A working day: the appointment (starting in 5 minutes: staff may enter, the lobby is
    # open), another with a guest, one cancelled.
    start = timezone.now().replace(second=0, microsecond=0) + dt.timedelta(minutes=5)
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=start)
    appointment_guest_invite(appointment=appointment, by=doctor, name="Maria Lima")
    make_appointment(
        clinic,
        host=colleague,
        patient=make_patient(clinic, name="Bruno Costa"),
        starts_at=start + dt.timedelta(minutes=30),
    )
    signed_in = {}

    def staff_page(path: str):
        if "page" not in signed_in:
            signed_in["page"] = with_axe(new_page())
            sign_in(signed_in["page"], app_server.url, "drhouse")
        page = signed_in["page"]
        page.goto(f"{app_server.url}{path}")
        return page

    def open_page(**kwargs):
        return with_axe(launch_chromium(**kwargs))

    return Visit(app_server.url, staff_page, open_page, appointment)


@pytest.mark.parametrize("open_page", PAGES, ids=[p.__name__ for p in PAGES])
def test_no_serious_or_critical_accessibility_violations(visit, console, open_page):
    page = open_page(visit)
    try:
        violations = axe_violations(page)
    finally:
        host = getattr(page, "_host_socket", None)
        if host is not None:
            host.close()
    assert violations == [], json.dumps(violations, indent=2)
