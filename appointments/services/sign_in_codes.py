"""The patient API's sign-in codes: six digits, emailed (`appointments.tasks`), stored only as
a hash, valid once and briefly, and void after `SIGN_IN_CODE_MAX_GUESSES` wrong guesses (the
rate limits of `appointments.api.auth` live in a cache, which may forget; this does not)."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.crypto import salted_hmac

from appointments.models import Patient, PatientSignInCode

SIGN_IN_CODE_DIGITS = 6
SIGN_IN_CODE_LIFETIME = timedelta(minutes=10)
# Used and expired codes stay this long, then go when the patient next asks for a code.
SIGN_IN_CODE_KEEP = timedelta(days=1)
# Wrong guesses against a patient's current code before it is void (ask for a new one).
SIGN_IN_CODE_MAX_GUESSES = 5
_SIGN_IN_CODE_SALT = "appointments.patient-sign-in-code"


def _sign_in_code_hash(patient: Patient, code: str) -> str:
    """HMAC-SHA256 (keyed by SECRET_KEY) of the code, bound to the patient and their current
    address, so a code dies when the address changes. 64 hex digits; the code is never stored."""
    value = f"{patient.pk}:{patient.email}:{code}"
    return salted_hmac(_SIGN_IN_CODE_SALT, value, algorithm="sha256").hexdigest()


def patient_sign_in_code_issue(*, patient: Patient) -> str:
    """A new 6-digit sign-in code for the patient, valid SIGN_IN_CODE_LIFETIME. The patient's
    unused codes die with it (only the newest code works). Returns the plain code, for the
    email only: the row holds its hash."""
    now = timezone.now()
    code = f"{secrets.randbelow(10**SIGN_IN_CODE_DIGITS):0{SIGN_IN_CODE_DIGITS}d}"
    with transaction.atomic():
        PatientSignInCode.objects.filter(patient=patient).filter(
            Q(used_at__isnull=True) | Q(expires_at__lt=now - SIGN_IN_CODE_KEEP)
        ).delete()
        PatientSignInCode.objects.create(
            patient=patient,
            code_hash=_sign_in_code_hash(patient, code),
            expires_at=now + SIGN_IN_CODE_LIFETIME,
        )
    return code


def patient_sign_in_code_redeem(*, patient: Patient, code: str) -> bool:
    """True once for the patient's newest unused, unexpired, not yet void code; False for
    anything else (a wrong, older, expired, used or void code, or none at all). A wrong guess
    counts against the current code, which is void at the `SIGN_IN_CODE_MAX_GUESSES`th."""
    now = timezone.now()
    row = (
        PatientSignInCode.objects.filter(
            patient=patient,
            used_at__isnull=True,
            expires_at__gt=now,
            # A code from a process whose clock is ahead is not valid yet (used_at >= created_at).
            created_at__lte=now,
            failed_attempts__lt=SIGN_IN_CODE_MAX_GUESSES,
        )
        .order_by("-created_at", "-pk")
        .only("pk", "code_hash")
        .first()
    )
    if row is None:
        return False
    if not hmac.compare_digest(row.code_hash, _sign_in_code_hash(patient, code)):
        PatientSignInCode.objects.filter(pk=row.pk).update(failed_attempts=F("failed_attempts") + 1)
        return False
    # The claim: of two concurrent exchanges of one code, only one changes the row.
    claimed = PatientSignInCode.objects.filter(pk=row.pk, used_at__isnull=True).update(used_at=now)
    return claimed == 1
