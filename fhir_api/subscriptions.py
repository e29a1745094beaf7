"""Topic-based FHIR Subscriptions (the R4B Subscriptions Backport IG,
http://hl7.org/fhir/uv/subscriptions-backport): an EHR subscribes to our one topic, an
appointment's status changing, and hears of it on its rest-hook.

- `subscription_create` / `_change` / `_delete`: the Subscription resource in and out, within
  the client's clinic. A new (or re-pointed, or re-activated) subscription is `requested`
  and sends a `handshake`; the answer makes it `active` (2xx) or `error` (dead).
- `on_event` (a relay consumer, after `appointments.events`, which moves the appointment):
  when an appointment's stored status changed since the subscriptions were last told
  (`AppointmentStatusSent`), each matching subscription of its clinic gets an
  `event-notification`, its event number taken under the subscription's row lock.
- `sweep` (the scheduler's sweeps): `heartbeat` notifications when nothing was sent for a
  subscription's heartbeat period; subscriptions past their `end` are turned `off`.

Every notification is a delivery of the subscription's own webhook endpoint (kind
`fhir-subscription`), sent by `calls.outbox.webhooks`: the SSRF guard, retries with backoff,
the sweep, the delivery log and resend. The delivery stores ids and codes only;
`webhook_request` renders the Bundle when it is sent (an `id-only` one names the appointment;
a `full-resource` one holds it as a read would, `reasonCode` and `comment` included, so no copy
of them is kept in the log), and `webhook_recorded` hears each attempt's outcome."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from appointments.events import FOLLOWED
from appointments.models import CALL_TYPE, Appointment, Clinic, Patient
from audit.record import Action, Actor, record, record_many
from calls.models import CallEvent, WebhookDelivery, WebhookEndpoint, validate_webhook_url
from calls.outbox import webhooks

from . import mapping, services
from .models import AppointmentStatusSent, Client, Subscription
from .outcome import FHIR_JSON, FhirError
from .scopes import Principal

logger = logging.getLogger("fhir_api.subscriptions")

KIND = "fhir-subscription"  # settings.WEBHOOK_KINDS
TOPIC_ID = "appointment-status"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport"
EXT = f"{BACKPORT}/StructureDefinition/"
FILTER_CRITERIA = EXT + "backport-filter-criteria"
PAYLOAD_CONTENT = EXT + "backport-payload-content"
HEARTBEAT_PERIOD = EXT + "backport-heartbeat-period"
MAX_COUNT = EXT + "backport-max-count"
TIMEOUT = EXT + "backport-timeout"
SUBSCRIPTION_PROFILE = EXT + "backport-subscription"
TOPIC_CANONICAL = EXT + "capabilitystatement-subscriptiontopic-canonical"
SERVER_CAPABILITY = f"{BACKPORT}/CapabilityStatement/backport-subscription-server"
HEARTBEAT_RANGE = (1, 86_400)  # seconds
# A request header the EHR asks us to send: a token name, then a value on one line. Ours and
# HTTP's framing are not theirs to set.
_HEADER = re.compile(r"^([!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}):[ \t]*([^\r\n\x00]{0,1000})$")
RESERVED_HEADERS = {"host", "content-type", "content-length", "transfer-encoding", "connection"}
MAX_HEADERS = 10


def base_url() -> str:
    """The FHIR base as the EHR reaches it, outside any request (a worker sends)."""
    return f"{settings.PUBLIC_BASE_URL}/fhir/r4"


def topic_url() -> str:
    """The topic's canonical URL: what a Subscription's `criteria` names."""
    return f"{base_url()}/SubscriptionTopic/{TOPIC_ID}"


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- the topic -------------------------------------------------------------------------------


def topic() -> dict[str, Any]:
    return mapping.checked_out(
        {
            "resourceType": "SubscriptionTopic",
            "id": TOPIC_ID,
            "url": topic_url(),
            "version": "1",
            "title": "Appointment status",
            "status": "active",
            "date": "2026-12-07",
            "description": "An appointment's status changed: the patient arrived (waits in the "
            "lobby), the call started (still `arrived`), the visit was fulfilled, the patient "
            "did not show (`noshow`), or it was cancelled.",
            "resourceTrigger": [
                {
                    "description": "An Appointment's status changed.",
                    "resource": "http://hl7.org/fhir/StructureDefinition/Appointment",
                    "supportedInteraction": ["update"],
                    "fhirPathCriteria": "%previous.status != %current.status",
                }
            ],
            "canFilterBy": [
                {
                    "description": "The appointment's patient (Patient/{id}).",
                    "resource": "Appointment",
                    "filterParameter": "patient",
                },
                {
                    "description": "The appointment's new status (comma-separated codes).",
                    "resource": "Appointment",
                    "filterParameter": "status",
                },
            ],
            "notificationShape": [{"resource": "Appointment"}],
        }
    )


# --- the Subscription resource in and out ----------------------------------------------------


@dataclass
class SubscriptionIn:
    status: str
    reason: str
    endpoint: str
    content: str
    headers: list[str] = field(default_factory=list)
    heartbeat_seconds: int | None = None
    max_count: int | None = None
    end: datetime | None = None
    filter_text: str = ""
    filter_patient: int | None = None
    filter_statuses: list[str] = field(default_factory=list)


def _unprocessable(message: str, path: str) -> FhirError:
    return FhirError(422, message, code="invalid", expression=[path])


def _extensions(holder: Any) -> list[dict[str, Any]]:
    found = holder.get("extension") if isinstance(holder, dict) else None
    return found if isinstance(found, list) else []


def _filter(raw: str, path: str, clinic: Clinic) -> tuple[int | None, list[str]]:
    """`Appointment?patient=Patient/1&status=arrived,noshow` → (patient id, statuses)."""
    resource, _, query = raw.partition("?")
    if resource != "Appointment":
        raise _unprocessable("A filter is on Appointment: Appointment?patient=…", path)
    patient, statuses = None, []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "patient" and patient is None:
            ref = value.removeprefix("Patient/")
            if not (ref.isascii() and ref.isdigit() and len(ref) <= 9):
                raise _unprocessable("patient: Patient/{id} expected.", path)
            if not Patient.objects.filter(clinic=clinic, pk=int(ref)).exists():
                raise _unprocessable(f"patient: no Patient/{ref} here.", path)
            patient = int(ref)
        elif name == "status" and not statuses:
            statuses = [v for v in value.split(",") if v]
            unknown = [v for v in statuses if v not in mapping.STATUS_IN]
            if unknown or not statuses:
                raise _unprocessable(
                    f"status: one or more of {', '.join(mapping.STATUS_IN)}.", path
                )
        else:
            raise _unprocessable(
                f"Filter parameter {name!r} is not supported (patient, status, once each).", path
            )
    return patient, statuses


def subscription_in(data: Any, clinic: Clinic) -> SubscriptionIn:
    """A Subscription as the EHR sends it: valid R4B first (400 naming the element), then
    what we support (422 naming it). The endpoint must pass the SSRF guard (400)."""
    resource = mapping.validate("Subscription", data)
    if resource.criteria != topic_url():
        raise _unprocessable(f"criteria must be our topic, {topic_url()}.", "Subscription.criteria")
    filter_text, patient, statuses = "", None, []
    for i, ext in enumerate(_extensions(data.get("_criteria"))):
        if ext.get("url") == FILTER_CRITERIA:
            path = f"Subscription.criteria.extension[{i}]"
            if filter_text:
                raise _unprocessable("One filter criteria, please.", path)
            filter_text = str(ext.get("valueString") or "")
            if not filter_text or len(filter_text) > 500:
                raise _unprocessable("The filter is a valueString of 1 to 500 characters.", path)
            patient, statuses = _filter(filter_text, path, clinic)
    channel = resource.channel
    if channel.type != "rest-hook":
        raise _unprocessable("Only rest-hook channels are supported.", "Subscription.channel.type")
    endpoint = channel.endpoint or ""
    if not endpoint or len(endpoint) > 1000:
        raise FhirError(
            400,
            "channel.endpoint: a URL of at most 1000 characters.",
            expression=["Subscription.channel.endpoint"],
        )
    try:
        validate_webhook_url(endpoint)  # the SSRF guard's rules, as for every webhook
    except ValidationError as exc:
        raise FhirError(
            400,
            f"channel.endpoint: {exc.messages[0]}",
            code="value",
            expression=["Subscription.channel.endpoint"],
        ) from None
    content = Subscription.Content.EMPTY
    if channel.payload is not None:
        if channel.payload not in (FHIR_JSON, "application/json"):
            raise _unprocessable(
                "channel.payload: application/fhir+json only.", "Subscription.channel.payload"
            )
        content = Subscription.Content.ID_ONLY
        for i, ext in enumerate(_extensions((data.get("channel") or {}).get("_payload"))):
            if ext.get("url") == PAYLOAD_CONTENT:
                content = ext.get("valueCode")
                if content not in Subscription.Content.values:
                    raise _unprocessable(
                        "payload content: empty, id-only or full-resource.",
                        f"Subscription.channel.payload.extension[{i}]",
                    )
    headers = list(channel.header or [])
    if len(headers) > MAX_HEADERS:
        raise _unprocessable(f"At most {MAX_HEADERS} headers.", "Subscription.channel.header")
    for i, header in enumerate(headers):
        match = _HEADER.match(header)
        if (
            match is None
            or match[1].lower() in RESERVED_HEADERS
            or (match[1].lower().startswith("x-webhook-"))
        ):
            raise _unprocessable(
                "A header is 'Name: value' on one line (not Host, Content-*, X-Webhook-*).",
                f"Subscription.channel.header[{i}]",
            )
    heartbeat = max_count = None
    for i, ext in enumerate(_extensions(data.get("channel"))):
        path = f"Subscription.channel.extension[{i}]"
        if ext.get("url") == HEARTBEAT_PERIOD:
            heartbeat = ext.get("valueUnsignedInt")
            lo, hi = HEARTBEAT_RANGE
            if not isinstance(heartbeat, int) or not lo <= heartbeat <= hi:
                raise _unprocessable(f"heartbeat period: {lo} to {hi} seconds.", path)
        elif ext.get("url") == MAX_COUNT:
            max_count = ext.get("valuePositiveInt")
            if not isinstance(max_count, int) or max_count < 1:
                raise _unprocessable("max count: a positive integer.", path)
    end = parse_datetime(str(data["end"])) if resource.end is not None else None
    return SubscriptionIn(
        status=resource.status,
        reason=resource.reason[:500],
        endpoint=endpoint,
        content=content,
        headers=headers,
        heartbeat_seconds=heartbeat,
        max_count=max_count,
        end=end,
        filter_text=filter_text,
        filter_patient=patient,
        filter_statuses=statuses,
    )


def subscription_out(sub: Subscription) -> dict[str, Any]:
    channel: dict[str, Any] = {
        "type": "rest-hook",
        "endpoint": sub.endpoint.url,
        "payload": FHIR_JSON,
        "_payload": {"extension": [{"url": PAYLOAD_CONTENT, "valueCode": sub.content}]},
    }
    if sub.headers:
        channel["header"] = sub.headers
    extensions = []
    if sub.heartbeat_seconds is not None:
        extensions.append({"url": HEARTBEAT_PERIOD, "valueUnsignedInt": sub.heartbeat_seconds})
    if sub.max_count is not None:
        extensions.append({"url": MAX_COUNT, "valuePositiveInt": sub.max_count})
    if extensions:
        channel["extension"] = extensions
    resource: dict[str, Any] = {
        "resourceType": "Subscription",
        "id": sub.pk,
        "meta": {
            "versionId": mapping.version_of(sub.updated_at),
            "lastUpdated": _instant(sub.updated_at),
            "profile": [SUBSCRIPTION_PROFILE],
        },
        "status": sub.status,
        "reason": sub.reason or "Appointment status",
        "criteria": topic_url(),
        "channel": channel,
    }
    if sub.filter_text:
        resource["_criteria"] = {
            "extension": [{"url": FILTER_CRITERIA, "valueString": sub.filter_text}]
        }
    if sub.end is not None:
        resource["end"] = _instant(sub.end)
    if sub.error:
        resource["error"] = sub.error
    return mapping.checked_out(resource)


# --- writes ----------------------------------------------------------------------------------


def subscriptions_of(principal: Principal) -> Any:
    return Subscription.objects.filter(clinic=principal.clinic).select_related("endpoint")


def subscription_get(principal: Principal, subscription_id: str) -> Subscription:
    """Within the client's clinic: another clinic's subscription looks like none."""
    sub = subscriptions_of(principal).filter(pk=subscription_id).first()
    if sub is None:
        raise FhirError(404, "No such Subscription.", code="not-found")
    return sub


def subscription_create(*, principal: Principal, data: SubscriptionIn) -> Subscription:
    """Store it `requested` (whatever status was sent) and send the handshake."""
    with transaction.atomic():
        # At most FHIR_MAX_SUBSCRIPTIONS per client, counted under the client's row lock.
        Client.objects.select_for_update().filter(pk=principal.client.pk).first()
        limit = settings.FHIR_MAX_SUBSCRIPTIONS
        if Subscription.objects.filter(client=principal.client).count() >= limit:
            raise FhirError(
                422,
                f"A client has at most {limit} subscriptions: delete one first.",
                code="too-costly",
                expression=["Subscription"],
            )
        endpoint = WebhookEndpoint.objects.create(
            url=data.endpoint, team=principal.clinic.slug, kind=KIND
        )
        sub = Subscription.objects.create(
            clinic=principal.clinic, client=principal.client, endpoint=endpoint
        )
        _apply(sub, data)
        sub.status = Subscription.Status.REQUESTED
        sub.save()
        _audit(Action.SUBSCRIPTION_CREATED, sub)
        _send(sub, "handshake")
    return sub


def _audit(action: str, sub: Subscription, fields: Iterable[str] = ()) -> None:
    """Who subscribed, changed or deleted it (the request's actor: the client)."""
    record(
        action=action,
        clinic=sub.clinic.slug,
        object_type="subscription",
        object_id=sub.pk,
        fields=fields,
    )


def subscription_change(
    *,
    principal: Principal,
    subscription_id: str,
    data: SubscriptionIn,
    if_match: str | None = None,
) -> Subscription:
    """Replace what the EHR sets. `off` stops it; a new endpoint, or `requested` / `active`
    for a subscription that is off or in error, starts over with a handshake; otherwise the
    status stays ours (an `error` sent back as read keeps it in error). With `if_match`, a
    version conflict is 412 (`services.version_check`, as for a Patient)."""
    with transaction.atomic():
        sub = subscription_get(principal, subscription_id)
        sub = Subscription.objects.select_for_update().select_related("endpoint").get(pk=sub.pk)
        services.version_check(if_match, sub.updated_at, "subscription")
        moved = data.endpoint != sub.endpoint.url
        before = _snapshot(sub)
        _apply(sub, data)
        S = Subscription.Status
        restart = data.status in (S.REQUESTED, S.ACTIVE) and (
            moved or sub.status in (S.OFF, S.ERROR)
        )
        if data.status == S.OFF:
            sub.status = S.OFF
        elif restart:
            sub.status, sub.error = S.REQUESTED, ""
        sub.save()
        after = {**_snapshot(sub), "endpoint": data.endpoint}
        _audit(Action.SUBSCRIPTION_CHANGED, sub, [k for k in after if after[k] != before[k]])
        # An endpoint that is off sends nothing more (its queued deliveries end `dead`).
        WebhookEndpoint.objects.filter(pk=sub.endpoint_id).update(
            url=data.endpoint, active=sub.status != S.OFF
        )
        sub.endpoint.url, sub.endpoint.active = data.endpoint, sub.status != S.OFF
        if restart:
            _send(sub, "handshake")
    return sub


def subscription_delete(*, principal: Principal, subscription_id: str) -> None:
    """Gone, with its endpoint and its deliveries (nothing more is sent)."""
    sub = subscription_get(principal, subscription_id)
    with transaction.atomic():
        _audit(Action.SUBSCRIPTION_DELETED, sub)
        WebhookEndpoint.objects.filter(pk=sub.endpoint_id).delete()


def _snapshot(sub: Subscription) -> dict[str, Any]:
    fields = ("status", "reason", "content", "headers", "heartbeat_seconds", "max_count", "end")
    return {
        **{name: getattr(sub, name) for name in fields},
        "filter": sub.filter_text,
        "endpoint": sub.endpoint.url,
    }


def _apply(sub: Subscription, data: SubscriptionIn) -> None:
    sub.reason = data.reason
    sub.content = data.content
    sub.headers = data.headers
    sub.heartbeat_seconds = data.heartbeat_seconds
    sub.max_count = data.max_count
    sub.end = data.end
    sub.filter_text = data.filter_text
    sub.filter_patient = data.filter_patient
    sub.filter_statuses = data.filter_statuses


def _send(
    sub: Subscription, kind: str, *, focus: str = "", now: datetime | None = None
) -> WebhookDelivery:
    """Queue one notification of `sub` (locked by the caller for an event): what the
    delivery keeps is ids and numbers; the Bundle is made when it is sent."""
    now = now or timezone.now()
    payload: dict[str, Any] = {
        "type": kind,
        "subscription": sub.pk,
        "events_since": sub.events_since_start,
        "timestamp": _instant(now),
    }
    if kind == "event-notification":
        payload["event_number"] = sub.events_since_start
        payload["focus"] = focus
    sub.last_sent_at = now
    Subscription.objects.filter(pk=sub.pk).update(
        last_sent_at=now, events_since_start=sub.events_since_start
    )
    (delivery,) = webhooks.deliveries_add(endpoint=sub.endpoint, payloads=[payload])
    return delivery


# --- appointment status changes (a relay consumer) -------------------------------------------


def on_event(event: CallEvent) -> None:
    on_events([event])


def on_events(events: list[CallEvent]) -> None:
    """After `appointments.events` moved the appointments of this batch: notify the
    subscriptions of each appointment whose stored status is not the one last sent. No query
    when the batch moves no appointment."""
    ids = []
    for event in events:
        type_name, _, call_id = event.call_cid.partition(":")
        if type_name == CALL_TYPE and event.type in FOLLOWED and call_id not in ids:
            ids.append(call_id)
    if not ids:
        return
    # One query when no clinic of theirs has a live subscription (the usual case).
    clinics = set(
        Subscription.objects.exclude(status=Subscription.Status.OFF)
        .filter(clinic__appointments__pk__in=ids)
        .values_list("clinic_id", flat=True)
    )
    if not clinics:
        return
    for appointment_id in (
        Appointment.objects.filter(pk__in=ids, clinic_id__in=clinics)
        .order_by("pk")
        .values_list("pk", flat=True)
    ):
        appointment_status_notify(appointment_id=appointment_id)


def appointment_status_notify(*, appointment_id: str) -> int:
    """Tell the clinic's subscriptions that match of the appointment's status, if it is not
    the one they were last told of. Returns how many notifications were queued."""
    if not Appointment.objects.filter(pk=appointment_id).exists():
        return 0
    with transaction.atomic():
        AppointmentStatusSent.objects.get_or_create(
            appointment_id=appointment_id, defaults={"status": Appointment.Status.SCHEDULED}
        )
        sent = AppointmentStatusSent.objects.select_for_update().get(appointment_id=appointment_id)
        appointment = Appointment.objects.filter(pk=appointment_id).first()
        if appointment is None or appointment.status == sent.status:
            return 0
        sent.status = appointment.status
        sent.save(update_fields=["status"])
        fhir_status = mapping.STATUS_OUT[appointment.status]
        subs = (
            Subscription.objects.select_for_update()
            .select_related("endpoint")
            .filter(clinic_id=appointment.clinic_id, created_at__lte=appointment.updated_at)
            .exclude(status=Subscription.Status.OFF)
            .order_by("pk")
        )
        count = 0
        for sub in subs:
            if sub.filter_patient is not None and sub.filter_patient != appointment.patient_id:
                continue
            if sub.filter_statuses and fhir_status not in sub.filter_statuses:
                continue
            sub.events_since_start += 1
            _send(sub, "event-notification", focus=f"Appointment/{appointment.pk}")
            count += 1
        return count


on_event.many = on_events  # type: ignore[attr-defined]


# --- the webhook machinery's side: render, hear the outcome ----------------------------------


def notification(sub: Subscription, payload: dict[str, Any]) -> dict[str, Any]:
    """The notification Bundle (type `history`): the SubscriptionStatus, then the focus for
    id-only (its URL) and full-resource (the Appointment as a read returns it)."""
    base = base_url()
    kind = payload["type"]
    status: dict[str, Any] = {
        "resourceType": "SubscriptionStatus",
        "status": sub.status,
        "type": kind,
        "eventsSinceSubscriptionStart": str(payload["events_since"]),
        "subscription": {"reference": f"{base}/Subscription/{sub.pk}"},
        "topic": topic_url(),
    }
    entries: list[dict[str, Any]] = []
    if kind == "event-notification":
        event: dict[str, Any] = {
            "eventNumber": str(payload["event_number"]),
            "timestamp": payload["timestamp"],
        }
        focus = payload["focus"]
        if sub.content != Subscription.Content.EMPTY:
            event["focus"] = {"reference": f"{base}/{focus}"}
            entry: dict[str, Any] = {
                "fullUrl": f"{base}/{focus}",
                "request": {"method": "PUT", "url": focus},
                "response": {"status": "200"},
            }
            if sub.content == Subscription.Content.FULL_RESOURCE:
                found = services.appointments_of(sub.clinic, [focus.removeprefix("Appointment/")])
                if found:
                    site = settings.PUBLIC_BASE_URL
                    (entry["resource"],) = services.appointment_resources(found, site=site)
            entries.append(entry)
        status["notificationEvent"] = [event]
    bundle = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "history",
        "timestamp": _instant(timezone.now()),
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": status,
                "request": {"method": "GET", "url": f"{base}/Subscription/{sub.pk}/$status"},
                "response": {"status": "200"},
            },
            *entries,
        ],
    }
    mapping.checked_out(status)
    return mapping.checked_out(bundle)


