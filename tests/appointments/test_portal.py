"""The staff portal's pages: who may see what, what the schedule shows, the call buttons,
cancelling, patients, and the schedule page's query count.

Personas: `doctor` (clinician of clinic A, host of the appointment), `coordinator` (front desk
of clinic A, not a member of the call), `outsider` (clinician of clinic B), `stranger` (a Django
user with no StaffMember)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from appointments.models import Appointment, Patient
from appointments.services.booking import appointment_cancel
from appointments.services.staff import staff_set_membership
from appointments.services.status import appointment_call_action
from calls.capabilities import Actor
from calls.models import Call, CallUser
from calls.services.sessions import participant_enter, participant_leave
from tests.factories import NOW, make_appointment, make_patient, make_staff

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _a_clinic_morning():
    """Today's page lists the clinic's today (Europe/Paris): these tests book from the clock,
    so late in the evening their appointments fell on tomorrow. They run on a morning, the
    clock ticking (tests that freeze it travel again inside)."""
    with time_machine.travel(NOW, tick=True):
        yield


PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def _tomorrow_at(hour: int, minute: int = 0, zone: zoneinfo.ZoneInfo = PARIS) -> dt.datetime:
    day = timezone.localdate(timezone=zone) + dt.timedelta(days=1)
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=zone)


@pytest.fixture
def appointment(clinic, doctor, patient):
    return make_appointment(
        clinic, host=doctor, patient=patient, starts_at=timezone.now() + dt.timedelta(hours=1)
    )


def call_of(appointment: Appointment) -> Call:
    return Call.objects.get(type_id="appointment", call_id=appointment.id)


# --- access ----------------------------------------------------------------------------------


def _pages(appointment: Appointment, patient: Patient, slug: str) -> dict[str, tuple[str, str]]:
    a = appointment.id
    return {
        "today": ("get", reverse("portal:today", args=[slug])),
        "rows": ("get", reverse("portal:today_rows", args=[slug])),
        "new": ("get", reverse("portal:appointment_new", args=[slug])),
        "detail": ("get", reverse("portal:appointment", args=[slug, a])),
        "edit": ("get", reverse("portal:appointment_edit", args=[slug, a])),
        "cancel": ("get", reverse("portal:appointment_cancel", args=[slug, a])),
        "call": ("post", reverse("portal:appointment_call", args=[slug, a, "ring"])),
        "patients": ("get", reverse("portal:patients", args=[slug])),
        "patient_search": ("get", reverse("portal:patient_search", args=[slug])),
        "patient_edit": ("get", reverse("portal:patient_edit", args=[slug, patient.pk])),
    }


PAGES = [
    "today",
    "rows",
    "new",
    "detail",
    "edit",
    "cancel",
    "call",
    "patients",
    "patient_search",
    "patient_edit",
]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_needs_a_signed_in_user(client, appointment, patient, page):
    method, url = _pages(appointment, patient, "clinic-a")[page]
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")
    assert call_of(appointment).backstage is True


EXPECTED = {
    # persona: status for every page of clinic A (a call action redirects back to the detail)
    "doctor": {"call": 302, "*": 200},
    "outsider": {"*": 404},
    "stranger": {"*": 403},
}


@pytest.mark.parametrize("persona", ["doctor", "outsider", "stranger"])
@pytest.mark.parametrize("page", PAGES)
def test_permission_matrix(request, persona, page, appointment, patient, client_for):
    if persona == "stranger":
        client = request.getfixturevalue("stranger_client")
    else:
        client = client_for(request.getfixturevalue(persona))
    method, url = _pages(appointment, patient, "clinic-a")[page]
    response = getattr(client, method)(url)
    expected = EXPECTED[persona].get(page, EXPECTED[persona]["*"])
    assert response.status_code == expected
    if persona != "doctor":
        assert b"Ana Lima" not in response.content


@pytest.mark.parametrize(
    "page", ["detail", "edit", "cancel", "call", "patient_edit", "rows", "patient_search"]
)
def test_other_clinics_objects_are_404_under_ones_own_clinic_too(
    page, appointment, patient, outsider, client_for
):
    """Clinic B's staff asking for A's appointment or patient under B's own slug."""
    client = client_for(outsider)
    method, url = _pages(appointment, patient, "clinic-b")[page]
    response = getattr(client, method)(url)
    if page in ("rows", "patient_search"):  # B's own lists: allowed, but A's data is not there
        assert response.status_code == 200
        assert b"Ana Lima" not in response.content
    else:
        assert response.status_code == 404
    call = call_of(appointment)
    assert call.backstage is True
    assert not call.events.filter(type="call.ring").exists()


