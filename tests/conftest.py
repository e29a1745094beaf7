import logging

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client

from calls.capabilities import SERVER
from config import celery_app
from tests.factories import NOW, ClinicFactory, login_verified, make_patient, make_staff
from tests.mail import SMTPServer, use_smtp_server


@pytest.fixture
def server_actor():
    return SERVER


@pytest.fixture
def eager_tasks():
    """Run Celery tasks in-process for tests that are not about delivery."""
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = previous


@pytest.fixture
def smtp_server(settings):
    """A real SMTP server (aiosmtpd) on 127.0.0.1, with Django's SMTP backend sending to it
    (tests/mail.py: `.messages`, `.to(address)`, `.refuse(address)`, `.stop()`).

    The server's own log (logger "mail.log", which names every recipient) stays out of the
    test's log capture: it stands for the mail provider, and `caplog` checks are about ours."""
    server = SMTPServer()
    server_log = logging.getLogger("mail.log")
    disabled = server_log.disabled
    server_log.disabled = True  # not propagate=False: pytest's capture attaches to those too
    server.start()
    use_smtp_server(settings, server)
    yield server
    server.stop()
    server_log.disabled = disabled


@pytest.fixture(autouse=True)
def _builtin_call_types(request):
    """Built-in call types come from a data migration, which a transactional test's flush
    removes; put them back for every test that uses the database."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        return
    transactional = marker.kwargs.get("transaction", False)
    request.getfixturevalue("transactional_db" if transactional else "db")
    from calls.services.call_types import call_types_ensure_builtin

    call_types_ensure_builtin()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- clinic personas (tests/appointments, tests/browser) -------------------------------------
# `doctor` (a clinician of `clinic`, the usual host), `colleague` (another clinician there),
# `interpreter` (a clinician there who interprets), `coordinator` (the front desk there, in no
# call), `outsider` (a clinician of `other_clinic`); `patient` and `other_patient` of `clinic`;
# `stranger_client`, signed in as a user who is not staff.
# Staff sign in with make_staff's password, "pw-test-1".


@pytest.fixture
def clinic():
    return ClinicFactory(slug="clinic-a", name="Riverside Clinic", time_zone="Europe/Paris")


@pytest.fixture
def other_clinic():
    return ClinicFactory(slug="clinic-b", name="Hillside Clinic", time_zone="America/New_York")


@pytest.fixture
def doctor(clinic):
    return make_staff(clinic, "drhouse", display_name="Dr House")


@pytest.fixture
def colleague(clinic):
    return make_staff(clinic, "drwilson", display_name="Dr Wilson")


@pytest.fixture
def interpreter(clinic):
    return make_staff(clinic, "ivan", display_name="Ivan Interpreter")


@pytest.fixture
def coordinator(clinic):
    return make_staff(clinic, "desk", role="coordinator", display_name="Front Desk")


@pytest.fixture
def outsider(other_clinic):
    return make_staff(other_clinic, "drbee", display_name="Dr Bee")


@pytest.fixture
def patient(clinic):
    return make_patient(
        clinic, name="Ana Lima", email="ana@example.com", time_zone="America/Recife"
    )


@pytest.fixture
def other_patient(clinic):
    return make_patient(clinic, name="Bruno Costa", email="bruno@example.com")


@pytest.fixture
def client_for():
    """`client_for(staff)`: a test client signed in as that staff member (past the two-factor
    step for those who must pass it: tests.factories.login_verified)."""

    def signed_in(staff) -> Client:
        client = Client()
        login_verified(client, staff.user)
        return client

    return signed_in


@pytest.fixture
def stranger_client():
    """A test client signed in as a user who is not staff."""
    user = get_user_model().objects.create_user("nobody", "", "pw-test-1")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(admin_user):
    """pytest-django's superuser client, past the two-factor step superusers must pass."""
    client = Client()
    login_verified(client, admin_user)
    return client


@pytest.fixture
def frozen():
    """The clock at tests.factories.NOW; `frozen.move_to(...)` moves it (ticking stopped)."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller
