"""Join pages: the patient's link (its token: who it opens, until when) and the staff join page
(who may open it, the state and token it renders). The call itself is tested in the browser
(tests/browser/test_video_browser.py).

Personas: `doctor` (host), `interpreter` (a colleague interpreting, a call member),
`coordinator` (front desk of the clinic, not in the call), `outsider` (another clinic's
clinician), `stranger` (a user who is not staff); the patient and `other_patient`."""

from __future__ import annotations

import datetime as dt
import json
import re

import jwt
import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from appointments import links
from appointments.models import CALL_TYPE, Appointment
from appointments.selectors import staff_actor
from appointments.services.booking import (
    Booking,
    appointment_cancel,
    appointment_update,
    booking_of,
)
from appointments.services.join_links import appointment_link_replace
from appointments.services.status import appointment_call_action
from calls.capabilities import Actor
from calls.errors import CallsError, NotAllowed
from calls.services.calls import call_join
from calls.services.sessions import participant_enter
from calls.tokens import verify
from tests.factories import START, ClinicFactory, make_appointment

pytestmark = pytest.mark.django_db


@pytest.fixture
def appointment(frozen, clinic, doctor, interpreter, patient):
    return make_appointment(
        clinic, host=doctor, patient=patient, starts_at=START, interpreter=interpreter
    )


@pytest.fixture
def other_appointment(frozen, clinic, doctor, other_patient):
    return make_appointment(
        clinic, host=doctor, patient=other_patient, starts_at=START + dt.timedelta(hours=1)
    )


def room_config(response) -> dict | None:
    match = re.search(
        rb'<script id="room-config" type="application/json">(.*?)</script>', response.content
    )
    return json.loads(match.group(1)) if match else None


def claims(token: str) -> dict:
    return jwt.decode(token, settings.CALLS_API_SECRET, algorithms=["HS256"])


def open_link(path: str):
    return Client().get(path)


# --- the patient's link ----------------------------------------------------------------------


def test_the_link_is_stable_and_carries_no_personal_data(appointment):
    path = links.join_link_path(appointment)
    assert path == links.join_link_path(appointment)  # same link every time it is shown
    assert path.startswith(f"/join/{appointment.id}/?t=")
    assert "Ana" not in path
    assert "Lima" not in path


def test_the_link_opens_the_waiting_room_in_the_patients_time_zone(appointment, frozen):
    frozen.move_to(START - dt.timedelta(minutes=10))  # the lobby opens
    response = open_link(links.join_link_path(appointment))
    assert response.status_code == 200
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response["Cache-Control"]
    config = room_config(response)
    assert config["role"] == "patient"
    assert config["state"] == "lobby"
    assert config["call_cid"] == appointment.call_cid
    assert config["ws_path"] == "/ws/v1/rtc"
    assert config["time_zone"] == "America/Recife"
    assert config["starts_at"] == START.isoformat()
    # The calls token is the patient's, for this call only.
    token = claims(config["token"])
    assert token["user_id"] == appointment.patient.call_user_id
    assert token["call_cids"] == [appointment.call_cid]
    page = response.content.decode()
    assert '<time id="room-starts" datetime="2026-05-04T07:00:00-03:00">07:00</time>' in page
    assert "(your time: <bdi>America/Recife</bdi>)" in page  # the zone's name (no abbreviation)
    assert "Enter the waiting room" in page
    assert "Back to the appointment" not in page  # no portal links for patients


def test_before_the_lobby_opens_the_page_says_when(appointment):
    config = room_config(open_link(links.join_link_path(appointment)))
    assert config["state"] == "too_early"
    assert config["opens_at"] == (START - dt.timedelta(minutes=10)).isoformat()
    # No token before the join rule lets the patient in: the page asks again at `opens_at`.
    assert config["token"] is None


