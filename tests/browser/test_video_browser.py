"""Video calls in real browsers: separate Chromium processes with fake cameras and microphones
meet through the join pages, the call socket (`/ws/v1/rtc`) and a WebRTC mesh, against the real
ASGI app. Media is checked with each page's own `getStats()` (through `window.__room.stats()`):
inbound audio and video bytes must grow, from every other participant.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import socket
import threading
import time
import zoneinfo
from urllib.parse import urlsplit

import pytest
from django.utils import timezone
from playwright.sync_api import expect
from websockets.sync.client import connect as websockets_connect

from appointments.links import guest_link_path, join_link_path
from appointments.models import CALL_TYPE, Appointment
from appointments.services.guests import appointment_guest_invite, appointment_guest_remove
from appointments.services.status import appointment_call_action
from calls.capabilities import SERVER
from calls.models import Call, CallParticipant
from calls.services.moderation import call_block_user, call_kick_user, call_update_user_permissions
from calls.tokens import mint_user_token
from tests.factories import make_appointment

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-test-1"
RECIFE = zoneinfo.ZoneInfo("America/Recife")
MEDIA_WAIT_S = 20  # ICE and the first frames, on a busy 2-core machine

# Every remote participant's inbound audio and video, as {peer: [audio bytes, video bytes]}.
READ_INBOUND = """async () => {
  const stats = await window.__room.stats();
  const out = {};
  for (const [peer, s] of Object.entries(stats)) {
    out[peer] = [s.audio ? s.audio.bytesReceived : 0, s.video ? s.video.bytesReceived : 0];
  }
  return out;
}"""


class FlakyLink:
    """A TCP relay in front of the app server: pages loaded through `url` reach the server
    through it, and `cut()` drops every open connection at once (a network blip: the page's
    sockets close as if the Wi-Fi went away) while new connections still get through."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname, parts.port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            self._drop(s)

    def _drop(self, s: socket.socket) -> None:
        with self.lock:
            self.open.discard(s)
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()

    def cut(self) -> None:
        with self.lock:
            sockets = list(self.open)
        for s in sockets:
            self._drop(s)

    def close(self) -> None:
        self.listener.close()
        self.cut()


@pytest.fixture
def flaky_link(app_server):
    link = FlakyLink(app_server.url)
    yield link
    link.close()


def sign_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/c/[a-z0-9-]+/today/$"))


def inbound_above(page, before: dict, peers: int) -> dict:
    """Wait until there are `peers` remote participants and each one's inbound audio and
    video bytes exceed `before`'s; the new counts. Fails after MEDIA_WAIT_S."""
    deadline = time.monotonic() + MEDIA_WAIT_S
    while True:
        now = page.evaluate(READ_INBOUND)
        if len(now) == peers and all(
            audio > before.get(peer, [0, 0])[0] and video > before.get(peer, [0, 0])[1]
            for peer, (audio, video) in now.items()
        ):
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"inbound media did not grow: before {before}, now {now}")
        page.wait_for_timeout(250)


def assert_media_flows(page, peers: int) -> None:
    """Inbound audio and video from each of `peers` others, growing between two samples."""
    first = inbound_above(page, {}, peers)
    second = inbound_above(page, first, peers)
    assert set(second) == set(first)


def enter(page, button: str) -> None:
    join = page.get_by_role("button", name=button)
    expect(join).to_be_enabled()
    join.click()


