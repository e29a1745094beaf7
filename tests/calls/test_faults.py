"""Fault test (issue 5), end to end with real processes: a scheduler (`manage.py run_scheduler`)
and a Celery worker (prefork, two children) on PostgreSQL and Redis, a local Web Push service.
Both are SIGKILLed (the whole process group) in the middle of a batch of due calls: the
scheduler once a third of the calls are live, the worker while one child waits for the answer
to a push (the other may be mid-send too). Then both are restarted.

Afterwards every call went live once and rang once (and its missed-call timeout fired once),
every push reached its browser, and a push the service saw twice is one whose send the kill
cut: sent again after PUSH_SENDING_STALE_SECONDS with the same Topic and tag, so the browser
shows one notification for it.

Needs PostgreSQL (the processes share the test database) and Redis (the broker); where the
suite runs on SQLite without them it skips, like tests/calls/push/test_real_worker.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict
from datetime import timedelta

import pytest
from django.utils import timezone

from calls.capabilities import SERVER
from calls.models import Call, CallEvent, DueAction, PushDelivery
from calls.outbox.push import webpush
from calls.services.base import MemberSpec
from calls.services.calls import call_get_or_create
from tests.calls.push.conftest import make_device
from tests.calls.push.processes import (
    process_env,
    purge_tasks,
    require_postgres_and_redis,
    start_scheduler,
    start_worker,
)
from tests.calls.push.standins import WebPushService, vapid_keypair
from tests.factories import CallUserFactory

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CALLS = 30
WAVES = 6  # calls start in 6 waves 0.4 s apart: 2 s from the first start to the last
WAVE_GAP = timedelta(seconds=0.4)
KILL_AT_PUSH = 2  # the worker dies while a child waits for the answer to this push
MISSED_AFTER_MS = 5000  # the ring's missed-call timeout (the least a call type accepts)
STALE_SECONDS = 7  # PUSH_SENDING_STALE_SECONDS for the processes (send limit 6 s, timeout 5)
PURPOSE = {"call.ring": "ring", "call.live_started": "notify", "call.missed": "missed"}


@pytest.fixture
def push_service():
    service = WebPushService()
    service.start()
    yield service
    service.stop()


def _processes_env(vapid_private: str) -> dict[str, str]:
    return process_env(
        WEBPUSH_VAPID_PRIVATE_KEY=vapid_private,
        WEBPUSH_VAPID_SUBJECT="mailto:ops@clinic.example",
        WEBPUSH_ALLOW_HTTP_ENDPOINTS="true",
        WEBPUSH_ALLOW_PRIVATE_NETWORKS="true",
        PUSH_TIMEOUT_SECONDS="5",
        PUSH_SEND_TIME_LIMIT_SECONDS="6",
        PUSH_SENDING_STALE_SECONDS=str(STALE_SECONDS),
        PUSH_RETRY_BASE_SECONDS="0.5",
    )


def _start(env, running: list) -> None:
    """Start a scheduler and a worker into `running` (stopped by the caller, even on failure)."""
    running[:] = [
        start_scheduler(env, max_sleep=0.2),
        start_worker(env, pool="prefork", concurrency=2),
    ]
    for process in running:
        process.wait_ready()


def _book_calls(push_service, vapid_public):
    """CALLS appointments, each with its own patient and browser, starting in WAVES."""
    CallUserFactory(id="doc")
    browsers = {}
    for i in range(CALLS):
        patient = CallUserFactory(id=f"pat-{i}")
        subscription = push_service.subscribe(vapid_public)
        make_device(patient, "webpush", subscription.endpoint, subscription.keys)
        browsers[f"visit-{i}"] = subscription.endpoint.rsplit("/", 1)[-1]
    first_start = timezone.now() + timedelta(seconds=3)  # booking takes about a second
    calls = {}
    for i in range(CALLS):
        call = call_get_or_create(
            actor=SERVER,
            type_name="appointment",  # backstage until it goes live
            call_id=f"visit-{i}",
            created_by_id="doc",
            members=[
                MemberSpec(user_id="doc", role="host"),
                MemberSpec(user_id=f"pat-{i}", role="call_member"),
            ],
            starts_at=first_start + WAVE_GAP * (i % WAVES),
            go_live_at_start=True,
            ring_at_start=True,
            settings_override={"ring": {"missed_call_timeout_ms": MISSED_AFTER_MS}},
        ).call
        assert call.backstage
        calls[call.pk] = call
    return calls, browsers


def _settled(push_service) -> bool:
    counts = Counter(CallEvent.objects.filter(type__in=PURPOSE).values_list("type", flat=True))
    if any(counts[t] < CALLS for t in PURPOSE):
        return False
    if PushDelivery.objects.exclude(state__in=["sent", "failed"]).exists():
        return False
    if PushDelivery.objects.count() < 3 * CALLS:
        return False
    with push_service.lock:
        seen = {(p.token, p.payload.get("tag")) for p in push_service.received}
    return len(seen) >= 3 * CALLS


def test_sigkill_mid_batch_then_restart_flips_each_call_once_and_shows_each_push_once(
    push_service,
):
    require_postgres_and_redis()
    vapid_private, vapid_public = vapid_keypair()
    env = _processes_env(vapid_private)
    purge_tasks()
    started = time.monotonic()
    running: list = []  # [scheduler, worker]
    worker_killed = threading.Event()
    kill_lock = threading.Lock()
    victim = {}

    def kill_worker_mid_send(push):
        # Runs in the push service while the worker waits for this push's answer.
        with kill_lock:
            if worker_killed.is_set() or len(push_service.received) < KILL_AT_PUSH:
                return
            running[1].kill()
            running[1].popen.wait(10)
            victim["push"] = push
            worker_killed.set()

    push_service.on_push = kill_worker_mid_send
    try:
        _start(env, running)
        scheduler = running[0]
        calls, browsers = _book_calls(push_service, vapid_public)
        # The scheduler dies once a third of the calls are live, the worker at its
        # KILL_AT_PUSH-th push: whichever comes first, the other goes on until its own moment.
        live_at_kill = None
        deadline = time.monotonic() + 30
        while live_at_kill is None or not worker_killed.is_set():
            assert time.monotonic() < deadline, "no kill:\n" + (
                "\n".join(p.log()[-2000:] for p in running)
            )
            live = Call.objects.filter(live_started_at__isnull=False).count()
            if live_at_kill is None and live >= CALLS // 3:
                scheduler.kill()
                scheduler.popen.wait(10)
                scheduler_killed_at = timezone.now()
                live_at_kill = Call.objects.filter(live_started_at__isnull=False).count()
            time.sleep(0.05)
        killed_at = time.monotonic()
        for process in running:
            process.stop()

        # The moment of the crash, as the database keeps it.
        sending_at_kill = set(
            PushDelivery.objects.filter(state="sending").values_list("pk", flat=True)
        )
        # Due when the scheduler died but not done: the batch it cut (rolled back), or the next.
        cut_actions = DueAction.objects.filter(
            state="pending", due_at__lte=scheduler_killed_at
        ).count()
        assert 0 < live_at_kill < CALLS, "the scheduler was not killed in the middle of the batch"

        _start(env, running)
        restarted_at = time.monotonic()
        deadline = restarted_at + 45  # generous: a loaded CI machine is slow, not wrong
        while not _settled(push_service):
            assert time.monotonic() < deadline, "not settled 45 s after the restart:\n" + (
                "\n".join(p.log()[-3000:] for p in running)
            )
            time.sleep(0.25)
        settled_at = time.monotonic()
    finally:
        push_service.on_push = None
        for process in running:
            process.stop()

    # Every call flipped exactly once: one go-live, one ring, one missed-call timeout.
    events = defaultdict(Counter)
    for call_id, type_ in CallEvent.objects.values_list("call_id", "type"):
        events[call_id][type_] += 1
    for pk in calls:
        assert events[pk]["call.live_started"] == 1, f"call {pk}: {dict(events[pk])}"
        assert events[pk]["call.ring"] == 1, f"call {pk}: {dict(events[pk])}"
        assert events[pk]["call.missed"] == 1, f"call {pk}: {dict(events[pk])}"
    assert not Call.objects.filter(pk__in=calls, live_started_at__isnull=True).exists()
    assert not Call.objects.filter(pk__in=calls, backstage=True).exists()
    actions = Counter(
        DueAction.objects.filter(call__in=calls).values_list("kind", "state", "last_error")
    )
    assert actions == {
        ("go_live", "done", ""): CALLS,
        ("ring", "done", ""): CALLS,
        ("ring_timeout", "done", ""): CALLS,
    }

    # Every push reached its browser; the expected ones and no others.
    rows = {}
    for row in PushDelivery.objects.select_related("device", "event"):
        browser = row.device.token.rsplit("/", 1)[-1]
        rows[(browser, f"{row.purpose}-{row.event_id}")] = row
    expected = set()
    for event in CallEvent.objects.filter(type__in=PURPOSE).select_related("call"):
        expected.add((browsers[event.call.call_id], f"{PURPOSE[event.type]}-{event.pk}"))
    assert set(rows) == expected
    assert {row.state for row in rows.values()} == {"sent"}
    received = push_service.received
    copies = Counter((p.token, p.payload["tag"]) for p in received)
    assert set(copies) == expected, "a push is missing, or one nobody expected arrived"
    assert push_service.errors == []

    # A push seen twice is a resend of a send the kill interrupted, one copy per attempt...
    resent = {key: n for key, n in copies.items() if n > 1}
    for key, n in copies.items():
        assert n <= rows[key].attempts, f"{key}: {n} copies from {rows[key].attempts} attempts"
    assert {rows[key].pk for key in resent} <= sending_at_kill, "a push sent twice uninterrupted"
    # ...and the one whose send was cut by the kill was sent again, not dropped.
    victim_key = (victim["push"].token, victim["push"].payload["tag"])
    assert rows[victim_key].pk in sending_at_kill
    assert (copies[victim_key], rows[victim_key].attempts) == (2, 2)

    # Every copy of a push carries the same Topic and tag, so each browser shows one
    # notification per push: per (browser, tag), one distinct notification.
    shown = defaultdict(set)
    topics = defaultdict(set)
    for push in received:
        key = (push.token, push.payload["tag"])
        shown[key].add(json.dumps(push.payload, sort_keys=True))
        topics[key].add(push.headers.get("topic"))
    assert all(len(notifications) == 1 for notifications in shown.values())
    assert all(topics[key] == {webpush.topic(key[1])} for key in topics)
    per_browser = Counter(token for token, _ in shown)
    assert set(per_browser.values()) == {3}  # ring, "call is live", missed call

    print(
        f"\nfault test: {CALLS} calls, {len(expected)} pushes expected, {len(received)} received;"
        f" scheduler killed with {live_at_kill}/{CALLS} calls live and {cut_actions} due "
        f"action(s) not done, worker killed at push {KILL_AT_PUSH} with "
        f"{len(sending_at_kill)} row(s) mid-send; "
        f"{len(resent)} row(s) interrupted and resent (same Topic/tag); "
        f"restart → settled {settled_at - restarted_at:.1f} s, "
        f"kill → settled {settled_at - killed_at:.1f} s, total {settled_at - started:.1f} s"
    )
