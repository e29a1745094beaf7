"""The call screen (room.html's stage) in real browsers: separate Chromium processes with fake
cameras and microphones, a clinician on a laptop and a patient on a phone, against the real
ASGI app. Every control fits in the viewport at 390x844 and 1366x768; chat goes both ways and
is stored with the call; a shared screen reaches the patient; a reload keeps the microphone
muted (the server's record wins); a second tab takes over from the first.

Chromium cannot capture a screen without a display (headless: getDisplayMedia never answers),
so the clinician's page gets a stand-in for the browser's screen picker only: a 1280x720
canvas stream. Everything after the picker (the track on each connection, the `screen` flag
through the call socket, the patient's tile) is the real path."""

from __future__ import annotations

import datetime as dt
import re
import tempfile

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from appointments.links import join_link_path
from appointments.services.status import appointment_call_action
from calls.models import Call, CallChatMessage, CallParticipant
from tests.browser.test_video_browser import MEDIA_WAIT_S, assert_media_flows, enter, sign_in
from tests.factories import make_appointment

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SHOTS = tempfile.gettempdir()  # screenshots are looked at, never committed
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1366, "height": 768}

# The browser's screen picker, answered with a moving 1280x720 canvas (see the docstring).
FAKE_SCREEN = """
navigator.mediaDevices.getDisplayMedia = async () => {
  const canvas = document.createElement("canvas");
  canvas.width = 1280;
  canvas.height = 720;
  const g = canvas.getContext("2d");
  let n = 0;
  setInterval(() => {
    g.fillStyle = n % 2 ? "#1d4ed8" : "#f59e0b";
    g.fillRect(0, 0, 1280, 720);
    g.fillStyle = "#fff";
    g.font = "64px sans-serif";
    g.fillText("Shared screen " + n++, 100, 360);
  }, 100);
  return canvas.captureStream(10);
};
"""

# Every visible control of the call screen, and whether it lies inside the viewport.
CONTROLS_IN_VIEW = """() => {
  const shown = [...document.querySelectorAll("#call button, #call select, #call input")]
    .filter(b => b.offsetParent !== null && getComputedStyle(b).visibility !== "hidden");
  const out = shown.map(b => {
    const r = b.getBoundingClientRect();
    return {id: b.id || b.className, inside: r.top >= 0 && r.left >= 0 && r.width > 0
      && r.bottom <= window.innerHeight && r.right <= window.innerWidth};
  });
  return {controls: out, scrolls: document.scrollingElement.scrollHeight > window.innerHeight
    && getComputedStyle(document.body).overflow !== "hidden"};
}"""

INBOUND_VIDEO_WIDTH = """async () => {
  const stats = await window.__room.stats();
  return Object.values(stats).map(s => (s.video ? s.video.frameWidth : 0));
}"""


def assert_controls_in_view(page, expected: set[str]) -> None:
    seen = page.evaluate(CONTROLS_IN_VIEW)
    ids = {c["id"] for c in seen["controls"]}
    assert expected <= ids, (expected - ids, seen)
    outside = [c["id"] for c in seen["controls"] if not c["inside"]]
    assert outside == [], seen
    assert seen["scrolls"] is False


