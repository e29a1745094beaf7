"""Least privilege for the tokens patients, guests and staff get (issue 14, item 1), through
the real HTTP API with the tokens the app really hands out: the patient's join page (no
sign-in: whoever holds the link), the patient API's join info, a guest's link, the staff join
page and the portal's socket token.

The attacks that worked before: a patient's or guest's call token listed the clinic's users
(`GET /api/v2/users`) and created `default` calls with other patients and staff as members,
then rang them and sent them events. The rules: a call token reaches only its own call, with
its holder's capabilities there (`calls.capabilities`); users see only the users who share a
call with them unless they are staff of the team; within a team, creating and ringing calls
are staff acts.

Personas are tests/conftest.py's: `doctor` (host), `interpreter`, `coordinator`, `patient`,
`other_patient` of clinic-a; `outsider` of clinic-b."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from appointments import links
from appointments.joining import join_info
from appointments.links import session_grant
from appointments.services.guests import appointment_guest_invite
from appointments.services.patient_sessions import patient_session_start
from appointments.services.status import appointment_call_action
from calls.models import Call, CallEvent
from calls.realtime import browser_connection
from calls.tokens import mint_user_token
from tests.calls.api.conftest import Api, assert_error, assert_ok, call_path
from tests.factories import START, make_appointment

pytestmark = pytest.mark.django_db


@pytest.fixture
def appointment(frozen, clinic, doctor, interpreter, patient):
    appointment = make_appointment(
        clinic, host=doctor, patient=patient, starts_at=START, interpreter=interpreter
    )
    frozen.move_to(START - dt.timedelta(minutes=5))  # the lobby is open: tokens are minted
    return appointment


@pytest.fixture
def other_appointment(appointment, clinic, doctor, other_patient):
    return make_appointment(
        clinic, host=doctor, patient=other_patient, starts_at=START + dt.timedelta(minutes=30)
    )


@pytest.fixture
def api() -> Api:
    return Api(client=Client())


def room_token(response) -> str:
    match = re.search(
        rb'<script id="room-config" type="application/json">(.*?)</script>', response.content
    )
    assert match, response.content[:300]
    token = json.loads(match.group(1))["token"]
    assert token
    return token


@pytest.fixture
def link_token(appointment) -> str:
    """The token in the patient's join page: anyone holding the link has it, no sign-in."""
    return room_token(Client().get(links.join_link_path(appointment)))


@pytest.fixture
def guest_token(appointment, doctor) -> str:
    member = appointment_guest_invite(appointment=appointment, by=doctor, name="Maria")
    return room_token(Client().get(links.guest_link_path(member)))


@pytest.fixture
def staff_call_token(appointment, doctor, client_for) -> str:
    """The token the staff join page gives the host (scoped to the call)."""
    page = client_for(doctor).get(
        reverse("portal:appointment_join", args=["clinic-a", appointment.id])
    )
    return room_token(page)


def users_query(api: Api, token: str, filter_conditions: dict | None = None):
    payload = {"filter_conditions": filter_conditions or {}, "limit": 100}
    return api.get("/api/v2/users", params={"payload": json.dumps(payload)}, token=token)


def user_ids(response) -> set[str]:
    return {u["id"] for u in assert_ok(response)["users"]}


# --- a patient's or guest's call token --------------------------------------------------------


@pytest.fixture(params=["link", "join_info", "guest"])
def scoped_token(request, appointment, patient) -> str:
    """Every call token a patient or guest gets: from the join page (no sign-in), from the
    patient API's join info, from a guest link."""
    if request.param == "link":
        return request.getfixturevalue("link_token")
    if request.param == "guest":
        return request.getfixturevalue("guest_token")
    session = patient_session_start(patient=patient, lifetime=dt.timedelta(hours=1))
    info = join_info(
        patient=patient,
        appointment=appointment,
        now=START - dt.timedelta(minutes=5),
        grant=session_grant(session),  # as the patient API's view does
    )
    assert info["token"]
    return info["token"]


def test_a_call_token_cannot_list_the_clinics_users(api, scoped_token, other_patient):
    assert_error(users_query(api, scoped_token), 403, 17)
    assert_error(users_query(api, scoped_token, {"teams": {"$in": ["clinic-a"]}}), 403, 17)


def test_a_call_token_cannot_create_calls(api, scoped_token, doctor, other_patient):
    body = {
        "data": {
            "team": "clinic-a",
            "members": [{"user_id": other_patient.call_user_id}, {"user_id": doctor.call_user_id}],
        },
        "ring": True,
    }
    assert_error(api.post(call_path("default", "spam-1", ""), body, token=scoped_token), 403, 17)
    assert_error(
        api.post(
            call_path("default", "spam-2", "join"), {"create": True, **body}, token=scoped_token
        ),
        403,
        17,
    )
    assert not Call.objects.filter(call_id__startswith="spam-").exists()
    assert not CallEvent.objects.filter(type="call.ring").exists()


