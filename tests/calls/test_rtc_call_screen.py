"""The call socket's parts of the call screen (docs/media.md): one place per person (a newer
tab takes over), the recorded media state wins over a reload, in-call chat (stored, sent to
the people in the call only, bounded), and the `screen` flag of a shared screen. A real
uvicorn server and real WebSocket clients, as in test_rtc."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from calls.models import CallChatMessage, CallEvent, CallParticipant
from calls.services.sessions import MEDIA_REMEMBERED_FOR
from tests.factories import CallUserFactory

from .test_rtc import CLINIC, admitted, appointment_call, go_live, join_as, rtc

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def visit() -> str:
    """Starts in 5 minutes; the lobby is open; backstage (as test_rtc's)."""
    for user_id in ("dr-host", "patient-a", "patient-b"):
        CallUserFactory(id=user_id, name=user_id.replace("-", " ").title(), teams=[CLINIC])
    return appointment_call("visit-1", patient="patient-a", starts_in=timedelta(minutes=5))


def present(user_id: str) -> list[CallParticipant]:
    return list(
        CallParticipant.objects.filter(user_id=user_id).exclude(state=CallParticipant.State.LEFT)
    )


def test_a_second_tab_takes_over_and_the_first_is_told(base, visit):
    with rtc(base, **join_as("dr-host", visit)) as host:
        go_live(host)
        with rtc(base, **join_as("patient-a", visit)) as first:
            old = admitted(first, host)["user_session_id"]
            with rtc(base, **join_as("patient-a", visit)) as second:
                new = second.expect("joined")["user_session_id"]
                # The first tab: an error naming the other tab, then closed with 4017.
                received, code = first.closed_with()
                assert code == 4017
                error = received[-1]
                assert (error["type"], error["code"]) == ("error", 17)
                assert error["message"] == "this call is open in another tab"
                # The host sees one leave (the old tab) and one join (the new one): one tile.
                left = host.expect("participant_left")
                assert (left["user_session_id"], left["reason"]) == (old, "replaced")
                assert [p.user_session_id for p in present("patient-a")] == [new]


def test_alone_in_the_call_a_second_tab_keeps_the_session(base, visit):
    with rtc(base, **join_as("dr-host", visit)) as host:
        go_live(host)
        with rtc(base, **join_as("patient-a", visit)) as first:
            admitted(first, host)
            host.send({"type": "leave"})
            host.expect("left")
            with rtc(base, **join_as("patient-a", visit)) as second:
                second.expect("joined")
                _received, code = first.closed_with()
                assert code == 4017
    # Admitted before the first tab left: the session never ended in between.
    assert list(
        CallEvent.objects.filter(type__startswith="call.session_")
        .exclude(type__in=["call.session_participant_count_updated"])
        .values_list("type", flat=True)
        .order_by("pk")
    ) == [
        "call.session_started",
        "call.session_participant_joined",
        "call.session_participant_joined",
        "call.session_participant_left",  # the host
        "call.session_participant_joined",  # the second tab
        "call.session_participant_left",  # the first tab, replaced
    ]


def test_a_second_tab_in_the_lobby_takes_over_too(base, visit):
    with rtc(base, **join_as("patient-a", visit)) as first:
        first.expect("lobby")
        with rtc(base, **join_as("patient-a", visit)) as second:
            second.expect("lobby")
            _received, code = first.closed_with()
            assert code == 4017
            assert len(present("patient-a")) == 1


def test_a_reload_keeps_the_recorded_media_state(base, visit):
    with rtc(base, **join_as("dr-host", visit)) as host:
        go_live(host)
        with rtc(base, **join_as("patient-a", visit)) as tab:
            admitted(tab, host)
            tab.send({"type": "media_state", "audio": False, "video": True})
            updated = host.expect("participant_updated")
            assert (updated["audio"], updated["video"]) == (False, True)
            tab.send({"type": "leave"})
            tab.expect("left")
        # The reloaded page says what a fresh page says (all on); the record wins.
        with rtc(base, **join_as("patient-a", visit, audio=True, video=True)) as tab:
            joined = tab.expect("joined")
            assert (joined["participant"]["audio"], joined["participant"]["video"]) == (
                False,
                True,
            )
            seen = host.expect("participant_joined")["participant"]
            assert (seen["audio"], seen["video"]) == (False, True)
            tab.send({"type": "leave"})
            tab.expect("left")
        # Long after leaving, a new visit starts as the tab says.
        later = timezone.now() + MEDIA_REMEMBERED_FOR + timedelta(seconds=1)
        fresh = join_as("patient-a", visit, audio=True, video=True)
        with time_machine.travel(later, tick=True), rtc(base, **fresh) as tab:
            joined = tab.expect("joined")
            assert joined["participant"]["audio"] is True


def test_chat_reaches_the_people_in_the_call_only_and_is_stored(base, visit):
    with rtc(base, **join_as("dr-host", visit)) as host:
        go_live(host)
        with rtc(base, **join_as("patient-a", visit)) as patient:
            admitted(patient, host)
            patient.send({"type": "chat", "text": "  I cannot hear you  "})
            for sock in (patient, host):
                message = sock.expect("chat")["message"]
                assert message["text"] == "I cannot hear you"
                assert message["user"] == {"id": "patient-a", "name": "Patient A"}
            host.send({"type": "chat", "text": "Try the other microphone"})
            assert patient.expect("chat")["message"]["user"]["id"] == "dr-host"
            assert host.expect("chat")["message"]["text"] == "Try the other microphone"

            # A late joiner (the patient's reload) receives the chat so far with `joined`.
            with rtc(base, **join_as("patient-a", visit)) as again:
                history = again.expect("joined")["chat"]
                assert [m["text"] for m in history] == [
                    "I cannot hear you",
                    "Try the other microphone",
                ]

    # Nobody outside the call: a member of another call cannot read or send it.
    other = appointment_call("visit-2", patient="patient-b", starts_in=timedelta(minutes=5))
    with rtc(base, **join_as("patient-b", other)) as outsider:
        outsider.expect("lobby")
        outsider.send({"type": "chat", "text": "hello"})
        error = outsider.expect("error")
        assert error["code"] == 17
    texts = list(CallChatMessage.objects.order_by("pk").values_list("call__call_id", "text"))
    assert texts == [
        ("visit-1", "I cannot hear you"),
        ("visit-1", "Try the other microphone"),
    ]
    # Never an outbox event: no webhook, push or team socket carries it.
    assert not CallEvent.objects.filter(payload__icontains="cannot hear").exists()


def test_chat_waiting_in_the_lobby_is_refused(base, visit):
    with rtc(base, **join_as("patient-a", visit)) as patient:
        patient.expect("lobby")
        patient.send({"type": "chat", "text": "anyone there?"})
        assert patient.expect("error")["code"] == 17
    assert CallChatMessage.objects.count() == 0


@pytest.mark.parametrize(
    ("text", "code"),
    [(None, 4), (42, 4), ("   ", 4), ("x" * 1001, 4)],
)
def test_chat_refuses_bad_text(base, visit, text, code):
    with rtc(base, **join_as("dr-host", visit)) as host:
        host.expect("joined")
        host.send({"type": "chat", "text": text})
        error = host.expect("error")
        assert error["code"] == code
        host.send({"type": "ping"})
        assert host.expect("pong") == {"type": "pong"}  # the connection stays
    assert CallChatMessage.objects.count() == 0


def test_chat_is_rate_limited_per_person_and_per_call(base, visit, settings):
    settings.CALLS_CHAT_PER_MINUTE = 3
    settings.CALLS_CHAT_MAX_PER_CALL = 5
    with rtc(base, **join_as("dr-host", visit)) as host:
        go_live(host)
        for n in range(3):
            host.send({"type": "chat", "text": f"line {n}"})
            host.expect("chat")
        host.send({"type": "chat", "text": "one too many"})
        assert host.expect("error")["code"] == 9
        with rtc(base, **join_as("patient-a", visit)) as patient:
            admitted(patient, host)
            for n in range(2):
                patient.send({"type": "chat", "text": f"reply {n}"})
                patient.expect("chat")
            patient.send({"type": "chat", "text": "the call is full"})
            error = patient.expect("error")
            assert (error["code"], error["message"]) == (9, "this call's chat is full")
    assert CallChatMessage.objects.count() == 5


def test_the_screen_flag_needs_screenshare(base, visit):
    from calls.capabilities import SERVER
    from calls.services.moderation import call_update_user_permissions

    with rtc(base, **join_as("dr-host", visit)) as host:
        go_live(host)
        with rtc(base, **join_as("patient-a", visit)) as patient:
            admitted(patient, host)
            patient.send({"type": "media_state", "audio": True, "video": False, "screen": True})
            updated = host.expect("participant_updated")
            assert (updated["video"], updated["screen"]) == (True, True)
            call_update_user_permissions(
                actor=SERVER,
                type_name="appointment",
                call_id="visit-1",
                user_id="patient-a",
                revoke_permissions=["screenshare"],
            )
            patient.expect("permissions")
            patient.send({"type": "media_state", "audio": True, "video": False, "screen": True})
            updated = host.expect("participant_updated")
            assert (updated["video"], updated["screen"]) == (False, False)
            patient.send({"type": "media_state", "audio": True, "video": True, "screen": "yes"})
            assert patient.expect("error")["code"] == 4


def test_a_tab_that_was_away_does_not_take_the_call_back(base, visit):
    with rtc(base, **join_as("dr-host", visit)) as host:
        go_live(host)
        with rtc(base, **join_as("patient-a", visit)) as first:
            away = admitted(first, host)["user_session_id"]
        # Its connection dropped (no leave); meanwhile she opened the call in another tab.
        with rtc(base, **join_as("patient-a", visit)) as second:
            second.expect("joined")
            host.expect("participant_left")
            # The first tab's reconnection (its user_session_id) is refused, not a takeover.
            with rtc(base, **join_as("patient-a", visit, user_session_id=away)) as back:
                received, code = back.closed_with()
                assert code == 4017
                assert received[-1]["message"] == "this call is open in another tab"
            second.send({"type": "ping"})
            assert second.expect("pong") == {"type": "pong"}
            assert len(present("patient-a")) == 1
