"""Patient sign-in for apps.

1. `POST auth/code {email}`: for each active patient with that address, a Celery task
   (`appointments.tasks.patient_send_sign_in_code`) issues a 6-digit code and emails it. Codes
   are rows (`PatientSignInCode`) holding only an HMAC of the code, bound to the patient and
   their address; a code lives 10 minutes, works once, is void after 5 wrong guesses, and a
   new request replaces the patient's unused code (`services.patient_sign_in_code_issue` /
   `_redeem`). The request only enqueues (no mail server, no write), so a registered and an
   unknown address answer in about the same time.
2. `POST auth/token {email, code}`: the code is redeemed for one of the patients with that
   address and starts a session (`PatientSession`, `services.patient_sessions`); the access
   token is a `TimestampSigner`-signed object {session key, email tag}, valid
   PATIENT_TOKEN_TTL_SECONDS (default 1 hour). A token dies early at sign-out
   (`POST auth/sign-out` ends its session only: the patient's other devices stay signed in),
   when the patient's email changes, when their calls user's tokens are revoked
   (`revoke_tokens_issued_before`) or when that user is deactivated.

One address, one spelling: `canonical_email` (NFKC + case folding) is both the rate-limit key
and the test a patient's stored address must pass, so Unicode spellings that the database
would fold together (long s U+017F, the Kelvin sign U+212A, ...) share one allowance, and
spellings it folds but we do not (dotless i U+0131) match no one.

Limits (Django's cache, Redis in production; all per RATE_WINDOW_SECONDS, then 429 with
`Retry-After`): per address, 5 code requests and 5 wrong codes (a success clears the latter);
per client IP, PATIENT_SIGN_IN_IP_MAX_CODE_REQUESTS and PATIENT_SIGN_IN_IP_MAX_ATTEMPTS; over
all clients, PATIENT_SIGN_IN_GLOBAL_MAX_CODE_REQUESTS and PATIENT_SIGN_IN_GLOBAL_MAX_FAILURES
(a circuit breaker: past it every sign-in waits until the window ends). The client IP is
REMOTE_ADDR (`client_ip`): behind a reverse proxy, uvicorn's --proxy-headers with
FORWARDED_ALLOW_IPS (bin/web) sets it from the proxy's `X-Forwarded-For`, and a header sent by
anyone else counts for nothing. Keys are HMACs of the address or IP, so the cache holds
neither. Answers never tell whether an address is registered: a code request
is always 202, and an unknown address fails and is throttled exactly like a wrong code.

Nothing here logs an address, an IP, a name or a code.
"""

from __future__ import annotations

import hmac
import logging
import unicodedata
from datetime import timedelta

from django.conf import settings
from django.core import signing
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from appointments import rates
from appointments.models import Patient, PatientSession
from appointments.rates import Limit, rate_count, rate_reset
from appointments.services.patient_sessions import patient_session_start
from audit.record import client_ip as record_client_ip

logger = logging.getLogger("appointments.api.auth")

MAX_CODE_FAILURES = 5  # per address and RATE_WINDOW_SECONDS, then 429
MAX_CODE_REQUESTS = 5  # per address and RATE_WINDOW_SECONDS, then 429
RATE_WINDOW_SECONDS = 600
DEFAULT_TOKEN_TTL_SECONDS = 3600

_TOKEN_SALT = "appointments.api.patient-token"  # noqa: S105 - a salt, not a secret


def token_ttl_seconds() -> int:
    return int(getattr(settings, "PATIENT_TOKEN_TTL_SECONDS", DEFAULT_TOKEN_TTL_SECONDS))


def canonical_email(email: str) -> str:
    """The one form of an address that sign-in compares and counts: NFKC with full case
    folding (NFKC_Casefold, as Unicode's caseless matching), so long s (U+017F) is `s` and the
    Kelvin sign (U+212A) is `k`."""
    folded = unicodedata.normalize("NFKC", email.strip()).casefold()
    return unicodedata.normalize("NFKC", folded)


# --- who an address belongs to ---------------------------------------------------------------


def patients_by_email(email: str, clinic: str | None = None) -> list[Patient]:
    """Active patients whose address is this one (`canonical_email`; an address is unique per
    clinic only). The database narrows (its case-insensitive match), the canonical form
    decides: a spelling PostgreSQL folds differently matches no one."""
    wanted = canonical_email(email)
    qs = Patient.objects.filter(
        Q(email__iexact=wanted) | Q(email__iexact=email.strip().lower()),
        call_user__deactivated_at__isnull=True,
    ).exclude(email="")
    if clinic:
        qs = qs.filter(clinic__slug=clinic)
    qs = qs.select_related("clinic", "call_user").order_by("pk")
    return [p for p in qs if canonical_email(p.email) == wanted]


# --- who is asking ---------------------------------------------------------------------------


def client_ip(request: HttpRequest) -> str:
    """The client's IP: the project's one rule (`audit.record.client_ip`, REMOTE_ADDR; behind
    a proxy, uvicorn's --proxy-headers sets it from trusted proxies only, bin/web)."""
    return record_client_ip(request) or "unknown"


# --- rate limits -----------------------------------------------------------------------------


