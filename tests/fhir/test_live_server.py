"""The FHIR API over real HTTP (uvicorn): twenty identical conditional creates at once book
exactly one appointment (PostgreSQL), and SMART on FHIR's own Python client (`fhirclient`,
unchanged) reads the CapabilityStatement, gets its token at our token endpoint with a
private_key_jwt assertion, then reads and searches appointments."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.db import connection
from fhirclient import client as smart_client
from fhirclient.models.appointment import Appointment as SmartAppointment

from appointments.models import Appointment
from tests.calls.realtime_server import running_server
from tests.factories import make_appointment

from .ehr import ALL_SCOPES, appointment_body, assertion, register

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

START = (datetime.now(UTC) + timedelta(days=2)).replace(minute=0, second=0, microsecond=0)


def token_at(base: str, ehr) -> str:
    url = f"http://{base}/fhir/auth/token"
    answer = httpx.post(
        url,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion(ehr.client_id, aud=url),
            "scope": ALL_SCOPES,
        },
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the race needs PostgreSQL")
def test_twenty_parallel_conditional_creates_book_once(clinic, doctor, patient):
    ehr = register(clinic)
    body = json.dumps(appointment_body(patient, doctor, START.isoformat()))
    with running_server() as base:
        token = token_at(base, ehr)
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/fhir+json",
            "If-None-Exist": "identifier=urn:oid:1.2.3.4|EHR-1",
        }

        def post(_: int) -> httpx.Response:
            return httpx.post(
                f"http://{base}/fhir/r4/Appointment", content=body, headers=headers, timeout=60
            )

        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(post, range(20)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 19 + [201], [a.text for a in answers if a.status_code >= 300]
    assert len({a.json()["id"] for a in answers}) == 1
    assert Appointment.objects.count() == 1


def test_fhirclient_reads_and_searches_appointments(clinic, doctor, patient):
    ehr = register(clinic)
    booked = [
        make_appointment(clinic, host=doctor, patient=patient, starts_at=START + timedelta(days=d))
        for d in range(3)
    ]
    with running_server() as base:
        settings = {
            "app_id": ehr.client_id,
            "api_base": f"http://{base}/fhir/r4/",
            "scope": "system/Appointment.rs",
            # SMART Backend Services: fhirclient sends this assertion as client_assertion.
            "jwt_token": assertion(ehr.client_id, aud=f"http://{base}/fhir/auth/token"),
        }
        smart = smart_client.FHIRClient(settings=settings)
        smart.wants_patient = False  # a system client: no launch/patient scope
        smart.prepare()  # reads /metadata: the token endpoint from the SMART extension
        smart.server.authorize()
        assert smart.ready
        one = SmartAppointment.read(booked[1].pk, smart.server)
        assert one.status == "booked"
        assert one.participant[0].actor.reference == f"Patient/{patient.pk}"
        search = SmartAppointment.where(
            struct={
                "patient": f"Patient/{patient.pk}",
                "date": f"ge{START.date().isoformat()}",
                "_count": "2",  # two pages: fhirclient follows the next link
            }
        )
        found = list(search.perform_resources_iter(smart.server))
    assert [a.id for a in found] == [a.pk for a in booked]
    assert {a.start.datetime for a in found} == {a.starts_at for a in booked}
