"""Query counts of every staff portal page and action and of the join pages (STYLE: query counts
are part of the contract). One appointment here; the schedule with many is test_portal.py's.

Portal requests are `doctor`'s, signed in, with the clinic already remembered (no session
write). Each starts with the same five queries, SIGNED_IN: the session, the user, the
two-factor step (appointments.portal.security), their staff member, the URL's clinic among
theirs; an appointment's page or button adds two, APPOINTMENT: the
appointment (with its clinic and patient, among the staff member's clinics) and its members. A
full page ends with PAGE_FRAME: the staff member's clinics for the header. Services run in
`transaction.atomic()`; inside a test's transaction each atomic block is a SAVEPOINT and its
RELEASE, so each counts two (ATOMIC) here. What views or changes patient data, signs in or
sends a link writes an audit entry, AUDIT: the chain's lock, its last row, the new row."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.urls import reverse

from appointments import links
from appointments.models import Appointment, AppointmentMember, Clinic, Patient
from appointments.services.guests import appointment_guest_invite
from tests.factories import START, make_appointment

pytestmark = pytest.mark.django_db

SIGNED_IN = 5
# What any request with a staff session costs before its view: session, user, two-factor step.
STAFF_SESSION = 3
APPOINTMENT = 2
PAGE_FRAME = 1
ATOMIC = 2
AUDIT = 3
# A message planned (appointments.messaging.delivery.messages_plan): the guests with contact
# details, the delivery rows inserted, their ids read back.
MESSAGES = 3


@dataclass
class Visit:
    client: object
    clinic: Clinic
    appointment: Appointment
    patient: Patient
    guest: AppointmentMember


@pytest.fixture
def visit(frozen, clinic, doctor, patient, client_for) -> Visit:
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=START)
    guest = appointment_guest_invite(appointment=appointment, by=doctor, name="Maria Lima")
    frozen.move_to(START - dt.timedelta(minutes=10))  # the lobby is open, staff may enter
    client = client_for(doctor)
    client.get(reverse("portal:today", args=[clinic.slug]))  # the clinic is remembered
    return Visit(client, clinic, appointment, patient, guest)


def page(name: str, *extra: Callable[[Visit], object]) -> Callable[[Visit], str]:
    """The URL of portal page `name` in the visit's clinic (and `extra` arguments)."""
    return lambda v: reverse(f"portal:{name}", args=[v.clinic.slug, *(f(v) for f in extra)])


def appointment_id(v: Visit) -> str:
    return v.appointment.id


def booking_form(v: Visit) -> dict:
    starts = (START + dt.timedelta(hours=3)).astimezone(v.clinic.tz)
    return {
        "patient": v.patient.pk,
        "starts_at_0": f"{starts:%Y-%m-%d}",
        "starts_at_1": f"{starts:%H:%M}",
        "duration_minutes": 30,
        "host": v.appointment.members.get(kind="host").staff_id,
        "mode": "video",
        "backstage_enabled": "on",
        "staff_join_ahead_minutes": 15,
        "lobby_opens_minutes": 10,
        "ring_at_start": "on",
    }


def patient_form(v: Visit) -> dict:
    return {
        "name": "Zoe Silva",
        "email": "zoe@example.com",
        "time_zone": "Europe/Lisbon",
        "preferred_language": "pt",
        # the message choices as they are (turning app notifications off also updates the
        # devices: tests/appointments/api/test_push_preference.py)
        "notify_email": "on",
        "notify_sms": "on",
        "notify_push": "on",
    }