CODE_REQUESTS = Limit("code-requests", MAX_CODE_REQUESTS, RATE_WINDOW_SECONDS)
# Every verification counts; a success clears the count. So 5 failures are allowed.
CODE_ATTEMPTS = Limit("code-attempts", MAX_CODE_FAILURES, RATE_WINDOW_SECONDS)
# Per client IP: every request and every attempt counts (a success clears nothing).
IP_CODE_REQUESTS = Limit(
    "ip-code-requests", 20, RATE_WINDOW_SECONDS, "PATIENT_SIGN_IN_IP_MAX_CODE_REQUESTS"
)
IP_CODE_ATTEMPTS = Limit(
    "ip-code-attempts", 20, RATE_WINDOW_SECONDS, "PATIENT_SIGN_IN_IP_MAX_ATTEMPTS"
)
# Over all clients (the circuit breaker): code requests, and wrong codes.
GLOBAL_CODE_REQUESTS = Limit(
    "global-code-requests", 2000, RATE_WINDOW_SECONDS, "PATIENT_SIGN_IN_GLOBAL_MAX_CODE_REQUESTS"
)
GLOBAL_FAILURES = Limit(
    "global-failures", 1000, RATE_WINDOW_SECONDS, "PATIENT_SIGN_IN_GLOBAL_MAX_FAILURES"
)
EVERYONE = ""  # the subject of the global limits


def _throttled(exc: rates.Exceeded) -> exceptions.Throttled:
    return exceptions.Throttled(
        wait=exc.retry_after, detail=_("Too many attempts; try again later.")
    )


def rate_limit(limit: Limit, subject: str) -> None:
    """Count a hit (`appointments.rates`); 429 with Retry-After past the allowance."""
    try:
        rates.rate_limit(limit, subject)
    except rates.Exceeded as exc:
        raise _throttled(exc) from None


def rate_check(limit: Limit, subject: str) -> None:
    try:
        rates.rate_check(limit, subject)
    except rates.Exceeded as exc:
        raise _throttled(exc) from None


def limit_code_request(request: HttpRequest, email: str) -> None:
    """The limits of `POST auth/code`. The global count comes last, so that requests already
    refused per IP or per address do not use up everyone's allowance."""
    rate_limit(IP_CODE_REQUESTS, client_ip(request))
    rate_limit(CODE_REQUESTS, canonical_email(email))
    rate_limit(GLOBAL_CODE_REQUESTS, EVERYONE)


def limit_code_attempt(request: HttpRequest, email: str) -> None:
    """The limits of `POST auth/token`, before the code is checked (`code_attempt_failed` /
    `code_attempt_succeeded` after)."""
    rate_check(GLOBAL_FAILURES, EVERYONE)
    rate_limit(IP_CODE_ATTEMPTS, client_ip(request))
    rate_limit(CODE_ATTEMPTS, canonical_email(email))


def code_attempt_failed() -> None:
    rate_count(GLOBAL_FAILURES, EVERYONE)


def code_attempt_succeeded(email: str) -> None:
    rate_reset(CODE_ATTEMPTS, canonical_email(email))


# --- access tokens ---------------------------------------------------------------------------


def _email_tag(email: str) -> str:
    return salted_hmac(_TOKEN_SALT, canonical_email(email)).hexdigest()[:16]


def access_token_for(patient: Patient) -> str:
    """Sign the patient in: a new session, and an access token naming it."""
    session = patient_session_start(
        patient=patient, lifetime=timedelta(seconds=token_ttl_seconds())
    )
    payload = {"s": session.key, "e": _email_tag(patient.email)}
    return signing.TimestampSigner(salt=_TOKEN_SALT).sign_object(payload)


def session_for_token(token: str) -> PatientSession:
    """The live session a token names (with its patient, clinic and calls user), or
    AuthenticationFailed (401). Queries: the session with the rest joined."""
    try:
        payload = signing.TimestampSigner(salt=_TOKEN_SALT).unsign_object(
            token, max_age=token_ttl_seconds()
        )
    except signing.SignatureExpired:
        raise exceptions.AuthenticationFailed(_("The access token has expired.")) from None
    except (signing.BadSignature, ValueError):
        raise exceptions.AuthenticationFailed(_("The access token is not valid.")) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("s"), str):
        raise exceptions.AuthenticationFailed(_("The access token is not valid."))
    session = (
        PatientSession.objects.select_related("patient__clinic", "patient__call_user")
        .filter(key=payload["s"])
        .first()
    )
    if session is None or not hmac.compare_digest(
        str(payload.get("e", "")), _email_tag(session.patient.email)
    ):
        raise exceptions.AuthenticationFailed(_("The access token is not valid."))
    if session.expires_at < timezone.now():
        raise exceptions.AuthenticationFailed(_("The access token has expired."))
    user = session.patient.call_user
    revoked = user.revoke_tokens_issued_before
    if (
        session.ended_at is not None
        or user.deactivated_at is not None
        or (revoked is not None and session.created_at < revoked)
    ):
        raise exceptions.AuthenticationFailed(_("The access token has been revoked."))
    return session


def patient_for_token(token: str) -> Patient:
    """The patient a token belongs to, or AuthenticationFailed (401)."""
    return session_for_token(token).patient


class PatientTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer <access_token>`; request.user becomes the Patient, request.auth
    their session."""

    keyword = "bearer"

    def authenticate(self, request: Request) -> tuple[Patient, PatientSession] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(_("Send `Authorization: Bearer <access_token>`."))
        try:
            token = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(_("The access token is not valid.")) from None
        session = session_for_token(token)
        return session.patient, session

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
