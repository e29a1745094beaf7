"""The waiting room in real browsers (issue 15): separate Chromium processes with fake cameras
and microphones, against the real ASGI app.

The call is live (it went live at its start) but no clinician is in it: the patient who opens
their link waits in the lobby, told so, and receives no media at all (every
RTCPeerConnection the page makes is counted, not only the ones room.js knows of). The staff
Today page, open beforehand, shows them waiting within a second (the events socket), with a
chime for the clinician whose appointment it is; a lobby message typed there reaches the
patient's page. The clinician joins: the patient is admitted at once and both pages' getStats
show inbound audio and video growing. The clinician leaves: the patient is back in the
lobby, with no media."""

from __future__ import annotations

import datetime as dt
import tempfile
import time

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from appointments.links import join_link_path
from appointments.services.status import appointment_call_action
from appointments.services.waiting import appointment_lobby_message
from calls.models import CallParticipant
from tests.browser.test_video_browser import READ_INBOUND, enter, sign_in
from tests.factories import make_appointment

SHOTS = tempfile.gettempdir()  # screenshots are looked at, never committed

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ADMITTED_MEDIA_S = 10  # the bound: media both ways within 10 s of the host joining
LOBBY_QUIET_S = 10  # how long the waiting patient is watched for inbound media
# The target is 1 s (measured 0.4-0.7 s on a loaded machine; the figure is printed). The
# test's bound only proves the queue is pushed live, not polled (once a minute): timed targets
# are for benchmarks, and a loaded CI machine must not turn a slow second into a failure.
QUEUE_S = 3

# Counts the inbound RTP bytes of every RTCPeerConnection the page ever made.
COUNT_PEER_CONNECTIONS = """(() => {
  const Original = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = function (...args) {
    const pc = new Original(...args);
    window.__pcs.push(pc);
    return pc;
  };
  window.RTCPeerConnection.prototype = Original.prototype;
})();"""
INBOUND_BYTES = """async () => {
  let total = 0;
  for (const pc of window.__pcs || []) {
    const stats = await pc.getStats();
    stats.forEach(s => { if (s.type === "inbound-rtp") total += s.bytesReceived || 0; });
  }
  return {connections: (window.__pcs || []).length, bytes: total};
}"""


def grows_within(page, seconds: float) -> dict:
    """Inbound audio and video from one other participant, growing between two samples, the
    second within `seconds` of the call. Fails otherwise."""
    deadline = time.monotonic() + seconds
    first: dict = {}
    while True:
        now = page.evaluate(READ_INBOUND)
        if len(now) == 1 and all(a > 0 and v > 0 for a, v in now.values()):
            if not first:
                first = now
            elif all(
                a > first[p][0] and v > first[p][1] for p, (a, v) in now.items() if p in first
            ) and set(now) == set(first):
                return now
        if time.monotonic() > deadline:
            raise AssertionError(f"inbound media did not grow within {seconds} s: {first} {now}")
        page.wait_for_timeout(200)