def test_a_live_call_without_its_clinician_is_a_waiting_room(appointment, doctor, frozen):
    frozen.move_to(START)
    appointment_call_action(appointment=appointment, staff=doctor, action="go_live")
    response = open_link(links.join_link_path(appointment))
    config = room_config(response)
    assert config["state"] == "lobby"
    assert config["token"]  # the patient may wait inside; the call socket decides the rest
    assert b"Enter the waiting room" in response.content


def test_a_live_call_with_its_clinician_is_joined_directly(appointment, doctor, frozen):
    frozen.move_to(START)
    appointment_call_action(appointment=appointment, staff=doctor, action="go_live")
    participant_enter(
        actor=staff_actor(doctor), type_name=CALL_TYPE, call_id=appointment.id, channel_name="c"
    )
    response = open_link(links.join_link_path(appointment))
    assert room_config(response)["state"] == "live"
    assert b"Join the call" in response.content


@pytest.mark.parametrize(
    ("finish", "title"),
    [("end", b"This appointment has ended"), ("cancel", b"This appointment was cancelled")],
)
def test_an_ended_or_cancelled_appointment_has_no_room(appointment, doctor, frozen, finish, title):
    frozen.move_to(START)
    if finish == "end":
        appointment_call_action(appointment=appointment, staff=doctor, action="go_live")
        appointment_call_action(appointment=appointment, staff=doctor, action="end")
    else:
        appointment_cancel(appointment=appointment, by=doctor)
    response = open_link(links.join_link_path(appointment))
    assert response.status_code == 200
    assert title in response.content
    assert room_config(response) is None  # no token, no call controls, no scripts
    assert b"room.js" not in response.content
    assert b"<button" not in response.content


def test_the_link_works_until_hours_after_the_end(appointment, frozen):
    path = links.join_link_path(appointment)
    frozen.move_to(appointment.ends_at + links.LINK_VALID_AFTER_END)
    assert open_link(path).status_code == 200
    frozen.move_to(appointment.ends_at + links.LINK_VALID_AFTER_END + dt.timedelta(seconds=1))
    response = open_link(path)
    assert response.status_code == 403
    assert b"This link has expired" in response.content
    assert room_config(response) is None


def test_the_link_follows_a_reschedule(appointment, doctor, frozen):
    path = links.join_link_path(appointment)
    later = START + dt.timedelta(days=2)
    appointment_update(appointment=appointment, booking=_moved(appointment, later))
    frozen.move_to(START + dt.timedelta(days=1))  # past the old end, before the new one
    assert room_config(open_link(path))["starts_at"] == later.isoformat()


def _moved(appointment: Appointment, starts_at: dt.datetime) -> Booking:
    booking = booking_of(appointment)
    booking.starts_at = starts_at
    return booking


def test_a_replaced_link_stops_working_and_the_new_one_works(appointment, doctor, frozen):
    frozen.move_to(START - dt.timedelta(minutes=10))  # the lobby is open
    old = links.join_link_path(appointment)
    old_token = room_config(open_link(old))["token"]
    waiting = participant_enter(
        actor=verify(api_key=settings.CALLS_API_KEY, token=old_token)[0],
        type_name="appointment",
        call_id=appointment.id,
        channel_name="old-link-tab",
    ).participant

    appointment_link_replace(appointment=appointment, by=doctor)

    appointment.refresh_from_db()
    new = links.join_link_path(appointment)
    assert new != old
    response = open_link(old)
    assert response.status_code == 403
    assert b"This link was replaced" in response.content
    assert room_config(response) is None
    # The old page's calls token is revoked, and whoever used it is out of the lobby.
    with pytest.raises(CallsError, match="revoked"):
        verify(api_key=settings.CALLS_API_KEY, token=old_token)
    waiting.refresh_from_db()
    assert (waiting.state, waiting.left_reason) == ("left", "kicked")
    # The new link opens the room (tokens minted from the next second on are good).
    frozen.move_to(START - dt.timedelta(minutes=10) + dt.timedelta(seconds=1))
    config = room_config(open_link(new))
    assert config["state"] == "lobby"
    actor, _exp = verify(api_key=settings.CALLS_API_KEY, token=config["token"])
    assert actor.user_id == appointment.patient.call_user_id


