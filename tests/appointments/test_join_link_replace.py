"""Replacing a patient's join link revokes that link and the calls tokens minted from it, and
nothing else: not the patient's app (its access token, its calls token from join info), and
not the new link, even opened in the same second. Signing the app out revokes its calls
tokens. Through the real join page, patient API and calls-token verification."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from appointments import links
from appointments.api import auth
from appointments.services.join_links import appointment_link_replace
from calls.errors import CallsError
from calls.models import CallEvent
from calls.tokens import mint_user_token, verify
from tests.factories import START, make_appointment

pytestmark = pytest.mark.django_db

API = "/api/patient/v1"


@pytest.fixture
def appointment(frozen, clinic, doctor, patient):
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=START)
    frozen.move_to(START - dt.timedelta(minutes=10))  # the lobby is open
    return appointment


def page_token(path: str) -> str:
    response = Client().get(path)
    assert response.status_code == 200
    match = re.search(
        rb'<script id="room-config" type="application/json">(.*?)</script>', response.content
    )
    assert match
    token = json.loads(match.group(1))["token"]
    assert token
    return token


def token_works(token: str) -> bool:
    try:
        verify(api_key=settings.CALLS_API_KEY, token=token)
    except CallsError:
        return False
    return True


def app_for(patient) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {auth.access_token_for(patient)}")
    return client


def test_replacing_the_link_keeps_the_app_signed_in(appointment, doctor):
    app = app_for(appointment.patient)
    app_call_token = app.get(f"{API}/appointments/{appointment.id}/join-info").json()["token"]
    old_page_token = page_token(links.join_link_path(appointment))

    appointment_link_replace(appointment=appointment, by=doctor)

    assert app.get(f"{API}/me").status_code == 200
    assert token_works(app_call_token)
    assert not token_works(old_page_token)


def test_a_new_link_opened_in_the_same_second_works(appointment, doctor):
    old_page_token = page_token(links.join_link_path(appointment))
    appointment_link_replace(appointment=appointment, by=doctor)
    appointment.refresh_from_db()
    # The clock is frozen: this is the second of the replacement.
    new_page_token = page_token(links.join_link_path(appointment))
    assert token_works(new_page_token)
    assert not token_works(old_page_token)
    # A second replacement kills the second link's tokens, and only those.
    appointment_link_replace(appointment=appointment, by=doctor)
    appointment.refresh_from_db()
    assert not token_works(new_page_token)
    assert token_works(page_token(links.join_link_path(appointment)))


def test_signing_out_revokes_the_apps_calls_tokens(appointment, patient):
    phone, tablet = app_for(patient), app_for(patient)
    info = f"{API}/appointments/{appointment.id}/join-info"
    phone_token, tablet_token = (c.get(info).json()["token"] for c in (phone, tablet))
    page = page_token(links.join_link_path(appointment))
    assert phone.post(f"{API}/auth/sign-out").status_code == 204
    assert not token_works(phone_token)
    assert token_works(tablet_token)
    assert token_works(page)


def user_updates(patient) -> int:
    return CallEvent.objects.filter(
        type="user.updated", payload__user__id=patient.call_user_id
    ).count()


def test_replacing_the_link_and_signing_out_make_open_sockets_check_their_tokens(
    appointment, doctor, patient
):
    """Sockets re-run `tokens.verify` on a `user.updated` of their user (tested in calls):
    a socket opened with a token whose grant ended then closes."""
    before = user_updates(patient)
    appointment_link_replace(appointment=appointment, by=doctor)
    assert user_updates(patient) == before + 1
    app = app_for(patient)
    assert app.post(f"{API}/auth/sign-out").status_code == 204
    assert user_updates(patient) == before + 2


@pytest.mark.parametrize(
    "grant",
    ["link:nope:1", "link:{id}:x", "link:{id}:2", "session:nope", "other:thing", "link"],
)
def test_a_token_with_a_grant_that_is_not_live_is_refused(appointment, patient, grant):
    token = mint_user_token(patient.call_user_id, grant=grant.format(id=appointment.id))
    assert not token_works(token)
    assert token_works(mint_user_token(patient.call_user_id))


def test_without_a_grant_check_no_grant_is_live(appointment, settings):
    token = page_token(links.join_link_path(appointment))
    settings.CALLS_TOKEN_GRANT_CHECK = ""
    assert not token_works(token)
