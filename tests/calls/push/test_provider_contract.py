"""The contract every push provider keeps (APNs, FCM, Web Push), each against its stand-in: what
a push carries and how long it lives; which answers deactivate the device, which are retried
(with backoff or the service's Retry-After) and when to give up; a provider without usable
credentials; one push per delivery however often its task runs.

Each test runs once per provider (`provider`, an adapter from providers.py); what exists for
one provider only is in test_apns.py, test_fcm.py and test_webpush.py.
"""

from __future__ import annotations

import logging

import pytest
from django.utils import timezone

from calls.models import PushDelivery, PushDevice
from calls.outbox.push import delivery
from calls.outbox.tasks import deliver_push

from .helpers import delivery_for, ring_call
from .providers import PROVIDERS

pytestmark = pytest.mark.django_db

# What the two purposes say, and for how long (seconds) the push service may hold them.
PURPOSES = {
    "ring": ("call.ring", "Incoming call", "Tap to answer.", 0),  # now or never
    "notify": ("call.notification", "Your call is ready", "Tap to join the call.", 3600),
}
DEAD_TOKENS = [
    pytest.param(name, status, id=f"{name}-{status}")
    for name, cls in sorted(PROVIDERS.items())
    for status in cls.dead
]


@pytest.mark.parametrize("purpose", sorted(PURPOSES))
def test_a_push_carries_the_message_its_priority_lifetime_and_identifiers(
    purpose, provider, django_capture_on_commit_callbacks
):
    event_type, title, body, lifetime = PURPOSES[purpose]
    call = ring_call(
        django_capture_on_commit_callbacks, ring=purpose == "ring", notify=purpose == "notify"
    )

    [push] = provider.standin.received
    [row] = PushDelivery.objects.all()
    assert push.token == provider.token(provider.devices[purpose])
    assert provider.data(push) == {
        "cid": call.cid,
        "type": event_type,
        "call_type": "default",
        "call_id": "visit-1",
        "title": title,
        "body": body,
        "tag": f"{purpose}-{row.event_id}",  # what the app or service worker shows it under
    }
    assert provider.priority(push) == provider.priorities[purpose]
    assert abs(provider.lifetime(push) - lifetime) <= provider.clock_slack
    assert provider.identifiers(push) == provider.expected_identifiers(row)
    provider.check_detail(push, purpose, row)
    assert (row.purpose, row.state, row.attempts, row.last_status, row.last_error) == (
        purpose,
        "sent",
        1,
        provider.ok_status,
        "",
    )
    assert row.sent_at is not None


@pytest.mark.parametrize(("provider", "status"), DEAD_TOKENS, indirect=["provider"])
def test_a_dead_token_deactivates_the_device(provider, status, django_capture_on_commit_callbacks):
    device = provider.ring_device
    provider.script(device, [status])

    ring_call(django_capture_on_commit_callbacks)

    device.refresh_from_db()
    reason = provider.dead[status]
    assert not device.active
    assert device.deactivated_reason == f"{device.kind}: {reason}"
    [row] = PushDelivery.objects.all()
    assert (row.state, row.last_status, row.last_error, row.attempts) == (
        "failed",
        status,
        reason,
        1,
    )
    assert provider.standin.received == []


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_outages_are_retried_with_backoff(
    status, provider, settings, django_capture_on_commit_callbacks
):
    settings.CALLS_EVENT_CONSUMERS = []  # no automatic delivery: each step is driven by hand
    device = provider.devices["notify"]
    provider.script(device, [status])
    call = ring_call(django_capture_on_commit_callbacks, ring=False, notify=True)
    row = delivery_for(call, device, "notify")

    countdown = delivery.deliver(row.pk)

    row.refresh_from_db()
    assert (row.state, row.attempts, row.last_status) == ("retrying", 1, status)
    assert row.last_error == provider.error(status)
    assert countdown == 1.0  # PUSH_RETRY_BASE_SECONDS, doubled per attempt
    assert provider.standin.received == []

    assert delivery.deliver(row.pk) is None
    row.refresh_from_db()
    assert (row.state, row.attempts) == ("sent", 2)
    assert len(provider.standin.received) == 1


def test_the_services_retry_after_wins_over_the_backoff(
    provider, settings, django_capture_on_commit_callbacks
):
    settings.CALLS_EVENT_CONSUMERS = []  # driven by hand
    device = provider.devices["notify"]
    provider.script(device, [429], retry_after="7")
    call = ring_call(django_capture_on_commit_callbacks, ring=False, notify=True)
    row = delivery_for(call, device, "notify")

    assert delivery.deliver(row.pk) == 7.0

    row.refresh_from_db()
    assert (row.state, row.attempts, row.last_status) == ("retrying", 1, 429)