def test_clinician_and_patient_meet_in_a_video_call(
    app_server,
    flaky_link,
    launch_chromium,
    console,
    artifacts,
    eager_tasks,
    clinic,
    doctor,
    patient,
):
    # Starts in 5 minutes: the clinician may enter backstage (15 minutes ahead) and the lobby
    # is open (10 minutes ahead), but the call is not live yet.
    start = timezone.now().replace(microsecond=0) + dt.timedelta(minutes=5)
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=start)
    base = app_server.url

    # --- the clinician opens the call from the appointment and enters backstage (their
    # network goes through a link we can cut) ---
    clinician = launch_chromium()
    via = flaky_link.url
    sign_in(clinician, via, "drhouse")
    clinician.goto(f"{via}/c/clinic-a/appointments/{appointment.id}/")
    link = clinician.locator("#patient-join-link")
    assert link.inner_text() == f"{via}{join_link_path(appointment)}"
    clinician.get_by_role("link", name="Join call").click()
    expect(clinician).to_have_url(f"{via}/c/clinic-a/appointments/{appointment.id}/join/")
    expect(clinician.locator("#device-message")).to_be_hidden()
    enter(clinician, "Enter backstage")
    expect(clinician.locator("#room-status")).to_contain_text("You are backstage")
    expect(clinician.get_by_role("button", name="Go live")).to_be_visible()

    # --- the patient opens their link on a phone and waits in the lobby ---
    patient_page = launch_chromium(width=390, height=844)
    patient_page.goto(f"{base}{join_link_path(appointment)}")
    # The start in the patient's time zone (Recife), not the clinic's (Paris).
    expect(patient_page.locator("#room-when")).to_contain_text("(your time: America/Recife)")
    expect(patient_page.locator("#room-starts")).to_have_text(f"{start.astimezone(RECIFE):%H:%M}")
    enter(patient_page, "Enter the waiting room")
    expect(patient_page.locator("#room-status")).to_contain_text("The clinician is getting ready")
    expect(patient_page.locator("#call")).to_be_hidden()
    expect(clinician.locator("#room-waiting")).to_have_text("Ana Lima is waiting in the lobby.")
    assert patient_page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    # --- the clinician goes live: the patient is let in by itself, media flows both ways ---
    clinician.get_by_role("button", name="Go live").click()
    expect(patient_page.locator("#call")).to_be_visible()
    expect(patient_page.locator("#room-status")).to_have_text("You are in the call.")
    expect(clinician.locator("#room-status")).to_have_text("You are in the call.")
    expect(clinician.get_by_role("button", name="Go live")).to_be_hidden()
    expect(clinician.locator("#room-waiting")).to_be_hidden()  # she is in
    assert Call.objects.get(call_id=appointment.id).backstage is False
    expect(patient_page.locator(".tile-remote .tile-name")).to_have_text("Dr House")
    expect(clinician.locator(".tile-remote .tile-name")).to_have_text("Ana Lima")
    assert_media_flows(clinician, peers=1)
    assert_media_flows(patient_page, peers=1)
    # The patient has no way to end the call for everyone; the clinician has.
    expect(patient_page.get_by_role("button", name="End for everyone")).to_be_hidden()
    expect(clinician.get_by_role("button", name="End for everyone")).to_be_visible()
    assert patient_page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    clinician.screenshot(path=str(artifacts / "video-live-call.png"), full_page=True)
    patient_page.screenshot(path=str(artifacts / "video-live-call-phone.png"), full_page=True)

    # --- a network blip on the clinician's side cuts the call socket: the page reconnects as
    # the same participant (user_session_id) and the call goes on (media is peer to peer) ---
    session = clinician.evaluate("window.__room.sessionId()")
    clinician.evaluate("window.__statusSeen = []")
    clinician.evaluate(
        """new MutationObserver(() => window.__statusSeen.push(
             document.getElementById("room-status").textContent))
           .observe(document.getElementById("room-status"), {childList: true})"""
    )
    flaky_link.cut()
    clinician.wait_for_function(
        "window.__statusSeen.includes('The connection was lost. Reconnecting…')"
    )
    expect(clinician.locator("#room-status")).to_have_text("You are in the call.")
    assert clinician.evaluate("window.__room.sessionId()") == session
    expect(clinician.locator(".tile-remote")).to_have_count(1)
    assert_media_flows(clinician, peers=1)
    assert_media_flows(patient_page, peers=1)

    # --- an ICE restart (what a connection whose ICE failed does by itself; the impolite
    # side restarts, so both pages are asked): new ICE credentials, and media goes on ---
    before = {
        "clinician": clinician.evaluate("window.__room.remoteUfrags()"),
        "patient": patient_page.evaluate("window.__room.remoteUfrags()"),
    }
    assert all(before["clinician"].values())
    assert all(before["patient"].values())
    clinician.evaluate("window.__room.restartIce()")
    patient_page.evaluate("window.__room.restartIce()")
    for name, page in (("clinician", clinician), ("patient", patient_page)):
        page.wait_for_function(
            """before => Object.entries(window.__room.remoteUfrags())
                 .every(([peer, ufrag]) => ufrag && ufrag !== before[peer])""",
            arg=before[name],
            timeout=MEDIA_WAIT_S * 1000,
        )
    assert_media_flows(clinician, peers=1)
    assert_media_flows(patient_page, peers=1)

    # --- the clinician switches camera, then turns it off and on: the patient sees it ---
    clinician.get_by_role("button", name="Devices").click()
    camera = clinician.get_by_label("Camera", exact=True)
    expect(camera.locator("option")).to_have_count(3)
    assert clinician.evaluate("window.__room.devices().video") == camera.input_value()
    camera.select_option(label="fake_device_2")
    other = camera.input_value()
    clinician.wait_for_function("id => window.__room.devices().video === id", arg=other)
    assert_media_flows(patient_page, peers=1)  # the new camera's frames, no renegotiation
    clinician.get_by_role("button", name="Camera off").click()
    expect(patient_page.locator(".tile-remote .tile-off")).to_have_text("Camera off")
    expect(patient_page.locator(".tile-remote .tile-off")).to_be_visible()
    clinician.get_by_role("button", name="Camera on").click()
    expect(patient_page.locator(".tile-remote .tile-off")).to_be_hidden()
    assert clinician.evaluate("window.__room.devices().video") == other

    # --- the patient mutes: the clinician sees it ---
    patient_page.get_by_role("button", name="Mute").click()
    expect(clinician.locator(".tile-remote .tile-flags")).to_have_text("Muted")

    # --- she unmutes; the clinician mutes her from her tile (MuteUsers): her page turns the
    # microphone off and tells her. The patient has no such controls on the clinician ---
    patient_page.get_by_role("button", name="Unmute").click()
    expect(clinician.locator(".tile-remote .tile-flags")).to_have_text("")
    expect(patient_page.locator(".tile-remote .tile-actions button:visible")).to_have_count(0)
    clinician.get_by_role("button", name="Mute Ana Lima").click()
    expect(patient_page.get_by_role("button", name="Unmute")).to_be_visible()
    expect(patient_page.locator("#call-notice")).to_contain_text(
        "Your microphone was turned off by the host"
    )
    expect(clinician.locator(".tile-remote .tile-flags")).to_have_text("Muted")
    expect(clinician.get_by_role("button", name="Mute Ana Lima")).to_be_hidden()

    # --- the clinic takes her camera away for this call, then gives it back
    # (UpdateUserPermissions through the calls API) ---
    def camera_permission(**change) -> None:
        call_update_user_permissions(
            actor=SERVER,
            type_name=CALL_TYPE,
            call_id=appointment.id,
            user_id=patient.call_user_id,
            **change,
        )

    camera_permission(revoke_permissions=["send-video"])
    expect(patient_page.get_by_role("button", name="Camera on")).to_be_disabled()
    expect(clinician.locator(".tile-remote .tile-off")).to_have_text("Camera off")
    expect(clinician.locator(".tile-remote .tile-off")).to_be_visible()
    camera_permission(grant_permissions=["send-video"])
    expect(patient_page.get_by_role("button", name="Camera on")).to_be_enabled()
    patient_page.get_by_role("button", name="Camera on").click()
    expect(clinician.locator(".tile-remote .tile-off")).to_be_hidden()

    # --- back to backstage (from the portal): the patient waits in the lobby again, and is
    # let back in when the call goes live again ---
    appointment_call_action(appointment=appointment, staff=doctor, action="stop_live")
    expect(patient_page.locator("#room-status")).to_contain_text("The clinician is getting ready")
    expect(patient_page.locator("#call")).to_be_hidden()
    expect(patient_page.get_by_role("button", name="Leave the waiting room")).to_be_visible()
    expect(clinician.locator(".tile-remote")).to_have_count(0)
    expect(clinician.locator("#room-waiting")).to_have_text("Ana Lima is waiting in the lobby.")
    clinician.get_by_role("button", name="Go live").click()
    expect(patient_page.locator("#call")).to_be_visible()
    assert_media_flows(clinician, peers=1)

    # --- the patient leaves: the clinician sees it ---
    patient_page.get_by_role("button", name="Leave").click()
    expect(patient_page.locator("#h-finished")).to_have_text("You left the call")
    expect(clinician.locator("#call-notice")).to_have_text("Ana Lima left the call.")
    expect(clinician.locator(".tile-remote")).to_have_count(0)

    # --- and comes back; then the clinician ends the call for everyone ---
    patient_page.get_by_role("button", name="Join again").click()
    enter(patient_page, "Join the call")
    expect(patient_page.locator("#call")).to_be_visible()
    expect(clinician.locator(".tile-remote .tile-name")).to_have_text("Ana Lima")
    assert_media_flows(patient_page, peers=1)

    # --- the clinician removes her from the call (KickUser): her page says so; she may come
    # back, and does ---
    clinician.once("dialog", lambda dialog: dialog.accept())
    clinician.get_by_role("button", name="Remove Ana Lima from the call").click()
    expect(patient_page.locator("#h-finished")).to_have_text("You were removed from the call")
    expect(clinician.locator(".tile-remote")).to_have_count(0)
    patient_page.get_by_role("button", name="Join again").click()
    enter(patient_page, "Join the call")
    expect(clinician.locator(".tile-remote .tile-name")).to_have_text("Ana Lima")
    clinician.get_by_role("button", name="End for everyone").click()
    clinician.get_by_role("button", name="End the call").click()
    expect(patient_page.locator("#h-finished")).to_have_text("The call has ended")
    expect(patient_page.locator("#call")).to_be_hidden()
    expect(clinician.locator("#h-finished")).to_have_text("The call has ended")
    assert Call.objects.get(call_id=appointment.id).ended_at is not None

    # An ended call cannot be joined again: the link says so and shows no controls.
    patient_page.goto(f"{base}{join_link_path(appointment)}")
    expect(patient_page.locator("#room-closed")).to_contain_text("This appointment has ended")
    expect(patient_page.get_by_role("button")).to_have_count(0)
    assert console.errors == []


