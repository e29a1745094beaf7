"""BlockUser, UnblockUser and KickUser (§3.13): `POST .../block`, `.../unblock`, `.../kick`.

Who may do it is in the permission matrix (test_permission_matrix.py); here: what each does to
the call, to the blocked user's access (GetCall, QueryCalls, join) and to their tabs in the
call, the events, and bad input."""

from __future__ import annotations

import pytest

from calls.capabilities import SERVER, Actor
from calls.models import Call, CallEvent, CallParticipant
from calls.services.call_types import call_type_update
from calls.services.live import call_go_live
from calls.services.moderation import MUTE_REASON
from calls.services.sessions import participant_enter

from .conftest import CLINIC_A, assert_error, assert_ok, call_path, query_cids
from .conftest import events as call_events

pytestmark = pytest.mark.django_db

CID = "default:appt-1"


def events(type_name: str) -> list[dict]:
    """The payloads of this call's events of one type, oldest first."""
    return [event.payload for event in call_events(CID, type_name)]


def in_the_call(user, call_id: str = "appt-1") -> CallParticipant:
    """The user's tab, joined (the call is live)."""
    call_go_live(actor=SERVER, type_name="default", call_id=call_id)
    entry = participant_enter(
        actor=Actor(user=user, teams=frozenset(user.teams)),
        type_name="default",
        call_id=call_id,
        channel_name="test-channel",
    )
    assert entry.admitted
    return entry.participant


def test_a_blocked_patient_can_neither_read_nor_list_nor_join_until_unblocked(
    api, clinic_call, host, patient
):
    assert query_cids(api, as_user=patient) == [CID]

    response = api.post(
        call_path("default", "appt-1", "block"), {"user_id": patient.id}, as_user=host
    )

    assert assert_ok(response, 201).keys() == {"duration"}
    assert Call.objects.get(cid=CID).blocked_user_ids == [patient.id]
    [event] = events("call.blocked_user")
    assert event["call_cid"] == CID
    assert event["user"]["id"] == patient.id
    assert event["blocked_by_user"]["id"] == host.id
    # The host sees who is blocked; the patient has no capabilities at all.
    assert assert_ok(api.get(call_path("default", "appt-1"), as_user=host))["call"][
        "blocked_user_ids"
    ] == [patient.id]
    assert_error(api.get(call_path("default", "appt-1"), as_user=patient), 403, 17)
    assert query_cids(api, as_user=patient) == []
    join = api.post(call_path("default", "appt-1", "join"), {"location": "eu"}, as_user=patient)
    assert_error(join, 403, 17)
    # Still a member: blocking is not removal.
    assert patient.id in [
        m["user_id"] for m in assert_ok(api.get(call_path("default", "appt-1")))["members"]
    ]

    response = api.post(
        call_path("default", "appt-1", "unblock"), {"user_id": patient.id}, as_user=host
    )

    assert_ok(response, 201)
    assert Call.objects.get(cid=CID).blocked_user_ids == []
    [event] = events("call.unblocked_user")
    assert event["user"]["id"] == patient.id
    assert_ok(api.get(call_path("default", "appt-1"), as_user=patient))
    assert query_cids(api, as_user=patient) == [CID]


def test_blocking_twice_or_unblocking_a_free_user_changes_nothing(api, clinic_call, patient):
    block = call_path("default", "appt-1", "block")
    unblock = call_path("default", "appt-1", "unblock")
    assert_ok(api.post(unblock, {"user_id": patient.id}), 201)
    assert_ok(api.post(block, {"user_id": patient.id}), 201)
    assert_ok(api.post(block, {"user_id": patient.id}), 201)

    assert Call.objects.get(cid=CID).blocked_user_ids == [patient.id]
    assert len(events("call.blocked_user")) == 1
    assert events("call.unblocked_user") == []
    # Server-side: no `blocked_by_user`.
    assert "blocked_by_user" not in events("call.blocked_user")[0]


def test_blocking_puts_a_patient_in_the_call_out(api, clinic_call, patient):
    tab = in_the_call(patient)

    assert_ok(api.post(call_path("default", "appt-1", "block"), {"user_id": patient.id}), 201)

    tab.refresh_from_db()
    assert (tab.state, tab.left_reason) == ("left", "blocked")
    [left] = events("call.session_participant_left")
    assert left["reason"] == "blocked"


