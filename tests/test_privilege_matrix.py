"""The least privilege matrix: persona x surface x action -> expected outcome, in one table
(`MATRIX`), walked by one parametrised test.

Each persona acts with the credentials the app really gives them:

| persona        | calls API and sockets                        | patient API     | portal        |
|----------------|----------------------------------------------|-----------------|---------------|
| `patient`      | the call token of their join info (scoped)   | their API token | not signed in |
| `guest`        | the call token of their guest link page      | that call token | not signed in |
| `link_holder`  | the call token of the patient's join page    | that call token | not signed in |
| `coordinator`  | the portal's user token (staff of clinic-a)  | none            | signed in     |
| `clinician`    | the staff join page's call token (the host)  | none            | signed in     |
| `clinic_admin` | the portal's user token (staff of clinic-a)  | none            | signed in     |
| `other_clinic` | the portal's user token (staff of clinic-b)  | none            | signed in     |
| `superuser`    | a server token                               | none            | Django admin  |

On the FHIR API (`fhir`), each persona above sends what it holds (a patient API token, a call
token, a portal session, a server token) and none of it is a FHIR token; `ehr` is clinic-a's
EHR client with every scope, `ehr_narrow` the same clinic's client with `system/Patient.r`.

On the join pages' endpoints (`join`) a persona sends the join link it has: the patient's
(`link_holder`) or the guest's (`guest`); the others have none (staff send their session).

The world: clinic-a with the appointment `own` (the patient, the clinician as host, a guest),
`other` (another patient of clinic-a, same clinician), and clinic-b's `far` appointment.
"Own" means the persona's call / appointment (for staff: clinic-a's `own` appointment).

Outcomes: an HTTP status; for QueryCalls which calls are listed (`own`, `far`, `none`, `all`); for
sockets the answer to the subscription (`subscribed`, `error 17`).

To add a row: append `(persona, surface, action, expected)`; a new action is one function in
`ACTIONS`. A new persona is one entry in `World.calls_token` / `World.portal_client` /
`World.patient_credentials`.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers, get_channel_layer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.urls import reverse
from websockets.sync.client import connect

from appointments import links
from appointments.api.auth import access_token_for
from appointments.joining import join_info
from appointments.links import session_grant
from appointments.models import CALL_TYPE
from appointments.services.guests import appointment_guest_invite
from appointments.services.patient_sessions import patient_session_start
from calls.capabilities import Actor
from calls.models import Call, CallChatMessage
from calls.realtime import browser_connection
from calls.services.chat import chat_message_send
from calls.services.devices import device_register
from calls.services.sessions import participant_enter
from calls.tokens import mint_server_token
from tests.calls.push.standins import b64url, vapid_keypair
from tests.calls.realtime_server import running_server
from tests.factories import login_verified, make_appointment, make_patient, make_staff

# --- the table ---------------------------------------------------------------------------------

MATRIX: list[tuple[str, str, str, Any]] = [
    # --- patient: patient API token; call token from their join info
    ("patient", "calls", "users", 403),
    ("patient", "calls", "create_call", 403),
    ("patient", "calls", "get_own_call", 200),
    ("patient", "calls", "get_other_call", 403),
    ("patient", "calls", "ring_own_call", 403),
    ("patient", "calls", "event_own_call", 201),
    ("patient", "calls", "event_other_call", 403),
    ("patient", "calls", "query_calls", "own"),
    ("patient", "calls", "call_types", 403),
    ("patient", "calls", "record_other_call", 403),  # unsupported, but not theirs first
    ("patient", "calls", "devices", 404),  # no such endpoint here: the patient API has them
    ("patient", "join", "push_own", 403),  # the app's token is not a join link
    ("patient", "patient", "me", 200),
    ("patient", "patient", "me_after_sign_out", 401),
    ("patient", "patient", "appointments", 200),
    ("patient", "patient", "own_appointment", 200),
    ("patient", "patient", "other_appointment", 404),
    ("patient", "patient", "other_device", 404),
    ("patient", "portal", "today", 302),
    ("patient", "portal", "own_appointment", 302),
    ("patient", "portal", "admin", 302),
    ("patient", "portal", "audit_log", 302),
    ("patient", "portal", "waiting", 302),
    ("patient", "portal", "lobby_message", "login"),
    ("patient", "portal", "admit", "login"),
    ("patient", "portal", "chat_transcript", "302"),
    ("patient", "socket", "own_call", "subscribed"),
    ("patient", "socket", "other_call", "error 17"),
    ("patient", "socket", "team", "error 17"),
    ("patient", "socket", "unknown_call", "error 17"),  # not 16: nothing learnt of other ids
    # --- guest: the call token of their guest link page
    ("guest", "calls", "users", 403),
    ("guest", "calls", "create_call", 403),
    ("guest", "calls", "get_own_call", 200),
    ("guest", "calls", "get_other_call", 403),
    ("guest", "calls", "ring_own_call", 403),
    ("guest", "calls", "event_own_call", 201),
    ("guest", "calls", "query_calls", "own"),
    ("guest", "patient", "me", 401),
    ("guest", "patient", "me_after_sign_out", 401),
    ("guest", "patient", "own_appointment", 401),
    ("guest", "portal", "today", 302),
    ("guest", "join", "push_own", 201),  # for the guest, never the patient
    ("guest", "join", "push_other", 403),
    ("guest", "portal", "chat_transcript", "302"),
    ("guest", "socket", "own_call", "subscribed"),
    ("guest", "socket", "other_call", "error 17"),
    ("guest", "socket", "team", "error 17"),
    # --- link holder: whoever opens the patient's join link, no sign-in
    ("link_holder", "calls", "users", 403),
    ("link_holder", "calls", "create_call", 403),
    ("link_holder", "calls", "get_own_call", 200),
    ("link_holder", "calls", "get_other_call", 403),
    ("link_holder", "calls", "ring_own_call", 403),
    ("link_holder", "calls", "event_own_call", 201),
    ("link_holder", "calls", "query_calls", "own"),
    ("link_holder", "calls", "app", 403),
    ("link_holder", "patient", "me", 401),
    ("link_holder", "patient", "appointments", 401),
    ("link_holder", "portal", "today", 302),
    ("link_holder", "portal", "chat_transcript", "302"),
    ("link_holder", "portal", "patient_page", 302),
    ("link_holder", "join", "push_own", 201),  # "Notify me on this device"
    ("link_holder", "join", "push_other", 403),
    ("link_holder", "join", "unsubscribe_other_patients", 404),
    ("link_holder", "socket", "own_call", "subscribed"),
    ("link_holder", "socket", "other_call", "error 17"),
    ("link_holder", "socket", "team", "error 17"),
    # --- coordinator: the portal (session) and its socket token; in no call
    ("coordinator", "calls", "users", 200),
    ("coordinator", "calls", "get_own_call", 403),  # not a member of the appointment
    ("coordinator", "calls", "ring_own_call", 403),
    ("coordinator", "calls", "query_calls", "none"),
    ("coordinator", "patient", "me", 401),
    ("coordinator", "portal", "today", 200),
    ("coordinator", "portal", "own_appointment", 200),
    ("coordinator", "portal", "far_appointment", 404),
    ("coordinator", "portal", "patient_page", 200),
    ("coordinator", "portal", "admin", 302),
    ("coordinator", "portal", "reason", "no reason"),  # schedules; not clinical
    ("coordinator", "portal", "chat_transcript", "no transcript"),  # patient data, clinical
    ("coordinator", "portal", "audit_log", 403),
    ("coordinator", "portal", "patient_export", 403),
    ("coordinator", "join", "push_own", 403),  # a portal session is no join link
    ("coordinator", "portal", "waiting", 200),
    ("coordinator", "portal", "lobby_message", "stored"),
    ("coordinator", "portal", "admit", "done"),
    ("coordinator", "socket", "own_call", "error 17"),
    ("coordinator", "socket", "team", "subscribed"),
    # --- clinician: the host; the staff join page's call token
    ("clinician", "calls", "users", 403),  # a call token, even a host's
    ("clinician", "join", "push_own", 403),
    ("clinician", "calls", "create_call", 403),
    ("clinician", "calls", "get_own_call", 200),
    ("clinician", "calls", "get_other_call", 403),  # their other appointment: another call
    ("clinician", "calls", "ring_own_call", 201),
    ("clinician", "calls", "event_own_call", 201),
    ("clinician", "calls", "query_calls", "own"),
    ("clinician", "patient", "me", 401),
    ("clinician", "portal", "today", 200),
    ("clinician", "portal", "own_appointment", 200),
    ("clinician", "portal", "far_appointment", 404),
    ("clinician", "portal", "patient_page", 200),
    ("clinician", "portal", "reason", "reason"),
    ("clinician", "portal", "chat_transcript", "transcript"),
    ("clinician", "portal", "audit_log", 403),
    ("clinician", "portal", "patient_export", 403),
    ("clinician", "portal", "waiting", 200),
    ("clinician", "portal", "lobby_message", "stored"),
    ("clinician", "socket", "own_call", "subscribed"),
    ("clinician", "socket", "other_call", "error 17"),
    ("clinician", "socket", "team", "error 17"),
    # --- clinic admin: the portal and its socket token
    ("clinic_admin", "calls", "users", 200),
    ("clinic_admin", "calls", "create_call", 201),  # staff of the team, `default` grants it
    ("clinic_admin", "calls", "get_own_call", 403),  # not a member of the appointment
    ("clinic_admin", "calls", "query_calls", "none"),
    ("clinic_admin", "calls", "call_types", 403),
    ("clinic_admin", "patient", "me", 401),
    ("clinic_admin", "portal", "today", 200),
    ("clinic_admin", "portal", "own_appointment", 200),
    ("clinic_admin", "portal", "far_appointment", 404),
    ("clinic_admin", "portal", "patient_page", 200),
    ("clinic_admin", "portal", "reason", "reason"),
    ("clinic_admin", "portal", "chat_transcript", "transcript"),
    ("clinic_admin", "portal", "audit_log", 200),
    ("clinic_admin", "portal", "patient_export", 200),
    ("clinic_admin", "portal", "waiting", 200),
    ("clinic_admin", "socket", "team", "subscribed"),
    # --- other clinic: clinic-b's clinician
    ("other_clinic", "calls", "users", 200),  # clinic-b's own users only (test below)
    ("other_clinic", "calls", "create_call", 403),  # in clinic-a
    ("other_clinic", "calls", "get_own_call", 403),
    ("other_clinic", "calls", "ring_own_call", 403),
    ("other_clinic", "calls", "event_own_call", 403),
    ("other_clinic", "calls", "query_calls", "far"),  # their own clinic's call only
    ("other_clinic", "patient", "me", 401),
    ("other_clinic", "portal", "today", 404),
    ("other_clinic", "portal", "own_appointment", 404),
    ("other_clinic", "portal", "far_appointment", 200),
    ("other_clinic", "portal", "patient_page", 404),
    ("other_clinic", "portal", "reason", "404"),
    ("other_clinic", "portal", "chat_transcript", "404"),
    ("other_clinic", "portal", "audit_log", 404),
    ("other_clinic", "portal", "patient_export", 404),
    ("other_clinic", "join", "push_own", 403),
    ("other_clinic", "portal", "waiting", 404),
    ("other_clinic", "portal", "lobby_message", "404"),
    ("other_clinic", "portal", "admit", "404"),
    ("other_clinic", "socket", "own_call", "error 17"),
    ("other_clinic", "socket", "team", "error 17"),
    # --- superuser: Django admin session; a server token
    ("superuser", "calls", "users", 200),
    ("superuser", "calls", "create_call", 201),
    ("superuser", "calls", "get_own_call", 200),
    ("superuser", "calls", "ring_own_call", 201),
    ("superuser", "calls", "query_calls", "all"),
    ("superuser", "calls", "call_types", 200),
    ("superuser", "calls", "record_other_call", 400),  # recording is not supported
    ("superuser", "patient", "me", 401),
    ("superuser", "portal", "today", 403),  # not staff of a clinic
    ("superuser", "portal", "admin", 200),
    ("superuser", "portal", "audit_log", 403),
    ("superuser", "join", "push_own", 403),
    ("superuser", "portal", "waiting", 403),
    ("superuser", "portal", "lobby_message", "403"),
    ("superuser", "portal", "chat_transcript", "403"),
    ("superuser", "socket", "own_call", "subscribed"),
    ("superuser", "socket", "team", "subscribed"),
    ("superuser", "socket", "unknown_call", "error 16"),
    # --- the FHIR API: EHR clients (SMART Backend Services); nobody else has a FHIR token
    ("ehr", "fhir", "own_appointment", 200),
    ("ehr", "fhir", "far_appointment", 404),  # another clinic's: not found, not forbidden
    ("ehr", "fhir", "search_appointments", "own+other"),  # their clinic's, not clinic-b's
    ("ehr", "fhir", "own_patient", 200),
    ("ehr", "fhir", "far_patient", 404),
    ("ehr", "fhir", "far_practitioner", 404),
    ("ehr", "fhir", "book", 201),
    ("ehr_narrow", "fhir", "own_patient", 200),
    ("ehr_narrow", "fhir", "own_appointment", 403),
    ("ehr_narrow", "fhir", "search_appointments", 403),
    ("ehr_narrow", "fhir", "book", 403),
    ("patient", "fhir", "own_appointment", 401),
    ("patient", "fhir", "own_patient", 401),
    ("guest", "fhir", "own_appointment", 401),
    ("link_holder", "fhir", "own_appointment", 401),
    ("coordinator", "fhir", "own_appointment", 401),
    ("clinician", "fhir", "book", 401),
    ("clinic_admin", "fhir", "own_patient", 401),
    ("other_clinic", "fhir", "far_appointment", 401),
    ("superuser", "fhir", "search_appointments", 401),
    ("superuser", "fhir", "book", 401),
]


# --- the world ---------------------------------------------------------------------------------


@dataclass
class World:
    """Everyone and everything the rows touch; credentials are made on first use."""

    clinic: Any
    far_clinic: Any
    clinician: Any
    coordinator: Any
    clinic_admin: Any
    other_clinic: Any
    patient: Any
    other_patient: Any
    own: Any
    other: Any
    far: Any
    guest: Any
    superuser: Any
    other_device: Any = None  # the other patient's phone

    # -- credentials

    def calls_token(self, persona: str) -> str:
        return {
            "patient": lambda: self.patient_join_info_token,
            "guest": lambda: room_token(Client().get(links.guest_link_path(self.guest))),
            "link_holder": lambda: room_token(Client().get(links.join_link_path(self.own))),
            "clinician": lambda: room_token(
                self.portal_client("clinician").get(
                    reverse("portal:appointment_join", args=["clinic-a", self.own.id])
                )
            ),
            "coordinator": lambda: self.portal_token(self.coordinator),
            "clinic_admin": lambda: self.portal_token(self.clinic_admin),
            "other_clinic": lambda: self.portal_token(self.other_clinic),
            "superuser": mint_server_token,
        }[persona]()

    @cached_property
    def patient_join_info_token(self) -> str:
        session = patient_session_start(patient=self.patient, lifetime=timedelta(hours=1))
        token = join_info(
            patient=self.patient,
            appointment=self.own,
            now=datetime.now(tz=UTC),
            grant=session_grant(session),  # as the patient API's view does
        )
        assert token["token"], token["state"]
        return token["token"]

    @staticmethod
    def portal_token(staff: Any) -> str:
        return browser_connection(user_id=staff.call_user_id)["token"]

    def portal_client(self, persona: str) -> Client:
        client = Client()
        user = {
            "coordinator": lambda: self.coordinator.user,
            "clinician": lambda: self.clinician.user,
            "clinic_admin": lambda: self.clinic_admin.user,
            "other_clinic": lambda: self.other_clinic.user,
            "superuser": lambda: self.superuser,
        }.get(persona)
        if user is not None:
            login_verified(client, user())
        return client

    def patient_credentials(self, persona: str) -> str | None:
        """The Authorization header a persona can send the patient API."""
        if persona == "patient":
            return f"Bearer {access_token_for(self.patient)}"
        if persona in ("guest", "link_holder"):
            return f"Bearer {self.calls_token(persona)}"
        return None

    def fhir_request(self, persona: str, method: str, path: str, body: Any = None):
        """A FHIR request with what the persona holds: an EHR's access token, else the
        patient API's or calls API's token, or a portal session."""
        client = Client()
        header = None
        if persona in ("ehr", "ehr_narrow"):
            from tests.fhir.ehr import register, token_for

            scopes = None if persona == "ehr" else "system/Patient.r"
            ehr = register(self.clinic, **({"scopes": scopes} if scopes else {}))
            header = f"Bearer {token_for(ehr)}"
        elif persona in ("patient", "guest", "link_holder"):
            header = self.patient_credentials(persona)
        elif persona == "superuser":
            header = f"Bearer {mint_server_token()}"
        else:
            client = self.portal_client(persona)
        return client.generic(
            method,
            f"/fhir/r4/{path}",
            data="" if body is None else json.dumps(body),
            content_type="application/fhir+json",
            headers={"Authorization": header} if header else {},
        )


def room_token(page) -> str:
    match = re.search(
        rb'<script id="room-config" type="application/json">(.*?)</script>', page.content
    )
    assert match, page.status_code
    token = json.loads(match.group(1))["token"]
    assert token
    return token


@pytest.fixture
def world(clinic, other_clinic, patient, other_patient) -> World:
    soon = datetime.now(tz=UTC) + timedelta(minutes=5)  # the lobby is open, hosts are let in
    clinician = make_staff(clinic, "drhouse", display_name="Dr House")
    outsider = make_staff(other_clinic, "drbee", display_name="Dr Bee")
    own = make_appointment(clinic, host=clinician, patient=patient, starts_at=soon, reason=REASON)
    superuser = get_user_model().objects.create_superuser("root", "", "pw-test-1")
    world = World(
        clinic=clinic,
        far_clinic=other_clinic,
        clinician=clinician,
        coordinator=make_staff(clinic, "desk", role="coordinator"),
        clinic_admin=make_staff(clinic, "boss", role="admin"),
        other_clinic=outsider,
        patient=patient,
        other_patient=other_patient,
        own=own,
        other=make_appointment(
            clinic, host=clinician, patient=other_patient, starts_at=soon + timedelta(hours=1)
        ),
        far=make_appointment(
            other_clinic,
            host=outsider,
            patient=make_patient(other_clinic, name="Far Away"),
            starts_at=soon,
        ),
        guest=appointment_guest_invite(appointment=own, by=clinician, name="Maria"),
        superuser=superuser,
    )
    world.other_device = device_register(
        user_id=other_patient.call_user_id, kind="fcm", token="other-patients-phone"
    )
    return world


# --- the actions -------------------------------------------------------------------------------


def _calls(world: World, persona: str, method: str, path: str, body: Any = None, **params: Any):
    query = urlencode({"api_key": settings.CALLS_API_KEY, **params})
    return Client().generic(
        method,
        f"{path}?{query}",
        data="" if body is None else json.dumps(body),
        content_type="application/json",
        headers={"Authorization": world.calls_token(persona), "stream-auth-type": "jwt"},
    )


def _call(appointment: Any, suffix: str = "") -> str:
    path = f"/api/v2/video/call/appointment/{appointment.id}"
    return f"{path}/{suffix}" if suffix else path


def _event(world: World, persona: str, appointment: Any) -> int:
    body: dict[str, Any] = {"custom": {"kind": "running_late"}}
    if persona == "superuser":
        body["user_id"] = world.clinician.call_user_id  # server-side events name a sender
    return _calls(world, persona, "POST", _call(appointment, "event"), body).status_code


def _query_calls(world: World, persona: str) -> str:
    response = _calls(world, persona, "POST", "/api/v2/video/calls", {})
    assert response.status_code == 201, response.content[:300]
    listed = {c["call"]["id"] for c in response.json()["calls"]}
    everything = {world.own.id, world.other.id, world.far.id}
    return {
        frozenset(): "none",
        frozenset({world.own.id}): "own",
        frozenset({world.far.id}): "far",
        frozenset(everything): "all",
    }.get(frozenset(listed), str(sorted(listed)))


def _create_call(world: World, persona: str) -> int:
    members = [{"user_id": world.other_patient.call_user_id}]
    data: dict[str, Any] = {"team": "clinic-a", "members": members}
    if persona == "superuser":
        data["created_by_id"] = world.clinician.call_user_id
    return _calls(
        world, persona, "POST", "/api/v2/video/call/default/new-1", {"data": data}
    ).status_code


def _patient_api(world: World, persona: str, method: str, path: str) -> int:
    header = world.patient_credentials(persona)
    headers = {"Authorization": header} if header else {}
    return Client().generic(method, f"/api/patient/v1/{path}", headers=headers).status_code


def _me_after_sign_out(world: World, persona: str) -> int:
    """The patient API's `me` with the same credentials, once they signed out."""
    header = world.patient_credentials(persona)
    headers = {"Authorization": header} if header else {}
    Client().post("/api/patient/v1/auth/sign-out", headers=headers)
    return Client().get("/api/patient/v1/me", headers=headers).status_code


