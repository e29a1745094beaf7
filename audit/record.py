"""The audit trail's only writer (`record`) and its check (`verify`).

A row is hash-chained: `hash = sha256(canonical(row))`, where the canonical form is the row's
fields (its id and `prev_hash` included) as sorted, compact JSON. Appends serialise on a lock
(a PostgreSQL transaction-level advisory lock; SQLite serialises writers anyway), so concurrent
writers extend one chain. A row commits with the change it records, or not at all.

Callers pass ids and field names only: never a name, an address, a reason or a note."""

from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
import ipaddress
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import connection, models, transaction
from django.utils import timezone

from .models import AuditEntry

GENESIS = "0" * 64
# pg_advisory_xact_lock key of the chain's tail ("audit" in ASCII).
LOCK_KEY = 0x6175646974


class Action(models.TextChoices):
    """What happened, as the clinic's audit page says it."""

    APPOINTMENT_VIEWED = "appointment.viewed", "Opened an appointment"
    APPOINTMENT_CREATED = "appointment.created", "Scheduled an appointment"
    APPOINTMENT_CHANGED = "appointment.changed", "Changed an appointment"
    APPOINTMENT_CANCELLED = "appointment.cancelled", "Cancelled an appointment"
    PATIENT_VIEWED = "patient.viewed", "Opened a patient's details"
    PATIENT_CREATED = "patient.created", "Added a patient"
    PATIENT_CHANGED = "patient.changed", "Changed a patient's details"
    PATIENT_EXPORTED = "patient.exported", "Exported a patient's data"
    PATIENT_ERASED = "patient.erased", "Erased a patient's personal data"
    LINK_SENT = "link.sent", "Emailed a join link"
    LINK_REPLACED = "link.replaced", "Replaced a join link"
    STAFF_CREATED = "staff.created", "Added a staff member"
    SIGNED_IN = "sign_in.succeeded", "Signed in"
    SIGN_IN_FAILED = "sign_in.failed", "Failed to sign in"
    SIGNED_OUT = "sign_out", "Signed out"
    AUDIT_EXPORTED = "audit.exported", "Downloaded the audit log"
    RETENTION_PURGED = "retention.purged", "Deleted old call records"
    SUBSCRIPTION_VIEWED = "subscription.viewed", "Read a subscription (FHIR)"
    SUBSCRIPTION_CREATED = "subscription.created", "Subscribed to appointment changes (FHIR)"
    SUBSCRIPTION_CHANGED = "subscription.changed", "Changed a subscription (FHIR)"
    SUBSCRIPTION_DELETED = "subscription.deleted", "Deleted a subscription (FHIR)"


@dataclass(frozen=True)
class Actor:
    kind: str
    id: str = ""

    @classmethod
    def staff(cls, user_id: int | str) -> Actor:
        return cls(AuditEntry.ActorKind.STAFF, str(user_id))

    @classmethod
    def patient(cls, patient_id: int | str) -> Actor:
        return cls(AuditEntry.ActorKind.PATIENT, str(patient_id))

    @classmethod
    def client(cls, client_id: str) -> Actor:
        """A clinic's EHR system (a FHIR client)."""
        return cls(AuditEntry.ActorKind.CLIENT, client_id)


SYSTEM = Actor(AuditEntry.ActorKind.SYSTEM)
ANONYMOUS = Actor(AuditEntry.ActorKind.ANONYMOUS)


@dataclass(frozen=True)
class RequestContext:
    actor: Actor
    ip: str | None


# Who is acting and from where, for the request being served (`audit.middleware`): services
# called from a page record without being handed the request.
_request: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "audit_request", default=None
)


def context_set(ctx: RequestContext | None) -> contextvars.Token:
    return _request.set(ctx)


def context_reset(token: contextvars.Token) -> None:
    _request.reset(token)


def client_ip(request: Any) -> str | None:
    """The peer address (a proxy in front sets it through uvicorn's --forwarded-allow-ips)."""
    return request.META.get("REMOTE_ADDR") or None


def request_actor(request: Any) -> Actor:
    """The signed-in Django user (staff); anyone else (a patient API caller, whose callers pass
    their actor) is anonymous here."""
    user = getattr(request, "user", None)
    if getattr(user, "is_authenticated", False) is True and hasattr(user, "get_username"):
        return Actor.staff(user.pk)
    return ANONYMOUS


# --- the chain -------------------------------------------------------------------------------