def test_a_call_token_cannot_reach_another_call(api, scoped_token, other_appointment):
    other = other_appointment.id
    for method, suffix, body in (
        ("get", "", None),
        ("post", "ring", {}),
        ("post", "event", {"custom": {"spam": True}}),
        ("post", "accept", {}),
        ("patch", "", {"custom": {"x": 1}}),
    ):
        response = api.request(
            method.upper(), call_path("appointment", other, suffix), body, token=scoped_token
        )
        assert_error(response, 403, 17)
    members = api.post(
        "/api/v2/video/call/members", {"type": "appointment", "id": other}, token=scoped_token
    )
    assert_error(members, 403, 17)
    # A call that does not exist answers the same: a call token learns nothing of other ids.
    assert_error(api.get(call_path("default", "nope"), token=scoped_token), 403, 17)
    assert not CallEvent.objects.filter(type__in=["custom", "call.ring"]).exists()


def test_a_call_token_reads_and_messages_its_own_call_only(
    api, scoped_token, appointment, other_appointment
):
    own = assert_ok(api.get(call_path("appointment", appointment.id), token=scoped_token))
    assert "read-call" in own["own_capabilities"]
    sent = api.post(
        call_path("appointment", appointment.id, "event"), {"custom": {"hi": 1}}, token=scoped_token
    )
    assert_ok(sent, 201)
    # QueryCalls lists only the token's own call, whatever the filter asks for.
    listed = assert_ok(api.post("/api/v2/video/calls", {}, token=scoped_token), 201)
    assert [c["call"]["cid"] for c in listed["calls"]] == [appointment.call_cid]


def test_patients_and_guests_cannot_ring_even_their_own_call(api, scoped_token, appointment):
    path = call_path("appointment", appointment.id, "ring")
    assert_error(api.post(path, {}, token=scoped_token), 403, 17)
    notify = api.get(
        call_path("appointment", appointment.id), params={"notify": "true"}, token=scoped_token
    )
    assert_error(notify, 403, 17)
    assert not CallEvent.objects.filter(type__in=["call.ring", "call.notification"]).exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v2/video/calltypes"),
        ("GET", "/api/v2/app"),
        ("POST", "/api/v2/users"),
    ],
)
def test_a_call_token_gets_nothing_of_the_app(api, scoped_token, method, path):
    body = {"users": {"x": {"id": "x"}}} if method == "POST" else None
    assert_error(api.request(method, path, body, token=scoped_token), 403, 17)


# --- staff --------------------------------------------------------------------------------------


def test_a_staff_call_token_is_scoped_to_its_call_too(
    api, staff_call_token, appointment, other_appointment
):
    assert_ok(api.get(call_path("appointment", appointment.id), token=staff_call_token))
    assert_error(
        api.get(call_path("appointment", other_appointment.id), token=staff_call_token), 403, 17
    )
    assert_error(users_query(api, staff_call_token), 403, 17)
    # The host may ring their own call with it (the holder's capabilities there).
    rung = api.post(call_path("appointment", appointment.id, "ring"), {}, token=staff_call_token)
    assert assert_ok(rung, 201)["members_ids"]


def test_staff_see_their_clinics_users_and_ring(
    api, appointment, doctor, coordinator, patient, other_patient, outsider
):
    token = browser_connection(user_id=coordinator.call_user_id)["token"]  # the portal's
    seen = user_ids(users_query(api, token))
    assert {patient.call_user_id, other_patient.call_user_id, doctor.call_user_id} <= seen
    assert outsider.call_user_id not in seen
    appointment_call_action(appointment=appointment, staff=doctor, action="ring")
    assert CallEvent.objects.filter(type="call.ring").count() == 1


def test_a_patients_user_token_sees_only_the_people_of_their_calls(
    api, appointment, other_appointment, doctor, interpreter, coordinator, patient, other_patient
):
    token = mint_user_token(patient.call_user_id)
    seen = user_ids(users_query(api, token))
    assert seen == {patient.call_user_id, doctor.call_user_id, interpreter.call_user_id}
    # Nor can a plain user token of a patient create or ring.
    body = {"data": {"team": "clinic-a", "members": [{"user_id": other_patient.call_user_id}]}}
    assert_error(api.post(call_path("default", "spam-3"), body, token=token), 403, 17)
    ring = api.post(call_path("appointment", appointment.id, "ring"), {}, token=token)
    assert_error(ring, 403, 17)


def test_the_api_key_is_still_required(api, link_token):
    response = api.get(
        "/api/v2/users",
        params={"payload": json.dumps({"filter_conditions": {}})},
        token=link_token,
        api_key="wrong",
    )
    assert_error(response, 401, 2)
    assert settings.CALLS_API_KEY != "wrong"