def test_a_staff_member_of_both_clinics_gets_404_for_an_appointment_under_the_wrong_slug(
    appointment, other_clinic, doctor, client_for
):
    staff_set_membership(staff=doctor, clinic=other_clinic, role="clinician")
    client = client_for(doctor)
    wrong = reverse("portal:appointment", args=["clinic-b", appointment.id])
    right = reverse("portal:appointment", args=["clinic-a", appointment.id])
    assert client.get(wrong).status_code == 404
    assert client.get(right).status_code == 200


def test_call_actions_are_post_only(appointment, doctor, client_for):
    url = reverse("portal:appointment_call", args=["clinic-a", appointment.id, "go_live"])
    assert client_for(doctor).get(url).status_code == 405
    assert call_of(appointment).backstage is True


def test_unknown_call_action_is_404(appointment, doctor, client_for):
    url = reverse("portal:appointment_call", args=["clinic-a", appointment.id, "delete"])
    assert client_for(doctor).post(url).status_code == 404


# --- home and the clinic switcher ------------------------------------------------------------


def test_home_goes_straight_to_the_only_clinic(doctor, client_for):
    response = client_for(doctor).get("/")
    assert response.status_code == 302
    assert response["Location"] == "/c/clinic-a/today/"


def test_home_lets_a_multi_clinic_member_choose_then_remembers(doctor, other_clinic, client_for):
    staff_set_membership(staff=doctor, clinic=other_clinic, role="clinician")
    client = client_for(doctor)
    response = client.get("/")
    assert response.status_code == 200
    assert b"Choose a clinic" in response.content
    assert b"/c/clinic-b/today/" in response.content

    client.get("/c/clinic-b/today/")
    assert client.get("/")["Location"] == "/c/clinic-b/today/"
    # The header's switcher.
    switched = client.get("/", {"clinic": "clinic-a"})
    assert switched["Location"] == "/c/clinic-a/today/"
    page = client.get("/c/clinic-a/today/")
    assert b'id="clinic-switch"' in page.content
    assert client.get("/")["Location"] == "/c/clinic-a/today/"


def test_switching_to_a_clinic_one_does_not_work_for_is_404(doctor, other_clinic, client_for):
    assert client_for(doctor).get("/", {"clinic": "clinic-b"}).status_code == 404


def test_a_user_without_staff_gets_a_clear_403(stranger_client):
    response = stranger_client.get("/")
    assert response.status_code == 403
    assert b"not set up as clinic staff" in response.content


def test_login_and_logout(doctor):
    client = Client()
    page = client.get("/login/")
    assert page.status_code == 200
    assert b'<label for="id_username">Username</label>' in page.content
    bad = client.post("/login/", {"username": "drhouse", "password": "wrong"})
    assert bad.status_code == 200
    assert b"Please enter a correct username and password" in bad.content
    good = client.post("/login/", {"username": "drhouse", "password": "pw-test-1"})
    assert good["Location"] == "/"
    assert client.get("/c/clinic-a/today/").status_code == 200
    assert client.get("/logout/").status_code == 405  # logging out is a POST
    assert client.post("/logout/")["Location"] == "/login/"
    assert client.get("/c/clinic-a/today/").status_code == 302


# --- the schedule ----------------------------------------------------------------------------