def _canonical(values: dict[str, Any]) -> bytes:
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _values(entry: AuditEntry) -> dict[str, Any]:
    at = entry.at.astimezone(dt.UTC).isoformat(timespec="microseconds")
    return {
        "id": entry.id,
        "at": at,
        "actor_kind": entry.actor_kind,
        "actor_id": entry.actor_id,
        "clinic": entry.clinic,
        "action": entry.action,
        "object_type": entry.object_type,
        "object_id": entry.object_id,
        "fields": list(entry.fields),
        "ip": entry.ip,
        "prev_hash": entry.prev_hash,
    }


def entry_hash(entry: AuditEntry) -> str:
    return hashlib.sha256(_canonical(_values(entry))).hexdigest()


def _lock_tail() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])


def record(
    *,
    action: str,
    actor: Actor | None = None,
    clinic: str = "",
    object_type: str = "",
    object_id: int | str = "",
    fields: Iterable[str] = (),
    ip: str | None = None,
) -> AuditEntry:
    """Append one entry. `actor` and `ip` default to the current request's (else the system).
    Inside the caller's transaction when there is one: the entry commits with the change."""
    return record_many(
        action=action,
        actor=actor,
        clinic=clinic,
        object_type=object_type,
        object_ids=[object_id],
        fields=fields,
        ip=ip,
    )[0]


def record_many(
    *,
    action: str,
    actor: Actor | None = None,
    clinic: str = "",
    object_type: str = "",
    object_ids: Iterable[int | str],
    fields: Iterable[str] = (),
    ip: str | None = None,
) -> list[AuditEntry]:
    """`record` for several objects at once (a search that returned them): one entry each,
    appended under one lock with one INSERT."""
    ctx = _request.get()
    if actor is None:
        actor = ctx.actor if ctx is not None else SYSTEM
    if ip is None and ctx is not None:
        ip = ctx.ip
    ip = _normalised_ip(ip)
    ids = [str(object_id) for object_id in object_ids]
    field_names = sorted(set(fields))
    if not ids:
        return []
    # No savepoint: inside the caller's transaction a failed append fails the change too.
    with transaction.atomic(savepoint=False):
        _lock_tail()
        last = AuditEntry.objects.order_by("-id").values_list("id", "hash").first()
        next_id, prev_hash = ((last[0] + 1), last[1]) if last else (1, GENESIS)
        # Microseconds: what both databases keep, so the hash reads back the same.
        at = timezone.now()
        entries = []
        for object_id in ids:
            entry = AuditEntry(
                id=next_id,
                at=at,
                actor_kind=actor.kind,
                actor_id=actor.id,
                clinic=clinic,
                action=str(action),
                object_type=object_type,
                object_id=object_id,
                fields=field_names,
                ip=ip,
                prev_hash=prev_hash,
            )
            entry.hash = entry_hash(entry)
            entries.append(entry)
            next_id, prev_hash = next_id + 1, entry.hash
        AuditEntry.objects.bulk_create(entries)
        return entries


def _normalised_ip(ip: str | None) -> str:
    """One spelling per address; anything else (a proxy's junk) is left out."""
    try:
        address = ipaddress.ip_address(ip) if ip else None
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return str(address.ipv4_mapped)  # an IPv4 client of a dual-stack server
    return str(address) if address else ""


@dataclass(frozen=True)
class Broken:
    entry_id: int
    reason: str


def verify(*, batch: int = 2000) -> tuple[int, Broken | None]:
    """Walk the chain in id order: how many rows were checked, and the first broken one."""
    expected_id, prev = 1, GENESIS
    checked = 0
    for entry in _in_order(batch):
        if entry.id != expected_id:
            return checked, Broken(entry.id, f"row {expected_id} is missing")
        if entry.prev_hash != prev:
            return checked, Broken(entry.id, "it does not follow the row before it")
        if entry_hash(entry) != entry.hash:
            return checked, Broken(entry.id, "its content does not match its hash")
        checked += 1
        expected_id, prev = entry.id + 1, entry.hash
    return checked, None


def _in_order(batch: int) -> Iterator[AuditEntry]:
    after = 0
    while True:
        rows = list(AuditEntry.objects.filter(id__gt=after).order_by("id")[:batch])
        if not rows:
            return
        yield from rows
        after = rows[-1].id


# --- what changed ----------------------------------------------------------------------------


def snapshot(instance: models.Model) -> dict[str, Any]:
    """The instance's own column values, to compare before and after a change."""
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def changed(
    before: dict[str, Any], after: dict[str, Any], *, ignore: Iterable[str] = ()
) -> list[str]:
    """The names of the columns whose values differ (bookkeeping columns left out)."""
    skip = {"updated_at", "created_at", *ignore}
    return sorted(k for k in after if k not in skip and before.get(k) != after[k])