def test_a_finished_appointments_link_is_not_replaced(appointment, doctor, frozen):
    appointment_cancel(appointment=appointment, by=doctor)
    with pytest.raises(ValidationError):
        appointment_link_replace(appointment=appointment, by=doctor)
    appointment.refresh_from_db()
    assert appointment.link_version == 1


def test_staff_replace_the_link_from_the_appointment_page(
    appointment, doctor, outsider, client_for
):
    page = f"/c/clinic-a/appointments/{appointment.id}/"
    url = f"{page}link/replace/"
    assert 'data-confirm="Replace the patient' in client_for(doctor).get(page).content.decode()
    assert client_for(outsider).post(url).status_code == 404
    assert client_for(doctor).get(url).status_code == 405

    response = client_for(doctor).post(url, follow=True)

    assert response.redirect_chain[-1][0] == page
    assert "The patient has a new link" in response.content.decode()
    appointment.refresh_from_db()
    assert appointment.link_version == 2
    assert links.join_link_path(appointment) in response.content.decode()


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # forged
        lambda token: token.split(":")[0],  # no signature
        lambda token: "",  # missing
        lambda token: "garbage",
    ],
)
def test_a_bad_link_is_refused(appointment, mangle):
    token = links.join_link_token(appointment)
    url = reverse("join:patient", args=[appointment.id])
    response = Client().get(url, {"t": mangle(token)})
    assert response.status_code == 403
    assert b"This link does not work" in response.content
    assert room_config(response) is None
    assert b"Ana Lima" not in response.content


def test_a_link_opens_only_its_own_appointment(appointment, other_appointment):
    token = links.join_link_token(appointment)
    url = reverse("join:patient", args=[other_appointment.id])
    response = Client().get(url, {"t": token})
    assert response.status_code == 403
    assert room_config(response) is None
    assert b"Bruno Costa" not in response.content


def test_a_link_signed_elsewhere_is_refused(appointment):
    # Same payload, other salt (another kind of signed value of this project): not a link.
    from django.core import signing

    token = signing.Signer(salt="something-else").sign_object(
        {"a": appointment.pk, "p": appointment.patient_id}
    )
    assert Client().get(f"/join/{appointment.id}/", {"t": token}).status_code == 403


def test_a_link_to_a_deleted_appointment_is_404(appointment):
    path = links.join_link_path(appointment)
    Appointment.objects.filter(pk=appointment.pk).delete()
    response = open_link(path)
    assert response.status_code == 404
    assert b"No such appointment" in response.content


# --- the staff join page ---------------------------------------------------------------------


def join_url(appointment: Appointment, slug: str = "clinic-a") -> str:
    return reverse("portal:appointment_join", args=[slug, appointment.id])


@pytest.mark.parametrize(
    ("persona", "status", "state"),
    [
        ("doctor", 200, "backstage"),
        ("interpreter", 200, "lobby"),
        ("coordinator", 200, None),  # not in the call: told so, no token
        ("outsider", 404, None),
    ],
)
def test_staff_join_permission_matrix(
    request, appointment, frozen, persona, status, state, client_for
):
    frozen.move_to(START - dt.timedelta(minutes=10))
    staff = request.getfixturevalue(persona)
    response = client_for(staff).get(join_url(appointment))
    assert response.status_code == status
    config = room_config(response)
    if state is None:
        assert config is None
        if status == 200:
            assert b"You cannot join this call" in response.content
        return
    assert config["state"] == state
    assert config["role"] == "staff"
    assert config["time_zone"] == "Europe/Paris"
    token = claims(config["token"])
    assert token["user_id"] == staff.call_user_id
    assert token["call_cids"] == [appointment.call_cid]


def test_staff_join_needs_a_signed_in_staff_member(appointment, stranger_client):
    response = Client().get(join_url(appointment))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")
    assert stranger_client.get(join_url(appointment)).status_code == 403