def _portal(world: World, persona: str, path: str) -> int:
    return world.portal_client(persona).get(path).status_code


def _subscribe(world: World, persona: str, message: dict[str, Any]) -> str:
    channel_layers.backends.clear()
    layer = get_channel_layer()
    if hasattr(layer, "flush"):
        async_to_sync(layer.flush)()
    channel_layers.backends.clear()
    token = world.calls_token(persona)
    with running_server() as base:
        query = urlencode({"api_key": settings.CALLS_API_KEY})
        with connect(f"ws://{base}/ws/v1/events?{query}", open_timeout=5) as conn:
            conn.send(json.dumps({"type": "auth", "token": token}))
            hello = json.loads(conn.recv(timeout=5))
            assert hello["type"] == "connected", hello
            conn.send(json.dumps(message))
            answer = json.loads(conn.recv(timeout=5))
    channel_layers.backends.clear()
    return answer["type"] if answer["type"] != "error" else f"error {answer['code']}"


VAPID_KEY = vapid_keypair()[0]
PUSH_ENDPOINT = "https://push.example.org/send/"


def _browser_keys() -> dict[str, str]:
    public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {"p256dh": b64url(public), "auth": b64url(secrets.token_bytes(16))}


def _join_push(
    world: World, persona: str, appointment: Any, *, unsubscribe: str | None = None
) -> int:
    """A browser's Web Push subscription sent (or, with `unsubscribe`, that endpoint removed)
    with the persona's join link; staff send their portal session and no link."""
    link = {
        "link_holder": lambda: links.join_link_path(world.own),
        "guest": lambda: links.guest_link_path(world.guest),
    }.get(persona)
    token = parse_qs(urlsplit(link()).query)["t"][0] if link else ""
    name = "join:guest_push" if persona == "guest" else "join:patient_push"
    body: dict[str, Any] = {"t": token}
    if unsubscribe:
        body["endpoint"] = unsubscribe
    else:
        endpoint = PUSH_ENDPOINT + secrets.token_urlsafe(8)
        body["subscription"] = {"endpoint": endpoint, "keys": _browser_keys()}
    with override_settings(
        WEBPUSH_VAPID_PRIVATE_KEY=VAPID_KEY, WEBPUSH_VAPID_SUBJECT="mailto:ops@clinic.example"
    ):
        return (
            world.portal_client(persona)
            .generic(
                "DELETE" if unsubscribe else "POST",
                reverse(name, args=[appointment.id]),
                json.dumps(body),
                content_type="application/json",
            )
            .status_code
        )