def test_today_shows_the_appointment_its_people_and_call_phase(appointment, doctor, client_for):
    response = client_for(doctor).get("/c/clinic-a/today/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Ana Lima" in html
    assert "Dr House" in html
    local = timezone.localtime(appointment.starts_at, PARIS)
    assert f"{local:%H:%M}" in html
    assert 'data-status="scheduled"' in html
    assert ">Scheduled</span>" in html
    assert "data-phase" not in html  # one status column, not the call's phase beside it
    assert f"/c/clinic-a/appointments/{appointment.id}/" in html
    assert "<title>Schedule" in html
    assert 'href="#main"' in html


def test_today_a_live_call_without_the_patient_is_still_scheduled(appointment, doctor, client_for):
    """Going live (or stopping) does not make a visit: the one status follows the patient."""
    appointment_call_action(appointment=appointment, staff=doctor, action="go_live")
    html = client_for(doctor).get("/c/clinic-a/today/").content.decode()
    assert 'data-status="scheduled"' in html
    assert "In progress" not in html
    appointment_call_action(appointment=appointment, staff=doctor, action="stop_live")
    html = client_for(doctor).get("/c/clinic-a/today/").content.decode()
    assert 'data-status="scheduled"' in html


def test_days_are_the_clinics_days(clinic, doctor, patient, client_for):
    """00:30 in Paris is the previous evening in UTC: it belongs to the Paris day."""
    starts = _tomorrow_at(0, 30)
    make_appointment(clinic, host=doctor, patient=patient, starts_at=starts)
    client = client_for(doctor)
    day = starts.date().isoformat()
    on_day = client.get("/c/clinic-a/today/", {"date": day}).content.decode()
    assert "Ana Lima" in on_day
    assert "00:30" in on_day
    before = (starts.date() - dt.timedelta(days=1)).isoformat()
    assert "Ana Lima" not in client.get("/c/clinic-a/today/", {"date": before}).content.decode()
    # Previous/next links point at the neighbouring days.
    assert f"?date={before}" in on_day


def test_a_bad_date_falls_back_to_today(doctor, client_for):
    response = client_for(doctor).get("/c/clinic-a/today/", {"date": "2024-13-45"})
    assert response.status_code == 200
    today = timezone.localdate(timezone=PARIS)
    assert response.context["day"] == today


@pytest.mark.parametrize("date", ["9999-12-31", "0001-01-01", "9999-12-28", "0001-01-03"])
@pytest.mark.parametrize("path", ["/c/clinic-a/today/", "/c/clinic-a/today/rows/"])
def test_a_date_at_the_ends_of_the_calendar_falls_back_to_today(doctor, client_for, path, date):
    response = client_for(doctor).get(path, {"date": date})
    assert response.status_code == 200
    assert response.context["day"] == timezone.localdate(timezone=PARIS)


def test_rows_partial_renders_only_the_rows(appointment, doctor, client_for):
    response = client_for(doctor).get("/c/clinic-a/today/rows/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert "<table" in html
    assert "Ana Lima" in html
    assert 'data-status="scheduled"' in html


def test_rows_partial_follows_a_cancel(appointment, doctor, client_for):
    appointment_cancel(appointment=appointment, by=doctor)
    html = client_for(doctor).get("/c/clinic-a/today/rows/").content.decode()
    assert ">Cancelled</span>" in html
    assert 'data-status="cancelled"' in html


def test_empty_day_says_so(doctor, client_for):
    html = client_for(doctor).get("/c/clinic-a/today/rows/").content.decode()
    assert "No appointments today" in html


def test_the_schedule_offers_join_to_its_clinicians_from_their_join_ahead_time(
    appointment, doctor, coordinator, client_for
):
    join = f"/c/clinic-a/appointments/{appointment.id}/join/"
    day = timezone.localtime(appointment.starts_at, PARIS).date().isoformat()

    def rows(staff) -> str:
        return client_for(staff).get("/c/clinic-a/today/rows/", {"date": day}).content.decode()

    assert join not in rows(doctor)  # an hour early: the 15-minute join-ahead has not come
    with time_machine.travel(appointment.starts_at - dt.timedelta(minutes=10), tick=False):
        html = rows(doctor)
        assert f'href="{join}"' in html
        assert 'aria-label="Join the call with Ana Lima at' in html
        assert join not in rows(coordinator)  # not one of the appointment's people
    appointment_call_action(appointment=appointment, staff=doctor, action="end")
    with time_machine.travel(appointment.starts_at, tick=False):
        assert join not in rows(doctor)  # the call is over


def test_today_page_query_count_does_not_grow_with_appointments(
    frozen, clinic, doctor, django_assert_max_num_queries, client_for
):
    # On a fixed morning: the twenty appointments span five hours, which from a real clock
    # late in the clinic's evening would run into tomorrow (and off the Today page).
    client = client_for(doctor)
    url = "/c/clinic-a/today/"
    start = timezone.now() + dt.timedelta(minutes=30)
    others = [make_staff(clinic, f"doc{i}") for i in range(4)]

    def book(i: int) -> None:
        make_appointment(
            clinic,
            host=others[i % 4],
            patient=make_patient(clinic, name=f"Patient {i}"),
            starts_at=start + dt.timedelta(minutes=30 * (i // 4)),
            clinicians=[doctor] if i == 0 else [],
        )

    book(0)
    client.get(url)  # the first visit stores the clinic in the session (one more write)
    with CaptureQueriesContext(connection) as one:
        response = client.get(url)
    assert len(response.context["rows"]) == 1
    # session, user, the two-factor step, staff, clinic (by slug and membership), appointments
    # (+ clinic, patient), their members (+ staff, call user), their calls (+ type), the
    # patients' participant rows (the status), the staff member's calls user and member rows
    # (the join rule's Join buttons), the waiting room (nobody waits: one query), the header's
    # clinics.
    assert len(one) == 13, [q["sql"] for q in one.captured_queries]

    for i in range(1, 20):
        book(i)
    with django_assert_max_num_queries(len(one)):
        response = client.get(url)
    html = response.content.decode()
    assert len(response.context["rows"]) == 20
    assert "Patient 19" in html
    with django_assert_max_num_queries(len(one) - 1):  # the partial has no header
        client.get("/c/clinic-a/today/rows/")


def test_appointment_page_query_count_does_not_grow_with_visits_and_events(
    clinic, doctor, patient, client_for
):
    """The status, the folded attendance and the history read the call's participant rows and
    events once, however many there are (a long visit with reloads and rings)."""
    start = timezone.now() + dt.timedelta(minutes=5)
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=start)
    client = client_for(doctor)
    url = f"/c/clinic-a/appointments/{appointment.id}/"
    client.get(url)
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    patient_actor = Actor.of(CallUser.objects.get(pk=patient.call_user_id))
    appointment_call_action(appointment=appointment, staff=doctor, action="go_live")
    for _ in range(15):  # fifteen reloads: a participant row and two events each
        entry = participant_enter(
            actor=patient_actor, type_name="appointment", call_id=appointment.id, channel_name="x"
        )
        participant_leave(user_session_id=entry.participant.user_session_id)
        appointment_call_action(appointment=appointment, staff=doctor, action="ring")
    with CaptureQueriesContext(connection) as many:
        response = client.get(url)
    assert len(many) == len(few), [q["sql"] for q in many.captured_queries]
    html = response.content.decode()
    assert html.count('<li class="attendance-') == 1  # fifteen reloads within minutes: one visit


# --- appointment detail and the call buttons -------------------------------------------------


def test_detail_shows_patient_members_call_and_history(appointment, doctor, client_for):
    response = client_for(doctor).get(f"/c/clinic-a/appointments/{appointment.id}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "ana@example.com" in html
    assert "Dr House" in html
    # Roles by name, not the engine's call roles.
    assert "<td>Host clinician</td>" in html
    assert "<td>Patient</td>" in html
    assert "call_member" not in html
    assert "<code>host</code>" not in html
    assert f"appointment:{appointment.id}" in html
    assert "Call set up" in html  # the history in sentences
    assert "call.created" in html  # the raw log, folded away
    assert html.index("<details") < html.index("call.created")
    assert ">Go live</button>" in html
    assert ">Stop live" not in html
    assert ">End call</button>" in html
    assert ">Ring now</button>" in html
    assert 'data-phase="scheduled"' in html


def test_coordinator_who_is_not_a_member_sees_no_buttons(appointment, coordinator, client_for):
    html = client_for(coordinator).get(f"/c/clinic-a/appointments/{appointment.id}/").content
    assert b"Ana Lima" in html  # same clinic: may see the appointment
    assert b">Go live</button>" not in html
    assert b">End call</button>" not in html
    assert b">Ring now</button>" not in html
    assert b"not a host of this call" in html


def test_host_goes_live_and_the_page_says_live(appointment, doctor, client_for):
    client = client_for(doctor)
    url = f"/c/clinic-a/appointments/{appointment.id}/call/go_live/"
    response = client.post(url, follow=True)
    assert response.redirect_chain[0][0] == f"/c/clinic-a/appointments/{appointment.id}/"
    call = call_of(appointment)
    assert call.backstage is False
    html = response.content.decode()
    assert 'data-phase="live"' in html
    assert "The call is live" in html
    assert ">Stop live" in html
    assert ">Go live</button>" not in html
    assert "call.live_started" in html
    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.IN_PROGRESS

    stopped = client.post(f"/c/clinic-a/appointments/{appointment.id}/call/stop_live/", follow=True)
    assert call_of(appointment).backstage is True
    assert ">Go live</button>" in stopped.content.decode()


def test_host_ends_the_call(appointment, doctor, client_for):
    client = client_for(doctor)
    client.post(f"/c/clinic-a/appointments/{appointment.id}/call/go_live/")
    response = client.post(f"/c/clinic-a/appointments/{appointment.id}/call/end/", follow=True)
    assert call_of(appointment).ended_at is not None
    html = response.content.decode()
    assert 'data-phase="ended"' in html
    assert ">Ring now</button>" not in html
    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.COMPLETED


def test_coordinator_who_is_not_a_member_cannot_go_live(appointment, coordinator, client_for):
    response = client_for(coordinator).post(
        f"/c/clinic-a/appointments/{appointment.id}/call/go_live/", follow=True
    )
    assert response.status_code == 200
    assert b"Not done:" in response.content
    assert b'class="message message-error"' in response.content
    assert call_of(appointment).backstage is True
    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.SCHEDULED


def test_ring_reports_success(appointment, doctor, client_for):
    response = client_for(doctor).post(
        f"/c/clinic-a/appointments/{appointment.id}/call/ring/", follow=True
    )
    assert b"Ringing the members" in response.content
    assert call_of(appointment).events.filter(type="call.ring").exists()


# --- cancel ----------------------------------------------------------------------------------


def test_cancel_asks_first_then_cancels_and_ends_the_call(appointment, coordinator, client_for):
    client = client_for(coordinator)
    url = f"/c/clinic-a/appointments/{appointment.id}/cancel/"
    page = client.get(url)
    assert b"Cancel this appointment?" in page.content
    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.SCHEDULED

    response = client.post(url, follow=True)
    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.CANCELLED
    assert call_of(appointment).ended_at is not None
    assert b"Appointment cancelled" in response.content
    assert b"Edit or reschedule" not in response.content


def test_cancelling_a_completed_appointment_is_refused_with_a_message(
    appointment, doctor, client_for
):
    client = client_for(doctor)
    client.post(f"/c/clinic-a/appointments/{appointment.id}/call/go_live/")
    client.post(f"/c/clinic-a/appointments/{appointment.id}/call/end/")
    response = client.post(f"/c/clinic-a/appointments/{appointment.id}/cancel/", follow=True)
    assert b"A finished appointment cannot be cancelled." in response.content
    appointment.refresh_from_db()
    assert appointment.status == Appointment.Status.COMPLETED


# --- patients --------------------------------------------------------------------------------


def test_patients_list_and_search(clinic, other_clinic, doctor, patient, client_for):
    make_patient(clinic, name="Bruno Costa", email="bruno@example.com")
    make_patient(other_clinic, name="Other Clinic Person")
    client = client_for(doctor)
    html = client.get("/c/clinic-a/patients/").content.decode()
    assert "Ana Lima" in html
    assert "Bruno Costa" in html
    assert "Other Clinic Person" not in html
    found = client.get("/c/clinic-a/patients/", {"q": "bruno"}).content.decode()
    assert "Bruno Costa" in found
    assert "Ana Lima" not in found


def test_patient_search_json(clinic, other_clinic, doctor, patient, client_for):
    make_patient(other_clinic, name="Ana Other", email="ana@other.example")
    data = client_for(doctor).get("/c/clinic-a/patients/search.json", {"q": "ana"}).json()
    assert data == {
        "results": [
            {
                "id": patient.pk,
                "name": "Ana Lima",
                "email": "ana@example.com",
                "time_zone": "America/Recife",
            }
        ]
    }


def test_create_patient(clinic, doctor, client_for):
    client = client_for(doctor)
    response = client.post(
        "/c/clinic-a/patients/new/",
        {
            "name": "Carla Dias",
            "email": "Carla@Example.com",
            "phone": "+33 1 23 45 67 89",
            "time_zone": "Europe/Lisbon",
            "preferred_language": "pt",
        },
    )
    assert response.status_code == 302
    patient = Patient.objects.get(name="Carla Dias")
    assert patient.clinic == clinic
    assert patient.email == "carla@example.com"
    assert patient.phone == "+33123456789"  # E.164
    assert patient.time_zone == "Europe/Lisbon"


def test_create_patient_then_schedule(clinic, doctor, client_for):
    response = client_for(doctor).post(
        "/c/clinic-a/patients/new/?then=schedule",
        {"name": "Dan", "time_zone": "UTC", "then": "schedule"},
    )
    patient = Patient.objects.get(name="Dan")
    assert response["Location"] == f"/c/clinic-a/appointments/new/?patient={patient.pk}"


def test_patient_form_errors_are_on_their_fields(clinic, doctor, patient, client_for):
    response = client_for(doctor).post(
        "/c/clinic-a/patients/new/",
        {"name": "", "email": "ANA@example.com", "time_zone": "Mars/Olympus"},
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert set(errors) == {"name", "email", "time_zone"}
    assert "Another patient of this clinic has this email." in errors["email"]
    assert Patient.objects.filter(clinic=clinic).count() == 1


def test_edit_patient(clinic, doctor, patient, client_for):
    client = client_for(doctor)
    url = f"/c/clinic-a/patients/{patient.pk}/edit/"
    page = client.get(url)
    assert b'value="Ana Lima"' in page.content
    response = client.post(
        url,
        {
            "name": "Ana Lima Souza",
            "email": "ana@example.com",
            "time_zone": "UTC",
            "preferred_language": "",
        },
    )
    assert response.status_code == 302
    patient.refresh_from_db()
    assert patient.name == "Ana Lima Souza"
    assert patient.preferred_language == "en"


def test_outsider_cannot_edit_a_patient(patient, outsider, client_for):
    client = client_for(outsider)
    for slug in ("clinic-a", "clinic-b"):
        response = client.post(
            f"/c/{slug}/patients/{patient.pk}/edit/", {"name": "Hacked", "time_zone": "UTC"}
        )
        assert response.status_code == 404
    patient.refresh_from_db()
    assert patient.name == "Ana Lima"


# --- roles over patient data -----------------------------------------------------------------
# Coordinators schedule and see contact details, never the reason or notes; clinicians and
# clinic admins see them (appointments.access.can_see_clinical).

CLINICAL_REASON = "chest pain since Tuesday"
CLINICAL_NOTES = "bring the ECG"


@pytest.fixture
def clinical(clinic, doctor, patient):
    return make_appointment(
        clinic,
        host=doctor,
        patient=patient,
        starts_at=timezone.now() + dt.timedelta(hours=3),
        reason=CLINICAL_REASON,
        notes=CLINICAL_NOTES,
    )


@pytest.mark.parametrize(
    ("role", "sees"), [("coordinator", False), ("clinician", True), ("admin", True)]
)
@pytest.mark.parametrize("page_name", ["appointment", "appointment_edit"])
def test_the_reason_and_notes_follow_the_role(client_for, clinic, clinical, role, sees, page_name):
    staff = make_staff(clinic, f"who-{role}", role=role)
    html = client_for(staff).get(reverse(f"portal:{page_name}", args=[clinic.slug, clinical.pk]))
    assert html.status_code == 200
    content = html.content.decode()
    assert (CLINICAL_REASON in content) is sees
    assert (CLINICAL_NOTES in content) is sees
    assert ('name="reason"' in content) is (sees and page_name == "appointment_edit")
    # Contact details are for everyone who schedules.
    if page_name == "appointment":
        assert "ana@example.com" in content


def _edit_form(appointment, **changes) -> dict:
    local = timezone.localtime(appointment.starts_at, PARIS)
    host = appointment.members.get(kind="host").staff_id
    return {
        "starts_at_0": f"{local:%Y-%m-%d}",
        "starts_at_1": f"{local:%H:%M}",
        "duration_minutes": appointment.duration_minutes,
        "host": host,
        "mode": "video",
        "backstage_enabled": "on",
        "staff_join_ahead_minutes": 15,
        "lobby_opens_minutes": 10,
        "ring_at_start": "on",
        **changes,
    }


def test_a_coordinator_reschedules_without_touching_the_reason(client_for, coordinator, clinical):
    url = reverse("portal:appointment_edit", args=["clinic-a", clinical.pk])
    form = _edit_form(clinical, duration_minutes=40, reason="overwritten", notes="")
    assert client_for(coordinator).post(url, form).status_code == 302
    clinical.refresh_from_db()
    assert clinical.duration_minutes == 40
    assert (clinical.reason, clinical.notes) == (CLINICAL_REASON, CLINICAL_NOTES)


def test_a_coordinator_books_without_a_reason(client_for, coordinator, doctor, patient):
    starts = timezone.localtime(timezone.now() + dt.timedelta(days=2), PARIS)
    form = {
        "patient": patient.pk,
        "starts_at_0": f"{starts:%Y-%m-%d}",
        "starts_at_1": "09:00",
        "duration_minutes": 20,
        "host": doctor.pk,
        "mode": "video",
        "staff_join_ahead_minutes": 15,
        "lobby_opens_minutes": 10,
        "reason": "smuggled in",
    }
    response = client_for(coordinator).post(
        reverse("portal:appointment_new", args=["clinic-a"]), form
    )
    assert response.status_code == 302
    assert Appointment.objects.get().reason == ""


def test_a_clinician_edits_the_reason(client_for, doctor, clinical):
    url = reverse("portal:appointment_edit", args=["clinic-a", clinical.pk])
    form = _edit_form(clinical, reason="follow-up", notes=CLINICAL_NOTES)
    assert client_for(doctor).post(url, form).status_code == 302
    clinical.refresh_from_db()
    assert clinical.reason == "follow-up"


def test_the_schedule_rows_carry_no_clinical_text(client_for, coordinator, doctor, clinical):
    day = timezone.localtime(clinical.starts_at, PARIS).date().isoformat()
    for staff in (coordinator, doctor):
        url = reverse("portal:today_rows", args=["clinic-a"]) + f"?date={day}"
        content = client_for(staff).get(url).content.decode()
        assert "Ana Lima" in content
        assert CLINICAL_REASON not in content


def test_a_nul_character_in_an_appointment_id_is_404(appointment, doctor, client_for):
    """PostgreSQL text cannot hold NUL: such an id names no appointment (it was a 500)."""
    response = client_for(doctor).get("/c/clinic-a/appointments/a%00b/")
    assert response.status_code == 404
