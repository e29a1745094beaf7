"""The clinic's audit log page: clinic admins only, the clinic's own entries, filters, pages,
and the CSV download (itself recorded)."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.urls import reverse
from django.utils import timezone

from appointments.portal.audit import ENTRIES_PER_PAGE
from audit.record import Action, Actor, record
from tests.audit.conftest import entries
from tests.factories import make_staff

pytestmark = pytest.mark.django_db

URL = reverse("portal:audit", args=["clinic-a"])
CSV_URL = reverse("portal:audit_export", args=["clinic-a"])


@pytest.fixture
def outsider_admin(other_clinic):
    return make_staff(other_clinic, "boss-b", role="admin")


@pytest.mark.parametrize(
    ("persona", "expected"),
    [
        ("chief", 200),
        ("doctor", 403),
        ("coordinator", 403),
        ("outsider", 404),
        ("outsider_admin", 404),
    ],
)
@pytest.mark.parametrize("url", [URL, CSV_URL])
def test_only_the_clinics_admins_open_the_log(request, client_for, persona, expected, url):
    client = client_for(request.getfixturevalue(persona))
    assert client.get(url).status_code == expected


def test_signed_out_is_sent_to_sign_in(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_the_log_speaks_the_clinics_language(client_for, chief, doctor, appointment, clinic):
    client_for(doctor).get(reverse("portal:appointment", args=[clinic.slug, appointment.pk]))
    page = client_for(chief).get(URL).content.decode()
    assert "Opened an appointment" in page
    assert "Scheduled an appointment" in page
    assert "Dr House" in page
    assert f"Appointment {appointment.pk}" in page
    assert ">appointment.viewed<" not in page  # an option's value, never a label
    assert "Audit log" in page


def test_the_log_shows_only_this_clinics_entries(
    client_for, chief, outsider, other_clinic, appointment
):
    record(action=Action.PATIENT_VIEWED, actor=Actor.staff(outsider.user_id), clinic="clinic-b")
    rows = client_for(chief).get(URL).context["rows"]
    assert {r["entry"].clinic for r in rows} <= {"clinic-a", ""}
    # Sign-ins belong to no clinic: the log shows its own staff's only.
    sign_ins = [r for r in rows if r["entry"].action == "sign_in.succeeded"]
    assert {r["entry"].actor_id for r in sign_ins} == {str(chief.user_id)}


def test_failed_sign_ins_on_the_clinics_staff_show(client, client_for, chief, doctor, outsider):
    client.post("/login/", {"username": "drhouse", "password": "wrong"})
    client.post("/login/", {"username": "drbee", "password": "wrong"})  # another clinic's
    rows = client_for(chief).get(URL, {"action": "sign_in.failed"}).context["rows"]
    assert [(r["who"], r["record"]) for r in rows] == [("Someone not signed in", "Dr House")]


def test_filters(client_for, chief, doctor, coordinator, appointment, patient, clinic):
    client_for(doctor).get(reverse("portal:appointment", args=[clinic.slug, appointment.pk]))
    client_for(coordinator).get(reverse("portal:patient_edit", args=[clinic.slug, patient.pk]))
    client = client_for(chief)

    def shown(**query) -> list[str]:
        response = client.get(URL, query)
        assert response.status_code == 200
        return [r["entry"].action for r in response.context["rows"]]

    assert shown(actor=f"staff:{coordinator.user_id}") == ["patient.viewed", "sign_in.succeeded"]
    assert shown(action="appointment.viewed") == ["appointment.viewed"]
    assert shown(record=f"patient {patient.pk}") == ["patient.viewed", "patient.created"]
    assert shown(record=appointment.pk) == ["appointment.viewed", "appointment.created"]
    today = timezone.localdate(timezone=clinic.tz)
    assert len(shown(start=today - dt.timedelta(days=1), end=today + dt.timedelta(days=1))) > 3
    assert shown(start=today + dt.timedelta(days=2)) == []
    bad = client.get(URL, {"start": "2026-05-04", "end": "2026-05-01"})
    assert bad.status_code == 200
    assert "The end date is before the start date." in bad.content.decode()
    assert client.get(URL, {"action": "nonsense", "start": "9999-99-99"}).status_code == 200


def test_pages(client_for, chief):
    for i in range(ENTRIES_PER_PAGE + 5):
        record(action=Action.PATIENT_VIEWED, clinic="clinic-a", object_type="patient", object_id=i)
    client = client_for(chief)
    first = client.get(URL, {"action": "patient.viewed"})
    assert len(first.context["rows"]) == ENTRIES_PER_PAGE
    assert "action=patient.viewed&amp;page=2" in first.content.decode()
    second = client.get(URL, {"action": "patient.viewed", "page": 2})
    assert len(second.context["rows"]) == 5
    assert second.context["rows"][-1]["entry"].object_id == "0"  # newest first


def test_csv_download_is_filtered_and_recorded(client_for, chief, doctor, appointment, clinic):
    client_for(doctor).get(reverse("portal:appointment", args=[clinic.slug, appointment.pk]))
    response = client_for(chief).get(CSV_URL, {"action": "appointment.viewed"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment;" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:4] == ["entry", "when", "who", "what"]
    assert [(r[2], r[3], r[5]) for r in rows[1:]] == [
        ("Dr House", "Opened an appointment", appointment.pk)
    ]
    [exported] = entries(action="audit.exported")
    assert (exported.actor_id, exported.clinic) == (str(chief.user_id), "clinic-a")


def test_the_admin_sees_the_menu_link_and_others_do_not(client_for, chief, doctor):
    today = reverse("portal:today", args=["clinic-a"])
    assert URL in client_for(chief).get(today).content.decode()
    assert URL not in client_for(doctor).get(today).content.decode()


@pytest.mark.parametrize("how_many", [1, 30])
def test_the_log_runs_the_same_queries_for_1_or_30_entries(
    client_for, chief, patient, django_assert_num_queries, how_many
):
    client = client_for(chief)
    client.get(URL)  # the clinic is remembered (one more session write the first time)
    for i in range(how_many):
        record(
            action=Action.PATIENT_VIEWED,
            actor=Actor.patient(patient.pk) if i % 2 else Actor.staff(chief.user_id),
            clinic="clinic-a",
            object_type="patient",
            object_id=patient.pk,
        )
    # the session, the user, the verified two-factor device, the staff member, the clinic with
    # their role (5); the clinic's staff and its EHR systems for the "Who" choices (2); the
    # staff's user ids for their sign-ins (1); the count and the page of entries (2); the
    # patients named on the page (1); the header's clinics (1)
    with django_assert_num_queries(12):
        response = client.get(URL)
    assert len(response.context["rows"]) == min(how_many + 2, 50)


def test_the_who_filter_picks_the_clinics_ehr_systems(client_for, chief, patient, other_clinic):
    from fhir_api.models import Client as EhrClient
    from tests.fhir.ehr import jwks

    epic = EhrClient.objects.create(clinic=chief.clinics.get(), name="Epic", jwks=jwks())
    oracle = EhrClient.objects.create(clinic=chief.clinics.get(), name="Oracle", jwks=jwks())
    EhrClient.objects.create(clinic=other_clinic, name="Elsewhere", jwks=jwks())
    for ehr in (epic, oracle, epic):
        record(
            action=Action.PATIENT_VIEWED,
            actor=Actor.client(ehr.client_id),
            clinic="clinic-a",
            object_type="patient",
            object_id=patient.pk,
        )
    client = client_for(chief)
    page = client.get(URL).content.decode()
    assert '<optgroup label="EHR systems">' in page
    assert f'<option value="client:{epic.client_id}">Epic (EHR)</option>' in page
    assert "Elsewhere" not in page

    def who(**query) -> list[str]:
        response = client.get(URL, query)
        assert response.status_code == 200
        return [r["who"] for r in response.context["rows"]]

    epic_who = f"EHR system: Epic (client {epic.client_id})"
    assert who(actor=f"client:{epic.client_id}") == [epic_who, epic_who]
    assert who(actor="client") == [
        epic_who,
        f"EHR system: Oracle (client {oracle.client_id})",
        epic_who,
    ]
    # A client id that is not the clinic's is not a choice.
    answer = client.get(URL, {"actor": "client:ehr-nobody"})
    assert answer.context["rows"] == []
    assert "Select a valid choice" in answer.content.decode()