def _unsubscribe_other_patients(world: World, persona: str) -> int:
    theirs = device_register(
        user_id=world.other_patient.call_user_id,
        kind="webpush",
        token=PUSH_ENDPOINT + "other-patients-browser",
        keys=_browser_keys(),
    )
    return _join_push(world, persona, world.own, unsubscribe=theirs.token)


def _portal_post(world: World, persona: str, name: str, data: dict[str, str]) -> str:
    """A portal button on the own appointment: `login` (sent to sign in), `done` (back to
    the page, the service asked), or the refusal's status."""
    response = world.portal_client(persona).post(
        reverse(f"portal:{name}", args=["clinic-a", world.own.id]), data
    )
    if response.status_code != 302:
        return str(response.status_code)
    return "login" if "/login/" in response["Location"] else "done"


def _lobby_message(world: World, persona: str) -> str:
    """The waiting room's message on the own appointment: `stored` when it changed."""
    outcome = _portal_post(world, persona, "appointment_lobby_message", {"text": persona})
    stored = Call.objects.get(call_id=world.own.id).lobby_message == persona
    return "stored" if outcome == "done" and stored else outcome


REASON = "Persistent cough since March"  # the clinical reason: who reads the page sees it?


def _sees_reason(world: World, persona: str) -> str:
    response = world.portal_client(persona).get(
        reverse("portal:appointment", args=["clinic-a", world.own.id])
    )
    if response.status_code != 200:
        return str(response.status_code)
    return "reason" if REASON in response.content.decode() else "no reason"


