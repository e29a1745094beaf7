"""The whole path with real processes: the scheduler rings a call at its start, a Celery
worker (a subprocess, Redis broker, PostgreSQL) relays the event and sends the Web Push; two
concurrent sends of one delivery push once; a send that outlives the staleness bound is sent
again and its late answer ignored. (The crash itself, SIGKILL mid-send: tests/calls/test_faults.py.)

Needs PostgreSQL (a worker process cannot see SQLite's in-memory test database) and Redis.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from calls.capabilities import SERVER
from calls.models import PushDelivery
from calls.outbox.push import delivery
from calls.scheduling import scheduler
from calls.services.base import MemberSpec
from calls.services.calls import call_get_or_create

from .helpers import delivery_for, events_of
from .processes import (
    process_env,
    purge_tasks,
    require_postgres,
    require_postgres_and_redis,
    start_worker,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def postgres_only():
    require_postgres()


@pytest.fixture
def worker(postgres_only, provider_settings, vapid_keys):
    require_postgres_and_redis()
    purge_tasks()
    process = start_worker(
        process_env(
            WEBPUSH_VAPID_PRIVATE_KEY=vapid_keys[0],
            WEBPUSH_VAPID_SUBJECT=provider_settings.WEBPUSH_VAPID_SUBJECT,
            WEBPUSH_ALLOW_HTTP_ENDPOINTS="true",
            WEBPUSH_ALLOW_PRIVATE_NETWORKS="true",
        )
    )
    process.wait_ready()
    yield process.log_path
    process.stop()


def test_a_call_rings_the_patient_through_the_worker_at_its_start(
    worker, patient_browser, webpush_service
):
    browser = patient_browser
    stop = threading.Event()

    def run_scheduler():
        try:
            scheduler.run_forever(max_sleep=0.2, stop=stop.is_set)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run_scheduler, daemon=True)
    thread.start()
    try:
        starts_at = timezone.now() + timedelta(seconds=3)
        call = call_get_or_create(
            actor=SERVER,
            type_name="default",
            call_id="e2e-visit",
            created_by_id="doc-1",
            members=[MemberSpec(user_id="doc-1", role="host"), MemberSpec(user_id="pat-1")],
            starts_at=starts_at,
            ring_at_start=True,
        ).call
        arrived = webpush_service.wait_for(1, timeout=11)
    finally:
        stop.set()
        thread.join(5)
    assert arrived, "no push within 8 s of the start:\n" + worker.read_text()[-3000:]
    assert timezone.now() - starts_at < timedelta(seconds=8)
    [push] = webpush_service.received
    assert push.token == browser.sub_id
    assert push.payload["type"] == "call.ring"
    assert push.payload["cid"] == call.cid
    [event] = events_of(call, "call.ring")
    [row] = PushDelivery.objects.filter(event=event)
    assert (row.state, row.attempts) == ("sent", 1)
    assert "calls.outbox.tasks.deliver_push" in worker.read_text()  # sent by the worker, not by us


def _wait_until(what: str, done, log_paths) -> None:
    deadline = time.monotonic() + 20
    while not done():
        assert time.monotonic() < deadline, f"{what}:\n" + "\n".join(
            path.read_text()[-2000:] for path in log_paths
        )
        time.sleep(0.05)


def test_a_relay_worker_relays_and_the_other_workers_send(
    postgres_only, provider_settings, vapid_keys, patient_browser, webpush_service
):
    """README "Production": a worker started with `-Q relay` relays committed events and
    nothing else (the pushes they make wait for a worker of the default queue); a worker
    started without `-Q` takes both queues."""
    require_postgres_and_redis()
    purge_tasks()
    env = process_env(
        WEBPUSH_VAPID_PRIVATE_KEY=vapid_keys[0],
        WEBPUSH_VAPID_SUBJECT=provider_settings.WEBPUSH_VAPID_SUBJECT,
        WEBPUSH_ALLOW_HTTP_ENDPOINTS="true",
        WEBPUSH_ALLOW_PRIVATE_NETWORKS="true",
    )
    relayer = start_worker(env, queues="relay")
    relayer.wait_ready()
    sender = None
    try:
        call = call_get_or_create(
            actor=SERVER,
            type_name="default",
            call_id="relay-queue",
            created_by_id="doc-1",
            members=[MemberSpec(user_id="doc-1"), MemberSpec(user_id="pat-1")],
            notify=True,
        ).call
        [event] = events_of(call, "call.notification")
        _wait_until(
            "the relay worker did not relay the event",
            lambda: PushDelivery.objects.filter(event=event).exists(),
            [relayer.log_path],
        )
        event.refresh_from_db()
        assert event.relayed_at is not None
        [row] = PushDelivery.objects.filter(event=event)
        assert row.state == "queued"  # its task waits in the default queue: not the relay's
        assert webpush_service.received == []

        sender = start_worker(env)  # every queue
        sender.wait_ready()
        _wait_until(
            "the default worker did not send the push",
            lambda: PushDelivery.objects.filter(pk=row.pk, state="sent").exists(),
            [relayer.log_path, sender.log_path],
        )
    finally:
        relayer.stop()
        if sender is not None:
            sender.stop()
    [push] = webpush_service.received
    assert push.token == patient_browser.sub_id
    ran = relayer.log_path.read_text()  # "Task <name>[<id>] received" per task it took
    assert "calls.outbox.tasks.relay_events[" in ran
    assert "calls.outbox.tasks.deliver_pushes[" not in ran


def notify_delivery(browser, call_id: str) -> PushDelivery:
    """A notify push to the patient's browser, as a row for the test to drive by hand."""
    call = call_get_or_create(
        actor=SERVER,
        type_name="default",
        call_id=call_id,
        created_by_id="doc-1",
        members=[MemberSpec(user_id="doc-1"), MemberSpec(user_id="pat-1")],
        notify=True,
    ).call
    return delivery_for(call, browser, "notify")