CASES = [
    # SIGNED_IN, whose clinic query is the list of the staff member's clinics here
    pytest.param("get", lambda v: reverse("portal:home"), None, SIGNED_IN, id="home"),
    # the waiting room (nobody waits: 1); the day's appointments with clinic and patient, their
    # members, their calls with their types (3); the status: the patients' participant rows (1);
    # the Join buttons (the join rule): the staff member's calls user and member rows (2)
    pytest.param("get", page("today"), None, SIGNED_IN + 1 + 6 + PAGE_FRAME, id="today"),
    pytest.param("get", page("today_rows"), None, SIGNED_IN + 1 + 6, id="today_rows"),
    # the waiting room (1), the requests (1); with people and requests: test_waiting.py
    pytest.param("get", page("waiting"), None, SIGNED_IN + 1 + 1 + PAGE_FRAME, id="waiting"),
    pytest.param("get", page("waiting_rows"), None, SIGNED_IN + 1 + 1, id="waiting_rows"),
    # the clinic's patients for the patient choice (1) and the staff choices, read once by each
    # of the form's three staff fields (3)
    pytest.param("get", page("appointment_new"), None, SIGNED_IN + 1 + 3 + PAGE_FRAME, id="new"),
    # the form: the patient (2), the staff choices (1); the checks: clinic memberships, the
    # clinicians' lock, a clash (3); the appointment and its members (2); the call: none yet,
    # its type with the members' users, one statement for the call, its members and its event,
    # its due actions, the scheduler's wake-up (5); two atomic blocks; the confirmation's
    # delivery rows: guests with contact details, the rows, their ids (MESSAGES)
    pytest.param(
        "post",
        page("appointment_new"),
        booking_form,
        SIGNED_IN + 3 + 3 + 2 + 5 + 2 * ATOMIC + AUDIT + MESSAGES,
        id="new-post",
    ),
    # the call; the staff member's calls user and member row (their capabilities: the buttons
    # and the join rule); the events; the participant rows (attendance, status, history) (5);
    # who waits in its lobby (1); the chat transcript (1); the messages' line (1)
    pytest.param(
        "get",
        page("appointment", appointment_id),
        None,
        SIGNED_IN + APPOINTMENT + 5 + 1 + 1 + 1 + PAGE_FRAME + AUDIT,
        id="detail",
    ),
    # the booking's members (1) and the staff choices, read three times (3)
    pytest.param(
        "get",
        page("appointment_edit", appointment_id),
        None,
        SIGNED_IN + APPOINTMENT + 1 + 3 + PAGE_FRAME,
        id="edit",
    ),
    # the form: the booking's members, the staff choices (2); the lock (1); the checks (3);
    # the old members (1); the appointment saved, its members deleted and inserted (3); the
    # call's members: lock, users, members, members with users (4); the call's update: lock,
    # update, due actions read, dropped, read, inserted, the scheduler's wake-up, its event, its
    # members (9); three atomic blocks; the guests' contact details kept (1); a move: the
    # queued messages dropped (1), the change's delivery rows (MESSAGES)
    pytest.param(
        "post",
        page("appointment_edit", appointment_id),
        booking_form,
        SIGNED_IN + APPOINTMENT + 2 + 1 + 3 + 1 + 3 + 4 + 9 + 3 * ATOMIC + AUDIT + 2 + MESSAGES,
        id="edit-post",
    ),
    # the status: the call, the patient's participant rows (2)
    pytest.param(
        "get",
        page("appointment_cancel", appointment_id),
        None,
        SIGNED_IN + APPOINTMENT + 2 + PAGE_FRAME,
        id="cancel",
    ),
    # the lock and update (2); the call's end: lock, participants, session, update, due
    # actions read and dropped, rings, due actions dropped, event (9); two atomic blocks; the
    # queued messages dropped (1), the cancellation's delivery rows (MESSAGES)
    pytest.param(
        "post",
        page("appointment_cancel", appointment_id),
        None,
        SIGNED_IN + APPOINTMENT + 2 + 9 + 2 * ATOMIC + AUDIT + 1 + MESSAGES,
        id="cancel-post",
    ),
    # the staff member's calls user (1), the call with its type (1), their membership (1)
    pytest.param(
        "get",
        page("appointment_join", appointment_id),
        None,
        SIGNED_IN + APPOINTMENT + 3,
        id="staff-join",
    ),
    # the lock, the guests so far (2); the guest's calls user: lock, upsert, event (3); the
    # member row (1); the call: lock, users, members, the new member, members with users,
    # update, event (7); three atomic blocks
    pytest.param(
        "post",
        page("appointment_guest_invite", appointment_id),
        lambda v: {"name": "Jo Lima"},
        SIGNED_IN + APPOINTMENT + 13 + 3 * ATOMIC + AUDIT,
        id="guest-invite",
    ),
    # the lock, the guest, its removal (3); the kick: call, users (2), participants, event
    # (5); the members: call, members, removal, update, event (5); the guest's tokens revoked:
    # user, update, event (3); four atomic blocks
    pytest.param(
        "post",
        page("appointment_guest_remove", appointment_id, lambda v: v.guest.pk),
        None,
        SIGNED_IN + APPOINTMENT + 16 + 4 * ATOMIC + AUDIT,
        id="guest-remove",
    ),
    # the audit entry and the email's delivery row (its insert, its id), in one atomic block;
    # the email goes after commit, from a worker
    pytest.param(
        "post",
        page("appointment_link_send", appointment_id),
        None,
        SIGNED_IN + APPOINTMENT + ATOMIC + AUDIT + 2,
        id="link-send",
    ),
    # the lock and the new version (2) (the old link's calls tokens die with its version);
    # sockets re-check: user, event (2); the kick: call, users (2), participants, event (5);
    # three atomic blocks
    pytest.param(
        "post",
        page("appointment_link_replace", appointment_id),
        None,
        SIGNED_IN + APPOINTMENT + 9 + 3 * ATOMIC + AUDIT,
        id="link-replace",
    ),
    # the staff member's calls user (1); the ring: call lock, members, rings so far, new rings,
    # event, due actions dropped and inserted, the scheduler's wake-up (8); two atomic blocks
    pytest.param(
        "post",
        page("appointment_call", appointment_id, lambda v: "ring"),
        None,
        SIGNED_IN + APPOINTMENT + 9 + 2 * ATOMIC,
        id="call-ring",
    ),
    # the page of patients (1) and their count (1)
    pytest.param("get", page("patients"), None, SIGNED_IN + 2 + PAGE_FRAME, id="patients"),
    pytest.param("get", page("patient_new"), None, SIGNED_IN + PAGE_FRAME, id="patient-new"),
    # the form's email check (1); the calls user: lock, upsert, event (3); the
    # service's email check (1); full_clean: the clinic, the calls user, the email (3), a
    # constraint check (1); the patient (1); three atomic blocks
    pytest.param(
        "post",
        page("patient_new"),
        patient_form,
        SIGNED_IN + 10 + 3 * ATOMIC + AUDIT,
        id="patient-new-post",
    ),
    # the matching patients (1)
    pytest.param(
        "get", lambda v: page("patient_search")(v) + "?q=ana", None, SIGNED_IN + 1, id="search"
    ),
    # the patient, among the staff member's clinics (1)
    pytest.param(
        "get",
        page("patient_edit", lambda v: v.patient.pk),
        None,
        SIGNED_IN + 1 + PAGE_FRAME + AUDIT,
        id="patient-edit",
    ),
    # the patient (1), the form's email check (1); the stored patient, locked (1); the
    # service's email check (1); full_clean:
    # the clinic, the calls user, the email (3), a constraint check (1); the update (1); the
    # calls user: lock, update, event (3); three atomic blocks
    pytest.param(
        "post",
        page("patient_edit", lambda v: v.patient.pk),
        patient_form,
        SIGNED_IN + 12 + 3 * ATOMIC + AUDIT,
        id="patient-edit-post",
    ),
]