CHAT_LINE = "My inhaler ran out yesterday"  # said in the own call's chat


def _sees_transcript(world: World, persona: str) -> str:
    """The own call's chat (a line the clinician wrote in the call) on the appointment page."""
    if not CallChatMessage.objects.filter(text=CHAT_LINE).exists():
        entry = participant_enter(
            actor=Actor.of(world.clinician.call_user),
            type_name=CALL_TYPE,
            call_id=world.own.id,
            channel_name="test-channel",
        )
        assert entry.admitted  # the host, backstage
        chat_message_send(user_session_id=entry.participant.user_session_id, text=CHAT_LINE)
    response = world.portal_client(persona).get(
        reverse("portal:appointment", args=["clinic-a", world.own.id])
    )
    if response.status_code != 200:
        return str(response.status_code)
    return "transcript" if CHAT_LINE in response.content.decode() else "no transcript"


ACTIONS: dict[tuple[str, str], Callable[[World, str], Any]] = {
    # calls API (Stream's wire API)
    ("calls", "users"): lambda w, p: (
        _calls(
            w, p, "GET", "/api/v2/users", payload=json.dumps({"filter_conditions": {}})
        ).status_code
    ),
    ("calls", "create_call"): _create_call,
    ("calls", "get_own_call"): lambda w, p: _calls(w, p, "GET", _call(w.own)).status_code,
    ("calls", "get_other_call"): lambda w, p: _calls(w, p, "GET", _call(w.other)).status_code,
    ("calls", "ring_own_call"): lambda w, p: (
        _calls(w, p, "POST", _call(w.own, "ring"), {}).status_code
    ),
    ("calls", "event_own_call"): lambda w, p: _event(w, p, w.own),
    ("calls", "event_other_call"): lambda w, p: _event(w, p, w.other),
    ("calls", "query_calls"): _query_calls,
    ("calls", "call_types"): lambda w, p: (
        _calls(w, p, "GET", "/api/v2/video/calltypes").status_code
    ),
    ("calls", "record_other_call"): lambda w, p: (
        _calls(w, p, "POST", _call(w.other, "start_recording"), {}).status_code
    ),
    ("calls", "devices"): lambda w, p: _calls(w, p, "GET", "/api/v2/devices").status_code,
    ("calls", "app"): lambda w, p: _calls(w, p, "GET", "/api/v2/app").status_code,
    # patient API
    ("patient", "me"): lambda w, p: _patient_api(w, p, "GET", "me"),
    ("patient", "me_after_sign_out"): _me_after_sign_out,
    ("patient", "appointments"): lambda w, p: _patient_api(w, p, "GET", "appointments"),
    ("patient", "own_appointment"): lambda w, p: _patient_api(
        w, p, "GET", f"appointments/{w.own.id}"
    ),
    ("patient", "other_appointment"): lambda w, p: _patient_api(
        w, p, "GET", f"appointments/{w.other.id}"
    ),
    ("patient", "other_device"): lambda w, p: _patient_api(
        w, p, "DELETE", f"devices/{w.other_device.pk}"
    ),
    # portal pages
    ("portal", "today"): lambda w, p: _portal(w, p, reverse("portal:today", args=["clinic-a"])),
    ("portal", "own_appointment"): lambda w, p: _portal(
        w, p, reverse("portal:appointment", args=["clinic-a", w.own.id])
    ),
    ("portal", "far_appointment"): lambda w, p: _portal(
        w, p, reverse("portal:appointment", args=["clinic-b", w.far.id])
    ),
    ("portal", "patient_page"): lambda w, p: _portal(
        w, p, reverse("portal:patient_edit", args=["clinic-a", w.patient.pk])
    ),
    ("portal", "admin"): lambda w, p: _portal(w, p, "/admin/"),
    ("portal", "waiting"): lambda w, p: _portal(w, p, reverse("portal:waiting", args=["clinic-a"])),
    ("portal", "lobby_message"): _lobby_message,
    ("portal", "admit"): lambda w, p: _portal_post(
        w, p, "appointment_admit", {"user_session_id": "nobody"}
    ),
    ("portal", "reason"): _sees_reason,
    ("portal", "chat_transcript"): _sees_transcript,
    ("portal", "audit_log"): lambda w, p: _portal(w, p, reverse("portal:audit", args=["clinic-a"])),
    ("portal", "patient_export"): lambda w, p: (
        w.portal_client(p)
        .post(reverse("portal:patient_export", args=["clinic-a", w.patient.pk]))
        .status_code
    ),
    # the join pages' "Notify me on this device" (appointments.join.notify)
    ("join", "push_own"): lambda w, p: _join_push(w, p, w.own),
    ("join", "push_other"): lambda w, p: _join_push(w, p, w.other),
    ("join", "unsubscribe_other_patients"): _unsubscribe_other_patients,
    # the events socket (a real server)
    ("socket", "own_call"): lambda w, p: _subscribe(
        w, p, {"type": "subscribe", "cid": w.own.call_cid}
    ),
    ("socket", "other_call"): lambda w, p: _subscribe(
        w, p, {"type": "subscribe", "cid": w.other.call_cid}
    ),
    ("socket", "unknown_call"): lambda w, p: _subscribe(
        w, p, {"type": "subscribe", "cid": "appointment:nope"}
    ),
    ("socket", "team"): lambda w, p: _subscribe(
        w, p, {"type": "subscribe_team", "team": "clinic-a"}
    ),
}


