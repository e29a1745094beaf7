"""Patients' join links: `/join/<appointment id>/?t=<token>`, the one place that mints and
checks them.

The token is signed with the project's secret (`django.core.signing`, its own salt) and carries
the appointment id, the patient id and the link's version; nothing else (no name, no time). It
is deterministic: the same appointment always gets the same link, so a page that shows it twice
shows it the same, until staff replace it (`services.appointment_link_replace`: a new version,
and the old link stops working). A link works until `LINK_VALID_AFTER_END` past the
appointment's *current* end, so it follows a reschedule; after that it has expired. A link
never opens another appointment.

Calls tokens handed out by the clinic layer carry a grant (`calls.tokens.grant_is_live` asks
`grant_is_live` here): a token from the patient's join page lives as long as that link (its
version), one from the patient API's join info as long as the app's session. So replacing a
link kills the old link's tokens at once, and no others (not the app's, nor the new link's
minted in the same second); signing out kills that session's tokens.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.core import signing
from django.urls import reverse

from . import selectors
from .models import Appointment, AppointmentMember, Patient, PatientSession

SALT = "appointments.join-link"
LINK_VALID_AFTER_END = timedelta(hours=6)


class BadLink(Exception):
    """The link is not valid (garbled, forged, or for another appointment)."""


class ExpiredLink(BadLink):
    """The link was valid, but its appointment ended more than `LINK_VALID_AFTER_END` ago."""


class ReplacedLink(BadLink):
    """The link was valid, but staff have replaced it with a new one."""


def _signer() -> signing.Signer:
    # No timestamp: the link's lifetime follows the appointment (see the module docstring).
    return signing.Signer(salt=SALT)


def join_link_token(appointment: Appointment) -> str:
    claims = {"a": appointment.pk, "p": appointment.patient_id}
    if appointment.link_version != 1:  # links made before versions existed stay valid
        claims["v"] = appointment.link_version
    return _signer().sign_object(claims)


def join_link_path(appointment: Appointment) -> str:
    """The patient's join link (path and query; make it absolute with the request)."""
    path = reverse("join:patient", args=[appointment.pk])
    return f"{path}?{urlencode({'t': join_link_token(appointment)})}"


def guest_link_token(member: AppointmentMember) -> str:
    # The guest's calls user, not the member row: edits of the appointment rebuild its rows.
    return _signer().sign_object({"a": member.appointment_id, "g": member.call_user_id})


def guest_link_path(member: AppointmentMember) -> str:
    """A guest's join link: works while they are a guest of the appointment (removing them
    voids it) and, like the patient's, until `LINK_VALID_AFTER_END` past the end."""
    path = reverse("join:guest", args=[member.appointment_id])
    return f"{path}?{urlencode({'t': guest_link_token(member)})}"


def guest_from_link(
    *, appointment_id: str, token: str, now: datetime
) -> tuple[Appointment, AppointmentMember]:
    """The appointment and the guest a guest link opens; `BadLink` / `ExpiredLink`
    otherwise (a removed guest's link is bad). Queries: the guest with its appointment."""
    claims = _claims(token, appointment_id, "g", str)
    member = (
        AppointmentMember.objects.select_related(
            "call_user", "appointment__clinic", "appointment__patient"
        )
        .filter(
            call_user_id=claims["g"],
            appointment_id=appointment_id,
            kind=AppointmentMember.Kind.GUEST,
        )
        .first()
    )
    if member is None:
        raise BadLink("the link is not valid")
    _check_not_expired(member.appointment, now)
    return member.appointment, member


def appointment_from_link(*, appointment_id: str, token: str, now: datetime) -> Appointment:
    """The appointment a link opens, looked up as its patient; `BadLink` / `ExpiredLink`
    otherwise. Queries: the patient; the appointment (with clinic, patient, members)."""
    claims = _claims(token, appointment_id, "p", int)
    patient = Patient.objects.select_related("clinic", "call_user").filter(pk=claims["p"]).first()
    if patient is None:
        raise BadLink("the link is not valid")
    # Raises Http404 when the appointment is gone (or not this patient's).
    appointment = selectors.appointment_for_patient(patient=patient, appointment_id=appointment_id)
    appointment.patient = patient  # with its calls user, for the join state
    if claims.get("v", 1) != appointment.link_version:
        raise ReplacedLink("the link was replaced by a newer one")
    _check_not_expired(appointment, now)
    return appointment


def _claims(token: str, appointment_id: str, key: str, kind: type) -> dict[str, Any]:
    """A link's claims: signed by us, for this appointment, with `key` (the patient's `p`,
    a guest's `g`) of type `kind`; `BadLink` otherwise."""
    try:
        claims = _signer().unsign_object(token)
    except signing.BadSignature:
        raise BadLink("the link is not valid") from None
    if (
        not isinstance(claims, dict)
        or claims.get("a") != appointment_id
        or not isinstance(claims.get(key), kind)
    ):
        raise BadLink("the link is not valid")
    return claims


def _check_not_expired(appointment: Appointment, now: datetime) -> None:
    if now > appointment.ends_at + LINK_VALID_AFTER_END:
        raise ExpiredLink("the link has expired")


# --- grants of calls tokens ------------------------------------------------------------------

_LINK_GRANT = "link"
_SESSION_GRANT = "session"


def link_grant(appointment: Appointment) -> str:
    """The grant of tokens minted from the patient's current join link."""
    return f"{_LINK_GRANT}:{appointment.pk}:{appointment.link_version}"


def session_grant(session: PatientSession) -> str:
    """The grant of tokens minted for an app signed in to the patient API."""
    return f"{_SESSION_GRANT}:{session.key}"


def grant_is_live(grant: str) -> bool:
    """Whether tokens minted under `grant` still work (settings.CALLS_TOKEN_GRANT_CHECK): a
    link's while it is the appointment's current link, a session's until it is signed out
    (not when it expires: a call may outlast the app's access token). Queries: one."""
    kind, _, rest = grant.partition(":")
    if kind == _LINK_GRANT:
        appointment_id, _, version = rest.rpartition(":")
        return version.isdigit() and (
            Appointment.objects.filter(pk=appointment_id, link_version=int(version)).exists()
        )
    if kind == _SESSION_GRANT:
        return PatientSession.objects.filter(key=rest, ended_at__isnull=True).exists()
    return False
