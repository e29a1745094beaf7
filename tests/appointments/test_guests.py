"""Guests (family, a carer): invited by name from the appointment page, each with a join link
of their own; they wait in the lobby like the patient; removing one voids the link and puts
them out of the call."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.test import Client

from appointments import links
from appointments.models import AppointmentMember
from appointments.selectors import staff_actor
from appointments.services.booking import appointment_cancel, appointment_update, booking_of
from appointments.services.guests import (
    MAX_GUESTS,
    appointment_guest_invite,
    appointment_guest_remove,
)
from appointments.services.status import appointment_call_action
from calls.capabilities import Actor
from calls.errors import CallsError
from calls.models import CallMember, CallUser
from calls.services.sessions import participant_enter
from calls.tokens import verify
from tests.factories import START, make_appointment, make_patient

pytestmark = pytest.mark.django_db


@pytest.fixture
def appointment(frozen, clinic, doctor, patient):
    return make_appointment(clinic, host=doctor, patient=patient, starts_at=START)


def room_config(response) -> dict | None:
    return response.context["config"] if response.context else None


def test_a_guest_gets_a_calls_user_a_call_membership_and_a_link(appointment, doctor, frozen):
    member = appointment_guest_invite(appointment=appointment, by=doctor, name="  Maria   Lima ")

    user = CallUser.objects.get(pk=member.call_user_id)
    assert user.name == "Maria Lima"
    assert user.teams == ["clinic-a"]
    assert "Maria" not in user.id  # the id carries no personal data
    assert CallMember.objects.get(call__call_id=appointment.id, user=user).role == "call_member"
    frozen.move_to(START - dt.timedelta(minutes=10))  # the lobby opens
    response = Client().get(links.guest_link_path(member))
    assert response.status_code == 200
    config = room_config(response)
    assert (config["role"], config["state"], config["name"]) == ("guest", "lobby", "Maria Lima")
    assert config["time_zone"] == "America/Recife"  # the patient's
    token_actor = verify(api_key=settings.CALLS_API_KEY, token=config["token"])[0]
    assert token_actor.user_id == user.id
    page = response.content.decode()
    assert "Video appointment at Riverside Clinic" in page
    assert "Back to the appointment" not in page


def test_a_guest_waits_in_the_lobby_until_live_with_a_clinician(appointment, doctor, frozen):
    member = appointment_guest_invite(appointment=appointment, by=doctor, name="Maria")
    frozen.move_to(START - dt.timedelta(minutes=5))
    guest = Actor(user=member.call_user, teams=frozenset(member.call_user.teams))

    entry = participant_enter(
        actor=guest, type_name="appointment", call_id=appointment.id, channel_name="guest-tab"
    )

    assert not entry.admitted
    appointment_call_action(appointment=appointment, staff=doctor, action="go_live")
    entry.participant.refresh_from_db()
    assert entry.participant.state == "waiting"  # live, but nobody to see them yet
    participant_enter(
        actor=staff_actor(doctor), type_name="appointment", call_id=appointment.id, channel_name="d"
    )
    entry.participant.refresh_from_db()
    assert entry.participant.state == "joined"


def test_removing_a_guest_voids_the_link_and_puts_them_out(appointment, doctor, frozen):
    member = appointment_guest_invite(appointment=appointment, by=doctor, name="Maria")
    frozen.move_to(START - dt.timedelta(minutes=5))
    link = links.guest_link_path(member)
    token = room_config(Client().get(link))["token"]
    user = member.call_user
    tab = participant_enter(
        actor=Actor(user=user, teams=frozenset(user.teams)),
        type_name="appointment",
        call_id=appointment.id,
        channel_name="guest-tab",
    ).participant

    appointment_guest_remove(appointment=appointment, by=doctor, member_id=member.pk)

    assert not AppointmentMember.objects.filter(pk=member.pk).exists()
    assert not CallMember.objects.filter(user=user).exists()
    tab.refresh_from_db()
    assert (tab.state, tab.left_reason) == ("left", "kicked")
    response = Client().get(link)
    assert response.status_code == 403
    assert b"This link does not work" in response.content
    with pytest.raises(CallsError, match="revoked"):
        verify(api_key=settings.CALLS_API_KEY, token=token)


def test_guest_rules(appointment, doctor, frozen):
    with pytest.raises(ValidationError, match="name"):
        appointment_guest_invite(appointment=appointment, by=doctor, name="   ")
    with pytest.raises(ValidationError, match="name"):
        appointment_guest_invite(appointment=appointment, by=doctor, name="x" * 101)
    for n in range(MAX_GUESTS):
        appointment_guest_invite(appointment=appointment, by=doctor, name=f"Guest {n}")
    with pytest.raises(ValidationError, match="at most"):
        appointment_guest_invite(appointment=appointment, by=doctor, name="One more")
    appointment_cancel(appointment=appointment, by=doctor)
    assert AppointmentMember.objects.filter(kind="guest").count() == MAX_GUESTS
    member = AppointmentMember.objects.filter(kind="guest").first()
    with pytest.raises(ValidationError, match="over"):
        appointment_guest_invite(appointment=appointment, by=doctor, name="Late")
    # A cancelled appointment's guest link says so, without a room.
    response = Client().get(links.guest_link_path(member))
    assert response.context["state"] == "cancelled"
    assert room_config(response) is None
    assert b"This appointment was cancelled" in response.content


def test_a_guest_link_opens_only_its_own_appointment(appointment, doctor, clinic, frozen):
    member = appointment_guest_invite(appointment=appointment, by=doctor, name="Maria")
    other = make_appointment(
        clinic, host=doctor, patient=make_patient(clinic), starts_at=START + dt.timedelta(hours=2)
    )
    token = links.guest_link_token(member)
    assert Client().get(f"/join/{other.id}/guest/?t={token}").status_code == 403
    assert Client().get(f"/join/{appointment.id}/guest/?t={token}x").status_code == 403
    # The patient's link is not a guest link, nor the other way round.
    patient_token = links.join_link_token(appointment)
    assert Client().get(f"/join/{appointment.id}/guest/?t={patient_token}").status_code == 403
    assert Client().get(f"/join/{appointment.id}/?t={token}").status_code == 403


def test_staff_invite_and_remove_guests_from_the_appointment_page(
    appointment, doctor, frozen, client_for
):
    page = f"/c/clinic-a/appointments/{appointment.id}/"
    client = client_for(doctor)
    assert 'id="guest-name"' in client.get(page).content.decode()

    response = client.post(f"{page}guests/", {"name": "Maria Lima"}, follow=True)

    html = response.content.decode()
    assert "Maria Lima is invited" in html
    member = AppointmentMember.objects.get(kind="guest")
    assert links.guest_link_path(member) in html
    response = client.post(f"{page}guests/", {"name": ""}, follow=True)
    assert "Not invited" in response.content.decode()

    response = client.post(f"{page}guests/{member.pk}/remove/", follow=True)
    assert "The guest is removed" in response.content.decode()
    assert not AppointmentMember.objects.filter(kind="guest").exists()


def test_staff_give_a_guest_an_email_and_a_mobile_for_the_messages(
    appointment, doctor, frozen, client_for
):
    page = f"/c/clinic-a/appointments/{appointment.id}/"
    client = client_for(doctor)
    html = client.get(page).content.decode()
    assert 'id="guest-email"' in html
    assert 'id="guest-phone"' in html

    # A number that is no phone number: refused by the patients' one phone rule, nobody invited.
    refused = {"name": "Maria Lima", "email": "maria@example.com", "phone": "12"}
    response = client.post(f"{page}guests/", refused, follow=True)
    assert "Not invited" in response.content.decode()
    assert not AppointmentMember.objects.filter(kind="guest").exists()

    invited = {"name": "Maria Lima", "email": " Maria@Example.com ", "phone": "+33 6 12 34 56 78"}
    client.post(f"{page}guests/", invited, follow=True)
    member = AppointmentMember.objects.get(kind="guest")
    assert (member.email, member.phone) == ("maria@example.com", "+33612345678")


def test_another_clinics_staff_cannot_touch_the_guests(
    appointment, doctor, outsider, frozen, client_for
):
    member = appointment_guest_invite(appointment=appointment, by=doctor, name="Maria")
    page = f"/c/clinic-a/appointments/{appointment.id}/"
    client = client_for(outsider)
    assert client.post(f"{page}guests/", {"name": "Eve"}).status_code == 404
    assert client.post(f"{page}guests/{member.pk}/remove/").status_code == 404
    assert AppointmentMember.objects.filter(kind="guest").count() == 1


def test_a_reschedule_keeps_the_guest_and_their_link(appointment, doctor, frozen):
    member = appointment_guest_invite(appointment=appointment, by=doctor, name="Maria")
    link = links.guest_link_path(member)
    booking = booking_of(appointment)
    booking.starts_at = START + dt.timedelta(hours=1)

    appointment_update(appointment=appointment, booking=booking)

    member = AppointmentMember.objects.get(kind="guest")
    assert links.guest_link_path(member) == link
    assert CallMember.objects.filter(call__call_id=appointment.id, user=member.call_user).exists()
    assert Client().get(link).status_code == 200


def test_a_guest_link_expires_hours_after_the_end(appointment, doctor, frozen):
    member = appointment_guest_invite(appointment=appointment, by=doctor, name="Maria")
    link = links.guest_link_path(member)
    frozen.move_to(appointment.ends_at + links.LINK_VALID_AFTER_END - dt.timedelta(minutes=1))
    assert Client().get(link).status_code == 200
    frozen.move_to(appointment.ends_at + links.LINK_VALID_AFTER_END + dt.timedelta(minutes=1))
    response = Client().get(link)
    assert response.status_code == 403
    assert b"This link has expired" in response.content
