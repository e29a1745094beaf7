"""The delivery sweep: rows whose task was lost are finished or sent again, never twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from calls.models import PushDelivery
from calls.push import delivery

from .helpers import events_of, people, ring_call

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows(push_settings, webpush_device, settings, django_capture_on_commit_callbacks):
    """One ring and one notify delivery to the patient's browser, not enqueued."""
    settings.CALLS_EVENT_CONSUMERS = []
    _, patient = people()
    browser = webpush_device(patient)
    call = ring_call(django_capture_on_commit_callbacks, ring=True, notify=True)
    [ring] = events_of(call, "call.ring")
    [notify] = events_of(call, "call.notification")
    return (
        PushDelivery.objects.create(event=ring, device=browser, purpose="ring"),
        PushDelivery.objects.create(event=notify, device=browser, purpose="notify"),
    )


def age(row, minutes):
    then = timezone.now() - timedelta(minutes=minutes)
    PushDelivery.objects.filter(pk=row.pk).update(updated_at=then, claimed_at=then)


def test_a_send_interrupted_long_ago_is_failed_not_resent(rows, webpush_service):
    _, notify = rows
    PushDelivery.objects.filter(pk=notify.pk).update(state="sending", attempts=1)
    age(notify, 10)

    delivery.sweep()

    notify.refresh_from_db()
    assert (notify.state, notify.last_error) == ("failed", "interrupted: outcome unknown")
    assert webpush_service.received == []


def test_a_recent_send_in_progress_is_left_alone(rows, webpush_service):
    _, notify = rows
    PushDelivery.objects.filter(pk=notify.pk).update(state="sending", claimed_at=timezone.now())

    assert delivery.sweep() == 0
    notify.refresh_from_db()
    assert notify.state == "sending"


def test_a_stranded_notify_is_sent_and_a_stranded_ring_expires(rows, webpush_service):
    ring, notify = rows
    age(ring, 20)
    age(notify, 20)

    delivery.sweep()

    ring.refresh_from_db()
    notify.refresh_from_db()
    assert (ring.state, ring.last_error) == ("failed", "ring expired")
    assert notify.state == "sent"
    assert [p.payload["type"] for p in webpush_service.received] == ["call.notification"]


def test_a_ring_is_not_sent_once_it_is_stale(rows, webpush_service):
    ring, _ = rows
    ring.event.created_at = timezone.now() - timedelta(minutes=2)
    ring.event.save()

    delivery.deliver(ring.pk)

    ring.refresh_from_db()
    assert (ring.state, ring.last_error) == ("failed", "ring expired")
    assert webpush_service.received == []
