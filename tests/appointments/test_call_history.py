"""The appointment page's story of a call (appointments.call_history): attendance folded into
one line per person per visit, and the event history in sentences."""

from __future__ import annotations

import datetime as dt

from appointments.call_history import VISIT_GAP, fold_attendance, summarise
from calls.models import CallEvent, CallParticipant, CallUser

T = dt.datetime(2026, 6, 1, 9, 0, tzinfo=dt.UTC)
W, J, L = CallParticipant.State.WAITING, CallParticipant.State.JOINED, CallParticipant.State.LEFT
NAMES = {"ana": ("Ana Lima", "Patient"), "ito": ("Dr Ito", "Host clinician")}


def at(minutes: float | None) -> dt.datetime | None:
    return None if minutes is None else T + dt.timedelta(minutes=minutes)


def row(user, state, *, waited=None, joined=None, left=None, reason=""):
    return CallParticipant(
        user=CallUser(id=user, name=user.title()),
        state=state,
        waiting_since=at(waited),
        joined_at=at(joined),
        left_at=at(left),
        left_reason=reason if state == L else "",
    )


def test_one_visit_in_three_rows_is_one_line():
    """The issue's case: the lobby, a dropped connection and a rejoin, then the call's end;
    the engine's three rows (two of them never joined) are one visit of 17 minutes."""
    rows = [
        row("ana", L, waited=0, left=1, reason="backstage"),  # waited; sent back to the lobby
        row("ana", L, waited=1, joined=2, left=10, reason="timeout"),  # connection dropped
        row("ana", L, waited=10.5, joined=11, left=19, reason="callended"),
    ]
    [visit] = fold_attendance(rows, names=NAMES, now=at(30))
    assert (visit.name, visit.role, visit.now) == ("Ana Lima", "Patient", "left")
    assert (visit.arrived_at, visit.joined_at, visit.left_at) == (T, at(2), at(19))
    assert visit.minutes == 16  # 8 + 8 in the call; the half minute away does not count
    assert visit.waited_minutes == 2
    assert visit.end_note == ""  # the call ended: no raw reason, no note


def test_two_tabs_at_once_count_once():
    rows = [row("ito", L, joined=0, left=10), row("ito", J, joined=5)]
    [visit] = fold_attendance(rows, names=NAMES, now=at(17))
    assert visit.now == "in_call"
    assert visit.left_at is None
    assert visit.minutes == 17


def test_a_gap_longer_than_the_visit_gap_makes_two_visits():
    gap = VISIT_GAP.total_seconds() / 60 + 1
    rows = [row("ana", L, joined=0, left=5), row("ana", L, joined=5 + gap, left=10 + gap)]
    visits = fold_attendance(rows, names=NAMES, now=at(60))
    assert [(v.joined_at, v.minutes) for v in visits] == [(at(0), 5), (at(5 + gap), 5)]


def test_waiting_now_never_joined_and_lost_connection():
    rows = [
        row("ana", W, waited=3),
        row("ito", L, joined=0, left=2, reason="timeout"),
        row("zed", L, waited=0, left=4, reason="left"),  # not one of the appointment's people
    ]
    visits = {v.user_id: v for v in fold_attendance(rows, names=NAMES, now=at(9))}
    assert visits["ana"].now == "waiting"
    assert visits["ana"].joined_at is None
    assert visits["ito"].end_note == "connection lost"
    assert (visits["zed"].name, visits["zed"].role, visits["zed"].joined_at) == ("Zed", "", None)


def test_the_history_in_sentences():
    events = [
        CallEvent(type=t, created_at=at(m))
        for t, m in [
            ("call.created", -60),
            ("call.live_started", 0),
            ("call.session_participant_count_updated", 1),
            ("call.session_participant_joined", 2),
            ("call.ring", 3),
            ("call.ring", 4),
            ("call.permissions_updated", 5),
            ("call.ended", 20),
        ]
    ]
    rows = [
        row("ito", L, joined=2, left=15, reason="left"),
        row("ana", L, waited=-5, joined=0, left=20, reason="call_ended"),
    ]
    visits = fold_attendance(rows, names=NAMES, now=at(30))
    story = [(m.at, m.text, m.count) for m in summarise(events, visits)]
    assert story == [
        (at(-60), "Call set up", 1),
        (at(-5), "Ana Lima came to the lobby", 1),
        (at(0), "Call went live", 1),
        (at(0), "Ana Lima joined", 1),
        (at(2), "Dr Ito joined", 1),
        (at(3), "Rang the people in the call", 2),
        (at(15), "Dr Ito left", 1),
        (at(20), "Call ended", 1),  # (Ana Lima was still there: not said to leave)
    ]
    texts = " ".join(t for _, t, _ in story)
    assert "count" not in texts
    assert "call." not in texts
