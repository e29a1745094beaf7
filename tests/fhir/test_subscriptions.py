"""Topic-based Subscriptions (R4B backport) end to end: an EHR subscribes over the FHIR API, a
real HTTP receiver in a thread gets the handshake, then an event notification per status change
(numbered 1, 2, 3…) as the real call engine moves the appointment, heartbeats on a controlled
clock, and a failing receiver puts the subscription in error. Every body is parsed with
`fhir.resources` (R4B Bundle and SubscriptionStatus). Notifications go through the webhook
machinery (deliveries, retries, the SSRF guard)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.utils import timezone
from fhir.resources.R4B.appointment import Appointment as FhirAppointment

from appointments.models import Appointment
from appointments.selectors import staff_actor
from audit.models import AuditEntry
from calls.models import CallEvent, WebhookDelivery, WebhookEndpoint
from calls.outbox import webhooks
from calls.services.live import call_end
from fhir_api import subscriptions
from fhir_api.models import Subscription
from tests.appointments.test_call_events import enter, patient_actor, run_due
from tests.factories import make_appointment, make_patient

from .ehr import ALL_SCOPES, Fhir, appointment_body, register, token_for
from .receiver import FhirReceiver

pytestmark = pytest.mark.django_db

SCOPES = f"{ALL_SCOPES} system/Subscription.cruds"
T = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
ISO = "2026-06-01T09:00:00Z"
State = WebhookDelivery.State


@pytest.fixture(scope="module")
def fhir_receiver():
    server = FhirReceiver()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def receiver(fhir_receiver, settings, eager_tasks):
    """Notifications on: the relay runs the clinic layer and the subscriptions; webhooks may
    reach the receiver on 127.0.0.1 over http (as the webhook tests allow)."""
    settings.CALLS_EVENT_CONSUMERS = [
        "appointments.events.on_event",
        "fhir_api.subscriptions.on_event",
    ]
    settings.DEBUG = False
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = True
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    settings.WEBHOOK_TIMEOUT_SECONDS = 2.0
    fhir_receiver.reset()
    return fhir_receiver


@pytest.fixture
def subscriber(clinic):
    return register(clinic, scopes=SCOPES)


def fhir_at(ehr, scopes: str = SCOPES) -> Fhir:
    return Fhir(Client(), token_for(ehr, scopes))


def subscription_body(endpoint: str, content: str = "full-resource", **extra) -> dict:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Visit status back to the EHR",
        "criteria": subscriptions.topic_url(),
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {
                "extension": [{"url": subscriptions.PAYLOAD_CONTENT, "valueCode": content}]
            },
            "header": ["Authorization: Bearer ehr-receiver-token"],
        },
        **extra,
    }


def subscribe(ehr, body: dict, at: datetime, capture):
    with time_machine.travel(at, tick=False), capture(execute=True):
        answer = fhir_at(ehr).post("Subscription", body)
    assert answer.status_code == 201, answer.content
    return answer.json()


@pytest.fixture
def booked(receiver, subscriber, patient, doctor, django_capture_on_commit_callbacks):
    with (
        time_machine.travel(T - timedelta(days=1), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        answer = fhir_at(subscriber).post("Appointment", appointment_body(patient, doctor, ISO))
    assert answer.status_code == 201, answer.content
    return answer.json()


def events(receiver) -> list[tuple[str, str, dict]]:
    """(event number, focus reference, the bundle) of each event notification received."""
    out = []
    for _, status, raw in receiver.notifications():
        if status.type == "event-notification":
            (event,) = status.notificationEvent
            out.append((event.eventNumber, event.focus.reference if event.focus else "", raw))
    return out


def test_the_topic_is_discoverable_and_in_the_capability_statement(receiver):
    http = Client()
    found = http.get("/fhir/r4/SubscriptionTopic").json()
    (entry,) = found["entry"]
    topic = entry["resource"]
    assert topic["url"] == subscriptions.topic_url()
    assert topic["url"].endswith("/fhir/r4/SubscriptionTopic/appointment-status")
    assert http.get("/fhir/r4/SubscriptionTopic/appointment-status").json() == topic
    assert http.get("/fhir/r4/SubscriptionTopic/other").status_code == 404
    statement = http.get("/fhir/r4/metadata").json()
    assert subscriptions.SERVER_CAPABILITY in statement["instantiates"]
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    sub = by_type["Subscription"]
    assert {i["code"] for i in sub["interaction"]} == {
        "read",
        "create",
        "update",
        "delete",
        "search-type",
    }
    assert sub["extension"] == [
        {"url": subscriptions.TOPIC_CANONICAL, "valueCanonical": topic["url"]}
    ]
    assert [o["name"] for o in sub["operation"]] == ["status"]
    smart = http.get("/fhir/r4/.well-known/smart-configuration").json()
    assert "system/Subscription.cruds" in smart["scopes_supported"]


def test_handshake_then_numbered_events_as_the_visit_goes(
    booked, receiver, subscriber, patient, doctor, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    created = subscribe(
        subscriber, subscription_body(receiver.url), T - timedelta(hours=20), capture
    )
    assert created["status"] == "requested"  # as created; the handshake answers after
    ((headers, handshake, raw),) = receiver.notifications()
    assert headers["Content-Type"] == "application/fhir+json"
    assert headers["Authorization"] == "Bearer ehr-receiver-token"  # the channel's header
    assert "X-Signature" not in headers
    assert "X-Api-Key" not in headers
    assert handshake.type == "handshake"
    assert handshake.status == "requested"
    assert handshake.eventsSinceSubscriptionStart == "0"
    assert handshake.subscription.reference.endswith(f"/Subscription/{created['id']}")
    assert handshake.topic == subscriptions.topic_url()
    assert len(raw["entry"]) == 1
    with time_machine.travel(T - timedelta(hours=19), tick=False):
        read = fhir_at(subscriber).get(f"Subscription/{created['id']}").json()
    assert read["status"] == "active"  # the receiver said 200

    appointment = Appointment.objects.get(pk=booked["id"])
    with time_machine.travel(T - timedelta(minutes=5), tick=False), capture(execute=True):
        enter(patient_actor(patient), appointment)  # the patient waits in the lobby
    run_due(T, capture)  # live at the start: the call started
    with time_machine.travel(T + timedelta(minutes=20), tick=False), capture(execute=True):
        call_end(actor=staff_actor(doctor), type_name="appointment", call_id=appointment.id)

    got = events(receiver)
    assert [number for number, _, _ in got] == ["1", "2", "3"]
    statuses = []
    for number, focus, raw in got:
        assert focus.endswith(f"/Appointment/{booked['id']}")
        status_entry, resource_entry = raw["entry"]
        assert status_entry["resource"]["eventsSinceSubscriptionStart"] == number
        assert resource_entry["fullUrl"] == focus
        resource = FhirAppointment.model_validate(resource_entry["resource"])
        statuses.append(resource.status)
        text = str(resource_entry["resource"])
        assert "/c/" not in text  # no staff (portal) URL, ever
    assert statuses == ["arrived", "arrived", "fulfilled"]
    # While open, the patient's own join link, as a read shows it; none once fulfilled.
    first = got[0][2]["entry"][1]["resource"]
    assert f"/join/{booked['id']}/?t=" in str(first["extension"])
    assert "addressUrl" not in str(got[2][2]["entry"][1]["resource"])
    # The delivery log holds ids and numbers, never the resource.
    for delivery in WebhookDelivery.objects.filter(event__isnull=True):
        assert delivery.state == State.DELIVERED
        assert "resource" not in delivery.payload
    # Each delivered full-resource notification is a read by the client, in the audit trail.
    viewed = AuditEntry.objects.filter(
        action="appointment.viewed", actor_kind="client", actor_id=subscriber.client_id
    )
    assert viewed.filter(object_id=booked["id"]).count() == 3
    # A re-relay of the same events notifies no one again.
    assert subscriptions.appointment_status_notify(appointment_id=booked["id"]) == 0
    with time_machine.travel(T + timedelta(minutes=21), tick=False):
        status = fhir_at(subscriber).get(f"Subscription/{created['id']}/$status").json()
    (entry,) = status["entry"]
    assert entry["resource"]["type"] == "query-status"
    assert entry["resource"]["eventsSinceSubscriptionStart"] == "3"


def test_id_only_and_a_cancellation_with_a_patient_filter(
    booked, receiver, subscriber, patient, doctor, clinic, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    body = subscription_body(receiver.url, "id-only")
    body["_criteria"] = {
        "extension": [
            {
                "url": subscriptions.FILTER_CRITERIA,
                "valueString": f"Appointment?patient=Patient/{patient.pk}",
            }
        ]
    }
    created = subscribe(subscriber, body, T - timedelta(hours=20), capture)
    assert created["_criteria"] == body["_criteria"]
    # Another patient's appointment changes: filtered out.
    with time_machine.travel(T - timedelta(hours=20), tick=False), capture(execute=True):
        other = make_appointment(
            clinic,
            host=doctor,
            patient=make_patient(clinic, name="Someone Else"),
            starts_at=T + timedelta(hours=3),
        )
    with time_machine.travel(T - timedelta(hours=3), tick=False), capture(execute=True):
        answer = fhir_at(subscriber).put(
            f"Appointment/{booked['id']}", dict(booked, status="cancelled")
        )
        assert answer.status_code == 200
        from appointments.services.booking import appointment_cancel

        appointment_cancel(appointment=other)

    ((number, focus, raw),) = events(receiver)
    assert number == "1"
    assert focus.endswith(f"/Appointment/{booked['id']}")
    _, entry = raw["entry"]
    assert "resource" not in entry  # id-only: the reference, no body
    assert entry["fullUrl"] == focus
    assert entry["request"] == {"method": "PUT", "url": f"Appointment/{booked['id']}"}
    assert "Ana Lima" not in str(raw)
    assert "cancelled" not in str(raw["entry"][1])


def test_another_clinic_cannot_see_it_and_scopes_are_checked(
    receiver, subscriber, other_clinic, django_capture_on_commit_callbacks
):
    created = subscribe(
        subscriber,
        subscription_body(receiver.url),
        datetime.now(UTC),
        django_capture_on_commit_callbacks,
    )
    theirs = fhir_at(register(other_clinic, scopes=SCOPES))
    path = f"Subscription/{created['id']}"
    for answer in (
        theirs.get(path),
        theirs.get(f"{path}/$status"),
        theirs.put(path, dict(created)),
        theirs.http.delete(f"/fhir/r4/{path}", headers=theirs._headers(None)),
    ):
        assert answer.status_code == 404, answer.content
        assert answer.json()["resourceType"] == "OperationOutcome"
    assert theirs.get("Subscription").json()["total"] == 0
    # A token without the Subscription scope: 403, in FHIR's shape.
    plain = fhir_at(subscriber, ALL_SCOPES)
    for answer in (plain.get(path), plain.post("Subscription", subscription_body(receiver.url))):
        assert answer.status_code == 403
        assert answer.json()["issue"][0]["code"] == "forbidden"
    reader = fhir_at(
        register(subscriber.clinic, scopes="system/Subscription.rs"), "system/Subscription.rs"
    )
    assert reader.get(path).status_code == 200
    assert reader.post("Subscription", subscription_body(receiver.url)).status_code == 403
    mine = fhir_at(subscriber)
    assert [e["resource"]["id"] for e in mine.get("Subscription").json()["entry"]] == [
        created["id"]
    ]
    deleted = mine.http.delete(f"/fhir/r4/{path}", headers=mine._headers(None))
    assert deleted.status_code == 204
    assert mine.get(path).status_code == 404
    assert not WebhookEndpoint.objects.filter(kind=subscriptions.KIND).exists()
    written = AuditEntry.objects.filter(object_type="subscription", object_id=created["id"])
    assert list(written.order_by("pk").values_list("action", "actor_kind")) == [
        ("subscription.created", "client"),
        ("subscription.viewed", "client"),  # the reader's read (the other clinic's: 404s)
        ("subscription.viewed", "client"),  # in the search
        ("subscription.deleted", "client"),
    ]


def test_a_put_honours_if_match_as_a_patient_put_does(
    receiver, subscriber, django_capture_on_commit_callbacks
):
    """`meta.versionId` and the ETag agree on every answer; a stale If-Match is 412 (an
    OperationOutcome, `conflict`) and changes nothing; the current one goes through; without
    If-Match the last writer wins (services.version_check, Patient's and Appointment's rule)."""
    capture = django_capture_on_commit_callbacks
    start = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    created = subscribe(subscriber, subscription_body(receiver.url), start, capture)
    path = f"Subscription/{created['id']}"
    with time_machine.travel(start, tick=False):
        fhir = fhir_at(subscriber)  # a token of that time

    def at(seconds: int, send):
        """Each step at its own instant: a write there makes a new version."""
        with (
            time_machine.travel(start + timedelta(seconds=seconds), tick=False),
            capture(execute=True),
        ):
            return send()

    read = at(1, lambda: fhir.get(path))
    assert read["ETag"] == f'W/"{read.json()["meta"]["versionId"]}"'
    current = read.json()
    changed = at(
        2, lambda: fhir.put(path, dict(current, reason="Renamed"), **{"If-Match": read["ETag"]})
    )
    assert changed.status_code == 200, changed.content
    assert changed["ETag"] == f'W/"{changed.json()["meta"]["versionId"]}"'
    assert changed.json()["meta"]["versionId"] != current["meta"]["versionId"]
    assert at(3, lambda: fhir.get(path)).json() == changed.json()
    # The version just replaced is stale now: 412, and nothing changes; a strong ETag (no W/)
    # is read the same way.
    for seconds, etag in ((4, read["ETag"]), (5, f'"{current["meta"]["versionId"]}"')):
        stale = at(
            seconds,
            lambda etag=etag: fhir.put(path, dict(current, reason="Stale"), **{"If-Match": etag}),
        )
        assert stale.status_code == 412, stale.content
        assert stale.json()["resourceType"] == "OperationOutcome"
        assert stale.json()["issue"][0]["code"] == "conflict"
        assert Subscription.objects.get().reason == "Renamed"
    # No If-Match: made whatever the version (the last writer wins).
    blind = at(6, lambda: fhir.put(path, dict(current, reason="Blind")))
    assert blind.status_code == 200, blind.content
    assert Subscription.objects.get().reason == "Blind"
    changes = AuditEntry.objects.filter(action="subscription.changed").order_by("pk")
    assert [e.fields for e in changes] == [["reason"], ["reason"]]


def test_reads_of_a_subscription_are_audited_like_other_reads(
    receiver, subscriber, other_clinic, django_capture_on_commit_callbacks
):
    """A read, `$status` and each subscription a search returns: `subscription.viewed` by the
    client (`views._viewed`, as Appointment and Patient reads); another clinic's 404 is not."""
    capture = django_capture_on_commit_callbacks
    now = datetime.now(UTC)
    first = subscribe(subscriber, subscription_body(receiver.url), now, capture)
    second = subscribe(subscriber, subscription_body(receiver.url), now, capture)
    fhir = fhir_at(subscriber)
    viewed = AuditEntry.objects.filter(action="subscription.viewed").order_by("pk")
    assert fhir.get(f"Subscription/{first['id']}").status_code == 200
    assert fhir.get(f"Subscription/{first['id']}/$status").status_code == 200
    assert fhir.get("Subscription").json()["total"] == 2
    assert fhir.get("Subscription", {"_summary": "count"}).json()["total"] == 2  # no resources
    theirs = fhir_at(register(other_clinic, scopes=SCOPES))
    assert theirs.get(f"Subscription/{first['id']}").status_code == 404
    assert {(e.actor_kind, e.actor_id, e.clinic) for e in viewed} == {
        ("client", subscriber.client_id, subscriber.clinic.slug)
    }
    read, status, *searched = [e.object_id for e in viewed]
    assert (read, status) == (str(first["id"]), str(first["id"]))
    assert sorted(searched) == sorted([str(first["id"]), str(second["id"])])


