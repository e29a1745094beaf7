"""The patient API's sessions: one per sign-in, named by its access tokens
(`appointments.api.auth`). Ending a session (sign-out) kills its tokens, and the calls tokens
handed out under it; the patient's other devices stay signed in."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from appointments.models import Patient, PatientSession
from calls.services.users import user_tokens_recheck

# Ended and expired sessions stay this long, then go when the patient next signs in: longer
# than a calls token minted under the session lives (`joining.TOKEN_MAX_SECONDS`, a day), as
# such a token dies with its session's row (`links.grant_is_live`).
SESSION_KEEP = timedelta(days=2)


def patient_session_start(*, patient: Patient, lifetime: timedelta) -> PatientSession:
    """A new session for the patient, valid `lifetime`."""
    now = timezone.now()
    with transaction.atomic():
        PatientSession.objects.filter(patient=patient).filter(
            Q(expires_at__lt=now - SESSION_KEEP) | Q(ended_at__lt=now - SESSION_KEEP)
        ).delete()
        return PatientSession.objects.create(patient=patient, expires_at=now + lifetime)


def patient_session_end(*, session: PatientSession) -> PatientSession:
    """Sign-out: the session's tokens stop working at once, and so do the calls tokens minted
    under it (`links.grant_is_live`; open sockets re-check). Ending it twice changes nothing."""
    now = timezone.now()
    with transaction.atomic():
        ended = PatientSession.objects.filter(pk=session.pk, ended_at__isnull=True).update(
            ended_at=now
        )
        if ended:
            user_tokens_recheck(user_id=session.patient.call_user_id)
    session.refresh_from_db(fields=["ended_at"])
    return session
