"""Calls users (Stream's users endpoints) and the revocation of their tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from calls import wire
from calls.capabilities import Actor
from calls.errors import InputError, NotAllowed, NotFound
from calls.limits import check_custom
from calls.models import CallUser
from calls.outbox.events import event_emit, events_emit_unbound
from calls.tokens import revocation_point

MAX_TEAMS = 250  # Stream's limits (§3.15)
MAX_TEAM_LENGTH = 100


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


# The fields a user's upsert or update writes (all the others are the API's own).
_WRITTEN = ["name", "image", "role", "custom", "language", "invisible", "teams", "teams_role"]


def users_upsert(*, actor: Actor, users: list[UserSpec]) -> list[CallUser]:
    """Full-replace upsert (Stream's POST /users): absent fields go back to their defaults.
    However many users: the existing rows read and locked, one INSERT … ON CONFLICT DO UPDATE,
    one INSERT of their `user.updated` events."""
    if not actor.is_server:
        raise NotAllowed("only server-side requests may upsert users")
    specs = list({spec.id: spec for spec in users}.values())  # one row per id: the last wins
    with transaction.atomic():
        ids = [u.id for u in specs]
        existing = {u.id: u for u in CallUser.objects.select_for_update().filter(id__in=ids)}
        saved: list[CallUser] = []
        for spec in specs:
            check_custom(spec.custom, field=f"users.{spec.id}.custom")
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
            saved.append(user)
        _users_write(saved, existing)
        by_id = {u.id: u for u in saved}
        return [by_id[u.id] for u in users]


def _users_write(users: list[CallUser], existing: dict[str, CallUser]) -> None:
    """Insert the new users and update the existing ones in one statement, then their events.
    The existing keep their `created_at` (the statement does not write it, and the instances
    get theirs back: the bulk INSERT stamps every instance as new)."""
    created_at = {u.id: u.created_at for u in users if u.id in existing}
    CallUser.objects.bulk_create(
        users, update_conflicts=True, unique_fields=["id"], update_fields=[*_WRITTEN, "updated_at"]
    )
    for user in users:
        if user.id in created_at:
            user.created_at = created_at[user.id]
        user._state.adding = False
    events_emit_unbound(
        type="user.updated", fields=[{"user": wire.user_response(u)} for u in users]
    )


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
                max_length = getattr(CallUser._meta.get_field(name), "max_length", None)
                if max_length and len(value) > max_length:
                    raise InputError(
                        f"{name} is longer than {max_length} characters",
                        fields={f"users.{user_id}.set.{name}": f"at most {max_length}"},
                    )
                setattr(user, name, value)
            check_custom(user.custom, field=f"users.{user_id}.custom")
            user.teams, user.teams_role = _clean_teams(
                user.teams, user.teams_role, f"users.{user_id}.set.teams"
            )
        changed = [found[i] for i in dict.fromkeys(ids)]
        now = timezone.now()  # bulk_update leaves auto_now alone
        for user in changed:
            user.updated_at = now
        # One UPDATE and one INSERT of events, however many users.
        CallUser.objects.bulk_update(changed, [*_WRITTEN, "updated_at"])
        events_emit_unbound(
            type="user.updated", fields=[{"user": wire.user_response(u)} for u in changed]
        )
        return changed


def user_tokens_revoke(*, user_id: str, minted_until: datetime) -> CallUser:
    """Revoke the user's calls tokens minted until `minted_until` (tokens minted later still
    work). Connected sockets re-check their token on the `user.updated` this emits."""
    with transaction.atomic():
        user = CallUser.objects.select_for_update().get(id=user_id)
        user.revoke_tokens_issued_before = revocation_point(minted_until.timestamp())
        user.save(update_fields=["revoke_tokens_issued_before", "updated_at"])
        event_emit(type="user.updated", for_call=None, user=wire.user_response(user))
        return user


def user_tokens_recheck(*, user_id: str) -> None:
    """The user's connected sockets run their token checks again (a grant of theirs ended:
    `tokens.grant_is_live`), through the `user.updated` they re-check on; nothing changes."""
    with transaction.atomic():
        user = CallUser.objects.get(id=user_id)
        event_emit(type="user.updated", for_call=None, user=wire.user_response(user))