def test_a_kick_puts_the_user_out_and_lets_them_back(api, clinic_call, host, patient):
    tab = in_the_call(patient)

    response = api.post(
        call_path("default", "appt-1", "kick"), {"user_id": patient.id}, as_user=host
    )

    assert assert_ok(response, 201).keys() == {"duration"}
    tab.refresh_from_db()
    assert (tab.state, tab.left_reason) == ("left", "kicked")
    [event] = events("call.kicked_user")
    assert event["user"]["id"] == patient.id
    assert event["kicked_by_user"]["id"] == host.id
    assert Call.objects.get(cid=CID).blocked_user_ids == []
    again = participant_enter(
        actor=Actor(user=patient, teams=frozenset(patient.teams)),
        type_name="default",
        call_id="appt-1",
        channel_name="test-channel-2",
    )
    assert again.admitted


def test_a_server_side_kick_with_block_names_who_did_it(api, clinic_call, host, patient):
    tab = in_the_call(patient)

    response = api.post(
        call_path("default", "appt-1", "kick"),
        {"user_id": patient.id, "block": True, "kicked_by_id": host.id},
    )

    assert_ok(response, 201)
    tab.refresh_from_db()
    assert (tab.state, tab.left_reason) == ("left", "blocked")
    assert Call.objects.get(cid=CID).blocked_user_ids == [patient.id]
    [kicked] = events("call.kicked_user")
    [blocked] = events("call.blocked_user")
    assert kicked["kicked_by_user"]["id"] == blocked["blocked_by_user"]["id"] == host.id
    types = list(CallEvent.objects.filter(call_cid=CID).values_list("type", flat=True))
    assert types.index("call.kicked_user") < types.index("call.blocked_user")


def test_kick_with_block_needs_block_users_too(api, clinic_call, host, patient):
    """A role that may kick but not block: a kick goes through, a kick with block does not."""
    call_type_update(name="default", grants={"host": ["read-call", "join-call", "kick-user"]})
    kick = call_path("default", "appt-1", "kick")

    assert_error(api.post(kick, {"user_id": patient.id, "block": True}, as_user=host), 403, 17)
    assert events("call.kicked_user") == []
    assert_ok(api.post(kick, {"user_id": patient.id}, as_user=host), 201)


@pytest.mark.parametrize("suffix", ["block", "unblock", "kick"])
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "user_id"),
        ({"user_id": ""}, "user_id"),
        ({"user_id": "nobody-here"}, "user_id"),
        ({"user_id": "dr-host"}, "user_id"),  # yourself
    ],
    ids=["missing", "empty", "unknown", "self"],
)
def test_bad_input_is_400_and_changes_nothing(api, clinic_call, host, suffix, body, field):
    before = CallEvent.objects.count()

    response = api.post(call_path("default", "appt-1", suffix), body, as_user=host)

    error = assert_error(response, 400, 4)
    assert field in error["exception_fields"]
    assert CallEvent.objects.count() == before
    assert Call.objects.get(cid=CID).blocked_user_ids == []


def test_an_unknown_kicked_by_id_is_400(api, clinic_call, patient):
    response = api.post(
        call_path("default", "appt-1", "kick"), {"user_id": patient.id, "kicked_by_id": "ghost"}
    )

    assert "kicked_by_id" in assert_error(response, 400, 4)["exception_fields"]
    assert events("call.kicked_user") == []


def test_blocking_on_one_call_leaves_the_others_listed(api, create_call, clinic_call, patient):
    create_call(
        "appt-2",
        team=CLINIC_A,
        members=[{"user_id": "dr-host", "role": "host"}, {"user_id": patient.id}],
    )
    assert_ok(api.post(call_path("default", "appt-1", "block"), {"user_id": patient.id}), 201)

    assert query_cids(api, as_user=patient) == ["default:appt-2"]


# --- MuteUsers ---------------------------------------------------------------------------------


def test_muting_a_user_turns_their_microphone_off_in_the_call(api, clinic_call, host, patient):
    tab = in_the_call(patient)

    response = api.post(
        call_path("default", "appt-1", "mute_users"),
        {"user_ids": [patient.id], "audio": True},
        as_user=host,
    )

    assert assert_ok(response, 201).keys() == {"duration"}
    tab.refresh_from_db()
    assert (tab.audio, tab.video) == (False, True)
    [event] = events("call.user_muted")
    assert event["from_user_id"] == host.id
    assert event["muted_user_ids"] == [patient.id]
    assert event["reason"] == MUTE_REASON


