"""Replacing a patient's join link, and signing the app out, seen from open events sockets: a
real uvicorn server and WebSocket clients (tests/calls/realtime_server.py). A socket opened
with a token whose grant ended (the old link's, the signed-out session's) closes; the patient's
other sockets stay open and go on receiving the call's events."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from appointments import links
from appointments.api import auth
from appointments.services.join_links import appointment_link_replace
from tests.calls.conftest import base  # noqa: F401 - the real server fixture
from tests.calls.realtime_server import ws_connect
from tests.factories import make_appointment

from .test_join_link_replace import page_token

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

API = "/api/patient/v1"
TOKEN_REVOKED = 40  # TokenExpired's code: "token has been revoked"


@pytest.fixture
def appointment(clinic, doctor, patient):
    # Starting soon: the lobby is open, so the page and join info hand out tokens.
    return make_appointment(
        clinic, host=doctor, patient=patient, starts_at=timezone.now() + timedelta(minutes=5)
    )


def app_call_token(appointment) -> tuple[APIClient, str]:
    app = APIClient()
    app.credentials(HTTP_AUTHORIZATION=f"Bearer {auth.access_token_for(appointment.patient)}")
    info = app.get(f"{API}/appointments/{appointment.id}/join-info").json()
    return app, info["token"]


def test_replacing_the_link_closes_the_old_links_sockets_only(base, appointment, doctor):  # noqa: F811
    old_page = page_token(links.join_link_path(appointment))
    _app, app_token = app_call_token(appointment)
    with (
        ws_connect(base, token=old_page) as old_link_socket,
        ws_connect(base, token=app_token) as app_socket,
    ):
        old_link_socket.subscribe(appointment.call_cid)
        app_socket.subscribe(appointment.call_cid)

        appointment_link_replace(appointment=appointment, by=doctor)

        received, close_code = old_link_socket.closed_with()
        assert [m["code"] for m in received if m["type"] == "error"] == [TOKEN_REVOKED]
        assert close_code == 4000 + TOKEN_REVOKED
        # The app's socket stays, and sees the call's events (the kick of the old link's tab).
        kicked = app_socket.expect("event")["event"]
        assert kicked["type"] == "call.kicked_user"


def test_signing_out_closes_that_sessions_sockets_only(base, appointment):  # noqa: F811
    phone, phone_token = app_call_token(appointment)
    _tablet, tablet_token = app_call_token(appointment)
    with (
        ws_connect(base, token=phone_token) as phone_socket,
        ws_connect(base, token=tablet_token) as tablet_socket,
    ):
        tablet_socket.subscribe(appointment.call_cid)
        assert phone.post(f"{API}/auth/sign-out").status_code == 204
        _received, close_code = phone_socket.closed_with()
        assert close_code == 4000 + TOKEN_REVOKED
        tablet_socket.send({"type": "subscribe", "cid": appointment.call_cid})
        assert tablet_socket.expect("subscribed")["cid"] == appointment.call_cid