@pytest.mark.parametrize(
    ("endpoint", "allow_http"),
    [
        ("http://169.254.169.254/latest/meta-data", True),  # cloud metadata
        ("http://10.0.0.5/hook", True),  # private network (not allowed here)
        ("http://ehr.example.org/hook", False),  # http when https is required
        ("ftp://ehr.example.org/hook", True),
    ],
)
def test_the_ssrf_guard_refuses_endpoints(receiver, subscriber, settings, endpoint, allow_http):
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    settings.WEBHOOKS_ALLOW_HTTP = allow_http
    answer = fhir_at(subscriber).post("Subscription", subscription_body(endpoint))
    assert answer.status_code == 400, answer.content
    (issue,) = answer.json()["issue"]
    assert issue["expression"] == ["Subscription.channel.endpoint"]
    assert not Subscription.objects.exists()


def test_what_we_do_not_support_is_refused_naming_the_element(receiver, subscriber):
    fhir = fhir_at(subscriber)
    cases = [
        (
            dict(subscription_body(receiver.url), criteria="Appointment?status=booked"),
            "Subscription.criteria",
        ),
        (dict(subscription_body(receiver.url), reason=None), "Subscription.reason"),
    ]
    body = subscription_body(receiver.url)
    body["channel"] = dict(body["channel"], type="websocket")
    cases.append((body, "Subscription.channel.type"))
    body = subscription_body(receiver.url)
    body["channel"] = dict(body["channel"], header=["Host: elsewhere"])
    cases.append((body, "Subscription.channel.header[0]"))
    body = subscription_body(receiver.url, "everything")
    cases.append((body, "Subscription.channel.payload.extension[0]"))
    body = subscription_body(receiver.url)
    body["_criteria"] = {
        "extension": [{"url": subscriptions.FILTER_CRITERIA, "valueString": "Appointment?x=1"}]
    }
    cases.append((body, "Subscription.criteria.extension[0]"))
    for body, path in cases:
        body = {k: v for k, v in body.items() if v is not None}
        answer = fhir.post("Subscription", body)
        assert answer.status_code in (400, 422), (path, answer.content)
        assert path in answer.json()["issue"][0]["expression"][0], (path, answer.json())