def test_three_people_each_receive_the_two_others(
    app_server,
    launch_chromium,
    console,
    artifacts,
    eager_tasks,
    clinic,
    doctor,
    patient,
    interpreter,
):
    start = timezone.now().replace(microsecond=0) + dt.timedelta(minutes=5)
    appointment = make_appointment(
        clinic, host=doctor, patient=patient, starts_at=start, interpreter=interpreter
    )
    base = app_server.url
    room = f"{base}/c/clinic-a/appointments/{appointment.id}/join/"

    clinician = launch_chromium()
    sign_in(clinician, base, "drhouse")
    clinician.goto(room)
    enter(clinician, "Enter backstage")
    expect(clinician.locator("#room-status")).to_contain_text("You are backstage")

    # The interpreter and the patient wait in the lobby until the call goes live.
    interpreting = launch_chromium()
    sign_in(interpreting, base, "ivan")
    interpreting.goto(room)
    enter(interpreting, "Enter the waiting room")
    patient_page = launch_chromium()
    patient_page.goto(f"{base}{join_link_path(appointment)}")
    enter(patient_page, "Enter the waiting room")
    for waiting in (interpreting, patient_page):
        expect(waiting.locator("#room-status")).to_contain_text("The clinician is getting ready")
    expect(clinician.locator("#room-waiting")).to_have_text(
        re.compile(r"^(Ivan Interpreter and Ana Lima|Ana Lima and Ivan Interpreter) are waiting")
    )

    clinician.get_by_role("button", name="Go live").click()
    pages = {"clinician": clinician, "interpreter": interpreting, "patient": patient_page}
    for page in pages.values():
        expect(page.locator("#call")).to_be_visible()
        expect(page.locator(".tile-remote video")).to_have_count(2)
    for page in pages.values():
        assert_media_flows(page, peers=2)
    names = {
        who: sorted(p.locator(".tile-remote .tile-name").all_inner_texts())
        for who, p in pages.items()
    }
    assert names == {
        "clinician": ["Ana Lima", "Ivan Interpreter"],
        "interpreter": ["Ana Lima", "Dr House"],
        "patient": ["Dr House", "Ivan Interpreter"],
    }
    interpreting.screenshot(path=str(artifacts / "video-three-people.png"), full_page=True)
    assert console.errors == []