def test_mute_all_users_mutes_everyone_in_the_call_but_the_one_muting(
    api, clinic_call, host, patient, colleague
):
    patient_tab = in_the_call(patient)
    host_tab = participant_enter(
        actor=Actor(user=host, teams=frozenset(host.teams)),
        type_name="default",
        call_id="appt-1",
        channel_name="host-channel",
    ).participant

    response = api.post(
        call_path("default", "appt-1", "mute_users"),
        {"mute_all_users": True, "audio": True, "video": True},
        as_user=host,
    )

    assert_ok(response, 201)
    patient_tab.refresh_from_db()
    host_tab.refresh_from_db()
    assert (patient_tab.audio, patient_tab.video) == (False, False)
    assert (host_tab.audio, host_tab.video) == (True, True)
    assert events("call.user_muted")[0]["muted_user_ids"] == [patient.id]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_ids": ["patient-a"]}, "audio"),  # nothing to mute
        ({"audio": True}, "user_ids"),  # nobody to mute
        ({"user_ids": ["ghost"], "audio": True}, "user_ids"),
        ({"user_ids": "patient-a", "audio": True}, "user_ids"),
        ({"user_ids": ["patient-a"], "audio": True, "muted_by_id": "ghost"}, "muted_by_id"),
    ],
    ids=["what", "who", "unknown", "not-a-list", "unknown-muter"],
)
def test_mute_bad_input_is_400(api, clinic_call, body, field):
    response = api.post(call_path("default", "appt-1", "mute_users"), body)

    assert field in assert_error(response, 400, 4)["exception_fields"]
    assert events("call.user_muted") == []


def test_a_patient_may_not_mute(api, clinic_call, host, patient):
    response = api.post(
        call_path("default", "appt-1", "mute_users"),
        {"user_ids": [host.id], "audio": True},
        as_user=patient,
    )

    assert_error(response, 403, 17)
    assert events("call.user_muted") == []


# --- UpdateUserPermissions --------------------------------------------------------------------


def own_capabilities(api, user) -> list[str]:
    return assert_ok(api.get(call_path("default", "appt-1"), as_user=user))["own_capabilities"]


def test_revoking_and_granting_back_a_users_media_permissions(api, clinic_call, host, patient):
    tab = in_the_call(patient)
    assert {"send-audio", "send-video"} <= set(own_capabilities(api, patient))
    path = call_path("default", "appt-1", "user_permissions")

    response = api.post(
        path, {"user_id": patient.id, "revoke_permissions": ["send-audio"]}, as_user=host
    )

    assert assert_ok(response, 201).keys() == {"duration"}
    caps = own_capabilities(api, patient)
    assert "send-audio" not in caps
    assert "send-video" in caps
    tab.refresh_from_db()
    assert (tab.audio, tab.video) == (False, True)
    [event] = events("call.permissions_updated")
    assert event["user"]["id"] == patient.id
    assert event["own_capabilities"] == caps
    # Only this user, only this call.
    assert "send-audio" in own_capabilities(api, host)

    assert_ok(api.post(path, {"user_id": patient.id, "grant_permissions": ["send-audio"]}), 201)
    assert "send-audio" in own_capabilities(api, patient)
    assert len(events("call.permissions_updated")) == 2


def test_a_permission_the_role_lacks_can_be_granted(api, clinic_call, patient):
    assert "screenshare" in own_capabilities(api, patient)  # the default grants have it
    path = call_path("default", "appt-1", "user_permissions")
    assert_ok(api.post(path, {"user_id": patient.id, "revoke_permissions": ["screenshare"]}), 201)
    audio_only = ["read-call", "join-call", "send-audio"]
    call_type_update(name="default", grants={"user": audio_only, "call_member": audio_only})
    assert "send-video" not in own_capabilities(api, patient)

    assert_ok(api.post(path, {"user_id": patient.id, "grant_permissions": ["send-video"]}), 201)

    caps = own_capabilities(api, patient)
    assert "send-video" in caps
    assert "screenshare" not in caps


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "patient-a"}, "grant_permissions"),
        ({"user_id": "patient-a", "grant_permissions": ["end-call"]}, "grant_permissions"),
        ({"user_id": "patient-a", "revoke_permissions": ["join-call"]}, "revoke_permissions"),
        (
            {
                "user_id": "patient-a",
                "grant_permissions": ["send-audio"],
                "revoke_permissions": ["send-audio"],
            },
            "revoke_permissions",
        ),
        ({"user_id": "ghost", "grant_permissions": ["send-audio"]}, "user_id"),
        ({"grant_permissions": ["send-audio"]}, "user_id"),
    ],
    ids=["nothing", "not-media", "not-media-revoke", "both", "unknown-user", "no-user"],
)
def test_permissions_bad_input_is_400_and_changes_nothing(api, clinic_call, body, field):
    response = api.post(call_path("default", "appt-1", "user_permissions"), body)

    assert field in assert_error(response, 400, 4)["exception_fields"]
    assert Call.objects.get(cid=CID).user_permissions == {}
    assert events("call.permissions_updated") == []


