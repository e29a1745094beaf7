"""Appointment over FHIR: round trips through the booking services, validation failures that
name the element, versions (If-Match), conditional create, search with paging, the audit trail
and the query counts of reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fhir.resources.R4B.appointment import Appointment as FhirAppointment
from fhir.resources.R4B.bundle import Bundle

from appointments.links import join_link_path
from appointments.models import Appointment, AppointmentMember
from audit.models import AuditEntry
from calls.models import Call, CallEvent
from fhir_api.models import Identifier
from tests.factories import make_appointment, make_patient

from .ehr import appointment_body

pytestmark = pytest.mark.django_db

START = (datetime.now(UTC) + timedelta(days=3)).replace(hour=9, minute=0, second=0, microsecond=0)
ISO = START.isoformat().replace("+00:00", "Z")
VIRTUAL = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.virtualService"


def issues(answer, status: int) -> list[dict]:
    assert answer.status_code == status, answer.content
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"]


def expressions(answer, status: int) -> list[str]:
    return [e for i in issues(answer, status) for e in i.get("expression", [])]


def full_body(patient, doctor, colleague, interpreter) -> dict:
    body = appointment_body(
        patient,
        doctor,
        ISO,
        reasonCode=[{"text": "persistent cough"}],
        comment="bring the inhaler",
        serviceType=[{"coding": [{"system": "http://snomed.info/sct", "code": "394814009"}]}],
        appointmentType={
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v2-0276", "code": "FOLLOWUP"}
            ]
        },
    )
    body["participant"] += [
        {"actor": {"reference": f"Practitioner/{colleague.pk}"}, "status": "accepted"},
        {
            "actor": {"reference": f"Practitioner/{interpreter.pk}"},
            "type": [{"coding": [{"code": "TRANS"}]}],
            "status": "accepted",
        },
    ]
    return body


def test_create_then_read_round_trips_through_the_booking_service(
    fhir, patient, doctor, colleague, interpreter, ehr
):
    answer = fhir.post("Appointment", full_body(patient, doctor, colleague, interpreter))
    assert answer.status_code == 201, answer.content
    assert answer["Content-Type"] == "application/fhir+json"
    created = answer.json()
    FhirAppointment.model_validate(created)
    appointment = Appointment.objects.get(pk=created["id"])
    # The same booking as the portal's: members, the call, the PHI in its columns.
    assert appointment.starts_at == START
    assert appointment.duration_minutes == 20
    assert appointment.reason == "persistent cough"
    assert appointment.notes == "bring the inhaler"
    kinds = dict(appointment.members.values_list("staff_id", "kind"))
    assert kinds == {doctor.pk: "host", colleague.pk: "clinician", interpreter.pk: "interpreter"}
    call = Call.objects.get(call_id=appointment.pk)
    assert call.team == "clinic-a"
    assert "persistent cough" not in str(call.custom)
    assert not CallEvent.objects.filter(payload__icontains="persistent cough").exists()
    assert answer["ETag"] == f'W/"{created["meta"]["versionId"]}"'
    version = created["meta"]["versionId"]
    assert answer["Location"] == (
        f"http://testserver/fhir/r4/Appointment/{appointment.pk}/_history/{version}"
    )

    read = fhir.get(f"Appointment/{appointment.pk}")
    assert read.status_code == 200
    assert "Location" not in read
    resource = read.json()
    assert resource == created
    assert resource["status"] == "booked"
    assert resource["start"] == ISO
    assert resource["end"] == (START + timedelta(minutes=20)).isoformat().replace("+00:00", "Z")
    assert resource["identifier"] == [
        {"system": "urn:appointment-calls:appointment", "value": appointment.pk},
        {"system": "urn:oid:1.2.3.4", "value": "EHR-1"},
    ]
    assert resource["reasonCode"] == [{"text": "persistent cough"}]
    assert resource["comment"] == "bring the inhaler"
    assert resource["serviceType"][0]["coding"][0]["code"] == "394814009"
    assert resource["appointmentType"]["coding"][0]["code"] == "FOLLOWUP"
    refs = {
        p["actor"]["reference"]: p.get("type", [{}])[0].get("coding", [{}])[0].get("code")
        for p in resource["participant"]
    }
    assert refs == {
        f"Patient/{patient.pk}": None,
        f"Practitioner/{doctor.pk}": "PPRF",
        f"Practitioner/{colleague.pk}": "SPRF",
        f"Practitioner/{interpreter.pk}": "TRANS",
    }
    (service,) = [e for e in resource["extension"] if e["url"] == VIRTUAL]
    parts = {e["url"]: e for e in service["extension"]}
    assert parts["channelType"]["valueCoding"]["code"] == "video"
    # The patient's own join link; no staff link anywhere in the resource.
    assert parts["addressUrl"]["valueUrl"] == f"http://testserver{join_link_path(appointment)}"
    assert "/staff" not in read.content.decode()
    # Audited: the booking (by the client) and the read.
    entries = AuditEntry.objects.filter(object_type="appointment", object_id=appointment.pk)
    assert set(entries.values_list("action", "actor_kind", "actor_id")) == {
        ("appointment.created", "client", ehr.client_id),
        ("appointment.viewed", "client", ehr.client_id),
    }


def test_validation_failures_name_the_element(fhir, patient, doctor, other_clinic):
    body = appointment_body(patient, doctor, "tomorrow at ten")
    assert "Appointment.start" in expressions(fhir.post("Appointment", body), 400)
    body = appointment_body(patient, doctor, ISO, colour="blue")
    assert "Appointment.colour" in expressions(fhir.post("Appointment", body), 400)
    body = appointment_body(patient, doctor, ISO)
    body["participant"][1]["actor"]["reference"] = 7
    assert "Appointment.participant[1].actor.reference" in expressions(
        fhir.post("Appointment", body), 400
    )
    body = appointment_body(patient, doctor, ISO)
    del body["participant"][0]
    assert expressions(fhir.post("Appointment", body), 422) == ["Appointment.participant"]
    stranger = make_patient(other_clinic, name="Elsewhere")
    body = appointment_body(stranger, doctor, ISO)
    assert expressions(fhir.post("Appointment", body), 422) == ["Appointment.participant[0].actor"]
    body = appointment_body(patient, doctor, ISO, status="proposed")
    assert expressions(fhir.post("Appointment", body), 422) == ["Appointment.status"]
    body = appointment_body(patient, doctor, ISO, minutesDuration=500)
    assert expressions(fhir.post("Appointment", body), 422) == ["Appointment.minutesDuration"]
    body = appointment_body(patient, doctor, "2020-01-01T10:00:00Z")
    assert expressions(fhir.post("Appointment", body), 422) == ["Appointment.start"]
    body = appointment_body(patient, doctor, ISO, end=ISO.replace("T09", "T10"))
    assert expressions(fhir.post("Appointment", body), 422) == ["Appointment.minutesDuration"]
    assert not Appointment.objects.exists()


def test_the_same_clinician_twice_is_the_booking_services_double_booking_refusal(
    fhir, patient, other_patient, doctor
):
    assert fhir.post("Appointment", appointment_body(patient, doctor, ISO)).status_code == 201
    body = appointment_body(other_patient, doctor, ISO, identifier=[])
    (issue,) = issues(fhir.post("Appointment", body), 422)
    assert issue["expression"] == ["Appointment.start"]
    assert "already booked" in issue["diagnostics"]


def test_an_identifier_names_one_appointment_per_clinic(fhir, patient, doctor, colleague):
    assert fhir.post("Appointment", appointment_body(patient, doctor, ISO)).status_code == 201
    later = (START + timedelta(hours=2)).isoformat()
    answer = fhir.post("Appointment", appointment_body(patient, colleague, later))
    assert issues(answer, 409)[0]["code"] == "duplicate"


def test_conditional_create_returns_the_existing_appointment(fhir, patient, doctor):
    body = appointment_body(patient, doctor, ISO)
    first = fhir.post("Appointment", body, **{"If-None-Exist": "identifier=urn:oid:1.2.3.4|EHR-1"})
    assert first.status_code == 201
    again = fhir.post("Appointment", body, **{"If-None-Exist": "identifier=urn:oid:1.2.3.4|EHR-1"})
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert Appointment.objects.count() == 1


def put(fhir, resource, **headers):
    return fhir.put(f"Appointment/{resource['id']}", resource, **headers)


def test_update_reschedules_with_a_version_check(fhir, patient, doctor, colleague):
    created = fhir.post("Appointment", appointment_body(patient, doctor, ISO)).json()
    moved = dict(created, start=(START + timedelta(hours=1)).isoformat(), end=None)
    moved.pop("end")
    moved["participant"] = [
        *created["participant"],
        {"actor": {"reference": f"Practitioner/{colleague.pk}"}, "status": "accepted"},
    ]
    version = created["meta"]["versionId"]
    answer = put(fhir, moved, **{"If-Match": f'W/"{version}"'})
    assert answer.status_code == 200, answer.content
    updated = answer.json()
    assert updated["meta"]["versionId"] != version
    appointment = Appointment.objects.get(pk=created["id"])
    assert appointment.starts_at == START + timedelta(hours=1)
    assert Call.objects.get(call_id=appointment.pk).starts_at == START + timedelta(hours=1)
    assert appointment.members.filter(kind=AppointmentMember.Kind.CLINICIAN).count() == 1
    # The old version is stale now: 412, and nothing changes.
    stale = dict(moved, start=(START + timedelta(hours=5)).isoformat())
    assert issues(put(fhir, stale, **{"If-Match": f'W/"{version}"'}), 412)[0]["code"] == "conflict"
    assert Appointment.objects.get(pk=created["id"]).starts_at == START + timedelta(hours=1)
    # Without If-Match the last writer wins.
    assert put(fhir, stale).status_code == 200


def test_update_refuses_what_an_ehr_cannot_change(fhir, patient, other_patient, doctor):
    created = fhir.post("Appointment", appointment_body(patient, doctor, ISO)).json()
    answer = put(fhir, dict(created, status="fulfilled"))
    assert expressions(answer, 422) == ["Appointment.status"]
    body = dict(created)
    body["participant"] = [
        {"actor": {"reference": f"Patient/{other_patient.pk}"}, "status": "accepted"},
        *created["participant"][1:],
    ]
    assert expressions(put(fhir, body), 422) == ["Appointment.participant[0].actor"]
    answer = fhir.put("Appointment/nope", created)
    assert issues(answer, 400)[0]["expression"] == ["Appointment.id"]


def test_bounded_input(fhir, patient, doctor, settings):
    settings.FHIR_MAX_BODY_BYTES = 2000
    body = appointment_body(patient, doctor, ISO, comment="x" * 3000)
    assert issues(fhir.post("Appointment", body), 413)[0]["code"] == "too-costly"
    answer = fhir.http.post(
        "/fhir/r4/Appointment",
        "status=booked",
        content_type="application/x-www-form-urlencoded",
        headers={"Authorization": f"Bearer {fhir.token}"},
    )
    assert issues(answer, 415)[0]["code"] == "not-supported"
    answer = fhir.http.post(
        "/fhir/r4/Appointment",
        '{"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}',
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {fhir.token}"},
    )
    issues(answer, 400)
    issues(fhir.http.delete("/fhir/r4/Appointment", headers={"Authorization": "Bearer x"}), 405)
    issues(fhir.get("Encounter"), 404)


# --- search ----------------------------------------------------------------------------------


@pytest.fixture
def week(clinic, doctor, colleague, patient, other_patient):
    """Seven appointments, one a day at 09:00 UTC from START, alternating clinicians and
    patients; the third cancelled."""
    from appointments.services.booking import appointment_cancel

    made = []
    for day in range(7):
        made.append(
            make_appointment(
                clinic,
                host=doctor if day % 2 == 0 else colleague,
                patient=patient if day % 2 == 0 else other_patient,
                starts_at=START + timedelta(days=day),
            )
        )
    appointment_cancel(appointment=made[2])
    Identifier.objects.create(
        clinic=clinic,
        resource_type="Appointment",
        resource_id=made[4].pk,
        system="urn:oid:9.9",
        value="E-4",
    )
    return made


def ids(answer) -> list[str]:
    assert answer.status_code == 200, answer.content
    body = answer.json()
    Bundle.model_validate(body)
    return [e["resource"]["id"] for e in body.get("entry", [])]


def test_search_by_date_with_prefixes(fhir, week):
    day = lambda n: (START + timedelta(days=n)).date().isoformat()  # noqa: E731
    pks = [a.pk for a in week]
    assert ids(fhir.get("Appointment", {"date": day(1)})) == [pks[1]]
    assert ids(fhir.get("Appointment", {"date": f"ge{day(5)}"})) == pks[5:]
    assert ids(fhir.get("Appointment", {"date": f"lt{day(2)}"})) == pks[:2]
    assert ids(fhir.get("Appointment", {"date": f"le{day(1)}"})) == pks[:2]
    assert ids(fhir.get("Appointment", {"date": f"gt{day(5)}"})) == pks[6:]
    assert (
        ids(fhir.get("Appointment", [("date", f"ge{day(1)}"), ("date", f"lt{day(3)}")]))
        == (pks[1:3])
    )
    instant = (START + timedelta(days=3)).isoformat()
    assert ids(fhir.get("Appointment", {"date": f"eq{instant}"})) == [pks[3]]
    assert ids(fhir.get("Appointment", {"date": f"ne{day(0)}", "_count": 100})) == pks[1:]
    answer = fhir.get("Appointment", {"date": "ge-soon"})
    assert expressions(answer, 400) == ["date"]


def test_search_by_patient_practitioner_status_identifier(fhir, week, patient, colleague):
    pks = [a.pk for a in week]
    assert ids(fhir.get("Appointment", {"patient": f"Patient/{patient.pk}"})) == pks[0::2]
    assert ids(fhir.get("Appointment", {"practitioner": colleague.pk})) == pks[1::2]
    assert ids(fhir.get("Appointment", {"status": "cancelled"})) == [pks[2]]
    assert ids(fhir.get("Appointment", {"status": "booked,cancelled", "_count": 3})) == pks[:3]
    assert ids(fhir.get("Appointment", {"identifier": "urn:oid:9.9|E-4"})) == [pks[4]]
    assert ids(fhir.get("Appointment", {"identifier": "E-4"})) == [pks[4]]
    ours = f"urn:appointment-calls:appointment|{pks[6]}"
    assert ids(fhir.get("Appointment", {"identifier": ours})) == [pks[6]]
    assert ids(fhir.get("Appointment", {"identifier": "urn:oid:1|E-4"})) == []
    assert issues(fhir.get("Appointment", {"colour": "red"}), 400)[0]["code"] == "not-supported"
    assert expressions(fhir.get("Appointment", {"status": "done"}), 400) == ["status"]


def test_search_by_last_updated(fhir, week):
    Appointment.objects.filter(pk=week[3].pk).update(updated_at=START + timedelta(days=30))
    later = (START + timedelta(days=20)).date().isoformat()
    assert ids(fhir.get("Appointment", {"_lastUpdated": f"gt{later}"})) == [week[3].pk]


def test_paging_follows_next_links_and_summary_count(fhir, week):
    seen, url, pages = [], "/fhir/r4/Appointment?_count=3", 0
    while url:
        answer = fhir.http.get(url, headers={"Authorization": f"Bearer {fhir.token}"})
        body = answer.json()
        assert body["total"] == 7
        seen += ids(answer)
        pages += 1
        nxt = [link["url"] for link in body["link"] if link["relation"] == "next"]
        url = nxt[0].removeprefix("http://testserver") if nxt else None
    assert pages == 3
    assert seen == [a.pk for a in week]
    body = fhir.get("Appointment", {"_summary": "count", "status": "booked"}).json()
    assert body["total"] == 6
    assert "entry" not in body
    assert expressions(fhir.get("Appointment", {"_count": "-1"}), 400) == ["_count"]


def test_count_is_capped(fhir, week, settings):
    settings.FHIR_MAX_COUNT = 2
    assert len(ids(fhir.get("Appointment", {"_count": 50}))) == 2


def test_search_results_are_audited_one_entry_each(fhir, week, ehr):
    before = AuditEntry.objects.count()
    ids(fhir.get("Appointment", {"_count": 4}))
    entries = AuditEntry.objects.order_by("id")[before:]
    assert [(e.action, e.actor_kind, e.object_id) for e in entries] == [
        ("appointment.viewed", "client", a.pk) for a in week[:4]
    ]
    from audit.record import verify

    assert verify()[1] is None


def test_query_counts(fhir, clinic, doctor, patient, django_assert_max_num_queries):
    one = make_appointment(clinic, host=doctor, patient=patient, starts_at=START)
    # client; exists; 3 audit (lock, tail, insert); appointment, members; identifiers; codes
    with django_assert_max_num_queries(9):
        assert fhir.get(f"Appointment/{one.pk}").status_code == 200
    for day in range(1, 30):
        make_appointment(
            clinic, host=doctor, patient=patient, starts_at=START + timedelta(days=day)
        )
    # client; count; page ids; appointments, members; identifiers; codes; 3 audit
    with django_assert_max_num_queries(10):
        assert len(ids(fhir.get("Appointment", {"_count": 30}))) == 30


def test_reason_and_notes_stay_out_of_logs_and_events(
    fhir, patient, doctor, caplog, eager_tasks, django_capture_on_commit_callbacks
):
    caplog.set_level("DEBUG")
    body = appointment_body(patient, doctor, ISO, reasonCode=[{"text": "chest pain"}])
    body["comment"] = "history of angina"
    with django_capture_on_commit_callbacks(execute=True):
        created = fhir.post("Appointment", body).json()
        moved = dict(created, start=(START + timedelta(hours=1)).isoformat())
        moved.pop("end")
        assert fhir.put(f"Appointment/{created['id']}", moved).status_code == 200
        assert fhir.put(f"Appointment/{created['id']}", dict(moved, status="x")).status_code == 400
    logged = "\n".join(r.getMessage() for r in caplog.records)
    events = str(list(CallEvent.objects.values_list("payload", flat=True)))
    audit = str(list(AuditEntry.objects.values()))
    for secret in ("chest pain", "angina"):
        assert secret not in logged
        assert secret not in events
        assert secret not in audit
    assert CallEvent.objects.filter(call_cid=f"appointment:{created['id']}").count() >= 2