def test_a_denied_permission_and_a_missing_device_are_explained(
    app_server, launch_chromium, console, artifacts, clinic, doctor, patient
):
    start = timezone.now().replace(microsecond=0) + dt.timedelta(minutes=5)
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=start)
    url = f"{app_server.url}{join_link_path(appointment)}"

    # Fake devices exist, but nothing grants them (no fake prompt, no context permission):
    # Chromium refuses getUserMedia with NotAllowedError.
    denied = launch_chromium(fake_ui=False)
    denied.goto(url)
    message = denied.locator("#device-message")
    expect(message).to_have_attribute("data-problem", "denied")
    expect(message).to_contain_text("not allowing this page to use your camera and microphone")
    expect(message).to_contain_text("choose Allow")
    expect(denied.get_by_role("button", name="Try again")).to_be_visible()
    # Joining without devices stays possible.
    expect(denied.get_by_role("button", name="Enter the waiting room")).to_be_enabled()
    expect(denied.get_by_role("button", name="Leave the waiting room")).to_be_hidden()
    expect(denied.locator("#preview-off")).to_have_text("No camera")
    denied.screenshot(path=str(artifacts / "video-permission-denied.png"), full_page=True)

    # Allowed, but this machine has no camera or microphone: NotFoundError.
    missing = launch_chromium(fake_devices=False)
    missing.goto(url)
    message = missing.locator("#device-message")
    expect(message).to_have_attribute("data-problem", "missing")
    expect(message).to_contain_text("No camera or microphone was found")
    expect(missing.get_by_label("Camera", exact=True)).to_be_disabled()
    expect(missing.get_by_role("button", name="Enter the waiting room")).to_be_enabled()
    assert console.errors == []


