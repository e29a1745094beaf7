"""The patient's language (appointments.languages, docs/architecture.md "Languages"): their
`preferred_language` when it is one of ours, else the browser's (Accept-Language), else
English; on the join pages (with `lang` and `dir`: Arabic is right to left), the patient API,
and where patients are created and edited (an unknown language is refused, never stored).
The messages' languages: tests/appointments/messaging/test_languages.py; the browser:
tests/browser/test_languages_browser.py."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from appointments import links
from appointments.languages import language_for, language_normalise, supported
from appointments.models import Patient
from appointments.services.guests import appointment_guest_invite
from appointments.services.patients import patient_update
from calls.models import CallUser
from tests.factories import START, make_appointment, make_patient

pytestmark = pytest.mark.django_db

ENGLISH_BROWSER = "en-US,en;q=0.9"


def text_of(response) -> str:
    """The page's text with its tags stripped and entities decoded, spaces folded."""
    body = re.sub(r"</?(bdi|time)\b[^>]*>", "", response.content.decode())  # inline
    body = re.sub(r"<script.*?</script>|<[^>]+>", " ", body, flags=re.S)
    return " ".join(html.unescape(body).split())


def html_tag(response) -> str:
    return re.search(r"<html[^>]*>", response.content.decode()).group(0)


@pytest.fixture
def at_the_lobby(frozen):
    """The clock ten minutes before the appointments' start: the waiting room is open."""
    frozen.move_to(START - dt.timedelta(minutes=10))


def booked(clinic, doctor, **patient_fields):
    patient = make_patient(clinic, name="Chloé Martin", **patient_fields)
    return make_appointment(clinic, host=doctor, patient=patient, starts_at=START)


def open_link(appointment, accept: str | None = None):
    headers = {"HTTP_ACCEPT_LANGUAGE": accept} if accept else {}
    return Client().get(links.join_link_path(appointment), **headers)


# --- the rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "code"),
    [
        ("fr", "fr"),
        ("FR", "fr"),
        ("fr-CA", "fr"),
        ("fr_FR", "fr"),
        ("pt-BR", "pt"),
        ("ar-EG", "ar"),
        (" de ", "de"),
        ("zh-Hans", None),
        ("tlh", None),
        ("", None),
        (None, None),
    ],
)
def test_a_tag_names_one_of_our_languages_or_none(tag, code):
    assert supported(tag) == code


def test_a_stored_language_is_one_of_ours_or_refused():
    assert language_normalise("pt-BR") == "pt"
    assert language_normalise("") == ""  # no preference: the browser's, else English
    with pytest.raises(ValidationError) as refused:
        language_normalise("klingon")
    assert "en, fr, es, de, pt, ar" in refused.value.messages[0]