def webhook_request(delivery: WebhookDelivery) -> tuple[bytes, dict[str, str]]:
    """settings.WEBHOOK_KINDS: the body and headers of one attempt."""
    sub = Subscription.objects.select_related("clinic").get(endpoint_id=delivery.endpoint_id)
    body = orjson.dumps(notification(sub, delivery.payload or {}))
    headers = {"Content-Type": FHIR_JSON}
    for line in sub.headers:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    return body, headers


def webhook_recorded(delivery: WebhookDelivery, state: str) -> None:
    """An attempt's outcome: delivered makes a requested (or failing) subscription active;
    dead (retries spent, or refused) puts it in error. A delivered full-resource event is a
    read of the appointment by the client, in the audit trail."""
    payload = delivery.payload or {}
    S = Subscription.Status
    rows = Subscription.objects.filter(endpoint_id=delivery.endpoint_id)
    if state == WebhookDelivery.State.DELIVERED:
        rows.filter(status__in=[S.REQUESTED, S.ERROR]).update(
            status=S.ACTIVE, error="", updated_at=timezone.now()
        )
        sub = rows.select_related("client", "clinic").first()
        if (
            sub is not None
            and payload.get("type") == "event-notification"
            and sub.content == Subscription.Content.FULL_RESOURCE
        ):
            record_many(
                action=Action.APPOINTMENT_VIEWED,
                actor=Actor.client(sub.client.client_id),
                clinic=sub.clinic.slug,
                object_type="appointment",
                object_ids=[str(payload.get("focus", "")).removeprefix("Appointment/")],
            )
    elif state == WebhookDelivery.State.DEAD:
        what = "handshake" if payload.get("type") == "handshake" else "notification"
        rows.exclude(status=S.OFF).update(
            status=S.ERROR,
            error=f"{what} not delivered: {delivery.last_error or 'refused'}"[:200],
            updated_at=timezone.now(),
        )