def test_an_ended_appointment_says_so_and_has_no_controls(
    app_server, new_page, console, clinic, doctor, patient
):
    start = timezone.now().replace(microsecond=0) + dt.timedelta(minutes=5)
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=start)
    appointment_call_action(appointment=appointment, staff=doctor, action="go_live")
    appointment_call_action(appointment=appointment, staff=doctor, action="end")
    assert Appointment.objects.get(pk=appointment.pk).status == Appointment.Status.COMPLETED

    page = new_page()
    page.goto(f"{app_server.url}{join_link_path(appointment)}")
    expect(page.locator("#room-closed")).to_contain_text("This appointment has ended")
    expect(page.locator("#room-closed")).to_contain_text("cannot be joined again")
    expect(page.locator("#call")).to_have_count(0)
    expect(page.get_by_role("button")).to_have_count(0)
    assert page.evaluate("typeof window.__room") == "undefined"
    assert console.errors == []


def test_the_lobby_says_the_clinician_is_late_then_getting_ready(
    app_server, launch_chromium, console, eager_tasks, clinic, doctor, patient
):
    # Started two minutes ago (booked just in time), still backstage, nobody inside.
    start = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=2)
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=start)
    page = launch_chromium()
    page.goto(f"{app_server.url}{join_link_path(appointment)}")
    enter(page, "Enter the waiting room")
    expect(page.locator("#room-status")).to_contain_text("The clinician is running late")

    # The clinician comes in (another client of the call socket: Python, no browser).
    url = f"ws://{urlsplit(app_server.url).netloc}/ws/v1/rtc"
    token = mint_user_token(doctor.call_user_id, call_cids=[appointment.call_cid])
    with websockets_connect(url, open_timeout=5) as host:
        host.send(json.dumps({"type": "join", "token": token, "call_cid": appointment.call_cid}))
        assert json.loads(host.recv(timeout=5))["type"] == "joined"
        expect(page.locator("#room-status")).to_contain_text("The clinician is getting ready")
        host.send(json.dumps({"type": "leave"}))
        assert json.loads(host.recv(timeout=5))["type"] == "left"
    expect(page.locator("#room-status")).to_contain_text("The clinician is running late")

    # Put out of the lobby (KickUser, as a moderator through the calls API): the page says so
    # and offers to join again, without reconnecting on its own; a block takes that away.
    call_kick_user(
        actor=SERVER,
        type_name=CALL_TYPE,
        call_id=appointment.id,
        user_id=patient.call_user_id,
    )
    expect(page.locator("#h-finished")).to_have_text("You were removed from the call")
    expect(page.get_by_role("button", name="Join again")).to_be_visible()
    page.wait_for_timeout(1500)  # longer than the page's first reconnect delay
    assert not CallParticipant.objects.filter(
        user_id=patient.call_user_id, state=CallParticipant.State.WAITING
    ).exists()
    call_block_user(
        actor=SERVER,
        type_name=CALL_TYPE,
        call_id=appointment.id,
        user_id=patient.call_user_id,
    )
    page.get_by_role("button", name="Join again").click()  # the page starts over
    expect(page.locator("#room-closed")).to_contain_text("You cannot join this call")
    expect(page.locator("#room-closed")).to_contain_text("the clinic removed you from it")
    expect(page.get_by_role("button")).to_have_count(0)
    assert console.errors == []


