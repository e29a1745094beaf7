"""Stream's own Python SDK (getstream 7.0.0), unchanged, against our live server.

Only the base URL, key and secret differ from talking to Stream. This is the contract.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from getstream import Stream
from getstream.base import StreamApiException
from getstream.models import (
    BackstageSettingsRequest,
    CallRequest,
    CallSettingsRequest,
    MemberRequest,
    QueryUsersPayload,
    SortParamRequest,
    UserRequest,
)

from calls.models import CallEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(live_server):
    stream = Stream(
        api_key=settings.CALLS_API_KEY,
        api_secret=settings.CALLS_API_SECRET,
        base_url=live_server.url,
    )
    yield stream
    stream.close()  # no keep-alive connection left for the server thread at teardown


def host_and_patient_call(client, call_id: str, *, host: tuple, patient: tuple):
    """Two clinic-a users (id, name) and a `default` call of clinic-a: host and plain member."""
    client.upsert_users(
        *(UserRequest(id=i, name=name, teams=["clinic-a"]) for i, name in (host, patient))
    )
    call = client.video.call("default", call_id)
    call.get_or_create(
        data=CallRequest(
            created_by_id=host[0],
            team="clinic-a",
            members=[
                MemberRequest(user_id=host[0], role="host"),
                MemberRequest(user_id=patient[0]),
            ],
        )
    )
    return call


def test_full_lifecycle_with_the_real_sdk(client, eager_tasks):
    client.upsert_users(
        UserRequest(id="dr-lee", name="Dr Lee", role="user", teams=["clinic-a"]),
        UserRequest(id="pat-9", name="Pat", teams=["clinic-a"], custom={"mrn": "x"}),
        UserRequest(id="interp-1", name="Interpreter", teams=["clinic-a"]),
    )
    starts = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    call = client.video.call("default", "appt-7f3c")
    created = call.get_or_create(
        members_limit=25,
        data=CallRequest(
            created_by_id="dr-lee",
            starts_at=starts,
            team="clinic-a",
            members=[
                MemberRequest(user_id="dr-lee", role="host"),
                MemberRequest(user_id="pat-9", custom={"x": 1}),
            ],
            custom={"appointment_id": 881},
            settings_override=CallSettingsRequest(
                backstage=BackstageSettingsRequest(enabled=True, join_ahead_time_seconds=600)
            ),
        ),
    )
    data = created.data
    assert data.created is True
    assert data.call.cid == "default:appt-7f3c"
    assert data.call.team == "clinic-a"
    assert data.call.starts_at == starts
    assert data.call.backstage is True
    assert data.call.join_ahead_time_seconds == 600
    assert data.call.settings.backstage.join_ahead_time_seconds == 600
    assert data.call.custom == {"appointment_id": 881}
    assert data.call.created_by.id == "dr-lee"
    assert data.call.created_at.year == datetime.now(UTC).year
    assert sorted(m.user_id for m in data.members) == ["dr-lee", "pat-9"]
    assert "end-call" in data.own_capabilities

    again = call.get_or_create(data=CallRequest(created_by_id="dr-lee"))
    assert again.data.created is False

    got = call.get()
    assert got.data.call.id == "appt-7f3c"
    assert got.data.call.settings.ring.auto_cancel_timeout_ms == 15000

    later = starts + timedelta(minutes=30)
    updated = call.update(starts_at=later, custom={"appointment_id": 882})
    assert updated.data.call.starts_at == later
    assert updated.data.call.custom == {"appointment_id": 882}

    members = call.update_call_members(
        update_members=[MemberRequest(user_id="interp-1", role="call_member")],
        remove_members=["pat-9"],
    )
    assert [m.user_id for m in members.data.members] == ["interp-1"]
    queried = client.video.query_call_members(
        id="appt-7f3c", type="default", filter_conditions={"role": {"$eq": "host"}}
    )
    assert [m.user_id for m in queried.data.members] == ["dr-lee"]

    live = call.go_live()
    assert live.data.call.backstage is False
    back = call.stop_live()
    assert back.data.call.backstage is True

    call.end()
    ended = call.get()
    assert ended.data.call.ended_at is not None

    listed = client.video.query_calls(
        filter_conditions={"team": {"$eq": "clinic-a"}},
        sort=[SortParamRequest(field="starts_at", direction=1)],
    )
    assert [c.call.cid for c in listed.data.calls] == ["default:appt-7f3c"]

    users = client.query_users(QueryUsersPayload(filter_conditions={"id": {"$in": ["pat-9"]}}))
    assert [u.id for u in users.data.users] == ["pat-9"]
    assert users.data.users[0].teams == ["clinic-a"]

    deleted = call.delete()
    assert deleted.data.call.cid == "default:appt-7f3c"
    with pytest.raises(StreamApiException) as missing:
        call.get()
    assert missing.value.status_code == 404
    assert missing.value.code == 16

    types = [e.type for e in CallEvent.objects.filter(call_cid="default:appt-7f3c")]
    assert types == [
        "call.created",
        "call.updated",
        "call.member_added",
        "call.member_removed",
        "call.live_started",
        "call.updated",
        "call.ended",
        "call.deleted",
    ]


def test_hard_delete_task_and_call_types(client, eager_tasks):
    client.upsert_users(UserRequest(id="owner"))
    call = client.video.call("default", "to-wipe")
    call.get_or_create(data=CallRequest(created_by_id="owner"))
    response = call.delete(hard=True)
    task_id = response.data.task_id
    assert task_id
    task = client.get_task(task_id)
    assert task.data.status == "completed"

    types = client.video.list_call_types().data.call_types
    assert {"default", "audio_room", "livestream", "development", "appointment"} <= set(types)
    created = client.video.create_call_type(name="telehealth", grants={"host": ["end-call"]})
    assert created.data.name == "telehealth"
    assert created.data.grants["host"] == ["end-call"]
    got = client.video.get_call_type("telehealth")
    assert got.data.settings.ring.incoming_call_timeout_ms == 15000
    client.video.delete_call_type("telehealth")
    with pytest.raises(StreamApiException) as gone:
        client.video.get_call_type("telehealth")
    assert gone.value.code == 16


def test_sdk_errors_decode_as_stream_errors(client):
    call = client.video.call("default", "nobody-made-this")
    with pytest.raises(StreamApiException) as exc:
        call.get()
    assert exc.value.status_code == 404
    assert exc.value.code == 16
    assert "GetCall failed with error" in exc.value.message

    with pytest.raises(StreamApiException) as bad:
        call.get_or_create(data=CallRequest())
    assert bad.value.status_code == 400
    assert bad.value.code == 4

    wrong = Stream(api_key=settings.CALLS_API_KEY, api_secret="x" * 40, base_url=client.base_url)
    with pytest.raises(StreamApiException) as unauthorized:
        wrong.video.call("default", "x").get()
    assert unauthorized.value.status_code == 401
    assert unauthorized.value.code == 43


def test_user_token_client_acts_as_that_user(client, live_server):
    client.upsert_users(
        UserRequest(id="doc-a", teams=["clinic-a"]), UserRequest(id="doc-b", teams=["clinic-b"])
    )
    client.video.call("default", "team-a-call").get_or_create(
        data=CallRequest(created_by_id="doc-a", team="clinic-a")
    )
    token_b = client.create_token("doc-b", expiration=3600)
    as_b = Stream(api_key=settings.CALLS_API_KEY, token=token_b, base_url=live_server.url)
    with pytest.raises(StreamApiException) as denied:
        as_b.video.call("default", "team-a-call").get()
    assert denied.value.status_code == 403
    assert denied.value.code == 17
    token_a = client.create_token("doc-a", expiration=3600)
    as_a = Stream(api_key=settings.CALLS_API_KEY, token=token_a, base_url=live_server.url)
    seen = as_a.video.call("default", "team-a-call").get()
    assert seen.data.call.team == "clinic-a"
    assert "read-call" in seen.data.own_capabilities
    assert "end-call" not in seen.data.own_capabilities


def test_sessions_decode_with_the_real_sdk(client, eager_tasks):
    """A call with a running session, then an ended one: the SDK reads `session` (participants,
    counts, ring maps) and parses every session event of the outbox as its typed event."""
    import json

    from getstream.webhook import parse_event

    from calls.capabilities import Actor
    from calls.models import CallUser
    from calls.services.sessions import participant_enter, participant_leave

    call = host_and_patient_call(
        client, "sess-1", host=("dr-kim", "Dr Kim"), patient=("pat-3", "Pat")
    )
    entries = [
        participant_enter(
            actor=Actor(user=user, teams=frozenset(user.teams)),
            type_name="default",
            call_id="sess-1",
            channel_name="x",
        )
        for user in CallUser.objects.filter(id__in=["dr-kim", "pat-3"]).order_by("id")
    ]
    session = call.get().data.call.session
    assert session is not None
    assert {p.user.id for p in session.participants} == {"dr-kim", "pat-3"}
    assert session.participants_count_by_role == {"host": 1, "call_member": 1}
    assert session.started_at is not None
    assert session.ended_at is None

    for entry in entries:
        participant_leave(user_session_id=entry.participant.user_session_id)
    ended = call.get().data.call
    assert ended.current_session_id == ""
    assert ended.session.ended_at is not None
    assert {p.user.id for p in ended.session.participants} == {"dr-kim", "pat-3"}

    seen = set()
    for event in CallEvent.objects.filter(
        call_cid="default:sess-1", type__startswith="call.session"
    ):
        parsed = parse_event(json.dumps(event.payload).encode())
        assert type(parsed).__name__ != "UnknownEvent", event.type
        seen.add(event.type)
        if event.type == "call.session_participant_left":
            assert parsed.participant.user.id in {"dr-kim", "pat-3"}
            assert parsed.duration_seconds >= 0
    assert seen == {
        "call.session_started",
        "call.session_participant_joined",
        "call.session_participant_count_updated",
        "call.session_participant_left",
        "call.session_ended",
    }


def test_block_unblock_and_kick_with_the_real_sdk(client, eager_tasks):
    """`call.block_user`, `unblock_user` and `kick_user` as Stream's SDK sends them; the call
    shows `blocked_user_ids`, and the SDK parses each moderation event as its typed event."""
    import json

    from getstream.webhook import parse_event

    call = host_and_patient_call(
        client, "mod-1", host=("dr-ray", "Dr Ray"), patient=("guest-2", "Guest")
    )

    call.block_user(user_id="guest-2")
    assert call.get().data.call.blocked_user_ids == ["guest-2"]
    call.unblock_user(user_id="guest-2")
    assert call.get().data.call.blocked_user_ids == []
    call.kick_user(user_id="guest-2", block=True, kicked_by_id="dr-ray")
    assert call.get().data.call.blocked_user_ids == ["guest-2"]
    with pytest.raises(StreamApiException) as bad:
        call.block_user(user_id="nobody")
    assert bad.value.api_error.code == 4

    parsed = [
        parse_event(json.dumps(payload).encode())
        for payload in CallEvent.objects.filter(
            call_cid="default:mod-1",
            type__in=["call.blocked_user", "call.unblocked_user", "call.kicked_user"],
        )
        .order_by("pk")
        .values_list("payload", flat=True)
    ]
    assert [type(e).__name__ for e in parsed] == [
        "BlockedUserEvent",
        "UnblockedUserEvent",
        "KickedUserEvent",
        "BlockedUserEvent",
    ]
    assert all(e.user.id == "guest-2" for e in parsed)
    assert parsed[2].kicked_by_user.id == "dr-ray"
    assert parsed[3].blocked_by_user.id == "dr-ray"


def test_mute_and_user_permissions_with_the_real_sdk(client, eager_tasks):
    """`call.mute_users` and `call.update_user_permissions` as Stream's SDK sends them; the SDK
    parses `call.user_muted` and `call.permissions_updated` as their typed events."""
    import json

    from getstream.webhook import parse_event

    call = host_and_patient_call(
        client, "mute-1", host=("dr-mo", "Dr Mo"), patient=("pat-mo", "Pat")
    )

    call.mute_users(user_ids=["pat-mo"], audio=True, muted_by_id="dr-mo")
    call.update_user_permissions(user_id="pat-mo", revoke_permissions=["send-audio"])
    with pytest.raises(StreamApiException) as bad:
        call.update_user_permissions(user_id="pat-mo", grant_permissions=["end-call"])
    assert bad.value.api_error.code == 4

    muted, updated = (
        parse_event(json.dumps(payload).encode())
        for payload in CallEvent.objects.filter(
            call_cid="default:mute-1", type__in=["call.user_muted", "call.permissions_updated"]
        )
        .order_by("pk")
        .values_list("payload", flat=True)
    )
    assert type(muted).__name__ == "CallUserMutedEvent"
    assert (muted.from_user_id, muted.muted_user_ids) == ("dr-mo", ["pat-mo"])
    assert type(updated).__name__ == "UpdatedCallPermissionsEvent"
    assert updated.user.id == "pat-mo"
    assert "send-audio" not in updated.own_capabilities
    assert "send-video" in updated.own_capabilities


# GetApp answers the settings this server has; the SDK fills Stream's chat-only app fields
# with None (infer_missing, §1.4) and says so in a warning each.
@pytest.mark.filterwarnings("ignore:Missing value of non-optional type:RuntimeWarning")
def test_app_settings_with_the_real_sdk(client, settings):
    """`client.get_app()` and `client.update_app(webhook_url=..., webhook_events=...)`."""
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    app = client.get_app().data.app
    assert app.multi_tenant_enabled is True
    assert app.webhook_url == ""

    client.update_app(webhook_url="https://93.184.215.14/hooks", webhook_events=["call.ended"])
    app = client.get_app().data.app
    assert (app.webhook_url, app.webhook_events) == ("https://93.184.215.14/hooks", ["call.ended"])

    with pytest.raises(StreamApiException) as refused:
        client.update_app(webhook_url="https://10.0.0.8/hooks")
    assert refused.value.api_error.code == 4
    assert "private network" in refused.value.api_error.message
    with pytest.raises(StreamApiException) as off:
        client.update_app(multi_tenant_enabled=False)
    assert off.value.api_error.code == 4
    assert client.get_app().data.app.webhook_url == "https://93.184.215.14/hooks"