def test_the_patient_waits_for_the_clinician_in_a_live_call(
    app_server, launch_chromium, console, eager_tasks, clinic, doctor, patient
):
    # Started a minute ago and live (as at its start), with nobody in the call.
    start = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=1)
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=start)
    appointment_call_action(appointment=appointment, staff=doctor, action="go_live")
    base = app_server.url

    # --- the clinician's Today page is open, live over the events socket ---
    clinician = launch_chromium(permissions=["notifications"])
    sign_in(clinician, base, "drhouse")
    today = clinician
    expect(today.locator("#refresh-status")).to_contain_text("(live)")
    expect(today.locator("[data-waiting]")).to_have_count(0)
    today.get_by_role("button", name="Notify me when a patient of mine is waiting").click()
    expect(today.get_by_role("button", name="Notifications on")).to_be_visible()

    # --- the patient opens their link on a phone: the waiting room, not the call ---
    patient_page = launch_chromium(width=390, height=844)
    patient_page.add_init_script(COUNT_PEER_CONNECTIONS)
    patient_page.goto(f"{base}{join_link_path(appointment)}")
    enter(patient_page, "Enter the waiting room")
    expect(patient_page.locator("#room-status")).to_have_text(
        "Your clinician will be with you shortly. Please keep this page open."
    )
    waiting = today.locator("[data-waiting]")
    expect(waiting).to_have_count(1)
    expect(waiting).to_contain_text("Ana Lima")
    expect(waiting).to_contain_text("Waiting since")
    expect(today.locator(".waiting-badge")).to_have_count(1)
    today.wait_for_function("window.__waiting.alerts.length === 1")
    alert = today.evaluate("window.__waiting.alerts[0]")
    participant = CallParticipant.objects.get(user_id=patient.call_user_id, state="waiting")
    assert alert["id"] == participant.user_session_id
    assert alert["notification"] is True
    # From the lobby entry (the server's row; one machine, one clock) through the outbox, the
    # events socket and the page's fetch of its rows, to the queue on the Today page.
    assert participant.waiting_since is not None
    shown_after_ms = alert["at"] - participant.waiting_since.timestamp() * 1000
    print(f"the Today page showed the waiting patient {shown_after_ms:.0f} ms after lobby entry")
    assert 0 < shown_after_ms < QUEUE_S * 1000
    expect(patient_page.locator("#call")).to_be_hidden()

    # --- a lobby message from the Today page reaches the patient's page ---
    today.get_by_text("Message", exact=True).click()
    today.get_by_label("Message to the waiting room").fill("Running 5 minutes late")
    # A live update while typing (another message, from the appointment page) keeps the open
    # form and what was typed.
    appointment_lobby_message(appointment=appointment, text="Back soon")
    expect(patient_page.locator("#lobby-message")).to_have_text(
        "Message from the clinic: Back soon"
    )
    expect(today.locator("[data-waiting]")).to_contain_text("Message shown: “Back soon”")
    expect(today.get_by_label("Message to the waiting room")).to_have_value(
        "Running 5 minutes late"
    )
    expect(today.get_by_label("Message to the waiting room")).to_be_focused()
    today.get_by_role("button", name="Send").click()
    expect(today.locator(".messages")).to_contain_text("Message shown in the waiting room.")
    expect(patient_page.locator("#lobby-message")).to_have_text(
        "Message from the clinic: Running 5 minutes late"
    )

    # --- no media reaches the waiting patient (watched for 10 s) ---
    deadline = time.monotonic() + LOBBY_QUIET_S
    while time.monotonic() < deadline:
        inbound = patient_page.evaluate(INBOUND_BYTES)
        assert inbound == {"connections": 0, "bytes": 0}, inbound
        assert patient_page.evaluate("window.__room.phase()") == "lobby"
        patient_page.wait_for_timeout(500)

    # --- the clinician joins from the queue: the patient is let in at once, media both ways ---
    room = clinician.context.new_page()
    room.on("console", console.on_console)
    room.on("pageerror", console.on_page_error)
    room.goto(f"{base}/c/clinic-a/appointments/{appointment.id}/join/")
    enter(room, "Join the call")
    joined = time.monotonic()
    grows_within(room, ADMITTED_MEDIA_S - (time.monotonic() - joined))
    grows_within(patient_page, ADMITTED_MEDIA_S - (time.monotonic() - joined))
    expect(patient_page.locator("#call")).to_be_visible()
    expect(patient_page.locator("#lobby-message")).to_be_hidden()
    expect(today.locator("[data-waiting]")).to_have_count(0)

    # --- the clinician leaves: the patient is back in the waiting room, with no media ---
    room.get_by_role("button", name="Leave").click()
    expect(room.locator("#h-finished")).to_have_text("You left the call")
    expect(patient_page.locator("#call")).to_be_hidden()
    expect(patient_page.locator("#room-status")).to_contain_text(
        "Your clinician will be with you shortly"
    )
    assert patient_page.evaluate("window.__room.phase()") == "lobby"
    assert patient_page.evaluate("window.__room.stats()") == {}
    expect(today.locator("[data-waiting]")).to_have_count(1)
    assert console.errors == []


def test_running_late_and_an_explicit_admit(
    app_server, launch_chromium, console, eager_tasks, clinic, doctor, patient
):
    # A clinic that says "running late" one minute after the start and admits by hand.
    clinic.running_late_after_minutes = 1
    clinic.auto_admit = False
    clinic.save()
    start = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=2, seconds=5)
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=start)
    appointment_call_action(appointment=appointment, staff=doctor, action="go_live")
    base = app_server.url

    patient_page = launch_chromium(width=390, height=844)
    patient_page.goto(f"{base}{join_link_path(appointment)}")
    enter(patient_page, "Enter the waiting room")
    expect(patient_page.locator("#room-status")).to_have_text(
        "Running late — 2 min. Your clinician will be with you as soon as possible: "
        "please keep this page open."
    )
    patient_page.screenshot(path=f"{SHOTS}/wroom-patient-late-390x844.png")

    # The clinician joins: the patient is told they know, and stays until admitted.
    clinician = launch_chromium()
    sign_in(clinician, base, "drhouse")
    clinician.goto(f"{base}/c/clinic-a/appointments/{appointment.id}/join/")
    enter(clinician, "Join the call")
    expect(patient_page.locator("#room-status")).to_have_text(
        "Your clinician knows you are here and will let you in shortly."
    )
    expect(patient_page.locator("#call")).to_be_hidden()
    admit = clinician.locator("#lobby-admit").get_by_role("button", name="Admit")
    expect(admit).to_have_count(1)
    expect(clinician.locator("#lobby-admit")).to_contain_text("Ana Lima")
    # Since when, on the clinic's clock (the staff page's zone), not the browser's.
    since = CallParticipant.objects.get(user_id=patient.call_user_id, state="waiting")
    local = timezone.localtime(since.waiting_since, clinic.tz)
    expect(clinician.locator("#lobby-admit")).to_contain_text(f"Waiting since {local:%H:%M}")
    clinician.screenshot(path=f"{SHOTS}/wroom-clinician-admit-1366x768.png")
    admit.click()
    expect(patient_page.locator("#call")).to_be_visible()
    expect(clinician.locator("#lobby-admit")).to_be_hidden()
    expect(clinician.locator(".tile-remote .tile-name")).to_have_text("Ana Lima")
    assert console.errors == []