def test_a_client_holds_a_bounded_number_of_subscriptions(receiver, subscriber, settings):
    settings.FHIR_MAX_SUBSCRIPTIONS = 2
    fhir = fhir_at(subscriber)
    answers = [fhir.post("Subscription", subscription_body(receiver.url)) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 422]
    assert answers[2].json()["issue"][0]["code"] == "too-costly"


def test_heartbeats_when_nothing_was_sent_for_the_period(
    receiver, subscriber, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    start = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    body = subscription_body(receiver.url, "id-only")
    body["channel"]["extension"] = [{"url": subscriptions.HEARTBEAT_PERIOD, "valueUnsignedInt": 60}]
    subscribe(subscriber, body, start, capture)

    def sweep_at(seconds: int) -> int:
        moment = start + timedelta(seconds=seconds)
        with time_machine.travel(moment, tick=False), capture(execute=True):
            return subscriptions.sweep(now=moment)

    assert sweep_at(30) == 0
    assert sweep_at(60) == 1
    assert sweep_at(90) == 0
    assert sweep_at(121) == 1
    kinds = [status.type for _, status, _ in receiver.notifications()]
    assert kinds == ["handshake", "heartbeat", "heartbeat"]
    _, beat, raw = receiver.notifications()[1]
    assert beat.status == "active"
    assert beat.eventsSinceSubscriptionStart == "0"
    assert len(raw["entry"]) == 1
    # Past its end, it is off, and nothing more is sent.
    Subscription.objects.update(end=start + timedelta(seconds=150))
    assert sweep_at(200) == 0
    assert Subscription.objects.get().status == "off"
    assert not WebhookEndpoint.objects.get(kind=subscriptions.KIND).active


def test_a_failing_receiver_is_retried_then_the_subscription_is_in_error(
    receiver, subscriber, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    receiver.default = 500
    start = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    created = subscribe(subscriber, subscription_body(receiver.url), start, capture)
    (delivery,) = WebhookDelivery.objects.all()
    assert (delivery.state, delivery.attempts) == (State.RETRYING, 1)
    assert Subscription.objects.get().status == "requested"
    for seconds in (3, 10):  # backoff: 2 s, then 4 s
        moment = start + timedelta(seconds=seconds)
        with time_machine.travel(moment, tick=False), capture(execute=True):
            webhooks.sweep(now=moment)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (State.DEAD, 3)
    ids = {h["X-Webhook-Id"] for h, _ in receiver.requests}
    assert ids == {delivery.webhook_id}  # one delivery, three attempts
    assert [h["X-Webhook-Attempt"] for h, _ in receiver.requests] == ["1", "2", "3"]
    with time_machine.travel(start + timedelta(minutes=1), tick=False):
        fhir = fhir_at(subscriber)
        read = fhir.get(f"Subscription/{created['id']}").json()
        status = fhir.get(f"Subscription/{created['id']}/$status").json()
    assert read["status"] == "error"
    assert "handshake not delivered: HTTP 500" in read["error"]
    assert status["entry"][0]["resource"]["status"] == "error"
    # Sent back as read (status error) with a change: still in error, no new handshake.
    sent = len(receiver.requests)
    with time_machine.travel(start + timedelta(minutes=1), tick=False), capture(execute=True):
        same = fhir.put(f"Subscription/{created['id']}", dict(read, reason="Renamed"))
    assert same.status_code == 200, same.content
    assert (same.json()["status"], same.json()["reason"]) == ("error", "Renamed")
    assert len(receiver.requests) == sent
    # The EHR fixes its receiver and asks again: a new handshake, then active.
    receiver.default = 200
    with time_machine.travel(start + timedelta(minutes=2), tick=False), capture(execute=True):
        again = fhir.put(f"Subscription/{created['id']}", dict(same.json(), status="requested"))
    assert again.status_code == 200, again.content
    assert Subscription.objects.get().status == "active"
    # Off: nothing more goes out (a queued delivery ends dead, the subscription stays off).
    with time_machine.travel(start + timedelta(minutes=3), tick=False), capture(execute=True):
        off = fhir.put(f"Subscription/{created['id']}", dict(same.json(), status="off"))
    assert off.json()["status"] == "off"
    changed = AuditEntry.objects.filter(action="subscription.changed").order_by("pk")
    assert [e.fields for e in changed] == [["reason"], ["status"], ["status"]]
    assert not WebhookEndpoint.objects.get(kind=subscriptions.KIND).active


@pytest.mark.django_db(transaction=True)
def test_event_numbers_stay_gapless_under_concurrency(settings, receiver, clinic, doctor):
    """Eight appointments change at once in eight threads: one subscription, numbers 1-8."""
    settings.CALLS_EVENT_CONSUMERS = []
    ehr = register(clinic, scopes=SCOPES)
    fhir_at(ehr).post("Subscription", subscription_body(receiver.url, "id-only"))
    assert Subscription.objects.get().status == "active"
    patients = [make_patient(clinic, name=f"P{i}") for i in range(8)]
    appointments = [
        make_appointment(
            clinic, host=doctor, patient=p, starts_at=timezone.now() + timedelta(hours=i + 1)
        )
        for i, p in enumerate(patients)
    ]
    Appointment.objects.update(status=Appointment.Status.WAITING)
    barrier = threading.Barrier(len(appointments))
    errors = []

    def change(appointment_id: str) -> None:
        try:
            barrier.wait()
            subscriptions.appointment_status_notify(appointment_id=appointment_id)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=change, args=(a.pk,)) for a in appointments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    numbers = sorted(int(number) for number, _, _ in events(receiver))
    assert numbers == list(range(1, 9))
    assert Subscription.objects.get().events_since_start == 8


def test_the_relay_consumer_costs_one_query_without_subscriptions(
    receiver, clinic, doctor, django_assert_num_queries
):
    appointment = make_appointment(clinic, host=doctor)
    events_ = list(CallEvent.objects.filter(call_cid=f"appointment:{appointment.pk}"))
    assert events_  # call.created at least: not a status event
    with django_assert_num_queries(0):
        subscriptions.on_events(events_)
    moved = CallEvent(call_cid=f"appointment:{appointment.pk}", type="call.ended", payload={})
    with django_assert_num_queries(1):  # any live subscription in its clinic? none
        subscriptions.on_events([*events_, moved])
