from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.test import Client

from calls.capabilities import SERVER
from calls.models import CallEvent
from calls.services.base import MemberSpec
from calls.services.calls import call_get_or_create
from calls.tokens import mint_server_token, mint_user_token
from tests.factories import CallUserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def call():
    for user_id in ("doc", "pat", "fam", "outsider"):
        CallUserFactory(id=user_id)
    call_get_or_create(
        actor=SERVER,
        type_name="default",
        call_id="ring-1",
        created_by_id="doc",
        members=[
            MemberSpec(user_id="doc", role="host"),
            MemberSpec(user_id="pat"),
            MemberSpec(user_id="fam"),
        ],
    )


def post(path, body, token=None):
    return Client().post(
        f"/api/v2/video/call/default/ring-1/{path}?api_key={settings.CALLS_API_KEY}",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=token or mint_server_token(),
    )


def test_ring_all_members_but_the_caller(call):
    response = post("ring", {"video": True}, token=mint_user_token("doc"))
    assert response.status_code == 201
    assert response.json()["members_ids"] == ["pat", "fam"]
    ring = CallEvent.objects.get(type="call.ring").payload
    assert ring["user"]["id"] == "doc"
    assert [m["user_id"] for m in ring["members"]] == ["pat", "fam"]


def test_ring_listed_members_only_and_refuse_strangers(call):
    assert post("ring", {"members_ids": ["fam"]}).json()["members_ids"] == ["fam"]
    stranger = post("ring", {"members_ids": ["outsider"]})
    assert stranger.status_code == 400
    assert "outsider" in stranger.json()["exception_fields"]["members_ids"]


def test_ring_with_nobody_eligible(call):
    response = post("ring", {"members_ids": ["doc"]}, token=mint_user_token("doc"))
    assert response.status_code == 400
    assert response.json()["message"] == 'RingCall failed with error: "no users to ring"'


def test_custom_event_names_its_sender(call):
    response = post("event", {"user_id": "doc", "custom": {"kind": "running_late"}})
    assert response.status_code == 201
    event = CallEvent.objects.get(type="custom").payload
    assert event["custom"] == {"kind": "running_late"}
    assert event["user"]["id"] == "doc"
    assert post("event", {"custom": {}}).status_code == 400
    CallUserFactory(id="other-clinic", teams=["clinic-b"])
    denied = post("event", {"custom": {}}, token=mint_user_token("other-clinic"))
    assert denied.status_code == 403
    assert CallEvent.objects.filter(type="custom").count() == 1


def test_encoded_slash_in_the_raw_path_is_refused(call):
    response = Client().post(
        f"/api/v2/video/call/default/ring-1/delete?api_key={settings.CALLS_API_KEY}",
        HTTP_AUTHORIZATION=mint_server_token(),
        RAW_URI="/api/v2/video/call/default/ring-1%2Fdelete",
    )
    assert response.status_code == 400
    assert response.json()["code"] == 4
    assert CallEvent.objects.filter(type="call.deleted").count() == 0
