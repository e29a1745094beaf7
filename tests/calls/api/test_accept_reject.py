"""Ringing as a callee sees it: accept, reject (reasons normalised), timeouts and re-rings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from calls.capabilities import SERVER
from calls.models import CallEvent, CallRing, DueAction
from calls.scheduling import scheduler
from calls.services.base import MemberSpec
from calls.services.calls import call_get_or_create
from calls.services.live import call_end

from .conftest import CLINIC_A, call_path

pytestmark = pytest.mark.django_db

T = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def ringing(host, patient, colleague):
    """default:ring-2 of clinic-a, created ringing at T: the host calls the patient and the
    colleague (the family member here)."""
    with time_machine.travel(T, tick=False):
        call_get_or_create(
            actor=SERVER,
            type_name="default",
            call_id="ring-2",
            created_by_id=host.id,
            team=CLINIC_A,
            members=[
                MemberSpec(user_id=host.id, role="host"),
                MemberSpec(user_id=patient.id),
                MemberSpec(user_id=colleague.id),
            ],
            ring=True,
        )


def post(api, path, user=None, body=None):
    return api.post(call_path("default", "ring-2", path), body or {}, as_user=user)


def outcomes():
    return dict(CallRing.objects.values_list("user_id", "outcome"))


def timeout_pending():
    return DueAction.objects.filter(kind="ring_timeout", state="pending").exists()


def test_accept_records_the_answer_and_the_event(api, ringing, patient, colleague):
    assert post(api, "accept", patient).status_code == 201
    assert outcomes() == {patient.id: "accepted", colleague.id: ""}
    accepted = CallEvent.objects.get(type="call.accepted").payload
    assert accepted["user"]["id"] == patient.id
    assert timeout_pending()  # fam is still ringing
    with time_machine.travel(T + timedelta(seconds=15), tick=False):
        assert scheduler.run_due() == 1
    missed = CallEvent.objects.get(type="call.missed").payload
    assert [m["user_id"] for m in missed["members"]] == [colleague.id]
    assert outcomes() == {patient.id: "accepted", colleague.id: "missed"}


def test_everyone_rejecting_stops_the_ring(api, ringing, patient, colleague):
    assert post(api, "reject", patient, {"reason": "decline"}).status_code == 201
    assert timeout_pending()
    assert post(api, "reject", colleague, {"reason": "busy"}).status_code == 201
    assert not timeout_pending()
    reasons = [e.payload["reason"] for e in CallEvent.objects.filter(type="call.rejected")]
    assert reasons == ["rejected", "busy"]
    assert outcomes() == {patient.id: "rejected", colleague.id: "rejected"}


def test_only_a_rung_user_token_can_answer(api, ringing, host, patient):
    assert post(api, "accept", host).status_code == 400  # the caller is not rung
    assert post(api, "accept").status_code == 400  # a server token answers for nobody
    post(api, "accept", patient)
    again = post(api, "reject", patient)
    assert again.status_code == 400  # already answered
    assert CallEvent.objects.filter(type="call.rejected").count() == 0


def test_ringing_again_does_not_ring_those_still_ringing(api, ringing, host, patient):
    response = post(api, "ring", host)
    assert response.status_code == 201
    assert response.json()["members_ids"] == []
    assert CallEvent.objects.filter(type="call.ring").count() == 1
    post(api, "reject", patient)
    assert post(api, "ring", host).json()["members_ids"] == [patient.id]
    assert CallEvent.objects.filter(type="call.ring").count() == 2


def test_ending_the_call_cancels_open_rings(api, ringing, patient, colleague):
    call_end(actor=SERVER, type_name="default", call_id="ring-2")
    assert outcomes() == {patient.id: "cancelled", colleague.id: "cancelled"}
    assert not timeout_pending()
    assert post(api, "accept", patient).status_code == 400


def test_accept_and_reject_query_counts(
    api, ringing, patient, colleague, django_assert_num_queries
):
    # 9: (1) the token's user, (2) savepoint, (3) the call joined with its type, creator and
    # session, (4) the user's own member row, (5) their open ring, (6) UPDATE it, (7) the
    # call.accepted outbox row, (8) is anyone still ringing (the colleague: the timeout stays),
    # (9) release.
    with django_assert_num_queries(9):
        assert post(api, "accept", patient).status_code == 201

    # 10: the same nine with call.rejected, and nobody is left ringing: (10) DELETE the pending
    # ring timeout.
    with django_assert_num_queries(10):
        assert post(api, "reject", colleague, {"reason": "busy"}).status_code == 201

    assert outcomes() == {patient.id: "accepted", colleague.id: "rejected"}
    assert not timeout_pending()