def test_a_patient_may_not_change_permissions(api, clinic_call, host, patient):
    response = api.post(
        call_path("default", "appt-1", "user_permissions"),
        {"user_id": host.id, "revoke_permissions": ["send-audio"]},
        as_user=patient,
    )

    assert_error(response, 403, 17)
    assert Call.objects.get(cid=CID).user_permissions == {}


# --- query counts (STYLE: query counts are the contract) --------------------------------------


def test_block_unblock_and_kick_query_counts(
    api, clinic_call, host, patient, django_assert_num_queries
):
    # 9: (1) the token's user, (2) savepoint, (3) the call joined with its type, creator and
    # session, (4) the host's own member row, (5) the user to block, (6) their tabs in the call
    # (none here), (7) UPDATE the call's blocked_user_ids, (8) the call.blocked_user outbox
    # row, (9) release.
    with django_assert_num_queries(9):
        blocked = api.post(
            call_path("default", "appt-1", "block"), {"user_id": patient.id}, as_user=host
        )

    assert_ok(blocked, 201)
    assert Call.objects.get(cid=CID).blocked_user_ids == [patient.id]

    # 8: the same without the tabs: (1) the token's user, (2) savepoint, (3) the call, (4) the
    # host's own member row, (5) the user to unblock, (6) UPDATE the call's blocked_user_ids,
    # (7) the call.unblocked_user outbox row, (8) release.
    with django_assert_num_queries(8):
        unblocked = api.post(
            call_path("default", "appt-1", "unblock"), {"user_id": patient.id}, as_user=host
        )

    assert_ok(unblocked, 201)
    assert Call.objects.get(cid=CID).blocked_user_ids == []

    # 8: (1) the token's user, (2) savepoint, (3) the call, (4) the host's own member row,
    # (5) the user to kick, (6) their tabs in the call (none here), (7) the call.kicked_user
    # outbox row, (8) release.
    with django_assert_num_queries(8):
        kicked = api.post(
            call_path("default", "appt-1", "kick"), {"user_id": patient.id}, as_user=host
        )

    assert_ok(kicked, 201)
    assert len(events("call.kicked_user")) == 1


def test_mute_and_user_permissions_query_counts(
    api, clinic_call, host, patient, django_assert_num_queries
):
    tab = in_the_call(patient)

    # 9: (1) the token's user, (2) savepoint, (3) the call joined with its type, creator and
    # session, (4) the host's own member row, (5) the users to mute, (6) their tabs in the
    # call, locked, (7) UPDATE the tab's audio, (8) the call.user_muted outbox row,
    # (9) release.
    with django_assert_num_queries(9):
        muted = api.post(
            call_path("default", "appt-1", "mute_users"),
            {"user_ids": [patient.id], "audio": True},
            as_user=host,
        )

    assert_ok(muted, 201)
    tab.refresh_from_db()
    assert tab.audio is False

    # 11: (1) the token's user, (2) savepoint, (3) the call, (4) the host's own member row,
    # (5) the user, (6) UPDATE the call's user_permissions, (7) the user's member row (for
    # their capabilities), (8) their tabs in the call, locked, (9) UPDATE the tab's media,
    # (10) the call.permissions_updated outbox row, (11) release.
    with django_assert_num_queries(11):
        revoked = api.post(
            call_path("default", "appt-1", "user_permissions"),
            {"user_id": patient.id, "revoke_permissions": ["send-video"]},
            as_user=host,
        )

    assert_ok(revoked, 201)
    assert Call.objects.get(cid=CID).user_permissions == {patient.id: {"send-video": False}}
    tab.refresh_from_db()
    assert (tab.audio, tab.video) == (False, False)
