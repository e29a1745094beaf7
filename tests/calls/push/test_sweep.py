"""The delivery sweep: a send interrupted by a crash is sent again, once, with the same
identifiers (so the device shows one notification); rows whose task was lost are enqueued
again; rings too old to ring are not sent."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from calls.models import PushDelivery
from calls.outbox.push import delivery

from .helpers import delivery_for, ring_call
from .processes import BASE_DIR

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows(push_settings, patient_browser, settings, django_capture_on_commit_callbacks):
    """One ring and one notify delivery to the patient's browser, not enqueued."""
    settings.CALLS_EVENT_CONSUMERS = []
    call = ring_call(django_capture_on_commit_callbacks, ring=True, notify=True)
    return (
        delivery_for(call, patient_browser, "ring"),
        delivery_for(call, patient_browser, "notify"),
    )


def age(row, seconds):
    then = timezone.now() - timedelta(seconds=seconds)
    PushDelivery.objects.filter(pk=row.pk).update(updated_at=then, claimed_at=then)


def crash_after_send(row, seconds_ago):
    """The row as a worker killed after the push left, before it recorded the answer, leaves
    it: still `sending`, claimed `seconds_ago`."""
    PushDelivery.objects.filter(pk=row.pk).update(state="sending", sent_at=None, last_status=None)
    age(row, seconds_ago)


def test_a_send_interrupted_by_a_crash_is_resent_once_with_the_same_identifiers(
    provider, settings, django_capture_on_commit_callbacks
):
    """Per provider, the identifiers the device (or its push service) collapses on: the tag,
    the Web Push Topic, the APNs collapse id and apns-id, the FCM collapse_key."""
    settings.CALLS_EVENT_CONSUMERS = []
    call = ring_call(django_capture_on_commit_callbacks)
    row = delivery_for(call, provider.ring_device, "ring")
    assert delivery.deliver(row.pk) is None  # the push leaves...
    crash_after_send(row, settings.PUSH_SENDING_STALE_SECONDS + 1)  # ...the record does not

    assert delivery.sweep() == 1
    assert delivery.sweep() == 0  # sent: nothing left to take back

    first, second = provider.standin.received
    assert provider.identifiers(second) == provider.identifiers(first)
    assert second.payload == first.payload
    assert provider.identifiers(first) == provider.expected_identifiers(row)
    row.refresh_from_db()
    assert (row.state, row.attempts, row.last_error) == ("sent", 2, "")


def test_an_interrupted_send_that_used_its_attempts_is_failed_not_resent(
    rows, webpush_service, settings
):
    _, notify = rows
    PushDelivery.objects.filter(pk=notify.pk).update(
        state="sending", attempts=settings.PUSH_MAX_ATTEMPTS
    )
    age(notify, settings.PUSH_SENDING_STALE_SECONDS + 1)

    assert delivery.sweep() == 1

    notify.refresh_from_db()
    assert (notify.state, notify.last_error) == ("failed", "interrupted: outcome unknown")
    assert webpush_service.received == []  # a push that keeps killing its worker cannot loop


def test_an_interrupted_ring_too_old_to_ring_is_not_resent(rows, webpush_service, settings):
    ring, _ = rows
    PushDelivery.objects.filter(pk=ring.pk).update(state="sending", attempts=1)
    age(ring, settings.PUSH_SENDING_STALE_SECONDS + 1)
    ring.event.created_at = timezone.now() - delivery.ring_max_age() - timedelta(seconds=1)
    ring.event.save()

    delivery.sweep()

    ring.refresh_from_db()
    assert (ring.state, ring.last_error) == ("failed", "ring expired")
    assert webpush_service.received == []


def test_a_send_in_progress_is_left_alone_until_the_bound(rows, webpush_service, settings):
    _, notify = rows
    PushDelivery.objects.filter(pk=notify.pk).update(state="sending", attempts=1)
    age(notify, settings.PUSH_SENDING_STALE_SECONDS - 2)

    assert delivery.sweep() == 0
    notify.refresh_from_db()
    assert notify.state == "sending"
    assert webpush_service.received == []

    age(notify, settings.PUSH_SENDING_STALE_SECONDS + 1)
    assert delivery.sweep() == 1
    notify.refresh_from_db()
    assert (notify.state, notify.attempts) == ("sent", 2)


def test_the_stale_bound_outlasts_the_send_time_limit(settings):
    # A live send must never be taken for dead: the task is stopped before the bound.
    from calls.outbox.tasks import deliver_push

    assert deliver_push.time_limit == settings.PUSH_SEND_TIME_LIMIT_SECONDS
    assert deliver_push.soft_time_limit < deliver_push.time_limit
    assert deliver_push.time_limit < settings.PUSH_SENDING_STALE_SECONDS
    assert timedelta(seconds=settings.PUSH_SENDING_STALE_SECONDS) < delivery.ring_max_age()


def test_a_bound_not_longer_than_the_send_limit_fails_at_start_up():
    env = {**os.environ, "PUSH_SEND_TIME_LIMIT_SECONDS": "30", "PUSH_SENDING_STALE_SECONDS": "30"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert "PUSH_SENDING_STALE_SECONDS must exceed PUSH_SEND_TIME_LIMIT_SECONDS" in result.stderr


def test_lost_queued_rows_are_sent_and_a_lost_ring_too_old_to_ring_expires(
    rows, webpush_service, settings
):
    ring, notify = rows
    age(ring, settings.PUSH_SENDING_STALE_SECONDS + 1)
    age(notify, settings.PUSH_SENDING_STALE_SECONDS + 1)
    ring.event.created_at = timezone.now() - timedelta(minutes=20)
    ring.event.save()

    delivery.sweep()

    ring.refresh_from_db()
    notify.refresh_from_db()
    assert (ring.state, ring.last_error) == ("failed", "ring expired")
    assert (notify.state, notify.attempts) == ("sent", 1)
    assert [p.payload["type"] for p in webpush_service.received] == ["call.notification"]


def test_a_lost_ring_still_fresh_is_sent(rows, webpush_service, settings):
    ring, _ = rows
    age(ring, settings.PUSH_SENDING_STALE_SECONDS + 1)  # queued that long: its message was lost

    delivery.sweep()

    ring.refresh_from_db()
    assert (ring.state, ring.attempts) == ("sent", 1)
    assert [p.payload["type"] for p in webpush_service.received] == ["call.ring"]


def test_a_retrying_row_waits_for_its_backoff(rows, webpush_service, settings):
    _, notify = rows
    PushDelivery.objects.filter(pk=notify.pk).update(state="retrying", attempts=1)
    age(notify, delivery.MAX_BACKOFF_SECONDS - 1)  # its countdown may still be running

    assert delivery.sweep() == 0

    age(notify, delivery.STRANDED_AFTER.total_seconds() + 1)  # its retry message was lost
    assert delivery.sweep() == 1
    notify.refresh_from_db()
    assert (notify.state, notify.attempts) == ("sent", 2)


def test_a_ring_is_not_sent_once_it_is_stale(rows, webpush_service):
    ring, _ = rows
    ring.event.created_at = timezone.now() - timedelta(minutes=2)
    ring.event.save()

    delivery.deliver(ring.pk)

    ring.refresh_from_db()
    assert (ring.state, ring.last_error) == ("failed", "ring expired")
    assert webpush_service.received == []