def test_a_guest_joins_from_their_own_link(
    app_server, launch_chromium, console, eager_tasks, clinic, doctor, patient
):
    start = timezone.now().replace(microsecond=0) + dt.timedelta(minutes=5)
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=start)
    guest = appointment_guest_invite(appointment=appointment, by=doctor, name="Maria Lima")
    page = launch_chromium(width=390, height=844)
    page.goto(f"{app_server.url}{guest_link_path(guest)}")
    expect(page.locator("#room-title")).to_have_text("Video appointment at Riverside Clinic")
    enter(page, "Enter the waiting room")
    expect(page.locator("#room-status")).to_contain_text(
        "You are in the waiting room. The appointment starts at"
    )

    # The clinician comes in and goes live (a Python client of the call socket): she is let in.
    url = f"ws://{urlsplit(app_server.url).netloc}/ws/v1/rtc"
    token = mint_user_token(doctor.call_user_id, call_cids=[appointment.call_cid])
    with websockets_connect(url, open_timeout=5) as host:
        host.send(json.dumps({"type": "join", "token": token, "call_cid": appointment.call_cid}))
        joined = json.loads(host.recv(timeout=5))
        assert [w["user"]["name"] for w in joined["waiting"]] == ["Maria Lima"]
        host.send(json.dumps({"type": "go_live"}))
        expect(page.locator("#room-status")).to_have_text("You are in the call.")
        expect(page.locator("#call")).to_be_visible()

        # Removed from the appointment page: put out, and her link no longer opens the room.
        appointment_guest_remove(appointment=appointment, by=doctor, member_id=guest.pk)
        expect(page.locator("#h-finished")).to_have_text("You were removed from the call")
    assert console.errors == []
    response = page.goto(f"{app_server.url}{guest_link_path(guest)}")
    assert response.status == 403  # (Chromium logs the 403 itself)
    expect(page.locator("h1")).to_contain_text("This link does not work")