# --- heartbeats and ends (a scheduler sweep) -------------------------------------------------


def sweep(*, now: datetime | None = None) -> int:
    """Subscriptions past their `end` go `off`; an active subscription with a heartbeat
    period that sent nothing for that long gets a `heartbeat` (claimed with a conditional
    update, so two schedulers send one). Returns how many heartbeats were queued."""
    now = now or timezone.now()
    ended = Subscription.objects.filter(end__lte=now).exclude(status=Subscription.Status.OFF)
    WebhookEndpoint.objects.filter(pk__in=ended.values("endpoint_id"), kind=KIND).update(
        active=False
    )
    ended.update(status=Subscription.Status.OFF, updated_at=now)
    due = Subscription.objects.filter(
        status=Subscription.Status.ACTIVE, heartbeat_seconds__isnull=False
    ).select_related("endpoint")
    sent = 0
    for sub in _due(due, now):
        with transaction.atomic():
            claimed = Subscription.objects.filter(
                pk=sub.pk, last_sent_at=sub.last_sent_at, status=Subscription.Status.ACTIVE
            ).update(last_sent_at=now)
            if claimed == 1:
                _send(sub, "heartbeat", now=now)
                sent += 1
    return sent


def _due(subs: Iterable[Subscription], now: datetime) -> list[Subscription]:
    return [
        sub
        for sub in subs
        if (sub.last_sent_at or sub.created_at) + timedelta(seconds=sub.heartbeat_seconds or 0)
        <= now
    ]


def status_bundle(sub: Subscription) -> dict[str, Any]:
    """`$status`: a searchset Bundle holding the subscription's SubscriptionStatus."""
    base = base_url()
    status = {
        "resourceType": "SubscriptionStatus",
        "status": sub.status,
        "type": "query-status",
        "eventsSinceSubscriptionStart": str(sub.events_since_start),
        "subscription": {"reference": f"{base}/Subscription/{sub.pk}"},
        "topic": topic_url(),
    }
    if sub.error:
        status["error"] = [{"text": sub.error}]
    return mapping.checked_out(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": 1,
            "entry": [
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": mapping.checked_out(status),
                    "search": {"mode": "match"},
                }
            ],
        }
    )
