"""Patient sign-in for apps.

1. `POST auth/code {email}`: for each active patient with that address, a Celery task
   (`appointments.tasks.patient_send_sign_in_code`) issues a 6-digit code and emails it. Codes
   are rows (`PatientSignInCode`) holding only an HMAC of the code, bound to the patient and
   their address; a code lives 10 minutes, works once, and a new request replaces the
   patient's unused code (`services.patient_sign_in_code_issue` / `_redeem`). The request
   only enqueues (no mail server, no write), so a registered and an unknown address answer in
   about the same time.
2. `POST auth/token {email, code}`: the code is redeemed for one of the patients with that
   address and becomes an access token, a `TimestampSigner`-signed object {patient id, issued
   at, email tag}, valid PATIENT_TOKEN_TTL_SECONDS (default 1 hour). A token dies early when
   the patient's email changes, when their calls user's tokens are revoked
   (`revoke_tokens_issued_before`) or when that user is deactivated.

Wrong codes are limited per email address (5 failures per 10 minutes, then 429), and so are
code requests, both in Django's cache. Keys are derived from the address with an HMAC, so the
cache holds no address. Answers never tell whether an address is registered: a code request is
always 202, and an unknown address fails and is throttled exactly like a wrong code.

Nothing here logs an address, a name or a code.
"""

from __future__ import annotations

import hmac
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.core.cache import cache
from django.db.models import QuerySet
from django.utils.crypto import salted_hmac
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from appointments.models import Patient

logger = logging.getLogger("appointments.api.auth")

MAX_CODE_FAILURES = 5  # per address and RATE_WINDOW_SECONDS, then 429
MAX_CODE_REQUESTS = 5  # per address and RATE_WINDOW_SECONDS, then 429
RATE_WINDOW_SECONDS = 600
DEFAULT_TOKEN_TTL_SECONDS = 3600

_TOKEN_SALT = "appointments.api.patient-token"  # noqa: S105 - a salt, not a secret
_KEY_SALT = "appointments.api.rate-key"


def token_ttl_seconds() -> int:
    return int(getattr(settings, "PATIENT_TOKEN_TTL_SECONDS", DEFAULT_TOKEN_TTL_SECONDS))


def normalize_email(email: str) -> str:
    return email.strip().lower()


# --- who an address belongs to ---------------------------------------------------------------


def patients_by_email(email: str, clinic: str | None = None) -> QuerySet[Patient]:
    """Active patients with this address (an address is unique per clinic only)."""
    qs = Patient.objects.filter(
        email__iexact=normalize_email(email), call_user__deactivated_at__isnull=True
    ).exclude(email="")
    if clinic:
        qs = qs.filter(clinic__slug=clinic)
    return qs.select_related("clinic", "call_user").order_by("pk")


# --- rate limits -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    name: str
    max_hits: int
    window_seconds: int


CODE_REQUESTS = Limit("code-requests", MAX_CODE_REQUESTS, RATE_WINDOW_SECONDS)
# Every verification counts; a success clears the count. So 5 failures are allowed.
CODE_ATTEMPTS = Limit("code-attempts", MAX_CODE_FAILURES, RATE_WINDOW_SECONDS)


def _rate_keys(limit: Limit, email: str) -> tuple[str, str]:
    digest = salted_hmac(_KEY_SALT, normalize_email(email), algorithm="sha256").hexdigest()
    base = f"patient-api:{limit.name}:{digest[:32]}"
    return f"{base}:count", f"{base}:since"


def rate_limit(limit: Limit, email: str) -> None:
    """Count an attempt for this address, and raise Throttled (429, with Retry-After) past the
    allowance. Counting first makes concurrent attempts safe: each gets its own number. The
    window starts at the first attempt and lasts `window_seconds`; refused attempts count too
    but do not extend it."""
    count_key, since_key = _rate_keys(limit, email)
    cache.add(since_key, time.time(), timeout=limit.window_seconds)
    cache.add(count_key, 0, timeout=limit.window_seconds)
    try:
        count = cache.incr(count_key)
    except ValueError:  # expired between add and incr
        cache.set(count_key, 1, timeout=limit.window_seconds)
        count = 1
    if count > limit.max_hits:
        since = cache.get(since_key) or time.time()
        wait = max(1, int(since + limit.window_seconds - time.time()))
        raise exceptions.Throttled(wait=wait, detail="Too many attempts; try again later.")


def rate_reset(limit: Limit, email: str) -> None:
    cache.delete_many(list(_rate_keys(limit, email)))


# --- access tokens ---------------------------------------------------------------------------


def _email_tag(email: str) -> str:
    return salted_hmac(_TOKEN_SALT, normalize_email(email)).hexdigest()[:16]


def access_token_for(patient: Patient) -> str:
    payload = {"p": patient.pk, "t": int(time.time()), "e": _email_tag(patient.email)}
    return signing.TimestampSigner(salt=_TOKEN_SALT).sign_object(payload)


def patient_for_token(token: str) -> Patient:
    """The patient a token belongs to, or AuthenticationFailed (401)."""
    try:
        payload = signing.TimestampSigner(salt=_TOKEN_SALT).unsign_object(
            token, max_age=token_ttl_seconds()
        )
    except signing.SignatureExpired:
        raise exceptions.AuthenticationFailed("The access token has expired.") from None
    except (signing.BadSignature, ValueError):
        raise exceptions.AuthenticationFailed("The access token is not valid.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("p"), int):
        raise exceptions.AuthenticationFailed("The access token is not valid.")
    patient = Patient.objects.select_related("clinic", "call_user").filter(pk=payload["p"]).first()
    if patient is None or not hmac.compare_digest(
        str(payload.get("e", "")), _email_tag(patient.email)
    ):
        raise exceptions.AuthenticationFailed("The access token is not valid.")
    user = patient.call_user
    revoked = user.revoke_tokens_issued_before
    if user.deactivated_at is not None or (
        revoked is not None and payload.get("t", 0) < revoked.timestamp()
    ):
        raise exceptions.AuthenticationFailed("The access token has been revoked.")
    return patient


class PatientTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <access_token>`; request.user becomes the Patient."""

    keyword = "bearer"

    def authenticate(self, request: Request) -> tuple[Patient, str] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Send `Authorization: Bearer <access_token>`.")
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The access token is not valid.") from None
        return patient_for_token(token), token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="patient-api"'


class IsPatient(BasePermission):
    def has_permission(self, request: Request, view: object) -> bool:
        return isinstance(request.user, Patient)


class PatientTokenScheme(OpenApiAuthenticationExtension):
    target_class = PatientTokenAuthentication
    name = "patientToken"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": (
                "The `access_token` from `POST /api/patient/v1/auth/token`, sent as "
                "`Authorization: Bearer <access_token>`. Valid `expires_in` seconds."
            ),
        }