def test_the_call_screen_fits_chats_shares_and_keeps_mute(
    app_server, launch_chromium, console, eager_tasks, clinic, doctor, patient
):
    start = timezone.now().replace(microsecond=0) + dt.timedelta(minutes=5)
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=start)
    appointment_call_action(appointment=appointment, staff=doctor, action="go_live")
    base = app_server.url
    patient_url = f"{base}{join_link_path(appointment)}"

    clinician = launch_chromium(**LAPTOP)
    clinician.context.add_init_script(FAKE_SCREEN)
    sign_in(clinician, base, "drhouse")
    clinician.goto(f"{base}/c/clinic-a/appointments/{appointment.id}/join/")
    enter(clinician, "Join the call")
    expect(clinician.locator("#call")).to_be_visible()
    expect(clinician.locator("#stage-alone")).to_be_visible()  # nobody else yet

    patient_page = launch_chromium(**PHONE)
    patient_page.goto(patient_url)
    enter(patient_page, "Join the call")
    expect(patient_page.locator("#call")).to_be_visible()
    expect(patient_page.locator(".tile-remote .tile-name")).to_have_text("Dr House")
    expect(clinician.locator(".tile-remote .tile-name")).to_have_text("Ana Lima")
    assert_media_flows(clinician, peers=1)
    assert_media_flows(patient_page, peers=1)

    # --- the stage: a timer that runs, a connection indicator per remote tile ---
    expect(clinician.locator("#call-timer")).to_have_text(re.compile(r"^\d+:\d\d$"))
    first = clinician.locator("#call-timer").inner_text()
    expect(clinician.locator("#call-timer")).not_to_have_text(first)
    quality = clinician.locator(".tile-remote .tile-quality")
    expect(quality).to_have_attribute("data-level", re.compile("good|fair|poor"))
    expect(quality).to_have_attribute("aria-label", re.compile(r"ms delay.*kbit/s"))

    # --- every control inside the viewport, at both sizes, for both of them ---
    staff_controls = {"mic-toggle", "cam-toggle", "share-toggle", "chat-toggle"}
    staff_controls |= {"devices-toggle", "leave", "end-call"}
    patient_controls = {"mic-toggle", "cam-toggle", "share-toggle", "chat-toggle"}
    patient_controls |= {"devices-toggle", "leave"}
    expect(patient_page.locator("#end-call")).to_be_hidden()
    assert_controls_in_view(clinician, staff_controls)
    assert_controls_in_view(patient_page, patient_controls)
    clinician.screenshot(path=f"{SHOTS}/callui-clinician-1366x768.png")
    patient_page.screenshot(path=f"{SHOTS}/callui-patient-390x844.png")
    clinician.set_viewport_size(PHONE)
    patient_page.set_viewport_size(LAPTOP)
    assert_controls_in_view(clinician, staff_controls)
    assert_controls_in_view(patient_page, patient_controls)
    clinician.screenshot(path=f"{SHOTS}/callui-clinician-390x844.png")
    patient_page.screenshot(path=f"{SHOTS}/callui-patient-1366x768.png")
    clinician.get_by_role("button", name="Devices").click()
    assert_controls_in_view(clinician, staff_controls | {"camera-select", "mic-select"})
    clinician.get_by_role("button", name="Devices").click()
    clinician.set_viewport_size(LAPTOP)
    patient_page.set_viewport_size(PHONE)

    # --- keyboard: Ctrl+D mutes and unmutes; the patient sees "Muted" on the tile ---
    clinician.keyboard.press("Control+d")
    expect(clinician.locator("#mic-toggle")).to_have_accessible_name("Unmute")
    expect(patient_page.locator(".tile-remote .tile-flags")).to_have_text("Muted")
    clinician.keyboard.press("Control+d")
    expect(clinician.locator("#mic-toggle")).to_have_accessible_name("Mute")
    expect(patient_page.locator(".tile-remote .tile-flags")).to_have_text("")

    # --- chat both ways: the clinician writes; the patient's Chat button marks it ---
    clinician.locator("#chat-toggle").click()
    expect(clinician.locator("#chat-panel")).to_be_visible()
    clinician.get_by_label("Message").fill("Can you hear me? If not, write here.")
    clinician.get_by_role("button", name="Send").click()
    expect(clinician.locator("#chat-log li")).to_have_count(1)
    expect(clinician.locator("#chat-log li.is-mine")).to_contain_text("Can you hear me?")
    expect(patient_page.locator("#chat-badge")).to_have_text("1")
    expect(patient_page.locator("#chat-toggle")).to_have_accessible_name("Chat (1 new message)")
    expect(patient_page.locator("#call-notice")).to_have_text("New message from Dr House.")
    patient_page.locator("#chat-toggle").click()
    expect(patient_page.locator("#chat-badge")).to_be_hidden()
    expect(patient_page.locator("#chat-log li")).to_contain_text("Dr House")
    expect(patient_page.locator("#chat-log li")).to_contain_text("Can you hear me?")
    assert_controls_in_view(patient_page, patient_controls | {"chat-input", "chat-send"})
    patient_page.get_by_label("Message").fill("No sound here <b>sorry</b>")
    patient_page.get_by_label("Message").press("Enter")
    expect(clinician.locator("#chat-log li")).to_have_count(2)
    expect(clinician.locator("#chat-log li").nth(1)).to_contain_text("Ana Lima")
    expect(clinician.locator("#chat-log li").nth(1)).to_contain_text("No sound here <b>sorry</b>")
    patient_page.screenshot(path=f"{SHOTS}/callui-patient-chat-390x844.png")
    call = Call.objects.get(call_id=appointment.id)
    stored = list(CallChatMessage.objects.filter(call=call).values_list("user_id", "text"))
    assert stored == [
        (doctor.call_user_id, "Can you hear me? If not, write here."),
        (patient.call_user_id, "No sound here <b>sorry</b>"),
    ]
    patient_page.locator("#chat-close").click()
    clinician.keyboard.press("Escape")
    expect(clinician.locator("#chat-panel")).to_be_hidden()

    # --- screen share: the patient receives the shared screen in place of the camera ---
    expect(clinician.locator("#share-toggle")).to_be_visible()
    clinician.locator("#share-toggle").click()
    expect(clinician.locator("#share-banner")).to_be_visible()
    expect(patient_page.locator(".tile-remote")).to_have_attribute("data-screen", "1")
    expect(patient_page.locator(".tile-remote .tile-name")).to_have_text("Dr House (screen)")
    patient_page.wait_for_function(
        f"async () => ({INBOUND_VIDEO_WIDTH})().then(w => w.length === 1 && w[0] === 1280)",
        timeout=MEDIA_WAIT_S * 1000,
    )
    clinician.screenshot(path=f"{SHOTS}/callui-clinician-sharing-1366x768.png")
    patient_page.screenshot(path=f"{SHOTS}/callui-patient-sees-screen-390x844.png")
    clinician.locator("#share-stop").click()
    expect(patient_page.locator(".tile-remote")).to_have_attribute("data-screen", "0")
    patient_page.wait_for_function(
        f"async () => ({INBOUND_VIDEO_WIDTH})().then(w => w.length === 1 && w[0] === 640)",
        timeout=MEDIA_WAIT_S * 1000,
    )

    # --- the patient mutes and reloads: she comes back muted (the server's record wins) ---
    patient_page.get_by_role("button", name="Mute").click()
    expect(clinician.locator(".tile-remote .tile-flags")).to_have_text("Muted")
    patient_page.reload()
    enter(patient_page, "Join the call")
    expect(patient_page.locator("#call")).to_be_visible()
    expect(patient_page.locator("#mic-toggle")).to_have_accessible_name("Unmute")
    expect(clinician.locator(".tile-remote")).to_have_count(1)
    expect(clinician.locator(".tile-remote .tile-flags")).to_have_text("Muted")
    assert_media_flows(clinician, peers=1)
    # The chat so far came back with the call.
    expect(patient_page.locator("#chat-log li")).to_have_count(2)

    # --- a second tab takes over: one tile for her, the first tab says where she is ---
    second = patient_page.context.new_page()
    second.on("console", console.on_console)
    second.on("pageerror", console.on_page_error)
    second.goto(patient_url)
    enter(second, "Join the call")
    expect(second.locator("#call")).to_be_visible()
    expect(patient_page.locator("#h-finished")).to_have_text("This call is open in another tab")
    expect(patient_page.get_by_role("button", name="Use here")).to_be_visible()
    expect(second.locator("#mic-toggle")).to_have_accessible_name("Unmute")  # still muted
    expect(clinician.locator(".tile-remote")).to_have_count(1)
    assert_media_flows(clinician, peers=1)
    present = CallParticipant.objects.filter(call=call, user_id=patient.call_user_id).exclude(
        state=CallParticipant.State.LEFT
    )
    assert present.count() == 1
    assert console.errors == []