def test_the_task_retries_then_sends(provider, django_capture_on_commit_callbacks):
    provider.script(provider.ring_device, [503, 429])

    ring_call(django_capture_on_commit_callbacks)  # eager: the retries run in place

    [row] = PushDelivery.objects.all()
    assert (row.state, row.attempts, row.last_error) == ("sent", 3, "")
    assert len(provider.standin.received) == 1


def test_it_gives_up_after_max_attempts(provider, django_capture_on_commit_callbacks):
    device = provider.ring_device
    provider.script(device, [503, 503, 503, 503])

    ring_call(django_capture_on_commit_callbacks)

    [row] = PushDelivery.objects.all()
    assert (row.state, row.attempts, row.last_error) == ("failed", 3, provider.error(503))
    assert provider.standin.received == []
    device.refresh_from_db()
    assert device.active  # a busy service says nothing about the device


def test_without_credentials_the_provider_is_disabled(
    provider, settings, caplog, fresh_providers, django_capture_on_commit_callbacks
):
    setattr(settings, provider.credential, "")
    with caplog.at_level(logging.WARNING, logger="calls.push"):
        ring_call(django_capture_on_commit_callbacks)
        ring_call(django_capture_on_commit_callbacks, call_id="visit-2")

    disabled = [r for r in caplog.records if f"{provider.label} push disabled" in r.getMessage()]
    assert len(disabled) == 1  # said once, not per push
    assert f"{provider.label} push disabled: {provider.credential} not set" in (
        disabled[0].getMessage()
    )
    assert list(PushDelivery.objects.values_list("state", "last_error")) == [
        ("failed", "provider disabled"),
        ("failed", "provider disabled"),
    ]
    assert provider.standin.received == []
    assert PushDevice.objects.get(pk=provider.ring_device.pk).active


def test_an_exception_in_a_send_is_retried_not_dropped(
    provider, settings, fresh_providers, django_capture_on_commit_callbacks
):
    settings.CALLS_EVENT_CONSUMERS = []  # the delivery is driven by hand
    provider.break_credentials(settings)
    call = ring_call(django_capture_on_commit_callbacks)
    row = delivery_for(call, provider.ring_device, "ring")

    assert delivery.deliver(row.pk) == 1.0  # whether it left is unknown: try again

    row.refresh_from_db()
    assert (row.state, row.attempts) == ("retrying", 1)
    assert row.last_error.startswith("outcome unknown: ")
    assert provider.standin.received == []


def test_the_task_run_twice_sends_one_push(provider, django_capture_on_commit_callbacks):
    ring_call(django_capture_on_commit_callbacks)
    [row] = PushDelivery.objects.all()

    deliver_push.delay(row.pk)  # a duplicate enqueue, or the broker redelivering
    deliver_push.delay(row.pk)

    assert len(provider.standin.received) == 1


def test_a_row_being_sent_is_not_sent_by_a_second_run(
    provider, settings, django_capture_on_commit_callbacks
):
    settings.CALLS_EVENT_CONSUMERS = []  # relay nothing: we play the first run by hand
    call = ring_call(django_capture_on_commit_callbacks)
    row = delivery_for(call, provider.ring_device, "ring")
    PushDelivery.objects.filter(pk=row.pk).update(
        state="sending", attempts=1, claimed_at=timezone.now()
    )

    deliver_push.delay(row.pk)  # the broker redelivering while the first run still sends

    assert provider.standin.received == []
    row.refresh_from_db()
    assert (row.state, row.attempts) == ("sending", 1)  # the sweep decides, after the bound


def test_a_delivery_does_not_read_its_events_payload(
    provider, settings, django_capture_on_commit_callbacks
):
    """A ring's payload lists every member: each of its deliveries reading it made a ring to
    N devices cost N x N (bench/push.py)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.CALLS_EVENT_CONSUMERS = []  # the delivery is driven by hand
    device = provider.devices["notify"]
    call = ring_call(django_capture_on_commit_callbacks, ring=False, notify=True)
    row = delivery_for(call, device, "notify")

    with CaptureQueriesContext(connection) as queries:
        delivery.deliver(row.pk)

    row.refresh_from_db()
    assert row.state == "sent"
    assert not [q for q in queries if '"calls_callevent"."payload"' in q["sql"]]
