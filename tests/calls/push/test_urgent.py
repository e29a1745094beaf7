"""Pushes someone is waiting for now (a ring, the call going live) leave before the others,
are asked of the push services as urgent, and travel together: a delivery task also sends the
urgent pushes still waiting for their own tasks, so under load a relay batch's few go-live
pushes do not each wait for a task of their own. Query counts of the push path."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from calls.capabilities import SERVER
from calls.models import PushDelivery
from calls.outbox.push import delivery, dispatch
from calls.services.base import MemberSpec
from calls.services.calls import call_get_or_create
from calls.services.live import call_go_live
from tests.factories import CallUserFactory

from .helpers import emit

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("push_settings")]


@pytest.fixture
def handed(monkeypatch):
    """What the push consumer hands to the queue, (ids, urgent), without sending it."""
    calls: list[tuple[list[int], bool]] = []
    monkeypatch.setattr(
        dispatch,
        "enqueue_deliveries",
        lambda ids, *, urgent=False: calls.append((sorted(ids), urgent)),
    )
    return calls


@pytest.fixture
def waiting_patients(webpush_device, django_capture_on_commit_callbacks):
    """Four calls, each with its patient (a browser subscribed to the stand-in) waiting."""
    CallUserFactory(id="doc-1")
    calls = []
    for n in range(4):
        webpush_device(CallUserFactory(id=f"pat-{n}"))
        with django_capture_on_commit_callbacks(execute=True):
            view = call_get_or_create(
                actor=SERVER,
                type_name="default",
                call_id=f"visit-{n}",
                created_by_id="doc-1",
                members=[MemberSpec(user_id="doc-1", role="host"), MemberSpec(user_id=f"pat-{n}")],
            )
        calls.append(view.call)
    return calls


def go_live(capture, calls) -> None:
    """These calls go live in one transaction (a scheduler batch): one relay run."""
    with capture(execute=True), transaction.atomic():
        for call in calls:
            call_go_live(actor=SERVER, type_name="default", call_id=call.call_id)


def test_go_live_pushes_are_urgent_and_the_first_task_takes_those_waiting(
    waiting_patients, handed, webpush_service, django_capture_on_commit_callbacks
):
    calls = waiting_patients
    go_live(django_capture_on_commit_callbacks, calls[:2])
    go_live(django_capture_on_commit_callbacks, calls[2:])
    emit(django_capture_on_commit_callbacks, calls[0], "call.reminder", starts_in_seconds=600)
    (first, first_urgent), (second, second_urgent), (reminder, reminder_urgent) = handed
    assert (len(first), len(second), len(reminder)) == (2, 2, 1)
    assert (first_urgent, second_urgent, reminder_urgent) == (True, True, False)

    # The first go-live batch's task also sends the second's, waiting behind it: one claim
    # (rows, devices, events), the call type's settings, one record of the outcomes.
    with CaptureQueriesContext(connection) as queries:
        assert delivery.deliver_many(first, take_waiting=True) == {}
    assert len(queries) == 3, [q["sql"][:80] for q in queries]
    pushes = webpush_service.received
    assert sorted(p.payload["cid"] for p in pushes) == [c.cid for c in calls]
    assert {(p.payload["type"], p.headers["urgency"]) for p in pushes} == {
        ("call.live_started", "high")
    }
    rows = dict(PushDelivery.objects.values_list("pk", "state"))
    assert {rows[pk] for pk in first + second} == {"sent"}
    assert rows[reminder[0]] == "queued"  # not urgent: its own task, after

    # The second batch's task finds its rows sent: one claim, nothing else.
    with CaptureQueriesContext(connection) as queries:
        assert delivery.deliver_many(second, take_waiting=True) == {}
    assert len(queries) == 1
    assert len(webpush_service.received) == 4

    delivery.deliver_many(reminder, take_waiting=True)
    [sent] = webpush_service.received[4:]
    assert (sent.payload["type"], sent.headers["urgency"]) == ("call.reminder", "normal")


def test_without_take_waiting_a_batch_sends_only_its_own_rows(
    waiting_patients, handed, webpush_service, django_capture_on_commit_callbacks
):
    """`deliver` (one row, the older task) hands back only its own row's retry: it must not
    take rows whose retries it could not hand on."""
    go_live(django_capture_on_commit_callbacks, waiting_patients)
    [(ids, urgent)] = handed
    assert urgent
    assert delivery.deliver(ids[0]) is None
    assert len(webpush_service.received) == 1
    states = sorted(PushDelivery.objects.values_list("state", flat=True))
    assert states == ["queued", "queued", "queued", "sent"]
