"""Due actions and the scheduler, with a controlled clock (and once with real waiting)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection, connections

from calls.capabilities import SERVER
from calls.models import Call, CallEvent, DueAction
from calls.scheduling import scheduler
from calls.services import live
from calls.services.base import MemberSpec
from calls.services.calls import call_delete, call_get_or_create, call_update
from calls.services.live import call_end, call_go_live, call_stop_live
from calls.services.sessions import participant_enter
from tests.factories import CallUserFactory

T = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def book(call_id="sched-1", starts_at=T, **kwargs):
    CallUserFactory(id="doc")
    CallUserFactory(id="pat")
    defaults = {
        "actor": SERVER,
        "type_name": "appointment",
        "call_id": call_id,
        "created_by_id": "doc",
        "members": [
            MemberSpec(user_id="doc", role="host"),
            MemberSpec(user_id="pat"),
        ],
        "starts_at": starts_at,
        "go_live_at_start": True,
        "ring_at_start": True,
        "reminder_offsets": [3600, 600],
    }
    defaults.update(kwargs)
    return call_get_or_create(**defaults).call


def pending(call):
    return sorted(
        (a.kind, a.key, a.due_at) for a in DueAction.objects.filter(call=call, state="pending")
    )


def events(call):
    return list(CallEvent.objects.filter(call=call).values_list("type", flat=True))


@pytest.mark.django_db
def test_booking_schedules_go_live_ring_and_reminders():
    with time_machine.travel(T - timedelta(days=1), tick=False):
        call = book()
    assert pending(call) == [
        ("go_live", "", T),
        ("reminder", "3600", T - timedelta(hours=1)),
        ("reminder", "600", T - timedelta(minutes=10)),
        ("ring", "", T),
    ]


@pytest.mark.django_db
def test_each_action_runs_once_at_its_time():
    with time_machine.travel(T - timedelta(days=1), tick=False):
        call = book()
    with time_machine.travel(T - timedelta(hours=1, seconds=1), tick=False):
        assert scheduler.run_due() == 0
    with time_machine.travel(T - timedelta(hours=1), tick=False):
        assert scheduler.run_due() == 1
        assert scheduler.run_due() == 0
    with time_machine.travel(T - timedelta(minutes=10), tick=False):
        assert scheduler.run_due() == 1  # the 10-minute reminder
    with time_machine.travel(T - timedelta(seconds=1), tick=False):
        assert scheduler.run_due() == 0
        assert Call.objects.get(pk=call.pk).backstage is True
    with time_machine.travel(T, tick=False):
        assert scheduler.run_due() == 2  # go live and ring
        assert scheduler.run_due() == 0
    call.refresh_from_db()
    assert call.backstage is False
    assert call.live_started_at == T
    assert events(call) == [
        "call.created",
        "call.reminder",
        "call.reminder",
        "call.live_started",
        "call.ring",
    ]
    ring = CallEvent.objects.get(call=call, type="call.ring").payload
    assert [m["user_id"] for m in ring["members"]] == ["pat"]
    # The ring armed its timeout (the type's missed_call_timeout_ms, 15 s).
    assert pending(call) == [("ring_timeout", "", T + timedelta(seconds=15))]
    with time_machine.travel(T + timedelta(seconds=15), tick=False):
        assert scheduler.run_due() == 1
    missed = CallEvent.objects.get(call=call, type="call.missed").payload
    assert [m["user_id"] for m in missed["members"]] == ["pat"]
    assert missed["user"]["id"] == "doc"
    assert not DueAction.objects.filter(state="pending").exists()
    assert DueAction.objects.filter(call=call, state="done").count() == 5


@pytest.mark.django_db
def test_reschedule_moves_pending_actions_and_leaves_no_old_reminder():
    with time_machine.travel(T - timedelta(days=1), tick=False):
        call = book()
        later = T + timedelta(hours=3)
        call_update(actor=SERVER, type_name="appointment", call_id=call.call_id, starts_at=later)
    assert pending(call) == [
        ("go_live", "", later),
        ("reminder", "3600", later - timedelta(hours=1)),
        ("reminder", "600", later - timedelta(minutes=10)),
        ("ring", "", later),
    ]
    with time_machine.travel(T, tick=False):
        assert scheduler.run_due() == 0
    assert Call.objects.get(pk=call.pk).backstage is True


@pytest.mark.django_db
def test_a_sent_reminder_is_sent_again_only_for_a_new_time():
    with time_machine.travel(T - timedelta(days=1), tick=False):
        call = book(reminder_offsets=[3600])
    with time_machine.travel(T - timedelta(minutes=50), tick=False):
        scheduler.run_due()
        call_update(
            actor=SERVER, type_name="appointment", call_id=call.call_id, custom={"note": "x"}
        )
        assert ("reminder", "3600") not in [(k, key) for k, key, _ in pending(call)]
        call_update(
            actor=SERVER,
            type_name="appointment",
            call_id=call.call_id,
            starts_at=T + timedelta(hours=2),
        )
    assert ("reminder", "3600", T + timedelta(hours=1)) in pending(call)


@pytest.mark.django_db
def test_end_and_delete_drop_pending_actions():
    with time_machine.travel(T - timedelta(days=1), tick=False):
        call = book()
        call_end(actor=SERVER, type_name="appointment", call_id=call.call_id)
    assert pending(call) == []
    with time_machine.travel(T - timedelta(days=1), tick=False):
        other = book(call_id="sched-2")
        call_delete(actor=SERVER, type_name="appointment", call_id=other.call_id)
    assert pending(other) == []
    with time_machine.travel(T, tick=False):
        assert scheduler.run_due() == 0


@pytest.mark.django_db
def test_reminders_already_past_are_not_scheduled():
    with time_machine.travel(T - timedelta(minutes=30), tick=False):
        call = book()
    assert [k for k, key, _ in pending(call)] == ["go_live", "reminder", "ring"]


@pytest.mark.django_db
def test_stop_live_before_the_start_still_goes_live_at_start_but_not_twice():
    with time_machine.travel(T - timedelta(days=1), tick=False):
        call = book(ring_at_start=False, reminder_offsets=[])
    with time_machine.travel(T, tick=False):
        scheduler.run_due()
    with time_machine.travel(T + timedelta(minutes=5), tick=False):
        call_stop_live(actor=SERVER, type_name="appointment", call_id=call.call_id)
        assert scheduler.run_due() == 0
    assert Call.objects.get(pk=call.pk).backstage is True


@pytest.mark.django_db
def test_a_failing_action_backs_off_then_fails_without_looping(monkeypatch):
    with time_machine.travel(T - timedelta(days=1), tick=False):
        call = book(ring_at_start=False, reminder_offsets=[])

    def broken(**kwargs):
        raise RuntimeError("database hiccup")

    # The batch fails, then the action on its own, each time.
    monkeypatch.setattr(live, "calls_go_live_at_start", broken)
    monkeypatch.setattr(live, "call_go_live", broken)
    now = T
    for attempt in range(1, scheduler.MAX_ATTEMPTS + 1):
        with time_machine.travel(now, tick=False):
            assert scheduler.run_due() == 1
        action = DueAction.objects.get(call=call, kind="go_live")
        assert action.attempts == attempt
        now = action.due_at
    assert action.state == "failed"
    assert "database hiccup" in action.last_error
    with time_machine.travel(now + timedelta(hours=1), tick=False):
        assert scheduler.run_due() == 0


@pytest.mark.django_db
def test_an_action_the_call_refuses_is_done_not_retried():
    with time_machine.travel(T - timedelta(days=1), tick=False):
        call = book(
            members=[MemberSpec(user_id="doc", role="host")],
            go_live_at_start=False,
            reminder_offsets=[],
        )
    with time_machine.travel(T, tick=False):
        assert scheduler.run_due() == 1
    action = DueAction.objects.get(call=call, kind="ring")
    assert action.state == "done"
    assert action.last_error == "no users to ring"


@pytest.mark.django_db(transaction=True)
def test_scheduler_process_loop_goes_live_on_time_with_real_waiting():
    """End to end with a real clock: a call due in 2 s, a scheduler that would otherwise
    sleep 30 s, woken by the new action (NOTIFY on PostgreSQL, in-process on SQLite)."""
    stop = threading.Event()

    def loop():
        try:
            scheduler.run_forever(max_sleep=30, stop=stop.is_set)
        finally:
            connections.close_all()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    time.sleep(0.5)  # the loop is asleep, with nothing due
    due = datetime.now(UTC) + timedelta(seconds=2)
    call = book(call_id="realtime-1", starts_at=due, ring_at_start=False, reminder_offsets=[])
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        call.refresh_from_db()
        if not call.backstage:
            break
        time.sleep(0.05)
    stop.set()
    from calls.scheduling import due as due_module

    due_module.wake_up.set()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [due_module.NOTIFY_CHANNEL])
    thread.join(timeout=5)
    assert call.backstage is False
    lateness = (call.live_started_at - due).total_seconds()
    assert 0 <= lateness < 1.0, lateness


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="several schedulers: PostgreSQL")
def test_two_schedulers_share_the_work_without_doubling():
    with time_machine.travel(T - timedelta(days=1), tick=False):
        CallUserFactory(id="doc")
        CallUserFactory(id="pat")
        for i in range(40):
            call_get_or_create(
                actor=SERVER,
                type_name="appointment",
                call_id=f"par-{i}",
                created_by_id="doc",
                starts_at=T,
                go_live_at_start=True,
                members=[
                    MemberSpec(user_id="doc", role="host"),
                    MemberSpec(user_id="pat"),
                ],
            )
    counts: list[int] = []

    def worker():
        try:
            with time_machine.travel(T, tick=False):
                total = 0
                while n := scheduler.run_due(limit=3):
                    total += n
                counts.append(total)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(counts) == 40
    assert CallEvent.objects.filter(type="call.live_started").count() == 40
    assert not Call.objects.filter(call_id__startswith="par-", backstage=True).exists()


@pytest.mark.django_db
def test_the_api_takes_the_scheduling_extensions(client, settings):
    import json

    from calls.tokens import mint_server_token

    CallUserFactory(id="doc")
    starts = datetime.now(UTC) + timedelta(days=1)
    response = client.post(
        f"/api/v2/video/call/default/ext-1?api_key={settings.CALLS_API_KEY}",
        data=json.dumps(
            {
                "data": {
                    "created_by_id": "doc",
                    "starts_at": starts.isoformat(),
                    "go_live_at_start": True,
                    "reminder_offsets": [600],
                }
            }
        ),
        content_type="application/json",
        HTTP_AUTHORIZATION=mint_server_token(),
    )
    assert response.status_code == 201
    body = response.json()["call"]
    assert body["go_live_at_start"] is True
    assert body["reminder_offsets"] == [600]
    call = Call.objects.get(call_id="ext-1")
    assert [k for k, _, _ in pending(call)] == ["reminder"]  # default type: not backstage
    bad = client.patch(
        f"/api/v2/video/call/default/ext-1?api_key={settings.CALLS_API_KEY}",
        data=json.dumps({"reminder_offsets": [-5]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=mint_server_token(),
    )
    assert bad.status_code == 400
    assert "reminder_offsets" in bad.json()["exception_fields"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("late", "applied"),
    [(timedelta(minutes=4), True), (timedelta(minutes=6), False)],
)
def test_a_ring_long_overdue_is_skipped_not_rung(late, applied):
    with time_machine.travel(T - timedelta(days=1), tick=False):
        call = book(go_live_at_start=False, reminder_offsets=[])
    with time_machine.travel(T + late, tick=False):
        assert scheduler.run_due() == 1
    action = DueAction.objects.get(call=call, kind="ring")
    assert action.state == "done"
    assert CallEvent.objects.filter(call=call, type="call.ring").exists() is applied
    assert action.last_error.startswith("skipped") is not applied
    # Not rung is not dropped: the members get the "call waiting" notify and staff the alert.
    fallbacks = CallEvent.objects.filter(call=call, type="call.ring_failed")
    assert fallbacks.exists() is not applied
    for event in fallbacks:
        assert [m["user_id"] for m in event.payload["members"]] == ["pat"]
        assert event.payload["ring_event_id"] is None


@pytest.mark.django_db
def test_go_live_overdue_beyond_the_calls_max_duration_is_skipped():
    with time_machine.travel(T - timedelta(days=1), tick=False):
        short = book(
            ring_at_start=False,
            reminder_offsets=[],
            settings_override={"limits": {"max_duration_seconds": 1800}},
        )
        long = book(
            call_id="sched-long",
            ring_at_start=False,
            reminder_offsets=[],
            settings_override={"limits": {"max_duration_seconds": 3600}},
        )
    with time_machine.travel(T + timedelta(minutes=31), tick=False):
        assert scheduler.run_due() == 2
    assert Call.objects.get(pk=short.pk).backstage is True  # 31 min late > 30 min
    assert Call.objects.get(pk=long.pk).backstage is False  # 31 min late < 60 min


@pytest.mark.django_db
def test_a_reminder_after_half_its_notice_is_skipped():
    with time_machine.travel(T - timedelta(days=1), tick=False):
        call = book(go_live_at_start=False, ring_at_start=False, reminder_offsets=[3600])
    with time_machine.travel(T - timedelta(minutes=29), tick=False):
        assert scheduler.run_due() == 1
    assert not CallEvent.objects.filter(call=call, type="call.reminder").exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="another connection's lock: PostgreSQL"
)
def test_a_loop_that_finds_the_due_work_locked_does_not_sweep_on_every_pass(monkeypatch):
    """Another scheduler holds the only due action: this one's passes neither take it nor repeat
    the housekeeping sweeps, which run at most once per `max_sleep` (bench/scheduler.py)."""
    import psycopg

    from calls.outbox import relay

    call = book(
        call_id="locked-1",
        starts_at=datetime.now(UTC) - timedelta(seconds=1),
        ring_at_start=False,
        reminder_offsets=[],
    )
    action = DueAction.objects.get(call=call, kind="go_live", state="pending")
    swept = []
    monkeypatch.setattr(relay, "sweep", lambda **_: swept.append(True))
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params) as other:  # the other scheduler, mid-batch
        other.execute("SELECT id FROM calls_dueaction WHERE id = %s FOR UPDATE", [action.pk])
        checks = iter([False] * 5 + [True])
        scheduler.run_forever(max_sleep=30, stop=lambda: next(checks))
        other.rollback()
    assert swept == [True]  # five passes, one sweep
    action.refresh_from_db()
    assert action.state == "pending"
    assert Call.objects.get(pk=call.pk).backstage is True


@pytest.mark.django_db
def test_calls_due_together_go_live_together_each_exactly_as_alone():
    """A batch of go-lives is applied at once (calls_go_live_at_start); every call ends up as
    call_go_live leaves it, with its one event; a call with someone in its lobby goes through
    call_go_live (they are admitted); one already live is left alone."""
    with time_machine.travel(T - timedelta(hours=2), tick=False):
        calls = [book(f"batch-{n}", ring_at_start=False, reminder_offsets=[]) for n in range(4)]
        call_go_live(actor=SERVER, type_name="appointment", call_id="batch-3")
    with time_machine.travel(T - timedelta(minutes=5), tick=False):
        from calls.capabilities import Actor
        from calls.models import CallUser

        pat = CallUser.objects.get(pk="pat")
        waiting = participant_enter(
            actor=Actor(user=pat, teams=frozenset(pat.teams)),
            type_name="appointment",
            call_id="batch-1",
            channel_name="x",
        )
    with time_machine.travel(T, tick=False):
        assert scheduler.run_due(now=T) == 3  # batch-3's go-live was dropped when it went live
    for call in calls:
        call.refresh_from_db()
        assert call.backstage is False
        assert events(call).count("call.live_started") == 1
    assert [c.live_started_at for c in calls[:3]] == [T, T, T]
    assert not DueAction.objects.filter(state="pending", kind="go_live").exists()
    assert DueAction.objects.filter(state="done", kind="go_live").count() == 3
    waiting.participant.refresh_from_db()
    assert waiting.participant.state == "joined"
    payload = CallEvent.objects.filter(call=calls[0], type="call.live_started").get().payload
    assert payload["call"]["backstage"] is False
    assert payload["call_cid"] == calls[0].cid