def _fhir(world: World, persona: str, path: str) -> int:
    return world.fhir_request(persona, "GET", path).status_code


def _fhir_search(world: World, persona: str) -> Any:
    response = world.fhir_request(persona, "GET", "Appointment")
    if response.status_code != 200:
        return response.status_code
    found = {e["resource"]["id"] for e in response.json().get("entry", [])}
    names = {world.own.id: "own", world.other.id: "other", world.far.id: "far"}
    return "+".join(sorted((names.get(i, i) for i in found), key=["own", "other", "far"].index))


def _fhir_book(world: World, persona: str) -> int:
    from tests.fhir.ehr import appointment_body

    start = (datetime.now(tz=UTC) + timedelta(days=2)).isoformat()
    body = appointment_body(world.patient, world.clinician, start)
    return world.fhir_request(persona, "POST", "Appointment", body).status_code


ACTIONS.update(
    {
        ("fhir", "own_appointment"): lambda w, p: _fhir(w, p, f"Appointment/{w.own.id}"),
        ("fhir", "far_appointment"): lambda w, p: _fhir(w, p, f"Appointment/{w.far.id}"),
        ("fhir", "search_appointments"): _fhir_search,
        ("fhir", "own_patient"): lambda w, p: _fhir(w, p, f"Patient/{w.patient.pk}"),
        ("fhir", "far_patient"): lambda w, p: _fhir(w, p, f"Patient/{w.far.patient_id}"),
        ("fhir", "far_practitioner"): lambda w, p: _fhir(w, p, f"Practitioner/{w.other_clinic.pk}"),
        ("fhir", "book"): _fhir_book,
    }
)


