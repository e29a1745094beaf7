"""calls.realtime.page: what each call event means for one tab, without a socket."""

from __future__ import annotations

import pytest

from calls.realtime import page

ME, OTHER = "session-me", "session-other"


def tab(state="joined", may_admit=False):
    return page.Tab(state=state, user_session_id=ME, user_id="pat", may_admit=may_admit)


def presence(kind, who, **extra):
    return {"type": f"call.{kind}", "participant": {"user_session_id": who}, **extra}


@pytest.mark.parametrize(
    ("payload", "the_tab", "expected"),
    [
        ({"type": "call.ended"}, tab(), ["call_ended"]),
        ({"type": "call.deleted"}, tab("waiting"), ["call_ended"]),
        ({"type": "call.live_started", "call": {}}, tab("waiting"), ["call_updated"]),
        ({"type": "call.updated"}, tab(), []),  # no call in it: nothing to show
        (presence("session_participant_joined", ME), tab("waiting"), ["admitted"]),
        (presence("session_participant_joined", ME), tab("joined"), []),
        (presence("session_participant_joined", OTHER), tab(), ["participant_joined"]),
        (
            presence("session_participant_joined", OTHER),
            tab(may_admit=True),
            ["participant_joined", "waiting"],
        ),
        (presence("session_participant_joined", OTHER), tab("waiting"), ["lobby"]),
        (presence("session_participant_left", ME), tab(), ["gone"]),
        (presence("session_participant_left", OTHER), tab(), ["participant_left"]),
        (presence("session_participant_left", OTHER), tab("waiting"), ["lobby"]),
        (presence("lobby_participant_left", ME), tab("waiting"), ["gone"]),
        (presence("lobby_participant_joined", OTHER), tab(may_admit=True), ["waiting"]),
        (presence("lobby_participant_joined", OTHER), tab(), []),  # patients see no lobby
        (presence("session_participant_count_updated", OTHER), tab(), []),
        ({"type": "call.lobby_message", "text": "Running late"}, tab("waiting"), ["lobby"]),
        ({"type": "call.lobby_message", "text": "Running late"}, tab(), []),
        ({"type": "call.session_timer_warning"}, tab(), ["timer_warning"]),
        ({"type": "call.session_timer_warning"}, tab("waiting"), []),
        ({"type": "call.user_muted", "muted_user_ids": ["pat"]}, tab(), ["muted"]),
        ({"type": "call.user_muted", "muted_user_ids": ["doc"]}, tab(), []),
        ({"type": "call.permissions_updated", "user": {"id": "pat"}}, tab(), ["permissions"]),
        ({"type": "call.permissions_updated", "user": {"id": "doc"}}, tab(), []),
        ({"type": "call.member_removed", "members": ["pat"]}, tab("waiting"), ["removed"]),
        ({"type": "call.member_removed", "members": ["doc"]}, tab(), []),
        ({"type": "call.ended"}, tab(""), []),  # a tab that has not joined hears nothing
        ({"type": "custom"}, tab(), []),
    ],
)
def test_steps(payload, the_tab, expected):
    assert page.steps(payload, the_tab) == expected


def test_messages_built_from_events():
    assert page.call_ended({"type": "call.ended", "reason": "done"}) == {
        "type": "call_ended",
        "reason": "done",
    }
    left = presence("session_participant_left", OTHER, reason="timeout")
    assert page.participant_left(left) == {
        "type": "participant_left",
        "user_session_id": OTHER,
        "reason": "timeout",
    }
    warning = {"timer_ends_at": 1_700_000_000 * 10**9, "remaining_seconds": 300}
    assert page.timer_warning(warning) == {
        "type": "timer_warning",
        "timer_ends_at": "2023-11-14T22:13:20+00:00",
        "remaining_seconds": 300,
    }
    assert page.muted({"from_user_id": "doc"}, (False, True)) == {
        "type": "muted",
        "audio": True,
        "video": False,
        "by": "doc",
    }
    assert page.gone_message("blocked") == "you were removed from the call and cannot join it again"
    assert page.gone_message("removed") == "you left the call (removed)"
    joined = page.participant_from_event(
        {"user_session_id": OTHER, "user": {"id": "doc", "name": "Dr"}, "role": "host"},
        (True, False),
    )
    assert joined == {
        "user_session_id": OTHER,
        "user": {"id": "doc", "name": "Dr", "image": None},
        "role": "host",
        "joined_at": None,
        "audio": True,
        "video": False,
    }
