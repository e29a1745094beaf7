"""Background work of the appointments app. Tasks take ids and return quietly when the row is
gone."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from .languages import language_for
from .messaging import delivery
from .models import Patient
from .services.sign_in_codes import SIGN_IN_CODE_LIFETIME, patient_sign_in_code_issue

logger = logging.getLogger("appointments.tasks")


@shared_task(ignore_result=True, acks_late=True)
def patient_send_sign_in_code(patient_id: int) -> None:
    """Issue a sign-in code for the patient and email it: just the code and how long it is
    valid, no name, no clinic, no appointment. Each run replaces the patient's unused code.

    A mail failure is logged (patient id and error type only: mail errors quote the recipient's
    address) and not retried: the patient asks for a new code."""
    patient = (
        Patient.objects.filter(pk=patient_id, call_user__deactivated_at__isnull=True)
        .exclude(email="")
        .first()
    )
    if patient is None:
        return
    code = patient_sign_in_code_issue(patient=patient)
    minutes = int(SIGN_IN_CODE_LIFETIME.total_seconds()) // 60
    with translation.override(language_for(patient.preferred_language)):
        subject = _("Your sign-in code")
        message = (
            _("Your sign-in code is %(code)s.") % {"code": code}
            + "\n\n"
            + ngettext(
                "It is valid for %(minutes)d minute. If you did not ask for it, you can ignore "
                "this email.",
                "It is valid for %(minutes)d minutes. If you did not ask for it, you can ignore "
                "this email.",
                minutes,
            )
            % {"minutes": minutes}
            + "\n"
        )
    try:
        send_mail(
            subject=subject,
            message=message,
            from_email=None,
            recipient_list=[patient.email],
        )
    except Exception as exc:
        logger.error("sign-in code email failed for patient %s: %s", patient.pk, type(exc).__name__)
    else:
        logger.info("sign-in code sent to patient %s", patient.pk)


@shared_task(
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
    # Shorter than MESSAGE_SENDING_STALE_SECONDS: a send still `sending` past that is dead.
    time_limit=settings.MESSAGE_SEND_TIME_LIMIT_SECONDS,
    soft_time_limit=0.8 * settings.MESSAGE_SEND_TIME_LIMIT_SECONDS,
)
def message_deliver(delivery_id: int) -> None:
    """Send one patient message (appointments.messaging.delivery): claimed first, so never
    two sends at once; quiet when it is gone, done, or not due. Retries are due in the
    database (`next_attempt_at`) and enqueued by the scheduler's sweep."""
    delivery.deliver(delivery_id)
