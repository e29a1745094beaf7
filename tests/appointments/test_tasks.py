"""The sign-in code email (a Celery task, run here directly)."""

from __future__ import annotations

import re

import pytest
from django.core import mail

from appointments.models import PatientSignInCode
from appointments.services.sign_in_codes import patient_sign_in_code_redeem
from appointments.tasks import patient_send_sign_in_code
from calls.models import CallUser
from tests.factories import make_patient

pytestmark = pytest.mark.django_db


def test_the_task_issues_a_code_and_emails_it(clinic):
    patient = make_patient(clinic, name="Ana Lima", email="ana@example.org")
    patient_send_sign_in_code(patient.pk)
    (message,) = mail.outbox
    assert message.to == ["ana@example.org"]
    assert message.subject == "Your sign-in code"
    code = re.search(r"\b(\d{6})\b", message.body).group(1)
    assert patient_sign_in_code_redeem(patient=patient, code=code)


def test_the_task_is_quiet_when_there_is_nobody_to_email(clinic):
    no_email = make_patient(clinic, name="Ana Lima")
    deactivated = make_patient(clinic, name="Bea Costa", email="bea@example.org")
    CallUser.objects.filter(pk=deactivated.call_user_id).update(
        deactivated_at=deactivated.created_at
    )
    gone = make_patient(clinic, name="Cy Dias", email="cy@example.org")
    gone_id = gone.pk
    gone.delete()
    for patient_id in (no_email.pk, deactivated.pk, gone_id):
        patient_send_sign_in_code(patient_id)
    assert mail.outbox == []
    assert not PatientSignInCode.objects.exists()
