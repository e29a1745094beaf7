"""Which events push, to whom, on which devices; and doing it twice does nothing twice."""

from __future__ import annotations

import pytest
from django.db import transaction

from calls.capabilities import SERVER
from calls.models import CallType, PushDelivery
from calls.outbox.events import event_emit
from calls.outbox.push import dispatch
from calls.outbox.tasks import deliver_push
from calls.services.base import MemberSpec
from calls.services.calls import call_members_update
from calls.services.live import call_end, call_go_live
from tests.factories import CallUserFactory

from .conftest import make_device
from .helpers import emit, events_of, ring_call

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("push_settings")]


def targets(event_type=None):
    rows = PushDelivery.objects.select_related("device", "event")
    if event_type:
        rows = rows.filter(event__type=event_type)
    return sorted((r.device.user_id, r.device.kind, r.purpose) for r in rows)


def test_a_ring_goes_to_the_callee_never_the_caller(
    everyone_has_devices,
    webpush_service,
    apns_server,
    fcm_server,
    django_capture_on_commit_callbacks,
):
    ring_call(django_capture_on_commit_callbacks)

    # The iPhone rings through VoIP only: its alert token gets nothing (no double ring).
    assert targets() == [
        ("pat-1", "apns_voip", "ring"),
        ("pat-1", "fcm", "ring"),
        ("pat-1", "webpush", "ring"),
    ]
    assert set(PushDelivery.objects.values_list("state", flat=True)) == {"sent"}
    assert len(webpush_service.received) == 1
    assert [r.token for r in apns_server.received] == ["pat-1-voip"]
    assert [r.token for r in fcm_server.received] == ["pat-1-fcm"]


def test_a_ring_alerts_an_iphone_that_has_no_voip_token(
    patient, apns_server, django_capture_on_commit_callbacks
):
    make_device(patient, "apns", "pat-1-apns")

    ring_call(django_capture_on_commit_callbacks)

    assert targets() == [("pat-1", "apns", "ring")]
    [push] = apns_server.received
    assert push.headers["apns-push-type"] == "alert"
    assert push.payload["aps"]["alert"] == {"title": "Incoming call", "body": "Tap to answer."}


def test_notify_goes_to_the_members_as_alerts_never_voip(
    everyone_has_devices, django_capture_on_commit_callbacks
):
    ring_call(django_capture_on_commit_callbacks, ring=False, notify=True)

    assert targets() == [
        ("pat-1", "apns", "notify"),
        ("pat-1", "fcm", "notify"),
        ("pat-1", "webpush", "notify"),
    ]


def test_going_live_and_reminders_notify_the_patient_not_the_host(
    everyone_has_devices, webpush_service, django_capture_on_commit_callbacks
):
    guest = CallUserFactory(id="guest-1", name="Guest Person")
    make_device(guest, "fcm", "guest-fcm")
    call = ring_call(django_capture_on_commit_callbacks, ring=False)
    with django_capture_on_commit_callbacks(execute=True):
        call_members_update(
            actor=SERVER,
            type_name="default",
            call_id=call.call_id,
            update_members=[MemberSpec(user_id="guest-1")],
        )
        call_go_live(actor=SERVER, type_name="default", call_id=call.call_id)
    emit(django_capture_on_commit_callbacks, call, "call.reminder", starts_in_seconds=600)

    expected = [
        ("guest-1", "fcm", "notify"),
        ("pat-1", "apns", "notify"),
        ("pat-1", "fcm", "notify"),
        ("pat-1", "webpush", "notify"),
    ]
    assert targets("call.live_started") == expected
    assert targets("call.reminder") == expected
    titles = {(p.payload["type"], p.payload["title"]) for p in webpush_service.received}
    assert titles == {
        ("call.live_started", "Your call is live"),
        ("call.reminder", "Upcoming call"),
    }


def test_a_missed_call_goes_to_who_missed_it(
    everyone_has_devices, django_capture_on_commit_callbacks
):
    call = ring_call(django_capture_on_commit_callbacks, ring=False)
    emit(
        django_capture_on_commit_callbacks,
        call,
        "call.missed",
        members=[{"user_id": "pat-1"}, {"user_id": "doc-1"}],
        user={"id": "doc-1"},
        session_id="",
        notify_user=True,
    )

    assert targets() == [
        ("pat-1", "apns", "missed"),
        ("pat-1", "fcm", "missed"),
        ("pat-1", "webpush", "missed"),
    ]


def test_other_events_do_not_push(everyone_has_devices, django_capture_on_commit_callbacks):
    call = ring_call(django_capture_on_commit_callbacks, ring=False)
    with django_capture_on_commit_callbacks(execute=True):
        call_end(actor=SERVER, type_name="default", call_id=call.call_id)

    assert PushDelivery.objects.count() == 0


@pytest.mark.parametrize("switch", ["all", "call_ring"])
def test_notification_settings_can_turn_pushes_off(
    switch, everyone_has_devices, django_capture_on_commit_callbacks
):
    call_type = CallType.objects.get(name="default")
    if switch == "all":
        call_type.notification_settings["enabled"] = False
    else:
        call_type.notification_settings["call_ring"]["enabled"] = False
    call_type.save()

    ring_call(django_capture_on_commit_callbacks, ring=True, notify=True)

    if switch == "all":
        assert targets() == []
    else:
        assert {purpose for *_, purpose in targets()} == {"notify"}


def test_templated_titles_are_not_rendered_into_pushes(
    everyone_has_devices, webpush_service, django_capture_on_commit_callbacks
):
    call_type = CallType.objects.get(name="default")
    call_type.notification_settings["call_ring"]["apns"] = {
        "title": "{{ user.display_name }} is calling",
        "body": "Ring ring",
    }
    call_type.save()

    ring_call(django_capture_on_commit_callbacks)

    [push] = webpush_service.received
    assert (push.payload["title"], push.payload["body"]) == ("Incoming call", "Ring ring")


def test_inactive_devices_get_nothing(everyone_has_devices, django_capture_on_commit_callbacks):
    _, patient = everyone_has_devices
    patient.devices.exclude(kind="fcm").update(active=False)

    ring_call(django_capture_on_commit_callbacks)

    assert targets() == [("pat-1", "fcm", "ring")]


def test_relaying_an_event_twice_creates_and_sends_nothing_new(
    everyone_has_devices,
    webpush_service,
    apns_server,
    fcm_server,
    django_capture_on_commit_callbacks,
):
    call = ring_call(django_capture_on_commit_callbacks)
    [event] = events_of(call, "call.ring")
    before = list(PushDelivery.objects.values_list("pk", "state"))

    with django_capture_on_commit_callbacks(execute=True):
        dispatch.on_event(event)  # the sweep relaying it again
    for pk, _ in before:
        deliver_push.delay(pk)  # and every task delivered twice

    assert list(PushDelivery.objects.values_list("pk", "state")) == before
    assert len(webpush_service.received) == 1
    assert len(apns_server.received) == 1
    assert len(fcm_server.received) == 1


def test_deliveries_stranded_in_queued_are_sent_by_a_second_relay(
    everyone_has_devices, webpush_service, settings, django_capture_on_commit_callbacks
):
    """A crash after the rows were written but before they were enqueued: the relay runs
    the event again (it was never marked relayed) and enqueues the rows still queued."""
    call = ring_call(django_capture_on_commit_callbacks, ring=False)
    with transaction.atomic():
        event = event_emit(
            type="call.ring",
            for_call=call,
            members=[{"user_id": "pat-1"}],
            user={"id": "doc-1"},
            session_id="",
            video=True,
        )
    with django_capture_on_commit_callbacks(execute=False):  # enqueue lost
        dispatch.on_event(event)
    assert set(PushDelivery.objects.values_list("state", flat=True)) == {"queued"}

    with django_capture_on_commit_callbacks(execute=True):
        dispatch.on_event(event)

    assert set(PushDelivery.objects.values_list("state", flat=True)) == {"sent"}
    assert len(webpush_service.received) == 1


def test_a_push_speaks_its_users_language(
    patient, patient_browser, webpush_service, django_capture_on_commit_callbacks
):
    # Stream's `User.language` (the clinic layer sets a patient's from their preferred
    # language): the built-in texts come in it; a regional tag is its language.
    patient.language = "fr-CA"
    patient.save(update_fields=["language"])
    call = ring_call(django_capture_on_commit_callbacks)
    emit(django_capture_on_commit_callbacks, call, "call.reminder", starts_in_seconds=600)
    texts = {
        p.payload["type"]: (p.payload["title"], p.payload["body"]) for p in webpush_service.received
    }
    assert texts["call.ring"] == ("Appel entrant", "Touchez pour répondre.")
    assert texts["call.reminder"] == ("Appel à venir", "Votre appel commence bientôt.")
    # A language the site does not speak: English.
    patient.language = "tlh"
    patient.save(update_fields=["language"])
    webpush_service.received.clear()
    ring_call(django_capture_on_commit_callbacks, call_id="visit-2")
    [push] = webpush_service.received
    assert (push.payload["title"], push.payload["body"]) == ("Incoming call", "Tap to answer.")


def test_a_call_types_own_text_is_sent_as_written_in_any_language(
    patient, patient_browser, webpush_service, django_capture_on_commit_callbacks
):
    patient.language = "de"
    patient.save(update_fields=["language"])
    call_type = CallType.objects.get(name="default")
    call_type.notification_settings = {
        **call_type.notification_settings,
        "call_ring": {
            "enabled": True,
            "apns": {"title": "Clinic calling", "body": "Tap to answer."},
        },
    }
    call_type.save()
    ring_call(django_capture_on_commit_callbacks)
    [push] = webpush_service.received
    # Ours is translated wherever it appears; theirs is not ours to translate.
    assert (push.payload["title"], push.payload["body"]) == (
        "Clinic calling",
        "Tippen Sie, um anzunehmen.",
    )