def test_the_preference_wins_then_the_browser_then_english(rf):
    german_browser = rf.get("/", HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9")
    assert language_for("fr-CA", german_browser) == "fr"
    assert language_for("", german_browser) == "de"
    assert language_for("xx", german_browser) == "de"
    assert language_for("", rf.get("/", HTTP_ACCEPT_LANGUAGE="ja")) == "en"
    assert language_for(None) == "en"


@pytest.mark.parametrize(
    ("accept", "patients", "code"),
    [
        ("es-ES,es;q=0.9", "fr", "es"),  # the guest's browser asks for one of ours
        ("en-US,en;q=0.9", "fr", "en"),  # English asked for is English, not "nothing"
        ("ja, de;q=0.5", "fr", "de"),  # the first of ours in the browser's order
        ("de;q=0.4, pt-BR;q=0.8", "fr", "pt"),  # by quality, not by place
        ("ja, zh-Hans", "fr", "fr"),  # none of ours: the patient's
        ("", "ar", "ar"),  # no header: the patient's
        ("*", "de", "de"),
        ("ja", "", "en"),  # neither: English
        ("ja", "tlh", "en"),
    ],
)
def test_a_guest_gets_their_browsers_language_then_the_patients_then_english(
    rf, accept, patients, code
):
    request = rf.get("/", HTTP_ACCEPT_LANGUAGE=accept) if accept else rf.get("/")
    assert language_for(patients, request, guest=True) == code


def test_a_patient_keeps_their_preference_over_the_browser_guest_or_not(rf):
    """The guest rule is the guest's: a patient's stored choice still wins on their pages."""
    spanish_browser = rf.get("/", HTTP_ACCEPT_LANGUAGE="es")
    assert language_for("fr", spanish_browser) == "fr"
    assert language_for("fr", spanish_browser, guest=True) == "es"


# --- the join pages ---------------------------------------------------------------------------


def test_a_french_patients_page_is_french_whatever_the_browser_says(at_the_lobby, clinic, doctor):
    appointment = booked(clinic, doctor, time_zone="Europe/Paris", preferred_language="fr")
    page = open_link(appointment, ENGLISH_BROWSER)
    assert page.status_code == 200
    assert html_tag(page) == '<html lang="fr" dir="ltr">'
    assert page["Content-Language"] == "fr"
    text = text_of(page)
    assert "Votre rendez-vous vidéo" in text
    # The start in the patient's zone, with its name, in French order and words.
    assert (
        "Votre rendez-vous commence à 12:00 le lundi 4 mai 2026 "
        "(votre heure : CEST, Europe/Paris)." in text
    )
    assert "Entrer dans la salle d’attente" in text  # noqa: RUF001 - French typography
    assert "Ajouter à mon agenda" in text
    # The scripts' catalogue (join/lobby.js's texts among them) in the page's language.
    assert '/jsi18n/fr/"' in page.content.decode()
    for english in ("Your video appointment", "Enter the waiting room", "Skip to main content"):
        assert english not in text


def test_with_no_preference_the_browsers_language_is_used(at_the_lobby, clinic, doctor):
    appointment = booked(clinic, doctor, time_zone="Europe/Berlin", preferred_language="")
    page = open_link(appointment, "de-DE,de;q=0.9,en;q=0.5")
    assert html_tag(page) == '<html lang="de" dir="ltr">'
    assert "Ihr Termin beginnt um 12:00 am Montag, 4. Mai 2026" in text_of(page)
    # A stored tag that is none of ours (from before the rule) counts as no preference.
    Patient.objects.filter(pk=appointment.patient_id).update(preferred_language="tlh")
    assert html_tag(open_link(appointment, "es")) == '<html lang="es" dir="ltr">'
    # Nothing at all: English.
    assert html_tag(open_link(appointment)) == '<html lang="en" dir="ltr">'


def test_an_arabic_page_is_right_to_left(at_the_lobby, clinic, doctor):
    appointment = booked(clinic, doctor, time_zone="Asia/Dubai", preferred_language="ar")
    page = open_link(appointment, ENGLISH_BROWSER)
    assert html_tag(page) == '<html lang="ar" dir="rtl">'
    text = text_of(page)
    assert "موعدك عبر الفيديو" in text
    assert "الدخول إلى غرفة الانتظار" in text
    assert "(بتوقيتك: +04, Asia/Dubai)" not in text  # a zone with no abbreviation: its name
    assert "(بتوقيتك: Asia/Dubai)" in text


def test_a_guests_page_speaks_their_browsers_language(at_the_lobby, clinic, doctor):
    appointment = booked(clinic, doctor, preferred_language="fr")
    member = appointment_guest_invite(appointment=appointment, by=doctor, name="Lucía")
    page = Client().get(links.guest_link_path(member), HTTP_ACCEPT_LANGUAGE="es-ES,es")
    assert html_tag(page) == '<html lang="es" dir="ltr">'
    assert page["Content-Language"] == "es"
    assert "Videoconsulta en Riverside Clinic" in text_of(page)
    assert '/jsi18n/es/"' in page.content.decode()  # the scripts' texts follow the page


def test_a_guests_page_falls_back_to_the_patients_language_then_english(
    at_the_lobby, clinic, doctor
):
    """A browser asking for none of ours: the patient's language (not LocaleMiddleware's
    English); with no patient's language either, English."""
    appointment = booked(clinic, doctor, preferred_language="fr")
    member = appointment_guest_invite(appointment=appointment, by=doctor, name="Kenji")
    path = links.guest_link_path(member)
    page = Client().get(path, HTTP_ACCEPT_LANGUAGE="ja-JP,ja;q=0.9")
    assert html_tag(page) == '<html lang="fr" dir="ltr">'
    assert "Rendez-vous vidéo à Riverside Clinic" in text_of(page)
    assert html_tag(Client().get(path)) == '<html lang="fr" dir="ltr">'  # no header at all
    Patient.objects.filter(pk=appointment.patient_id).update(preferred_language="")
    assert html_tag(Client().get(path, HTTP_ACCEPT_LANGUAGE="ja")) == '<html lang="en" dir="ltr">'


def test_a_refused_link_says_so_in_the_browsers_language(at_the_lobby, clinic, doctor):
    appointment = booked(clinic, doctor, preferred_language="fr")
    bad = Client().get(f"/join/{appointment.pk}/?t=nope", HTTP_ACCEPT_LANGUAGE="pt-PT")
    assert bad.status_code == 403
    assert html_tag(bad) == '<html lang="pt" dir="ltr">'
    assert "Esta ligação não funciona" in text_of(bad)


def test_the_scripts_catalog_follows_the_page(clinic):
    arabic = Client().get("/jsi18n/ar/", HTTP_ACCEPT_LANGUAGE=ENGLISH_BROWSER)
    english = Client().get("/jsi18n/en/", HTTP_ACCEPT_LANGUAGE="ar")
    assert arabic.status_code == english.status_code == 200
    # Arabic's six plural forms, not English's two.
    assert b"n%100>=11" in arabic.content
    assert b"n%100>=11" not in english.content
    assert Client().get("/jsi18n/tlh/").status_code == 404


# --- the patient API --------------------------------------------------------------------------


def test_the_patient_api_answers_in_the_patients_language(clinic):
    from appointments.api import auth

    patient = make_patient(clinic, name="Chloé", email="chloe@example.com", preferred_language="fr")
    token = auth.access_token_for(patient)
    answer = Client().get(
        "/api/patient/v1/me?sort=name",
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_ACCEPT_LANGUAGE=ENGLISH_BROWSER,
    )
    assert answer.status_code == 400
    assert answer["Content-Language"] == "fr"
    assert answer.json()["error"]["fields"] == {"sort": ["Paramètre de requête inconnu."]}
    # Before sign-in: the browser's language.
    refused = Client().get(
        "/api/patient/v1/me", HTTP_AUTHORIZATION="Bearer nope", HTTP_ACCEPT_LANGUAGE="de"
    )
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "Das Zugriffstoken ist ungültig."


# --- where patients are created and edited ----------------------------------------------------


def test_an_unknown_language_is_refused_and_a_regional_one_is_kept_as_ours(clinic):
    with pytest.raises(ValidationError) as refused:
        make_patient(clinic, name="X", preferred_language="klingon")
    assert set(refused.value.message_dict) == {"preferred_language"}
    assert not Patient.objects.filter(name="X").exists()
    patient = make_patient(clinic, name="Y", preferred_language="pt-BR")
    assert patient.preferred_language == "pt"
    # Their pushes are written in it (the calls user's language, calls.outbox.push).
    assert CallUser.objects.get(pk=patient.call_user_id).language == "pt"
    with pytest.raises(ValidationError):
        patient_update(patient=patient, preferred_language="xx-YY")
    patient.refresh_from_db()
    assert patient.preferred_language == "pt"
    patient_update(patient=patient, preferred_language="AR")
    assert CallUser.objects.get(pk=patient.call_user_id).language == "ar"


def test_the_staff_form_offers_the_six_languages_and_refuses_others(clinic, doctor, client_for):
    client = client_for(doctor)
    page = client.get("/c/clinic-a/patients/new/").content.decode()
    select = re.search(r'<select name="preferred_language".*?</select>', page, re.S).group(0)
    assert re.findall(r'value="(\w+)"', select) == ["en", "fr", "es", "de", "pt", "ar"]
    assert "Français" in select
    assert "العربية" in select
    response = client.post(
        "/c/clinic-a/patients/new/",
        {"name": "Zed", "time_zone": "UTC", "preferred_language": "klingon"},
    )
    assert response.status_code == 200
    assert set(response.context["form"].errors) == {"preferred_language"}
    assert not Patient.objects.filter(name="Zed").exists()


def test_the_admin_refuses_an_unknown_language(clinic, admin_client):
    response = admin_client.post(
        "/admin/appointments/patient/add/",
        {"clinic": clinic.pk, "name": "Zed", "time_zone": "UTC", "preferred_language": "xx"},
    )
    assert response.status_code == 200
    assert "preferred_language" in response.context["adminform"].form.errors
    assert not Patient.objects.filter(name="Zed").exists()


def test_the_patient_api_says_not_found_in_the_patients_language(clinic):
    from appointments.api import auth

    patient = make_patient(clinic, name="Amal", email="amal@example.com", preferred_language="ar")
    answer = Client().get(
        "/api/patient/v1/appointments/nope00000000",
        HTTP_AUTHORIZATION=f"Bearer {auth.access_token_for(patient)}",
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["message"] == "الموعد غير موجود."
