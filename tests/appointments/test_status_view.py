"""The one status staff see (appointments.status_view): every state from its inputs, then the
pages through the real call services (lobby, go live, stop live, end)."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.urls import reverse

from appointments.models import Appointment
from appointments.selectors import staff_actor
from appointments.services.booking import appointment_cancel
from appointments.services.status import appointment_call_action
from appointments.status_view import NOBODY, Presence, VisitStatus, visit_status
from calls.capabilities import Actor
from calls.models import Call, CallParticipant, CallUser
from calls.services.sessions import participant_enter, participant_leave
from tests.factories import make_appointment

T = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)  # 11:00 in Paris, the clinic's zone
S = Appointment.Status
W, J, L = CallParticipant.State.WAITING, CallParticipant.State.JOINED, CallParticipant.State.LEFT


def row(state: str, *, waited: int | None = 0, joined: int | None = None, left: int | None = None):
    at = lambda m: None if m is None else T + dt.timedelta(minutes=m)  # noqa: E731
    return CallParticipant(
        state=state, waiting_since=at(waited), joined_at=at(joined), left_at=at(left)
    )


OPEN_CALL = Call(backstage=True)
ENDED_CALL = Call(backstage=False, ended_at=T)


@pytest.mark.parametrize(
    ("stored", "call", "rows", "expected", "since"),
    [
        # Nobody there: the stored status's open values all read Scheduled (going live or a
        # check-in from the app without the patient in the lobby is not "waiting").
        (S.SCHEDULED, OPEN_CALL, [], VisitStatus.SCHEDULED, None),
        (S.WAITING, OPEN_CALL, [], VisitStatus.SCHEDULED, None),
        (S.IN_PROGRESS, Call(backstage=False), [], VisitStatus.SCHEDULED, None),
        (S.SCHEDULED, None, [], VisitStatus.SCHEDULED, None),
        # The patient in the lobby: waiting, since their first tab arrived.
        (S.WAITING, OPEN_CALL, [row(W, waited=2), row(W, waited=1)], VisitStatus.WAITING, 1),
        # In the call (one tab joined, another still waiting): in call, since joining.
        (S.IN_PROGRESS, OPEN_CALL, [row(W), row(J, joined=3)], VisitStatus.IN_CALL, 3),
        # Back in the lobby after being in the call (the clinician stepped out): waiting.
        (S.IN_PROGRESS, OPEN_CALL, [row(L, joined=1, left=5), row(W, waited=5)], "waiting", 5),
        # Was in, gone for now, call not ended: the visit is under way.
        (S.IN_PROGRESS, OPEN_CALL, [row(L, joined=1, left=5)], VisitStatus.IN_CALL, None),
        # Waited and left without getting in: not a visit.
        (S.WAITING, OPEN_CALL, [row(L, waited=0, left=4)], VisitStatus.SCHEDULED, None),
        # The ends: the clinic's word, then the call's.
        (S.COMPLETED, ENDED_CALL, [row(L, joined=1, left=5)], VisitStatus.COMPLETED, None),
        (S.IN_PROGRESS, ENDED_CALL, [], VisitStatus.COMPLETED, None),
        (S.COMPLETED, None, [], VisitStatus.COMPLETED, None),
        (S.CANCELLED, ENDED_CALL, [row(W)], VisitStatus.CANCELLED, None),
        (S.NO_SHOW, OPEN_CALL, [], VisitStatus.NO_SHOW, None),
        # A no-show who arrives after all is waiting (the event undoes the no-show too).
        (S.NO_SHOW, OPEN_CALL, [row(W, waited=12)], VisitStatus.WAITING, 12),
    ],
)
def test_visit_status_over_every_state(stored, call, rows, expected, since):
    status = visit_status(
        appointment=Appointment(status=stored), call=call, patient=Presence.of(rows)
    )
    assert status.code == expected
    assert status.label == VisitStatus(expected).label
    assert status.since == (None if since is None else T + dt.timedelta(minutes=since))


def test_every_status_has_a_label_in_clinic_language():
    labels = {
        s: visit_status(appointment=Appointment(status=s), call=None, patient=NOBODY).label
        for s in (S.CANCELLED, S.NO_SHOW, S.COMPLETED, S.SCHEDULED)
    }
    assert labels == {
        S.CANCELLED: "Cancelled",
        S.NO_SHOW: "No-show",
        S.COMPLETED: "Completed",
        S.SCHEDULED: "Scheduled",
    }
    assert [c.label for c in VisitStatus] == [
        "Scheduled",
        "Patient waiting",
        "In call",
        "Completed",
        "No-show",
        "Cancelled",
    ]


# --- through the real services and pages --------------------------------------------------


def _enter(actor: Actor, appointment):
    return participant_enter(
        actor=actor, type_name="appointment", call_id=appointment.id, channel_name="x"
    )


def _status_on_pages(client, clinic, appointment) -> tuple[str, str]:
    day = T.astimezone(clinic.tz).date().isoformat()
    rows = client.get(reverse("portal:today_rows", args=[clinic.slug]), {"date": day})
    detail = client.get(reverse("portal:appointment", args=[clinic.slug, appointment.id]))
    today_status = rows.context["rows"][0]["status"]
    return today_status.label, detail.context["status"].label


@pytest.mark.django_db
def test_today_and_the_appointment_page_agree_through_a_visit(clinic, doctor, patient, client_for):
    with time_machine.travel(T - dt.timedelta(days=1), tick=False):
        appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=T)
    client = client_for(doctor)
    patient_user = CallUser.objects.get(pk=patient.call_user_id)
    patient_actor = Actor(user=patient_user, teams=frozenset(patient_user.teams))
    with time_machine.travel(T - dt.timedelta(minutes=5), tick=False):
        assert _status_on_pages(client, clinic, appointment) == ("Scheduled", "Scheduled")
        waiting = _enter(patient_actor, appointment)
        assert _status_on_pages(client, clinic, appointment) == ("Patient waiting",) * 2
        html = client.get(reverse("portal:today", args=[clinic.slug]), {"date": "2026-06-01"})
        assert "since 10:55" in html.content.decode()  # the clinic's zone, 24-hour
    with time_machine.travel(T, tick=False):
        appointment_call_action(appointment=appointment, staff=doctor, action="go_live")
        # Live, but no clinician in it yet: the waiting room keeps the patient waiting.
        assert _status_on_pages(client, clinic, appointment) == ("Patient waiting",) * 2
        _enter(staff_actor(doctor), appointment)  # the clinician arrives: the patient is let in
        assert _status_on_pages(client, clinic, appointment) == ("In call", "In call")
    with time_machine.travel(T + dt.timedelta(minutes=1), tick=False):
        # The patient's tab drops and comes back after Stop live: back in the lobby, and
        # both pages say so (the old pages said "In progress" beside "Call: Scheduled").
        appointment_call_action(appointment=appointment, staff=doctor, action="stop_live")
        participant_leave(user_session_id=waiting.participant.user_session_id, reason="backstage")
        waiting = _enter(patient_actor, appointment)
        assert _status_on_pages(client, clinic, appointment) == ("Patient waiting",) * 2
        appointment_call_action(appointment=appointment, staff=doctor, action="go_live")
        _enter(staff_actor(doctor), appointment)
        assert _status_on_pages(client, clinic, appointment) == ("In call", "In call")
    with time_machine.travel(T + dt.timedelta(minutes=20), tick=False):
        participant_leave(user_session_id=waiting.participant.user_session_id)
        appointment_call_action(appointment=appointment, staff=doctor, action="end")
        assert _status_on_pages(client, clinic, appointment) == ("Completed", "Completed")


@pytest.mark.django_db
def test_a_cancelled_appointment_reads_cancelled(frozen, clinic, doctor, patient, client_for):
    appointment = make_appointment(clinic, host=doctor, patient=patient)
    appointment_cancel(appointment=appointment, by=doctor)
    html = client_for(doctor).get(reverse("portal:today", args=[clinic.slug])).content.decode()
    assert 'data-status="cancelled"' in html
    assert ">Cancelled</span>" in html
