"""Background work of the appointments app. Tasks take ids and return quietly when the row is
gone."""

from __future__ import annotations

import logging
import zoneinfo

from celery import shared_task
from django.core.mail import send_mail
from django.utils import timezone

from . import links
from .models import Appointment, Patient
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
    try:
        send_mail(
            subject="Your sign-in code",
            message=(
                f"Your sign-in code is {code}.\n\n"
                f"It is valid for {minutes} minutes. If you did not ask for it, you can "
                "ignore this email.\n"
            ),
            from_email=None,
            recipient_list=[patient.email],
        )
    except Exception as exc:
        logger.error("sign-in code email failed for patient %s: %s", patient.pk, type(exc).__name__)
    else:
        logger.info("sign-in code sent to patient %s", patient.pk)


@shared_task(ignore_result=True, acks_late=True)
def appointment_send_join_link(appointment_id: str, base_url: str) -> None:
    """Email the patient their join link (the current one: a link replaced meanwhile is not
    sent), with the clinic, the day and the time in the patient's time zone; never the reason
    or notes. A mail failure is logged (ids and error type only) and not retried: staff can
    send it again."""
    appointment = (
        Appointment.objects.select_related("clinic", "patient")
        .filter(pk=appointment_id, status__in=Appointment.OPEN_STATUSES)
        .exclude(patient__email="")
        .first()
    )
    if appointment is None:
        return
    patient = appointment.patient
    starts = timezone.localtime(appointment.starts_at, zoneinfo.ZoneInfo(patient.time_zone))
    link = base_url.rstrip("/") + links.join_link_path(appointment)
    try:
        send_mail(
            subject=f"Your video appointment with {appointment.clinic.name}",
            message=(
                f"Your video appointment with {appointment.clinic.name} is on "
                f"{starts:%A} {starts.day} {starts:%B} at {starts:%H:%M} "
                f"({patient.time_zone} time).\n\n"
                f"Join it from this link, on a phone or a computer with a camera:\n{link}\n\n"
                "You can open it a few minutes before the start: you will wait in a waiting "
                "room until the clinician lets you in. The link is for you only: please do not "
                "forward it.\n"
            ),
            from_email=None,
            recipient_list=[patient.email],
        )
    except Exception as exc:
        logger.error(
            "join link email failed for appointment %s: %s", appointment.pk, type(exc).__name__
        )
    else:
        logger.info("join link emailed for appointment %s", appointment.pk)