def test_staff_join_under_another_clinics_slug_is_404(appointment, doctor, client_for):
    ClinicFactory(slug="clinic-b")
    assert client_for(doctor).get(join_url(appointment, "clinic-b")).status_code == 404


def test_the_host_enters_backstage_from_the_staff_join_ahead_time(
    appointment, doctor, frozen, client_for
):
    # Staff may join 15 minutes ahead (the appointment's default).
    frozen.move_to(START - dt.timedelta(minutes=15, seconds=1))
    config = room_config(client_for(doctor).get(join_url(appointment)))
    assert config["state"] == "too_early"
    assert config["then"] == "backstage"
    assert config["opens_at"] == (START - dt.timedelta(minutes=15)).isoformat()
    assert config["token"] is None
    # The server enforces it at every door, whatever the page does: the call socket's join
    # and the REST join refuse the host, with any token.
    host = Actor.of(doctor.call_user)
    with pytest.raises(NotAllowed, match="joinable from"):
        participant_enter(
            actor=host, type_name="appointment", call_id=appointment.id, channel_name="early"
        )
    with pytest.raises(NotAllowed, match="joinable from"):
        call_join(actor=host, type_name="appointment", call_id=appointment.id)
    frozen.move_to(START - dt.timedelta(minutes=15))
    response = client_for(doctor).get(join_url(appointment))
    assert room_config(response)["state"] == "backstage"
    assert room_config(response)["token"]
    entry = participant_enter(
        actor=host, type_name="appointment", call_id=appointment.id, channel_name="on-time"
    )
    assert entry.admitted  # backstage, before go-live
    assert b"Enter backstage" in response.content
    assert b"Back to the appointment" in response.content


def test_the_detail_page_offers_join_and_the_patients_link(appointment, doctor, frozen, client_for):
    client = client_for(doctor)
    detail = reverse("portal:appointment", args=["clinic-a", appointment.id])
    # Join only once the join rule lets the clinician in (their join-ahead time); before, the
    # page says when.
    frozen.move_to(appointment.starts_at - dt.timedelta(minutes=16))
    page = client.get(detail).content.decode()
    assert join_url(appointment) not in page
    opens = appointment.starts_at - dt.timedelta(minutes=appointment.staff_join_ahead_minutes)
    assert f"You can join from {timezone.localtime(opens, appointment.clinic.tz):%H:%M}" in page
    frozen.move_to(appointment.starts_at - dt.timedelta(minutes=10))
    page = client.get(detail).content.decode()
    assert f'href="{join_url(appointment)}"' in page
    assert f"http://testserver{links.join_link_path(appointment)}".replace("&", "&amp;") in page
    appointment_cancel(appointment=appointment, by=doctor)
    page = client.get(detail).content.decode()
    assert join_url(appointment) not in page
    assert "/join/" not in page


def test_the_patient_apis_join_url_opens_the_page(appointment, frozen):
    from appointments.api import auth

    api = Client(HTTP_AUTHORIZATION=f"Bearer {auth.access_token_for(appointment.patient)}")
    info = api.get(f"/api/patient/v1/appointments/{appointment.id}/join-info").json()
    assert info["join_url"] == f"http://testserver{links.join_link_path(appointment)}"
    assert room_config(Client().get(info["join_url"]))["call_cid"] == appointment.call_cid


# --- the room page's link check (room.js, after a removal: was the link replaced?) ----------


@pytest.mark.django_db
def test_the_link_check_says_ok_or_refused_without_minting(clinic, doctor, patient, client):
    appointment = make_appointment(clinic, host=doctor, patient=patient)
    path = links.join_link_path(appointment)
    answer = client.get(path, headers={"X-Link-Check": "1"})
    assert (answer.status_code, answer.json()) == (200, {"link": "ok"})
    assert b"token" not in answer.content
    appointment_link_replace(appointment=appointment, by=doctor)
    answer = client.get(path, headers={"X-Link-Check": "1"})
    assert (answer.status_code, answer.json()) == (200, {"link": "refused"})
    assert client.get(path).status_code == 403  # the page itself still refuses the old link
