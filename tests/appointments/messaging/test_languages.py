"""The messages in the patient's language and time zone (with the zone's name): the email
(subject, text and HTML bodies, the invite's SUMMARY and DESCRIPTION) through a real SMTP
server, the text through the Twilio stand-in, the sign-in code; Arabic email bodies are right
to left. Pushes: tests/calls/push/test_dispatch.py (the calls user's language, which the
patient services set: tests/appointments/test_languages.py)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail as django_mail
from django.utils import timezone

from appointments.tasks import patient_send_sign_in_code
from tests.factories import START, make_appointment, make_patient

from .conftest import invite_of

REASON = "follow-up for chest pain"


@pytest.fixture
def book(frozen, clinic, doctor, eager_tasks, smtp_server, django_capture_on_commit_callbacks):
    def book(patient):
        with django_capture_on_commit_callbacks(execute=True):
            return make_appointment(
                clinic, host=doctor, patient=patient, starts_at=START, reason=REASON
            )

    return book


@pytest.mark.django_db
def test_a_french_patients_email_and_invite_are_french(book, clinic, smtp_server):
    patient = make_patient(
        clinic,
        name="Chloé Martin",
        email="chloe@example.com",
        time_zone="Europe/Paris",
        preferred_language="fr",
    )
    book(patient)
    (mail,) = smtp_server.to("chloe@example.com")
    assert mail.subject == "Votre rendez-vous vidéo avec Riverside Clinic"
    assert (
        "Votre rendez-vous vidéo avec Riverside Clinic a lieu le lundi 4 mai 2026 à 12:00 "
        "(CEST, Europe/Paris)." in mail.text
    )
    assert "Rejoignez-le depuis ce lien" in mail.text
    assert "L’invitation jointe l’ajoute à votre agenda." in mail.text  # noqa: RUF001 - French typography
    assert '<html lang="fr" dir="ltr">' in mail.html
    assert "Rejoindre votre rendez-vous" in mail.html
    calendar, _ = invite_of(mail)
    (event,) = calendar.walk("VEVENT")
    assert str(event["SUMMARY"]) == "Rendez-vous vidéo avec Riverside Clinic"
    assert str(event["DESCRIPTION"]).startswith(
        "Rejoignez-le depuis ce lien, sur un téléphone ou un ordinateur équipé d’une caméra\u00a0: "  # noqa: RUF001
    )
    for english in ("Your video appointment", "Join your appointment", "Video appointment"):
        assert english not in mail.text + mail.html + str(event["SUMMARY"])


@pytest.mark.django_db
def test_an_arabic_email_is_right_to_left(book, clinic, smtp_server):
    patient = make_patient(
        clinic,
        name="Amal",
        email="amal@example.com",
        time_zone="Africa/Cairo",
        preferred_language="ar",
    )
    book(patient)
    (mail,) = smtp_server.to("amal@example.com")
    # (Python's email package folds a subject of encoded words onto the header's next line;
    # unfolded, it starts with the fold's space, which readers drop.)
    assert mail.subject.strip() == "موعدك عبر الفيديو مع Riverside Clinic"
    assert '<html lang="ar" dir="rtl">' in mail.html
    assert '<body dir="rtl"' in mail.html
    # 10:00 UTC is 13:00 in Cairo (EEST in May), the date in Arabic words.
    assert "الساعة 13:00 (EEST, Africa/Cairo)" in mail.text
    assert "مايو" in mail.text


@pytest.mark.django_db(transaction=True)
def test_a_french_patients_text_is_french(
    settings, live_server, twilio, eager_tasks, clinic, doctor
):
    settings.PUBLIC_BASE_URL = live_server.url
    patient = make_patient(
        clinic,
        name="Chloé Martin",
        phone="+33 6 12 34 56 78",
        time_zone="Europe/Paris",
        preferred_language="fr",
    )
    make_appointment(
        clinic,
        host=doctor,
        patient=patient,
        starts_at=timezone.now() + dt.timedelta(days=2),
        reason=REASON,
    )
    (text,) = twilio.messages
    body = text.body
    assert body.startswith("Riverside Clinic : rendez-vous vidéo le ")
    assert " à " in body
    assert "(CE" in body  # CET or CEST: the zone's abbreviation
    assert f"Lien : {live_server.url}/join/" in body
    assert "chest" not in body
    assert "Chloé" not in body


@pytest.mark.django_db
def test_the_sign_in_code_email_is_in_the_patients_language(clinic, eager_tasks):
    patient = make_patient(clinic, name="Jan", email="jan@example.com", preferred_language="de")
    patient_send_sign_in_code(patient.pk)
    (mail,) = django_mail.outbox
    assert mail.subject == "Ihr Anmeldecode"
    assert mail.body.startswith("Ihr Anmeldecode lautet ")
    assert "Er ist 10 Minuten gültig." in mail.body
