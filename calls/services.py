"""Every change of call state. Each runs in one transaction, locks what it changes and writes
its outbox event (calls.events) in that same transaction."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from . import netguard, selectors, wire
from .call_settings import BUILTIN_CALL_TYPE_SETTINGS, SettingsError, deep_merge, overlay
from .call_settings import validate_settings_request as _validate_settings
from .capabilities import (
    ALL_CAPABILITIES,
    SERVER,
    USER_PERMISSIONS,
    Actor,
    can_create,
    capabilities_for,
    join_denial,
    team_allows,
)
from .due import (
    due_actions_sync,
    participant_timeout_clear,
    participant_timeout_set,
    ring_timeout_clear,
    ring_timeout_set,
)
from .errors import InputError, NotAllowed, NotFound
from .events import event_emit, events_emit_for_calls
from .models import (
    Call,
    CallEvent,
    CallMember,
    CallParticipant,
    CallRing,
    CallSession,
    CallType,
    CallUser,
    PushDevice,
    Task,
    WebhookEndpoint,
    validate_webhook_url,
)
from .tokens import revocation_point

MAX_MEMBERS_PER_REQUEST = 100
MAX_TEAMS = 250  # Stream's limits (§3.15)
MAX_TEAM_LENGTH = 100


@dataclass(frozen=True)
class MemberSpec:
    user_id: str
    role: str | None = None
    custom: dict[str, Any] | None = None


@dataclass
class CallView:
    """A call with the members and capabilities an API answer shows."""

    call: Call
    members: list[CallMember]
    own_capabilities: list[str]
    created: bool = False


def _settings_or_error(data: dict[str, Any] | None, path: str) -> dict[str, Any]:
    if not data:
        return {}
    try:
        return _validate_settings(data, path=path)
    except SettingsError as exc:
        raise InputError(str(exc), fields=exc.errors) from None


def _require(actor: Actor, call: Call, member: CallMember | None, capability: str) -> None:
    if capability not in capabilities_for(actor, call, member):
        raise NotAllowed(
            f"user {actor.user_id} is not allowed to perform action {capability} on {call.cid}"
        )


def _locked_call(actor: Actor, type_name: str, call_id: str, capability: str) -> Call:
    """The call, locked until the transaction ends, once the actor may do `capability`."""
    call = selectors.call_get(actor=actor, type_name=type_name, call_id=call_id, for_update=True)
    _require(actor, call, selectors.member_of(actor=actor, call=call), capability)
    return call


def _capabilities_by_role(call: Call) -> dict[str, list[str]]:
    return {role: list(caps) for role, caps in call.type.grants.items()}


# --- users -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserSpec:
    id: str
    name: str | None = None
    image: str | None = None
    role: str | None = None
    custom: dict[str, Any] | None = None
    language: str | None = None
    invisible: bool | None = None
    teams: list[str] | None = None
    teams_role: dict[str, str] | None = None


def _clean_teams(
    teams: list[str] | None, teams_role: dict[str, str] | None, path: str
) -> tuple[list[str], dict[str, str]]:
    teams_role = teams_role or {}
    merged = sorted({*(teams or []), *teams_role})
    bad = [t for t in merged if not isinstance(t, str) or not t or len(t) > MAX_TEAM_LENGTH]
    if bad or len(merged) > MAX_TEAMS:
        raise InputError(
            f"teams must be at most {MAX_TEAMS} non-empty names of up to {MAX_TEAM_LENGTH} "
            "characters",
            fields={path: "invalid teams"},
        )
    return merged, dict(sorted(teams_role.items()))


def users_upsert(*, actor: Actor, users: list[UserSpec]) -> list[CallUser]:
    """Full-replace upsert (Stream's POST /users): absent fields go back to their defaults."""
    if not actor.is_server:
        raise NotAllowed("only server-side requests may upsert users")
    with transaction.atomic():
        ids = [u.id for u in users]
        existing = {u.id: u for u in CallUser.objects.select_for_update().filter(id__in=ids)}
        saved: list[CallUser] = []
        for spec in users:
            user = existing.get(spec.id) or CallUser(id=spec.id)
            user.name = spec.name or ""
            user.image = spec.image or ""
            user.role = spec.role or "user"
            user.custom = spec.custom or {}
            user.language = spec.language or ""
            user.invisible = bool(spec.invisible)
            user.teams, user.teams_role = _clean_teams(
                spec.teams, spec.teams_role, f"users.{spec.id}.teams"
            )
            user.save()
            saved.append(user)
            event_emit(type="user.updated", for_call=None, user=wire.user_response(user))
        return saved


_USER_FIELD_TYPES: dict[str, tuple[type, Any]] = {
    "name": (str, ""),
    "image": (str, ""),
    "role": (str, "user"),
    "custom": (dict, {}),
    "language": (str, ""),
    "invisible": (bool, False),
    "teams": (list, []),
    "teams_role": (dict, {}),
}


def users_partial_update(
    *, actor: Actor, updates: list[tuple[str, dict[str, Any], list[str]]]
) -> list[CallUser]:
    """Stream's PATCH /users: `set` these fields, `unset` those, leave the rest. Names that
    are not user fields are custom data (Stream's convention)."""
    if not actor.is_server:
        raise NotAllowed("only server-side requests may update users")
    with transaction.atomic():
        ids = [u[0] for u in updates]
        found = {u.id: u for u in CallUser.objects.select_for_update().filter(id__in=ids)}
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound(f"users {', '.join(missing)} do not exist")
        for user_id, set_fields, unset in updates:
            user = found[user_id]
            for name in unset:
                if name in _USER_FIELD_TYPES:
                    setattr(user, name, _USER_FIELD_TYPES[name][1])
                else:
                    user.custom = {k: v for k, v in user.custom.items() if k != name}
            for name, value in set_fields.items():
                if name not in _USER_FIELD_TYPES:
                    user.custom = {**user.custom, name: value}
                    continue
                expected = _USER_FIELD_TYPES[name][0]
                if not isinstance(value, expected) or (
                    expected is str and name == "role" and not value
                ):
                    raise InputError(
                        f"{name} must be a {expected.__name__}",
                        fields={f"users.{user_id}.set.{name}": f"must be {expected.__name__}"},
                    )
                setattr(user, name, value)
            user.teams, user.teams_role = _clean_teams(
                user.teams, user.teams_role, f"users.{user_id}.set.teams"
            )
            user.save()
            event_emit(type="user.updated", for_call=None, user=wire.user_response(user))
        return [found[i] for i in dict.fromkeys(ids)]


def user_tokens_revoke(*, user_id: str, minted_until: datetime) -> CallUser:
    """Revoke the user's calls tokens minted until `minted_until` (tokens minted later still
    work). Connected sockets re-check their token on the `user.updated` this emits."""
    with transaction.atomic():
        user = CallUser.objects.select_for_update().get(id=user_id)
        user.revoke_tokens_issued_before = revocation_point(minted_until.timestamp())
        user.save(update_fields=["revoke_tokens_issued_before", "updated_at"])
        event_emit(type="user.updated", for_call=None, user=wire.user_response(user))
        return user


# --- app settings (GET / PATCH /api/v2/app) ---------------------------------------------------

# What PATCH /api/v2/app may change here; any other setting of Stream's app is refused.
APP_SETTINGS = ("multi_tenant_enabled", "webhook_url", "webhook_events")
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")


def app_webhook() -> WebhookEndpoint | None:
    """The app's own webhook endpoint (Stream's `webhook_url`), if set."""
    return WebhookEndpoint.objects.filter(from_app_settings=True, active=True).first()


def app_update(*, changes: dict[str, Any]) -> WebhookEndpoint | None:
    """PATCH /api/v2/app: teams stay enforced (every clinic is a tenant); `webhook_url` sets,
    moves or (empty) removes the app's webhook endpoint, checked by the SSRF guard like one
    saved in the admin; `webhook_events` limits it to those event types (empty: all).
    Returns the app's endpoint."""
    unknown = sorted(set(changes) - set(APP_SETTINGS))
    if unknown:
        raise InputError(
            f"not supported by this server: {', '.join(unknown)}",
            fields=dict.fromkeys(unknown, "not supported"),
        )
    if changes.get("multi_tenant_enabled") is False:
        raise InputError(
            "teams are always enforced on this server (each clinic is a tenant)",
            fields={"multi_tenant_enabled": "always true"},
        )
    events = changes.get("webhook_events")
    if events is not None:
        bad = [e for e in events if not isinstance(e, str) or not _EVENT_TYPE.match(e)]
        if bad or len(events) > 100:
            raise InputError(
                "webhook_events must be event type names such as call.created",
                fields={"webhook_events": "event type names, at most 100"},
            )
    url = changes.get("webhook_url")
    if url:
        try:
            validate_webhook_url(url)
        except ValidationError as exc:
            message = " ".join(exc.messages)
            raise InputError(message, fields={"webhook_url": message}) from exc
    with transaction.atomic():
        endpoint = (
            WebhookEndpoint.objects.select_for_update().filter(from_app_settings=True).first()
        )
        if url == "":
            if endpoint is not None:
                endpoint.delete()
            return None
        if endpoint is None:
            if url is None:
                if events is not None:
                    raise InputError(
                        "set webhook_url first", fields={"webhook_events": "no webhook_url"}
                    )
                return None
            endpoint = WebhookEndpoint(from_app_settings=True, url=url)
        if url:
            endpoint.url = url
        if events is not None:
            endpoint.event_types = sorted(set(events))
        endpoint.active = True
        endpoint.save()
        return endpoint


# --- push devices ----------------------------------------------------------------------------


def device_register(
    *, user_id: str, kind: str, token: str, keys: dict[str, str] | None = None
) -> PushDevice:
    """Register (or re-activate and re-own) a push device. A token belongs to one user: a
    phone that changes hands moves to its new owner."""
    if kind not in PushDevice.Kind.values:
        raise InputError(f"unknown device kind {kind}", fields={"kind": "unknown"})
    if not token or len(token) > 4096:
        raise InputError("token is required", fields={"token": "required, at most 4096 chars"})
    keys = keys or {}
    if kind == PushDevice.Kind.WEBPUSH:
        # The SSRF guard's rules (an address literal now; a name is checked at every send,
        # where it is resolved: a registration never waits for DNS).
        try:
            netguard.check_url(token, resolve_host=False, **netguard.webpush_rules())
        except netguard.Refused as exc:
            message = str(exc)
            if exc.code == "scheme_refused":
                message = "a Web Push endpoint must be an https URL"
            raise InputError(message, fields={"token": message}) from exc
        if not (isinstance(keys.get("p256dh"), str) and isinstance(keys.get("auth"), str)):
            raise InputError(
                "a Web Push subscription needs keys p256dh and auth",
                fields={"keys": "p256dh and auth required"},
            )
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    with transaction.atomic():
        device, _ = PushDevice.objects.select_for_update().update_or_create(
            kind=kind,
            token_hash=token_hash,
            defaults={
                "user_id": user_id,
                "token": token,
                "keys": keys,
                "active": True,
                "deactivated_reason": "",
            },
        )
        return device


def device_remove(*, user_id: str, device_id: int) -> None:
    deleted, _ = PushDevice.objects.filter(user_id=user_id, pk=device_id).delete()
    if not deleted:
        raise NotFound(f"device {device_id} does not exist")


# --- call types ------------------------------------------------------------------------------


def _validate_grants(grants: dict[str, Any] | None) -> dict[str, list[str]]:
    if grants is None:
        return {}
    if not isinstance(grants, dict):
        raise InputError("grants must be an object", fields={"grants": "must be an object"})
    errors: dict[str, str] = {}
    for role, caps in grants.items():
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            errors[f"grants.{role}"] = "must be a list of capabilities"
            continue
        unknown = sorted(set(caps) - set(ALL_CAPABILITIES))
        if unknown:
            errors[f"grants.{role}"] = f"unknown capabilities: {', '.join(unknown)}"
    if errors:
        raise InputError("invalid grants", fields=errors)
    return {role: sorted(set(caps)) for role, caps in grants.items()}


def call_type_create(
    *,
    name: str,
    settings: dict[str, Any] | None = None,
    grants: dict[str, list[str]] | None = None,
    notification_settings: dict[str, Any] | None = None,
    external_storage: str = "",
) -> CallType:
    from .call_settings import default_notification_settings

    clean = _settings_or_error(settings, "settings")
    clean_grants = _validate_grants(grants)
    with transaction.atomic():
        if CallType.objects.filter(name=name).exists():
            raise InputError(f"call type {name} already exists", fields={"name": "already exists"})
        return CallType.objects.create(
            name=name,
            settings=deep_merge(BUILTIN_CALL_TYPE_SETTINGS["default"], clean),
            grants=clean_grants,
            notification_settings=deep_merge(
                default_notification_settings(), notification_settings or {}
            ),
            external_storage=external_storage or "",
        )


def call_type_update(
    *,
    name: str,
    settings: dict[str, Any] | None = None,
    grants: dict[str, list[str]] | None = None,
    notification_settings: dict[str, Any] | None = None,
    external_storage: str | None = None,
) -> CallType:
    """PUT merges settings and replaces only the roles named in `grants` (our choice, §3.14)."""
    clean = _settings_or_error(settings, "settings")
    clean_grants = _validate_grants(grants)
    with transaction.atomic():
        call_type = CallType.objects.select_for_update().filter(name=name).first()
        if call_type is None:
            raise NotFound(f"call type {name} does not exist")
        call_type.settings = deep_merge(call_type.settings, clean)
        call_type.grants = {**call_type.grants, **clean_grants}
        if notification_settings:
            call_type.notification_settings = deep_merge(
                call_type.notification_settings, notification_settings
            )
        if external_storage is not None:
            call_type.external_storage = external_storage
        call_type.save()
        return call_type


def call_types_ensure_builtin() -> None:
    """Create any missing built-in call type (the migration does it once; tests after a flush)."""
    from .call_settings import default_notification_settings
    from .capabilities import BUILTIN_GRANTS

    missing = set(BUILTIN_CALL_TYPE_SETTINGS) - set(
        CallType.objects.filter(name__in=list(BUILTIN_CALL_TYPE_SETTINGS)).values_list(
            "name", flat=True
        )
    )
    for name in sorted(missing):
        CallType.objects.get_or_create(
            name=name,
            defaults={
                "settings": BUILTIN_CALL_TYPE_SETTINGS[name],
                "grants": BUILTIN_GRANTS[name],
                "notification_settings": default_notification_settings(),
            },
        )


def call_type_delete(*, name: str) -> None:
    if name in BUILTIN_CALL_TYPE_SETTINGS:
        raise InputError(f"call type {name} is built in and cannot be deleted")
    with transaction.atomic():
        call_type = CallType.objects.select_for_update().filter(name=name).first()
        if call_type is None:
            raise NotFound(f"call type {name} does not exist")
        if Call.objects.filter(type=call_type).exists():
            raise InputError(f"call type {name} still has calls and cannot be deleted")
        call_type.delete()


# --- calls -----------------------------------------------------------------------------------


def _members_check(members: list[MemberSpec]) -> dict[str, CallUser]:
    """Shape and existence of a members list; returns the users by id (one query)."""
    _members_shape_check(members)
    users = CallUser.objects.in_bulk([m.user_id for m in members]) if members else {}
    _members_missing(members, users)
    return users


def _ring_and_notify(
    *,
    call: Call,
    members: list[CallMember],
    caller: CallUser,
    ring: bool,
    notify: bool,
    video: bool | None,
) -> list[str]:
    """Record ring / notify requests as events (delivery belongs to the push pipeline).
    Returns who was rung. A member whose ring is still open is not rung again (a client that
    asks again does not loop, §8 #3); the ring timeout is (re)armed for the new ones."""
    if not (ring or notify):
        return []
    call_data = wire.call_response(call)
    others = [m for m in members if m.user_id != caller.id]
    caller_data = wire.user_response(caller)
    rung: list[CallMember] = []
    if ring:
        if not others:
            raise InputError("no users to ring")
        ringing = set(
            CallRing.objects.filter(call=call, outcome="").values_list("user_id", flat=True)
        )
        rung = [m for m in others if m.user_id not in ringing]
        if rung:
            now = timezone.now()
            CallRing.objects.bulk_create(
                [CallRing(call=call, user_id=m.user_id, caller=caller, rung_at=now) for m in rung]
            )
            event_emit(
                type="call.ring",
                for_call=call,
                call=call_data,
                members=[wire.member_response(m) for m in rung],
                user=caller_data,
                session_id=call.current_session_id,
                video=bool(video),
            )
            timeout_ms = wire.call_settings(call)["ring"].get("missed_call_timeout_ms") or 0
            if timeout_ms > 0:
                ring_timeout_set(call, due_at=now + timedelta(milliseconds=timeout_ms))
    if notify:
        event_emit(
            type="call.notification",
            for_call=call,
            call=call_data,
            members=[wire.member_response(m) for m in others],
            user=caller_data,
            session_id=call.current_session_id,
        )
    return [m.user_id for m in rung]


# Reject reasons as clients send them (Stream's spec and JS SDK), normalised (§8 #5).
REJECT_REASONS = {
    "rejected": "rejected",
    "decline": "rejected",
    "busy": "busy",
    "timeout": "timeout",
    "cancel": "cancel",
}


def _answer(*, actor: Actor, type_name: str, call_id: str, outcome: str, reason: str = "") -> Call:
    if actor.is_server or actor.user is None:
        raise InputError("accepting or rejecting a call is done with the callee's user token")
    with transaction.atomic():
        call = _locked_call(actor, type_name, call_id, "read-call")
        ring = CallRing.objects.filter(call=call, user=actor.user, outcome="").first()
        if ring is None:
            raise InputError(f"user {actor.user.id} is not being rung for {call.cid}")
        ring.outcome, ring.reason, ring.answered_at = outcome, reason[:64], timezone.now()
        ring.save(update_fields=["outcome", "reason", "answered_at"])
        _session_record_answer(call, [actor.user.id], outcome, ring.answered_at)
        fields: dict[str, Any] = {
            "call": wire.call_response(call),
            "user": wire.user_response(actor.user),
        }
        if outcome == CallRing.Outcome.REJECTED:
            fields["reason"] = reason or "rejected"
        event_emit(type=f"call.{outcome}", for_call=call, **fields)
        if not CallRing.objects.filter(call=call, outcome="").exists():
            ring_timeout_clear(call)  # nobody left ringing: the ring is over
        return call


def call_accept(*, actor: Actor, type_name: str, call_id: str) -> Call:
    """A rung member accepts (client side): `call.accepted`."""
    return _answer(
        actor=actor, type_name=type_name, call_id=call_id, outcome=CallRing.Outcome.ACCEPTED
    )


def call_reject(*, actor: Actor, type_name: str, call_id: str, reason: str = "") -> Call:
    """A rung member rejects with a reason (free text; known ones normalised): `call.rejected`.
    When everyone rejected, ringing stops (the timeout is dropped)."""
    reason = reason.strip()
    if len(reason) > 64:
        raise InputError("reason is at most 64 characters", fields={"reason": "too long"})
    normalised = REJECT_REASONS.get(reason.lower(), reason)
    return _answer(
        actor=actor,
        type_name=type_name,
        call_id=call_id,
        outcome=CallRing.Outcome.REJECTED,
        reason=normalised,
    )


def call_ring_timeout(*, call: Call) -> list[str]:
    """The ring timeout passed: members still ringing missed the call (`call.missed`)."""
    with transaction.atomic():
        call = selectors.calls_base().select_for_update(of=("self",)).get(pk=call.pk)
        open_rings = list(CallRing.objects.filter(call=call, outcome="").select_related("caller"))
        if not open_rings:
            return []
        now = timezone.now()
        CallRing.objects.filter(pk__in=[r.pk for r in open_rings]).update(
            outcome=CallRing.Outcome.MISSED, answered_at=now
        )
        missed = [r.user_id for r in open_rings]
        _session_record_answer(call, missed, CallRing.Outcome.MISSED, now)
        members = list(selectors.members_base().filter(call=call, user_id__in=missed))
        event_emit(
            type="call.missed",
            for_call=call,
            call=wire.call_response(call),
            members=[wire.member_response(m) for m in members],
            user=wire.user_response(open_rings[0].caller),
            session_id=call.current_session_id,
            notify_user=True,
        )
        return missed


MAX_REMINDERS = 10
MAX_REMINDER_OFFSET = 30 * 24 * 3600


def _reminder_offsets_or_error(offsets: list[int] | None, path: str) -> list[int]:
    """Reminder offsets: seconds before the start, positive, at most 30 days, at most 10."""
    if offsets is None:
        return []
    if (
        not isinstance(offsets, list)
        or len(offsets) > MAX_REMINDERS
        or not all(
            isinstance(o, int) and not isinstance(o, bool) and 0 < o <= MAX_REMINDER_OFFSET
            for o in offsets
        )
    ):
        raise InputError(
            f"reminder offsets must be at most {MAX_REMINDERS} whole numbers of seconds "
            f"between 1 and {MAX_REMINDER_OFFSET}",
            fields={path: "invalid reminder offsets"},
        )
    return sorted(set(offsets), reverse=True)


def _creator(
    *,
    actor: Actor,
    call_type: CallType,
    created_by_id: str | None,
    created_by: UserSpec | None,
    team: str | None,
    users: dict[str, CallUser],
) -> CallUser:
    """Who creates the call, with the team rules for user-side creation (§3.3, §6.1)."""
    if not actor.is_server:
        assert actor.user is not None  # noqa: S101
        if not can_create(actor, call_type.grants):
            raise NotAllowed(
                f"user {actor.user.id} is not allowed to create {call_type.name} calls"
            )
        if actor.teams and team not in actor.teams:
            raise NotAllowed(
                "a user who belongs to teams must create calls in one of their teams",
                fields={"data.team": "must be one of your teams"},
            )
        if not actor.teams and team:
            raise NotAllowed(
                f"user {actor.user.id} does not belong to team {team}",
                fields={"data.team": "not your team"},
            )
        return actor.user
    if created_by is not None:
        return users_upsert(actor=actor, users=[created_by])[0]
    if not created_by_id:
        raise InputError(
            "either data.created_by or data.created_by_id must be provided when using "
            "server side auth",
            fields={"data.created_by_id": "required with server-side auth"},
        )
    if created_by_id not in users:
        raise InputError(
            f"user {created_by_id} does not exist", fields={"data.created_by_id": "unknown user"}
        )
    return users[created_by_id]


def _members_shape_check(members: list[MemberSpec]) -> None:
    if len(members) > MAX_MEMBERS_PER_REQUEST:
        raise InputError(
            f"at most {MAX_MEMBERS_PER_REQUEST} members per request",
            fields={"members": f"at most {MAX_MEMBERS_PER_REQUEST}"},
        )
    seen: set[str] = set()
    dupes = sorted({m.user_id for m in members if m.user_id in seen or seen.add(m.user_id)})
    if dupes:
        raise InputError(f"duplicate members: {', '.join(dupes)}", fields={"members": "duplicate"})


def _members_missing(members: list[MemberSpec], users: dict[str, CallUser]) -> None:
    missing = [m.user_id for m in members if m.user_id not in users]
    if missing:
        raise InputError(
            f"members must be existing users; unknown: {', '.join(missing)}",
            fields={"members": f"unknown users: {', '.join(missing)}"},
        )


def call_get_or_create(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    created_by_id: str | None = None,
    created_by: UserSpec | None = None,
    members: list[MemberSpec] | None = None,
    custom: dict[str, Any] | None = None,
    settings_override: dict[str, Any] | None = None,
    starts_at: datetime | None = None,
    team: str | None = None,
    ring: bool = False,
    notify: bool = False,
    video: bool | None = None,
    members_limit: int | None = None,
    go_live_at_start: bool = False,
    ring_at_start: bool = False,
    reminder_offsets: list[int] | None = None,
    no_show_after_seconds: int | None = None,
) -> CallView:
    """Stream's GetOrCreateCall. `data` is only used when the call is created (§3.3).

    Creation is one transaction (an inline `created_by` upsert included). Two requests racing
    for the same id meet at the unique constraint: the loser reads the winner's call.
    """
    existing = selectors.call_find(type_name=type_name, call_id=call_id)
    if existing is not None:
        return _existing_call_view(
            actor=actor,
            call=existing,
            ring=ring,
            notify=notify,
            video=video,
            members_limit=members_limit,
        )
    call_type = selectors.call_type_get(name=type_name)
    members = members or []
    override = _settings_or_error(settings_override, "data.settings_override")
    _members_shape_check(members)
    offsets = _reminder_offsets_or_error(reminder_offsets, "data.reminder_offsets")
    try:
        with transaction.atomic():
            wanted = [m.user_id for m in members]
            if actor.is_server and created_by is None and created_by_id:
                wanted.append(created_by_id)
            users = CallUser.objects.in_bulk(wanted) if wanted else {}
            creator = _creator(
                actor=actor,
                call_type=call_type,
                created_by_id=created_by_id,
                created_by=created_by,
                team=team,
                users=users,
            )
            users[creator.id] = creator
            _members_missing(members, users)
            with transaction.atomic():  # savepoint: a lost race leaves the outer block usable
                call = Call.objects.create(
                    type=call_type,
                    call_id=call_id,
                    cid=f"{type_name}:{call_id}",
                    created_by=creator,
                    team=team or None,
                    custom=custom or {},
                    settings_override=override,
                    starts_at=starts_at,
                    backstage=bool(
                        overlay(call_type.settings, override)["backstage"].get("enabled")
                    ),
                    go_live_at_start=go_live_at_start,
                    ring_at_start=ring_at_start,
                    reminder_offsets=offsets,
                    no_show_after_seconds=no_show_after_seconds,
                )
            rows = CallMember.objects.bulk_create(
                [
                    CallMember(
                        call=call,
                        user=users[m.user_id],
                        role=m.role or "call_member",
                        custom=m.custom or {},
                    )
                    for m in members
                ]
            )
            event_emit(
                type="call.created",
                for_call=call,
                call=wire.call_response(call),
                members=[wire.member_response(m) for m in rows],
            )
            _ring_and_notify(
                call=call, members=rows, caller=creator, ring=ring, notify=notify, video=video
            )
            due_actions_sync(call, new=True)
    except IntegrityError:
        existing = selectors.call_find(type_name=type_name, call_id=call_id)
        if existing is None:
            raise
        return _existing_call_view(
            actor=actor,
            call=existing,
            ring=ring,
            notify=notify,
            video=video,
            members_limit=members_limit,
        )
    mine = next((m for m in rows if m.user_id == actor.user_id), None)
    return CallView(
        call=call,
        members=rows if members_limit is None else rows[:members_limit],
        own_capabilities=capabilities_for(actor, call, mine),
        created=True,
    )


def _existing_call_view(
    *,
    actor: Actor,
    call: Call,
    ring: bool,
    notify: bool,
    video: bool | None,
    members_limit: int | None,
) -> CallView:
    return call_read(
        actor=actor,
        type_name=call.type_id,
        call_id=call.call_id,
        ring=ring,
        notify=notify,
        video=video,
        members_limit=members_limit,
        call=call,
    )


def call_read(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    ring: bool = False,
    notify: bool = False,
    video: bool | None = None,
    members_limit: int | None = None,
    call: Call | None = None,
) -> CallView:
    """GetCall: a read, which may also ring or notify the members of the existing call."""
    if call is None:
        call = selectors.call_get(actor=actor, type_name=type_name, call_id=call_id)
    elif not team_allows(actor, call.team):
        raise NotAllowed(f"user {actor.user_id} is not allowed to access call {call.cid}")
    members = selectors.call_members(call=call, limit=members_limit)
    member = next((m for m in members if m.user_id == actor.user_id), None)
    if member is None and members_limit is not None and len(members) == members_limit:
        member = selectors.member_of(actor=actor, call=call)  # the page may have cut them off
    caps = capabilities_for(actor, call, member)
    if not actor.is_server and "read-call" not in caps:
        raise NotAllowed(f"user {actor.user_id} is not allowed to read call {call.cid}")
    if ring or notify:
        with transaction.atomic():
            locked = selectors.call_get(
                actor=actor, type_name=call.type_id, call_id=call.call_id, for_update=True
            )
            caller = actor.user or locked.created_by
            _ring_and_notify(
                call=locked,
                members=selectors.call_members(call=locked),
                caller=caller,
                ring=ring,
                notify=notify,
                video=video,
            )
    return CallView(call=call, members=members, own_capabilities=caps)


def call_join(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    create: bool = False,
    create_kwargs: dict[str, Any] | None = None,
    ring: bool = False,
    notify: bool = False,
    video: bool | None = None,
) -> CallView:
    """May this user enter the call now? Enforces the ended, capability, backstage and
    join-ahead rules (capabilities.join_denial) on the server, whatever the page says."""
    if actor.is_server:
        raise InputError("join is a client-side operation: use a user token")
    if create:
        view = call_get_or_create(
            actor=actor,
            type_name=type_name,
            call_id=call_id,
            ring=ring,
            notify=notify,
            video=video,
            **(create_kwargs or {}),
        )
    else:
        view = call_read(
            actor=actor, type_name=type_name, call_id=call_id, ring=ring, notify=notify, video=video
        )
    join_ahead = wire.call_settings(view.call)["backstage"].get("join_ahead_time_seconds", 0)
    denial = join_denial(
        caps=view.own_capabilities,
        call=view.call,
        join_ahead_seconds=join_ahead,
        now=timezone.now(),
    )
    if denial is not None:
        raise NotAllowed(denial)
    return view


def call_update(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    starts_at: datetime | None = None,
    custom: dict[str, Any] | None = None,
    settings_override: dict[str, Any] | None = None,
    go_live_at_start: bool | None = None,
    ring_at_start: bool | None = None,
    reminder_offsets: list[int] | None = None,
    no_show_after_seconds: int | None = None,
) -> CallView:
    """PATCH: replace `custom` when given, deep-merge `settings_override`, move `starts_at`;
    the scheduled actions follow in the same transaction."""
    override = _settings_or_error(settings_override, "settings_override")
    offsets = (
        None
        if reminder_offsets is None
        else _reminder_offsets_or_error(reminder_offsets, "reminder_offsets")
    )
    with transaction.atomic():
        call = selectors.call_get(
            actor=actor, type_name=type_name, call_id=call_id, for_update=True
        )
        member = selectors.member_of(actor=actor, call=call)
        _require(actor, call, member, "update-call")
        if override:
            _require(actor, call, member, "update-call-settings")
            call.settings_override = deep_merge(call.settings_override, override)
        if custom is not None:
            call.custom = custom
        if starts_at is not None:
            call.starts_at = starts_at
        if go_live_at_start is not None:
            call.go_live_at_start = go_live_at_start
        if ring_at_start is not None:
            call.ring_at_start = ring_at_start
        if offsets is not None:
            call.reminder_offsets = offsets
        if no_show_after_seconds is not None:
            call.no_show_after_seconds = no_show_after_seconds
        call.save()
        due_actions_sync(call)
        event_emit(
            type="call.updated",
            for_call=call,
            call=wire.call_response(call),
            capabilities_by_role=_capabilities_by_role(call),
        )
        return CallView(
            call=call,
            members=selectors.call_members(call=call),
            own_capabilities=capabilities_for(actor, call, member),
        )


def call_members_update(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    update_members: list[MemberSpec] | None = None,
    remove_members: list[str] | None = None,
) -> list[CallMember]:
    update_members = update_members or []
    remove_members = remove_members or []
    if len(remove_members) > MAX_MEMBERS_PER_REQUEST:
        raise InputError(
            f"at most {MAX_MEMBERS_PER_REQUEST} members may be removed at once",
            fields={"remove_members": f"at most {MAX_MEMBERS_PER_REQUEST}"},
        )
    with transaction.atomic():
        call = selectors.call_get(
            actor=actor, type_name=type_name, call_id=call_id, for_update=True
        )
        member = selectors.member_of(actor=actor, call=call)
        if update_members:
            _require(actor, call, member, "update-call-member")
        if remove_members:
            _require(actor, call, member, "remove-call-member")
        _members_check(update_members)
        current = {
            m.user_id: m
            for m in CallMember.objects.filter(
                call=call, user_id__in=[m.user_id for m in update_members]
            )
        }
        added: list[str] = []
        updated: list[str] = []
        role_changed = False
        for spec in update_members:
            row = current.get(spec.user_id)
            if row is None:
                CallMember.objects.create(
                    call=call,
                    user_id=spec.user_id,
                    role=spec.role or "call_member",
                    custom=spec.custom or {},
                )
                added.append(spec.user_id)
                continue
            new_role = spec.role or row.role
            new_custom = row.custom if spec.custom is None else spec.custom
            if (new_role, new_custom) != (row.role, row.custom):
                role_changed |= new_role != row.role
                row.role, row.custom = new_role, new_custom
                row.save(update_fields=["role", "custom", "updated_at"])
                updated.append(spec.user_id)
        removed = list(
            CallMember.objects.filter(call=call, user_id__in=remove_members).values_list(
                "user_id", flat=True
            )
        )
        CallMember.objects.filter(call=call, user_id__in=removed).delete()
        upserted = list(
            selectors.members_base()
            .filter(call=call, user_id__in=[m.user_id for m in update_members])
            .order_by("created_at", "pk")
        )
        if added or updated or removed:
            call.save(update_fields=["updated_at"])
        call_data = wire.call_response(call)
        by_id = {m.user_id: wire.member_response(m) for m in upserted}
        if added:
            event_emit(
                type="call.member_added",
                for_call=call,
                call=call_data,
                members=[by_id[i] for i in added],
            )
        if updated:
            event_emit(
                type="call.member_updated",
                for_call=call,
                call=call_data,
                members=[by_id[i] for i in updated],
            )
            if role_changed:
                event_emit(
                    type="call.member_updated_permission",
                    for_call=call,
                    call=call_data,
                    members=[by_id[i] for i in updated],
                    capabilities_by_role=_capabilities_by_role(call),
                )
        if removed:
            event_emit(type="call.member_removed", for_call=call, call=call_data, members=removed)
        return upserted


MAX_RING_MEMBERS = 25


def call_ring(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    members_ids: list[str] | None = None,
    video: bool | None = None,
) -> list[str]:
    """RingCall: ring the listed members (all members when none are listed) other than the
    caller. Returns who was rung; nobody eligible is 400 "no users to ring" (§3.10)."""
    members_ids = members_ids or []
    if len(members_ids) > MAX_RING_MEMBERS:
        raise InputError(
            f"at most {MAX_RING_MEMBERS} members can be rung at once",
            fields={"members_ids": f"at most {MAX_RING_MEMBERS}"},
        )
    with transaction.atomic():
        call = selectors.call_get(
            actor=actor, type_name=type_name, call_id=call_id, for_update=True
        )
        members = selectors.call_members(call=call)
        member = next((m for m in members if m.user_id == actor.user_id), None)
        _require(actor, call, member, "read-call")
        if call.ended_at is not None:
            raise InputError(f"call {call.cid} has ended and cannot ring")
        known = {m.user_id for m in members}
        strangers = [i for i in members_ids if i not in known]
        if strangers:
            raise InputError(
                f"only members can be rung; not members: {', '.join(strangers)}",
                fields={"members_ids": f"not members: {', '.join(strangers)}"},
            )
        caller = actor.user or call.created_by
        wanted = set(members_ids) or known
        targets = [m for m in members if m.user_id in wanted]
        return _ring_and_notify(
            call=call, members=targets, caller=caller, ring=True, notify=False, video=video
        )


def call_send_event(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    custom: dict[str, Any],
    user_id: str | None = None,
) -> None:
    """SendCallEvent: a `custom` event to the call's members (e.g. "running late")."""
    with transaction.atomic():
        call = selectors.call_get(
            actor=actor, type_name=type_name, call_id=call_id, for_update=True
        )
        if actor.is_server:
            sender = CallUser.objects.filter(id=user_id).first() if user_id else None
            if sender is None:
                raise InputError(
                    "server-side events must name an existing sender user_id",
                    fields={"user_id": "required with server-side auth"},
                )
        else:
            assert actor.user is not None  # noqa: S101
            _require(actor, call, selectors.member_of(actor=actor, call=call), "read-call")
            sender = actor.user
        event_emit(type="custom", for_call=call, custom=custom, user=wire.user_response(sender))


# --- block, unblock, kick (§3.13) -------------------------------------------------------------


def _user_to_moderate(actor: Actor, user_id: str) -> CallUser:
    if not user_id:
        raise InputError("user_id is required", fields={"user_id": "required"})
    if not actor.is_server and actor.user_id == user_id:
        raise InputError("you cannot do this to yourself", fields={"user_id": "is you"})
    user = CallUser.objects.filter(id=user_id).first()
    if user is None:
        raise InputError(f"user {user_id} does not exist", fields={"user_id": "no such user"})
    return user


def _by_user(actor: Actor, by_id: str | None, *, field: str = "kicked_by_id") -> CallUser | None:
    """Who did it, for the event: the user actor, or the user a server-side call names."""
    if not actor.is_server:
        return actor.user
    if not by_id:
        return None
    by = CallUser.objects.filter(id=by_id).first()
    if by is None:
        raise InputError(f"user {by_id} does not exist", fields={field: "no such user"})
    return by


def _block(call: Call, user: CallUser, by: CallUser | None) -> None:
    call.blocked_user_ids = [*(call.blocked_user_ids or []), user.id]
    call.save(update_fields=["blocked_user_ids", "updated_at"])
    fields: dict[str, Any] = {"user": wire.user_response(user)}
    if by is not None:
        fields["blocked_by_user"] = wire.user_response(by)
    event_emit(type="call.blocked_user", for_call=call, **fields)


def call_block_user(*, actor: Actor, type_name: str, call_id: str, user_id: str) -> Call:
    """BlockUser: the user loses every capability on the call (no reading, joining or
    listing) until unblocked, and leaves it now if they are in it or its lobby (reason
    `blocked`). Blocking a blocked user changes nothing and emits nothing."""
    with transaction.atomic():
        call = _locked_call(actor, type_name, call_id, "block-users")
        user = _user_to_moderate(actor, user_id)
        if user.id in (call.blocked_user_ids or []):
            return call
        _participants_close(call, "blocked", user_id=user.id)
        _block(call, user, _by_user(actor, None))
        return call


def call_unblock_user(*, actor: Actor, type_name: str, call_id: str, user_id: str) -> Call:
    """UnblockUser: the user's capabilities come back. Unblocking someone who is not blocked
    changes nothing and emits nothing."""
    with transaction.atomic():
        call = _locked_call(actor, type_name, call_id, "block-users")
        user = _user_to_moderate(actor, user_id)
        if user.id not in (call.blocked_user_ids or []):
            return call
        call.blocked_user_ids = [u for u in call.blocked_user_ids if u != user.id]
        call.save(update_fields=["blocked_user_ids", "updated_at"])
        event_emit(type="call.unblocked_user", for_call=call, user=wire.user_response(user))
        return call


def call_kick_user(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    user_id: str,
    block: bool = False,
    kicked_by_id: str | None = None,
) -> Call:
    """KickUser: the user's tabs leave the call and its lobby (reason `kicked`; they may
    join again), and with `block` the user is blocked as well (reason `blocked`, and
    `call.blocked_user` after `call.kicked_user`)."""
    with transaction.atomic():
        call = _locked_call(actor, type_name, call_id, "kick-user")
        if block:
            _require(actor, call, selectors.member_of(actor=actor, call=call), "block-users")
        user = _user_to_moderate(actor, user_id)
        by = _by_user(actor, kicked_by_id)
        _participants_close(call, "blocked" if block else "kicked", user_id=user.id)
        fields: dict[str, Any] = {"user": wire.user_response(user)}
        if by is not None:
            fields["kicked_by_user"] = wire.user_response(by)
        event_emit(type="call.kicked_user", for_call=call, **fields)
        if block and user.id not in (call.blocked_user_ids or []):
            _block(call, user, by)
        return call


# --- mute, user permissions (§3.13) ------------------------------------------------------------

MUTE_REASON = "muted_by_moderator"


def _present(call: Call, user_ids: list[str] | None = None) -> QuerySet[CallParticipant]:
    """The call's participants in it or its lobby (of these users), in the order they came."""
    rows = CallParticipant.objects.filter(call=call).exclude(state=CallParticipant.State.LEFT)
    if user_ids is not None:
        rows = rows.filter(user_id__in=user_ids)
    return rows.order_by("pk")


def _active_participants(call: Call, user_ids: list[str] | None) -> list[CallParticipant]:
    return list(_present(call, user_ids).select_for_update())


def call_mute_users(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    user_ids: list[str] | None = None,
    mute_all_users: bool = False,
    audio: bool = False,
    video: bool = False,
    screenshare: bool = False,
    screenshare_audio: bool = False,
    muted_by_id: str | None = None,
) -> list[str]:
    """MuteUsers: the named users (or everyone in the call but the one muting) have their
    microphone and/or camera turned off in the call now (`call.user_muted`; their page turns
    them off, and they may turn them on again unless their permissions were revoked).
    Returns the muted user ids."""
    if not (audio or video or screenshare or screenshare_audio):
        raise InputError(
            "say what to mute: audio, video, screenshare or screenshare_audio",
            fields={"audio": "one of audio, video, screenshare, screenshare_audio is required"},
        )
    if not mute_all_users and not user_ids:
        raise InputError("user_ids or mute_all_users is required", fields={"user_ids": "required"})
    with transaction.atomic():
        call = _locked_call(actor, type_name, call_id, "mute-users")
        by = _by_user(actor, muted_by_id, field="muted_by_id")
        if mute_all_users:
            participants = _active_participants(call, None)
            targets = list(
                dict.fromkeys(p.user_id for p in participants if p.user_id != actor.user_id)
            )
        else:
            targets = list(dict.fromkeys(user_ids or []))
            known = set(CallUser.objects.filter(id__in=targets).values_list("id", flat=True))
            unknown = [u for u in targets if u not in known]
            if unknown:
                raise InputError(
                    f"users do not exist: {', '.join(unknown)}", fields={"user_ids": "unknown"}
                )
            participants = _active_participants(call, targets)
        for participant in participants:
            if participant.user_id not in targets:
                continue
            participant.audio = participant.audio and not audio
            participant.video = participant.video and not video
            participant.save(update_fields=["audio", "video"])
        event_emit(
            type="call.user_muted",
            for_call=call,
            from_user_id=by.id if by is not None else "",
            muted_user_ids=targets,
            reason=MUTE_REASON,
        )
        return targets


def call_update_user_permissions(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    user_id: str,
    grant_permissions: list[str] | None = None,
    revoke_permissions: list[str] | None = None,
) -> list[str]:
    """UpdateUserPermissions: grant or revoke screenshare / send-audio / send-video for one
    user on this call, over what their roles give (`call.permissions_updated` with the
    user's new capabilities; their page follows). Returns those capabilities."""
    grant, revoke = list(grant_permissions or []), list(revoke_permissions or [])
    errors = {}
    for name, values in (("grant_permissions", grant), ("revoke_permissions", revoke)):
        bad = sorted(set(values) - set(USER_PERMISSIONS))
        if bad:
            errors[name] = f"only {', '.join(USER_PERMISSIONS)}; not {', '.join(bad)}"
    if set(grant) & set(revoke):
        errors["revoke_permissions"] = "a permission cannot be granted and revoked at once"
    if not grant and not revoke:
        errors["grant_permissions"] = "grant_permissions or revoke_permissions is required"
    if errors:
        raise InputError("invalid permissions", fields=errors)
    with transaction.atomic():
        call = _locked_call(actor, type_name, call_id, "update-call-permissions")
        user = _user_to_moderate(actor, user_id)
        overrides = dict(call.user_permissions or {})
        mine = dict(overrides.get(user.id) or {})
        mine.update(dict.fromkeys(grant, True))
        mine.update(dict.fromkeys(revoke, False))
        overrides[user.id] = mine
        call.user_permissions = overrides
        call.save(update_fields=["user_permissions", "updated_at"])
        person = Actor(user=user, teams=frozenset(user.teams))
        caps = capabilities_for(person, call, selectors.member_of(actor=person, call=call))
        # What they may no longer send, they are not sending (their page turns it off too).
        for participant in _active_participants(call, [user.id]):
            participant.audio = participant.audio and "send-audio" in caps
            participant.video = participant.video and "send-video" in caps
            participant.save(update_fields=["audio", "video"])
        event_emit(
            type="call.permissions_updated",
            for_call=call,
            user=wire.user_response(user),
            own_capabilities=caps,
        )
        return caps


def call_go_live(*, actor: Actor, type_name: str, call_id: str) -> Call:
    """Leave backstage: ordinary members may now join. Clears `ended_at` (§6.2)."""
    with transaction.atomic():
        call = _locked_call(actor, type_name, call_id, "update-call")
        now = timezone.now()
        call.backstage = False
        call.live_started_at = now
        call.ended_at = None
        call.end_reason = ""
        call.save()
        session = call.session
        if session is not None and session.ended_at is None and session.live_started_at is None:
            session.live_started_at = now
            session.save(update_fields=["live_started_at"])
        due_actions_sync(call)
        event_emit(type="call.live_started", for_call=call, call=wire.call_response(call))
        participants_admit(call=call)  # the lobby comes in
        return call


def calls_go_live_at_start(*, call_pks: list[int]) -> list[int]:
    """The scheduler's go-live for a batch of calls due together: each call exactly as
    `call_go_live` leaves it (live, `call.live_started`), in one transaction and a handful of
    queries instead of ten per call. A call with people in its lobby or session goes through
    `call_go_live` (they are admitted); a call already live or ended is left alone. Returns
    the pks of the calls that went live."""
    with transaction.atomic():
        calls = list(
            selectors.calls_base()
            .select_for_update(of=("self",))
            .filter(pk__in=call_pks, backstage=True, ended_at__isnull=True)
            .order_by("pk")
        )
        present = set(
            CallParticipant.objects.filter(call__in=calls)
            .exclude(state=CallParticipant.State.LEFT)
            .values_list("call_id", flat=True)
        )
        simple = [c for c in calls if c.pk not in present]
        now = timezone.now()
        for call in simple:
            call.backstage = False
            call.live_started_at = now
            call.end_reason = ""
            call.updated_at = now
        Call.objects.bulk_update(
            simple, ["backstage", "live_started_at", "end_reason", "updated_at"]
        )
        # Their due actions need no change: going live only drops a pending go-live, and the
        # scheduler has marked that one done (calls.due._wanted).
        events_emit_for_calls(
            type="call.live_started", fields=[(c, {"call": wire.call_response(c)}) for c in simple]
        )
        for call in calls:
            if call.pk in present:
                call_go_live(actor=SERVER, type_name=call.type_id, call_id=call.call_id)
        return [c.pk for c in calls]


def call_stop_live(*, actor: Actor, type_name: str, call_id: str) -> Call:
    with transaction.atomic():
        call = _locked_call(actor, type_name, call_id, "update-call")
        call.backstage = True
        call.live_ended_at = timezone.now()
        call.save()
        due_actions_sync(call)
        _participants_to_lobby(call)
        event_emit(
            type="call.updated",
            for_call=call,
            call=wire.call_response(call),
            capabilities_by_role=_capabilities_by_role(call),
        )
        return call


def call_end(*, actor: Actor, type_name: str, call_id: str, reason: str = "") -> Call:
    """End for everyone. Ending an ended call changes nothing and emits nothing."""
    with transaction.atomic():
        call = _locked_call(actor, type_name, call_id, "end-call")
        if call.ended_at is not None:
            return call
        _participants_close(call, "call_ended")  # ends the session with its last leave
        _session_reload(call)
        now = timezone.now()
        call.ended_at = now
        call.end_reason = reason[:64]
        if not call.backstage or wire.call_settings(call)["backstage"].get("enabled"):
            call.live_ended_at = now
        call.current_session_id = ""
        session = call.session
        if session is not None and session.ended_at is None:
            _session_end(call, session, now)  # a session with nobody left in it
        call.save()
        due_actions_sync(call)
        CallRing.objects.filter(call=call, outcome="").update(
            outcome=CallRing.Outcome.CANCELLED, answered_at=now
        )
        ring_timeout_clear(call)
        fields: dict[str, Any] = {"call": wire.call_response(call)}
        if actor.user is not None:
            fields["user"] = wire.user_response(actor.user)
        if reason:
            fields["reason"] = reason
        event_emit(type="call.ended", for_call=call, **fields)
        return call


def call_delete(
    *, actor: Actor, type_name: str, call_id: str, hard: bool = False
) -> tuple[Call, Task | None]:
    """Soft delete hides the call from the API; hard delete (server only) also wipes it."""
    if hard and not actor.is_server:
        raise NotAllowed("hard delete is only allowed with server-side auth")
    with transaction.atomic():
        call = _locked_call(actor, type_name, call_id, "end-call")
        _participants_close(call, "call_deleted")  # nobody stays in a deleted call
        _session_reload(call)
        call.deleted_at = timezone.now()
        if call.ended_at is None:
            call.ended_at = call.deleted_at
        call.save()
        due_actions_sync(call)
        call_data = wire.call_response(call)
        task = None
        if hard:
            task = Task.objects.create(
                id=str(uuid.uuid4()), kind="call_hard_delete", params={"call_pk": call.pk}
            )
            event_emit(type="call.deleted", for_call=None, call_cid=call.cid, call=call_data)
            transaction.on_commit(lambda: _enqueue_hard_delete(task.id))
        else:
            event_emit(type="call.deleted", for_call=call, call=call_data)
        return call, task


def _enqueue_hard_delete(task_id: str) -> None:
    from .tasks import run_task

    run_task.delay(task_id)


def call_hard_delete_run(*, task_id: str) -> Task | None:
    """Wipe a soft-deleted call with its members and history (the GDPR delete)."""
    with transaction.atomic():
        task = Task.objects.select_for_update().filter(id=task_id).first()
        if task is None or task.status == Task.Status.COMPLETED:
            return task
        call_pk = task.params["call_pk"]
        CallEvent.objects.filter(call_id=call_pk).delete()
        Call.objects.filter(pk=call_pk, deleted_at__isnull=False).delete()
        task.status = Task.Status.COMPLETED
        task.result = {"deleted_call": True}
        task.save()
        return task


# --- sessions and participants (browser joins: calls.realtime.rtc) ----------------------------

# A joined participant whose connection has not been heard from for this long has gone
# (a server crash leaves no disconnect behind): the sweep makes them leave.
PARTICIPANT_SILENT_AFTER = timedelta(seconds=90)


@dataclass(frozen=True)
class Entry:
    """Where a browser tab stands after asking to enter a call."""

    call: Call
    participant: CallParticipant
    capabilities: list[str]
    resumed: bool = False

    @property
    def admitted(self) -> bool:
        return self.participant.state == CallParticipant.State.JOINED


def _inactivity_seconds(call: Call) -> int:
    return int(wire.call_settings(call)["session"].get("inactivity_timeout_seconds") or 30)


def _participant_event(call: Call, participant: CallParticipant, type: str, **extra: Any) -> None:
    fields: dict[str, Any] = {"participant": wire.participant_response(participant)}
    if participant.session_id:
        fields["session_id"] = participant.session_id
    event_emit(type=type, for_call=call, **fields, **extra)


def _count_updated(call: Call, session: CallSession) -> None:
    by_role: dict[str, int] = {}
    for role in CallParticipant.objects.filter(
        session=session, state=CallParticipant.State.JOINED
    ).values_list("role", flat=True):
        by_role[role] = by_role.get(role, 0) + 1
    event_emit(
        type="call.session_participant_count_updated",
        for_call=call,
        session_id=session.id,
        participants_count_by_role=by_role,
        anonymous_participant_count=0,
    )


def _ring_answers_since(call: Call, since: datetime | None) -> dict[str, dict[str, int]]:
    """The ring answers of this call since `since`, as the session's three maps."""
    maps: dict[str, dict[str, int]] = {"accepted": {}, "rejected": {}, "missed": {}}
    rings = CallRing.objects.filter(call=call).exclude(outcome="")
    if since is not None:
        rings = rings.filter(answered_at__gte=since)
    for user_id, outcome, at in rings.values_list("user_id", "outcome", "answered_at"):
        if outcome in maps and at is not None:
            maps[outcome][user_id] = wire.to_ns(at) or 0
    return maps


def _session_record_answer(call: Call, user_ids: list[str], outcome: str, at: datetime) -> None:
    """Keep the running session's accepted / rejected / missed maps in step with the rings."""
    if call.session_id is None or call.session is None or call.session.ended_at is not None:
        return
    session = call.session
    field = {"accepted": "accepted_by", "rejected": "rejected_by", "missed": "missed_by"}[outcome]
    getattr(session, field).update(dict.fromkeys(user_ids, wire.to_ns(at)))
    session.save(update_fields=[field])


def _session_start(call: Call, now: datetime) -> CallSession:
    previous = call.session
    maps = _ring_answers_since(call, previous.ended_at if previous else None)
    session = CallSession.objects.create(
        id=str(uuid.uuid4()),
        call=call,
        started_at=now,
        live_started_at=None if call.backstage else now,
        accepted_by=maps["accepted"],
        rejected_by=maps["rejected"],
        missed_by=maps["missed"],
    )
    call.session = session
    call.current_session_id = session.id
    call.save(update_fields=["session", "current_session_id", "updated_at"])
    due_actions_sync(call)  # the max-duration timer starts with the session
    event_emit(
        type="call.session_started",
        for_call=call,
        call=wire.call_response(call),
        session_id=session.id,
    )
    return session


def _session_end(call: Call, session: CallSession, now: datetime) -> None:
    session.ended_at = now
    if session.live_started_at is not None and session.live_ended_at is None:
        session.live_ended_at = now
    session.save(update_fields=["ended_at", "live_ended_at"])
    if call.current_session_id == session.id:
        call.current_session_id = ""
        call.save(update_fields=["current_session_id", "updated_at"])
    due_actions_sync(call)  # drops the timer
    event_emit(
        type="call.session_ended",
        for_call=call,
        call=wire.call_response(call),
        session_id=session.id,
    )


def _admit(call: Call, participant: CallParticipant, now: datetime) -> None:
    """Waiting → joined: into the running session, or a new one."""
    session = call.session if call.session and call.session.ended_at is None else None
    if session is None:
        session = _session_start(call, now)
    participant.session = session
    participant.state = CallParticipant.State.JOINED
    participant.joined_at = now
    participant.disconnected_at = None
    participant.last_seen_at = now
    participant.save()
    _participant_event(call, participant, "call.session_participant_joined")
    _count_updated(call, session)


def participant_enter(
    *,
    actor: Actor,
    type_name: str,
    call_id: str,
    channel_name: str,
    user_session_id: str = "",
    audio: bool = True,
    video: bool = True,
) -> Entry:
    """A browser tab asks to be in the call. The join rule (`join_denial`) decides; a person
    who may not enter a backstage call yet (no `join-backstage`) waits in the lobby and is
    admitted at go-live (`participants_admit`). `user_session_id` resumes a connection that
    dropped: same participant, no events. `audio` / `video`: what the tab sends from the start
    (as far as the user may send it), so the others' first view of it is right."""
    if actor.is_server or actor.user is None:
        raise InputError("joining is done with a user token")
    with transaction.atomic():
        call = selectors.call_get(
            actor=actor, type_name=type_name, call_id=call_id, for_update=True
        )
        member = selectors.member_of(actor=actor, call=call)
        caps = capabilities_for(actor, call, member)
        now = timezone.now()
        join_ahead = wire.call_settings(call)["backstage"].get("join_ahead_time_seconds", 0)
        denial = join_denial(caps=caps, call=call, join_ahead_seconds=join_ahead, now=now)
        if denial is not None:
            raise NotAllowed(denial)
        waits = call.backstage and "join-backstage" not in caps
        participant = None
        if user_session_id:
            participant = (
                CallParticipant.objects.select_for_update()
                .filter(call=call, user=actor.user, user_session_id=user_session_id)
                .exclude(state=CallParticipant.State.LEFT)
                .first()
            )
        if participant is not None:
            participant.channel_name = channel_name
            participant.disconnected_at = None
            participant.last_seen_at = now
            if participant.state == CallParticipant.State.JOINED and waits:
                # Back to backstage while they were away: they wait again.
                participant_leave(user_session_id=participant.user_session_id, reason="backstage")
                participant = None
            else:
                participant.save()
                participant_timeout_clear(call, participant.user_session_id)
                if participant.state == CallParticipant.State.WAITING and not waits:
                    _admit(call, participant, now)
                return Entry(call=call, participant=participant, capabilities=caps, resumed=True)
        participant = CallParticipant.objects.create(
            call=call,
            user=actor.user,
            user_session_id=str(uuid.uuid4()),
            role=(member.role if member and member.role else actor.user.role),
            channel_name=channel_name,
            waiting_since=now,
            last_seen_at=now,
            audio=audio and "send-audio" in caps,
            video=video and "send-video" in caps,
        )
        if waits:
            _participant_event(call, participant, "call.lobby_participant_joined")
        else:
            _admit(call, participant, now)
        return Entry(call=call, participant=participant, capabilities=caps)


def participants_admit(*, call: Call) -> list[CallParticipant]:
    """The call went live: everyone waiting in its lobby who may now join is admitted.
    Called by the services that make a call live, in their transaction."""
    now = timezone.now()
    admitted = []
    for participant in CallParticipant.objects.select_for_update().filter(
        call=call, state=CallParticipant.State.WAITING
    ):
        _admit(call, participant, now)
        admitted.append(participant)
    return admitted


def participant_leave(*, user_session_id: str, reason: str = "left") -> CallParticipant | None:
    """The participant is gone (left, timed out, removed). The last one out ends the session.
    Leaving twice changes nothing."""
    with transaction.atomic():
        call_pk = (
            CallParticipant.objects.filter(user_session_id=user_session_id)
            .values_list("call_id", flat=True)
            .first()
        )
        if call_pk is None:
            return None
        # Lock order everywhere: the call, then its participants. (Not `calls_base`: leaving
        # a call that was deleted meanwhile must still work.)
        call = (
            Call.objects.select_related("type", "created_by", "session")
            .select_for_update(of=("self",))
            .get(pk=call_pk)
        )
        participant = (
            CallParticipant.objects.select_for_update()
            .select_related("user")
            .get(user_session_id=user_session_id)
        )
        if participant.state == CallParticipant.State.LEFT:
            return participant
        now = timezone.now()
        was = participant.state
        participant.state = CallParticipant.State.LEFT
        participant.left_at = now
        participant.left_reason = reason[:64]
        participant.save()
        participant_timeout_clear(call, user_session_id)
        if was == CallParticipant.State.WAITING:
            _participant_event(call, participant, "call.lobby_participant_left", reason=reason)
            return participant
        assert participant.joined_at is not None  # noqa: S101 - joined rows have it (constraint)
        _participant_event(
            call,
            participant,
            "call.session_participant_left",
            duration_seconds=int((now - participant.joined_at).total_seconds()),
            reason=reason,
        )
        session = participant.session
        assert session is not None  # noqa: S101
        if not CallParticipant.objects.filter(
            session=session, state=CallParticipant.State.JOINED
        ).exists():
            _session_end(call, session, now)
        else:
            _count_updated(call, session)
        return participant


def participant_disconnected(*, user_session_id: str) -> None:
    """The tab's connection dropped without a leave. A waiting person simply leaves the
    lobby; a joined one stays for the session's inactivity timeout, so a network blip does
    not end their call (the scheduler's `participant_timeout` makes them leave after it)."""
    with transaction.atomic():
        participant = (
            CallParticipant.objects.select_related("call", "call__type")
            .filter(user_session_id=user_session_id)
            .first()
        )
        if participant is None or participant.state == CallParticipant.State.LEFT:
            return
        if participant.state == CallParticipant.State.WAITING:
            participant_leave(user_session_id=user_session_id, reason="disconnected")
            return
        now = timezone.now()
        updated = CallParticipant.objects.filter(
            pk=participant.pk, state=CallParticipant.State.JOINED, disconnected_at__isnull=True
        ).update(disconnected_at=now)
        if updated:
            participant_timeout_set(
                participant.call,
                user_session_id,
                due_at=now + timedelta(seconds=_inactivity_seconds(participant.call)),
            )


def participant_timeout(*, user_session_id: str) -> CallParticipant | None:
    """The scheduler's `participant_timeout`: still away → leaves (reason `timeout`)."""
    still_away = CallParticipant.objects.filter(
        user_session_id=user_session_id,
        state=CallParticipant.State.JOINED,
        disconnected_at__isnull=False,
    ).exists()
    if not still_away:
        return None
    return participant_leave(user_session_id=user_session_id, reason="timeout")


def participant_seen(*, user_session_id: str) -> None:
    """A heartbeat from the participant's connection (at most every few seconds)."""
    CallParticipant.objects.filter(
        user_session_id=user_session_id, state=CallParticipant.State.JOINED
    ).update(last_seen_at=timezone.now())


def participant_media_update(*, user_session_id: str, audio: bool, video: bool) -> None:
    CallParticipant.objects.filter(user_session_id=user_session_id).update(audio=audio, video=video)


def participants_sweep(*, now: datetime | None = None) -> int:
    """Joined participants whose connection went silent without a disconnect (the web
    process died): they leave (reason `timeout`). Run by the scheduler's sweep."""
    now = now or timezone.now()
    silent = list(
        CallParticipant.objects.filter(
            state=CallParticipant.State.JOINED,
            disconnected_at__isnull=True,
            last_seen_at__lt=now - PARTICIPANT_SILENT_AFTER,
        ).values_list("user_session_id", flat=True)[:100]
    )
    for user_session_id in silent:
        participant_leave(user_session_id=user_session_id, reason="timeout")
    return len(silent)


def _session_reload(call: Call) -> None:
    """Read the call's session fields again (nested services changed them)."""
    fresh = (
        Call.objects.select_related("session").only("current_session_id", "session").get(pk=call.pk)
    )
    call.current_session_id = fresh.current_session_id
    call.session = fresh.session


def _participants_to_lobby(call: Call) -> None:
    """Back to backstage (StopLive): those who may not be in backstage leave the session
    (reason `backstage`); their call socket puts them back in the lobby."""
    joined = CallParticipant.objects.filter(call=call, state=CallParticipant.State.JOINED)
    members = {m.user_id: m for m in CallMember.objects.filter(call=call)}
    for participant in joined.select_related("user").order_by("pk"):
        person = Actor(user=participant.user, teams=frozenset(participant.user.teams))
        if "join-backstage" not in capabilities_for(person, call, members.get(participant.user_id)):
            participant_leave(user_session_id=participant.user_session_id, reason="backstage")


def _participants_close(call: Call, reason: str, *, user_id: str | None = None) -> None:
    """Everyone in the call or its lobby leaves (the call ended), or only `user_id`'s tabs
    (kicked, blocked): their call sockets close."""
    users = None if user_id is None else [user_id]
    for user_session_id in _present(call, users).values_list("user_session_id", flat=True):
        participant_leave(user_session_id=user_session_id, reason=reason)


def call_timer_warning(*, call: Call) -> None:
    """The running session's max-duration timer is about to end the call."""
    session = call.session
    if session is None or session.ended_at is not None or session.timer_ends_at is None:
        return
    remaining = int((session.timer_ends_at - timezone.now()).total_seconds())
    event_emit(
        type="call.session_timer_warning",
        for_call=call,
        session_id=session.id,
        timer_ends_at=wire.to_ns(session.timer_ends_at),
        remaining_seconds=max(remaining, 0),
    )


def call_no_show_check(*, call: Call) -> list[str]:
    """Some minutes after the start: the members who never joined (`call.no_show`), for the
    clinic layer to mark no-shows. Nothing is emitted when everyone came."""
    joined = set(
        CallParticipant.objects.filter(call=call, joined_at__isnull=False).values_list(
            "user_id", flat=True
        )
    )
    absent = [
        user_id
        for user_id in CallMember.objects.filter(call=call)
        .order_by("created_at", "pk")
        .values_list("user_id", flat=True)
        if user_id not in joined
    ]
    if absent:
        event_emit(
            type="call.no_show",
            for_call=call,
            call=wire.call_response(call),
            user_ids=absent,
            session_id=call.current_session_id,
        )
    return absent