def _param(row: tuple[str, str, str, Any]) -> Any:
    persona, surface, action, expected = row
    # Sockets need a real server, which sees only committed rows.
    db = pytest.mark.django_db(transaction=surface == "socket")
    return pytest.param(*row, marks=[db], id=f"{persona}-{surface}-{action}-{expected}")


@pytest.mark.parametrize(
    ("persona", "surface", "action", "expected"), [_param(row) for row in MATRIX]
)
def test_least_privilege(world, eager_tasks, persona, surface, action, expected):
    assert ACTIONS[surface, action](world, persona) == expected


def test_the_matrix_names_only_known_actions_and_no_row_twice():
    assert {(s, a) for _, s, a, _ in MATRIX} <= set(ACTIONS)
    keys = [(p, s, a) for p, s, a, _ in MATRIX]
    assert len(keys) == len(set(keys))


@pytest.mark.django_db
def test_staff_see_only_their_own_clinics_users(world, eager_tasks):
    def seen(persona: str) -> set[str]:
        payload = json.dumps({"filter_conditions": {}, "limit": 100})
        response = _calls(world, persona, "GET", "/api/v2/users", payload=payload)
        return {u["id"] for u in response.json()["users"]}

    clinic_a = seen("coordinator")
    assert {world.patient.call_user_id, world.other_patient.call_user_id} <= clinic_a
    assert world.other_clinic.call_user_id not in clinic_a
    clinic_b = seen("other_clinic")
    assert world.other_clinic.call_user_id in clinic_b
    assert not clinic_b & {world.patient.call_user_id, world.clinician.call_user_id}
