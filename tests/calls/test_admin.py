from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from calls.capabilities import SERVER
from calls.models import Call, CallEvent
from calls.services.base import MemberSpec
from calls.services.calls import call_get_or_create
from tests.factories import CallUserFactory, login_verified

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", "", "pw-for-tests-only")
    login_verified(client, user)
    return client


@pytest.fixture
def backstage_call():
    CallUserFactory(id="doc", teams=["clinic-a"])
    return call_get_or_create(
        actor=SERVER,
        type_name="appointment",
        call_id="adm-1",
        created_by_id="doc",
        team="clinic-a",
        members=[MemberSpec(user_id="doc", role="host")],
    ).call


@pytest.mark.parametrize(
    "url",
    [
        "/admin/calls/call/",
        "/admin/calls/call/?backstage__exact=1&ended=no&team=clinic-a",
        "/admin/calls/call/?q=adm-1",
        "/admin/calls/calluser/",
        "/admin/calls/calltype/",
        "/admin/calls/callevent/",
    ],
)
def test_admin_pages_render(admin_client, backstage_call, url):
    response = admin_client.get(url)
    assert response.status_code == 200


def test_call_detail_shows_members_and_events(admin_client, backstage_call):
    response = admin_client.get(f"/admin/calls/call/{backstage_call.pk}/change/")
    assert response.status_code == 200
    assert b"call.created" in response.content
    assert b"doc" in response.content


def test_admin_actions_go_through_services(admin_client, backstage_call):
    changelist = "/admin/calls/call/"
    admin_client.post(changelist, {"action": "go_live", "_selected_action": [backstage_call.pk]})
    call = Call.objects.get(pk=backstage_call.pk)
    assert call.backstage is False
    admin_client.post(changelist, {"action": "end_call", "_selected_action": [backstage_call.pk]})
    call.refresh_from_db()
    assert call.ended_at is not None
    assert list(CallEvent.objects.filter(call=call).values_list("type", flat=True)) == [
        "call.created",
        "call.live_started",
        "call.ended",
    ]


def test_calls_are_not_edited_directly_in_the_admin(admin_client, backstage_call):
    assert admin_client.get("/admin/calls/call/add/").status_code == 403
