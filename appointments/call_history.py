"""An appointment's call told in clinic language, for the appointment page: the people's roles
by name, attendance folded into one line per person per visit, and the event history
summarised in sentences (the raw log stays on the page, collapsed). Pure functions over what
`selectors.appointment_call` read: no queries here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from calls.models import CallEvent, CallParticipant

from .models import AppointmentMember

# What each appointment member's kind is called on staff pages; the patient is "Patient".
ROLE_NAMES = {
    AppointmentMember.Kind.HOST: "Host clinician",
    AppointmentMember.Kind.CLINICIAN: "Clinician",
    AppointmentMember.Kind.INTERPRETER: "Interpreter",
    AppointmentMember.Kind.GUEST: "Guest",
}
PATIENT = "Patient"

# A person who comes back within this long after leaving (a reload, a dropped connection, a
# second tab, the lobby then the call) is on the same visit.
VISIT_GAP = timedelta(minutes=5)

# Why a visit ended, when staff should know; the engine's other reasons (the person left, the
# call ended, sent back to the lobby) need no word.
_END_NOTES = {
    "timeout": "connection lost",
    "disconnected": "connection lost",
    "removed": "removed from the call",
    "kicked": "removed from the call",
    "blocked": "removed from the call",
}


# The engine's reasons for everyone leaving at once because the call ended.
_CALL_ENDED = ("call_ended", "callended", "call_deleted")


@dataclass
class Visit:
    """One person's visit to the call: from their first tab's arrival to their last one's
    departure, gaps under `VISIT_GAP` included."""

    user_id: str
    name: str
    role: str
    arrived_at: datetime  # in the lobby or straight into the call
    joined_at: datetime | None  # first time in the call (None: never got in)
    left_at: datetime | None  # None: still there
    now: str  # "waiting", "in_call" or "left"
    seconds_in_call: int
    end_note: str = ""
    ended_with_call: bool = False  # still there when the call ended

    @property
    def minutes(self) -> int:
        return round(self.seconds_in_call / 60)

    @property
    def waited_minutes(self) -> int:
        if self.joined_at is None:
            return 0
        return round((self.joined_at - self.arrived_at).total_seconds() / 60)


def _start(p: CallParticipant) -> datetime | None:
    return p.waiting_since or p.joined_at


def _in_call_seconds(rows: list[CallParticipant], now: datetime) -> int:
    """Time in the call, the union of the tabs' stays (two tabs at once count once)."""
    spans = sorted((p.joined_at, p.left_at or now) for p in rows if p.joined_at is not None)
    total, cur_start, cur_end = 0.0, None, None
    for start, end in spans:
        if cur_end is None or start > cur_end:
            if cur_end is not None and cur_start is not None:
                total += (cur_end - cur_start).total_seconds()
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    if cur_end is not None and cur_start is not None:
        total += (cur_end - cur_start).total_seconds()
    return max(0, int(total))


def _visit(user_id: str, name: str, role: str, rows: list[CallParticipant], now: datetime) -> Visit:
    states = {p.state for p in rows}
    present = "in_call" if "joined" in states else "waiting" if "waiting" in states else "left"
    joined = [p.joined_at for p in rows if p.joined_at is not None]
    last = max(rows, key=lambda p: p.left_at or now)
    return Visit(
        user_id=user_id,
        name=name,
        role=role,
        arrived_at=min(s for p in rows if (s := _start(p)) is not None),
        joined_at=min(joined, default=None),
        left_at=None if present != "left" else last.left_at,
        now=present,
        seconds_in_call=_in_call_seconds(rows, now),
        end_note=_END_NOTES.get(last.left_reason, "") if present == "left" else "",
        ended_with_call=present == "left" and last.left_reason in _CALL_ENDED,
    )


def fold_attendance(
    participants: Iterable[CallParticipant],
    *,
    names: dict[str, tuple[str, str]],
    now: datetime,
) -> list[Visit]:
    """One visit per person per stay, ordered by arrival. `participants`: every participant
    row of the call (`calls.selectors.call_attendance`, users loaded); `names`: call user id →
    (name, role name) for the appointment's people; others are named from their user."""
    by_user: dict[str, list[CallParticipant]] = {}
    for p in participants:
        if _start(p) is not None:
            by_user.setdefault(p.user_id, []).append(p)
    visits = []
    for user_id, rows in by_user.items():
        name, role = names.get(user_id) or (rows[0].user.name or "Someone", "")
        rows.sort(key=lambda p: _start(p))  # type: ignore[arg-type, return-value]
        group: list[CallParticipant] = []
        group_end: datetime | None = None
        for p in rows:
            start = _start(p)
            assert start is not None  # noqa: S101 - filtered above
            if group and group_end is not None and start > group_end + VISIT_GAP:
                visits.append(_visit(user_id, name, role, group, now))
                group, group_end = [], None
            group.append(p)
            end = p.left_at or now
            group_end = end if group_end is None else max(group_end, end)
        visits.append(_visit(user_id, name, role, group, now))
    visits.sort(key=lambda v: (v.arrived_at, v.name))
    return visits


# Call events worth a sentence on the appointment page; the people's comings and goings come
# from the attendance (with names), the rest stays in the raw log.
EVENT_SENTENCES = {
    "call.created": "Call set up",
    "call.live_started": "Call went live",
    "call.ring": "Rang the people in the call",
    "call.missed": "The ring was not answered",
    "call.reminder": "Reminder sent to the patient",
    "call.no_show": "Patient recorded as a no-show",
    "call.kicked_user": "Someone was removed from the call",
    "call.blocked_user": "Someone was blocked from the call",
    "call.member_added": "Someone was added to the call",
    "call.member_removed": "Someone was taken off the call",
    "call.ended": "Call ended",
}


@dataclass
class Moment:
    at: datetime
    text: str
    count: int = 1


def summarise(events: Iterable[CallEvent], visits: list[Visit]) -> list[Moment]:
    """The call's story in sentences, oldest first: what the call did (`EVENT_SENTENCES`)
    and who came and went ("Dr Ito joined", "Ana Silva came to the lobby"; those still there
    at the end are not said to leave: "Call ended" says it). The same sentence repeated in a
    row is said once, with a count."""
    moments = [
        Moment(at=e.created_at, text=EVENT_SENTENCES[e.type])
        for e in events
        if e.type in EVENT_SENTENCES
    ]
    for v in visits:
        if v.joined_at is None or v.waited_minutes >= 1:
            moments.append(Moment(at=v.arrived_at, text=f"{v.name} came to the lobby"))
        if v.joined_at is not None:
            moments.append(Moment(at=v.joined_at, text=f"{v.name} joined"))
        if v.left_at is not None and not v.ended_with_call:  # "Call ended" says it
            note = f" ({v.end_note})" if v.end_note else ""
            moments.append(Moment(at=v.left_at, text=f"{v.name} left{note}"))
    moments.sort(key=lambda m: m.at)
    folded: list[Moment] = []
    for m in moments:
        if folded and folded[-1].text == m.text:
            folded[-1].count += 1
        else:
            folded.append(m)
    return folded