def test_two_concurrent_sends_of_one_delivery_push_once(
    postgres_only, provider_settings, patient_browser, webpush_service, settings
):
    settings.CALLS_EVENT_CONSUMERS = []  # rows are driven by hand here
    row = notify_delivery(patient_browser, "race")
    webpush_service.delay = 0.3
    barrier = threading.Barrier(4)

    def send():
        try:
            barrier.wait()
            delivery.deliver(row.pk)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert len(webpush_service.received) == 1
    row.refresh_from_db()
    assert (row.state, row.attempts) == ("sent", 1)


def test_a_send_outliving_the_bound_is_resent_and_its_late_answer_is_ignored(
    postgres_only, provider_settings, eager_tasks, patient_browser, webpush_service, settings
):
    """Without task time limits (solo or thread pools) a send can outlive the bound: the sweep
    takes the row back and sends again; the slow run's late answer must not overwrite the
    newer attempt's (here it would leave the row `retrying`, for a third push)."""
    settings.CALLS_EVENT_CONSUMERS = []  # rows are driven by hand here
    settings.PUSH_SENDING_STALE_SECONDS = 0.5
    row = notify_delivery(patient_browser, "slow")
    browser = row.device
    webpush_service.delay = 1.5
    webpush_service.script(browser.sub_id, [503, 201])  # the slow run's answer comes first
    countdowns = []

    def slow_run():
        try:
            countdowns.append(delivery.deliver(row.pk))
        finally:
            connections.close_all()

    thread = threading.Thread(target=slow_run)
    thread.start()
    deadline = time.monotonic() + 10
    while not PushDelivery.objects.filter(pk=row.pk, state="sending").exists():
        assert time.monotonic() < deadline, "the slow run never claimed the row"
        time.sleep(0.02)
    time.sleep(0.7)  # past the bound
    assert delivery.sweep() == 1  # taken back and sent again, in place (eager)
    thread.join(10)

    row.refresh_from_db()
    assert (row.state, row.attempts, row.last_status) == ("sent", 2, 201)
    assert countdowns == [None]  # the late run recorded nothing and asks for no retry
    [push] = webpush_service.received  # the 503 one was not accepted
    assert push.payload["tag"] == f"notify-{row.event_id}"