@pytest.mark.parametrize(("method", "url", "data", "queries"), CASES)
def test_portal_query_counts(visit, method, url, data, queries, django_assert_num_queries):
    path, payload = url(visit), data(visit) if data else {}
    with django_assert_num_queries(queries):
        response = getattr(visit.client, method)(path, payload)
    assert response.status_code in (200, 302)
    assert "/login/" not in response.get("Location", "")


def test_login_and_logout_query_counts(doctor, client, django_assert_num_queries):
    with django_assert_num_queries(0):  # the sign-in form
        assert client.get("/login/").status_code == 200
    # the lockout check (1), the user (1), the new session: key check, insert (2), the
    # username's failures cleared (2), the last login (1), the session saved again (1); two
    # atomic blocks; the sign-in's audit entry
    with django_assert_num_queries(8 + 2 * ATOMIC + AUDIT):
        response = client.post("/login/", {"username": "drhouse", "password": "pw-test-1"})
    assert response.status_code == 302
    # the session (1), the user (1), axes' look-up of the sign-in's attempts (1), the session
    # read again and deleted (2)
    with django_assert_num_queries(5):
        assert client.post("/logout/").status_code == 302


def test_patient_join_page_query_count(visit, django_assert_num_queries):
    # the link: the appointment (with patient and clinic), its patient with their calls user,
    # its members (3); join info: the call with its type, the patient's membership (2); the
    # visiting client's staff session (STAFF_SESSION)
    with django_assert_num_queries(5 + STAFF_SESSION):
        response = visit.client.get(links.join_link_path(visit.appointment))
    assert response.status_code == 200


def test_guest_join_page_query_count(visit, django_assert_num_queries):
    # the link: the guest with their appointment, calls user, clinic and patient (1); join
    # info: the call with its type, the guest's membership (2); the visiting client's staff
    # session (STAFF_SESSION)
    with django_assert_num_queries(3 + STAFF_SESSION):
        response = visit.client.get(links.guest_link_path(visit.guest))
    assert response.status_code == 200
