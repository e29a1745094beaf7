"""RingCall (POST .../ring) and SendCallEvent (POST .../event)."""

from __future__ import annotations

import pytest

from calls.models import CallEvent

from .conftest import CLINIC_A, call_path, members_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def call(create_call, host, patient, colleague, outsider):
    """default:ring-1 of clinic-a: the host (role host), the patient and the colleague (the
    family member here) are members; the outsider is not."""
    create_call(
        "ring-1",
        team=CLINIC_A,
        members=[
            {"user_id": host.id, "role": "host"},
            {"user_id": patient.id},
            {"user_id": colleague.id},
        ],
    )


def post(api, path, body, user=None):
    return api.post(call_path("default", "ring-1", path), body, as_user=user)


def test_ring_all_members_but_the_caller(api, call, host, patient, colleague):
    response = post(api, "ring", {"video": True}, user=host)
    assert response.status_code == 201
    assert response.json()["members_ids"] == [patient.id, colleague.id]
    ring = CallEvent.objects.get(type="call.ring").payload
    assert ring["user"]["id"] == host.id
    assert [m["user_id"] for m in ring["members"]] == [patient.id, colleague.id]


def test_ring_listed_members_only_and_refuse_strangers(api, call, colleague, outsider):
    assert post(api, "ring", {"members_ids": [colleague.id]}).json()["members_ids"] == [
        colleague.id
    ]
    stranger = post(api, "ring", {"members_ids": [outsider.id]})
    assert stranger.status_code == 400
    assert outsider.id in stranger.json()["exception_fields"]["members_ids"]


def test_ring_with_nobody_eligible(api, call, host):
    response = post(api, "ring", {"members_ids": [host.id]}, user=host)
    assert response.status_code == 400
    assert response.json()["message"] == 'RingCall failed with error: "no users to ring"'


def test_custom_event_names_its_sender(api, call, host, outsider):
    response = post(api, "event", {"user_id": host.id, "custom": {"kind": "running_late"}})
    assert response.status_code == 201
    event = CallEvent.objects.get(type="custom").payload
    assert event["custom"] == {"kind": "running_late"}
    assert event["user"]["id"] == host.id
    assert post(api, "event", {"custom": {}}).status_code == 400
    denied = post(api, "event", {"custom": {}}, user=outsider)
    assert denied.status_code == 403
    assert CallEvent.objects.filter(type="custom").count() == 1


def test_ring_query_count_does_not_grow_with_members(
    api, call, create_call, host, django_assert_num_queries
):
    create_call("fifty", team=CLINIC_A, members=members_of(50, "y"))

    for call_id, rung in (("ring-1", 2), ("fifty", 49)):
        # 11: (1) the token's user, (2) savepoint, (3) the call joined with its type, creator
        # and session, (4) the members joined with their users, (5) the open rings, (6) one
        # INSERT of all the rings, (7) the call.ring outbox row, (8) DELETE the pending ring
        # timeout, (9) INSERT the new one, (10) pg_notify the scheduler, (11) release.
        with django_assert_num_queries(11):
            response = api.post(call_path("default", call_id, "ring"), {}, as_user=host)

        assert response.status_code == 201
        assert len(response.json()["members_ids"]) == rung


def test_send_event_query_count(api, call, host, django_assert_num_queries):
    # 6: (1) the token's user, (2) savepoint, (3) the call joined with its type, creator and
    # session, (4) the user's own member row, (5) the custom outbox row, (6) release.
    with django_assert_num_queries(6):
        response = post(api, "event", {"custom": {"kind": "running_late"}}, user=host)

    assert response.status_code == 201
    assert CallEvent.objects.get(type="custom").payload["user"]["id"] == host.id
