"""Phone numbers are validated and kept in E.164 (`appointments.phones`, with `phonenumbers`)
wherever a patient is created or edited: the service, the staff form, the admin. The message
preferences are edited on the staff form."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from appointments.models import Patient
from appointments.services.patients import patient_create, patient_update

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("+33 6 12 34 56 78", "+33612345678"),
        ("+55 (81) 99876-5432", "+5581998765432"),
        ("  +44 7911 123456 ", "+447911123456"),
        ("", ""),
    ],
)
def test_numbers_are_kept_in_e164(clinic, typed, stored):
    patient = patient_create(clinic=clinic, name="Pat", phone=typed)
    assert Patient.objects.get(pk=patient.pk).phone == stored


@pytest.mark.parametrize("typed", ["06 12 34 56 78", "+33 1 23", "call me", "+999 1234567"])
def test_invalid_numbers_are_an_error_on_the_field(clinic, typed):
    with pytest.raises(ValidationError) as refused:
        patient_create(clinic=clinic, name="Pat", phone=typed)
    assert "phone" in refused.value.message_dict
    assert not Patient.objects.exists()


def test_a_default_region_reads_national_numbers(clinic, settings):
    settings.PHONE_DEFAULT_REGION = "FR"
    assert patient_create(clinic=clinic, name="Pat", phone="06 12 34 56 78").phone == (
        "+33612345678"
    )


def test_a_new_number_or_sms_turned_on_again_clears_a_stop(clinic):
    patient = patient_create(clinic=clinic, name="Pat", phone="+33612345678")
    Patient.objects.filter(pk=patient.pk).update(sms_opted_out_at=timezone.now())
    patient.refresh_from_db()
    patient_update(patient=patient, name="Pat B")
    assert Patient.objects.get(pk=patient.pk).sms_opted_out_at is not None
    patient_update(patient=patient, phone="+33 6 98 76 54 32")
    assert Patient.objects.get(pk=patient.pk).sms_opted_out_at is None


def test_the_staff_form_shows_the_error_and_saves_preferences(clinic, doctor, client_for):
    client = client_for(doctor)
    form = {"name": "Carla Dias", "phone": "12", "time_zone": "Europe/Lisbon"}
    response = client.post("/c/clinic-a/patients/new/", form)
    assert response.status_code == 200
    assert "Enter a valid phone number with its country code" in response.content.decode()
    assert not Patient.objects.filter(name="Carla Dias").exists()

    form |= {"phone": "+351 912 345 678", "notify_email": "on"}  # no SMS, no app notifications
    assert client.post("/c/clinic-a/patients/new/", form).status_code == 302
    patient = Patient.objects.get(name="Carla Dias")
    assert patient.phone == "+351912345678"
    assert (patient.notify_email, patient.notify_sms, patient.notify_push) == (True, False, False)
    page = client.get(f"/c/clinic-a/patients/{patient.pk}/edit/").content.decode()
    assert "Text confirmations, changes and reminders (SMS)" in page


def test_the_admin_shows_the_error(admin_client, clinic):
    response = admin_client.post(
        "/admin/appointments/patient/add/",
        {"clinic": clinic.pk, "name": "Pat New", "phone": "12345", "time_zone": "Europe/Paris"},
    )
    assert response.status_code == 200
    assert "Enter a valid phone number" in response.content.decode()
    assert not Patient.objects.filter(name="Pat New").exists()
