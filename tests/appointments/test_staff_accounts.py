"""Staff accounts: sign-in throttling (django-axes), the demo passwords with DEBUG off, idle and
absolute session limits, two-factor authentication (django-otp TOTP) and the password reset
by email. Personas: `doctor` (a clinician, two-factor optional), `chief` (a clinic admin, two-
factor required), a superuser."""

from __future__ import annotations

import datetime as dt
import logging
import re

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from appointments import demo
from tests.factories import make_staff

pytestmark = pytest.mark.django_db

PASSWORD = "pw-test-1"  # make_staff's


@pytest.fixture
def chief(clinic):
    return make_staff(clinic, "chief", role="admin", display_name="Dr Chief")


@pytest.fixture
def root():
    return get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)


def sign_in(client: Client, username: str, password: str = PASSWORD):
    return client.post(reverse("portal:login"), {"username": username, "password": password})


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def current_code(device: TOTPDevice, *, offset: int = 0) -> str:
    """What the authenticator app shows now (django_otp's own TOTP)."""
    code = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=offset)
    return f"{code:0{device.digits}d}"


# --- throttling -------------------------------------------------------------------------------


def test_thirty_wrong_passwords_then_the_right_one_is_refused(doctor):
    client = Client()
    for _ in range(30):
        sign_in(client, "drhouse", "wrong-password")
    response = sign_in(client, "drhouse")
    assert response.status_code == 429
    assert not signed_in(client)
    assert "Too many attempts" in response.content.decode()


def test_the_lockout_is_per_username_and_address(doctor, colleague):
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(10):
        sign_in(attacker, "drhouse", "wrong-password")
    assert sign_in(attacker, "drhouse").status_code == 429
    # The same user from another address, and another user from the attacker's address, are not
    # locked out.
    assert sign_in(Client(REMOTE_ADDR="198.51.100.2"), "drhouse").status_code == 302
    assert sign_in(Client(REMOTE_ADDR="203.0.113.7"), "drwilson").status_code == 302


def test_the_lockout_ends_after_the_cool_off(doctor, settings):
    with time_machine.travel(dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC), tick=False) as clock:
        client = Client()
        for _ in range(6):
            sign_in(client, "drhouse", "wrong-password")
        assert sign_in(client, "drhouse").status_code == 429
        clock.shift(settings.AXES_COOLOFF_TIME + dt.timedelta(seconds=1))
        assert sign_in(client, "drhouse").status_code == 302


def test_the_django_admin_sign_in_is_throttled_too(root):
    client = Client()
    for _ in range(10):
        client.post("/admin/login/", {"username": "root", "password": "wrong-password"})
    response = client.post("/admin/login/?next=/admin/", {"username": "root", "password": PASSWORD})
    assert response.status_code == 429
    assert not signed_in(client)


# --- demo credentials -------------------------------------------------------------------------


@pytest.mark.parametrize("debug", [False, True])
def test_the_demo_passwords_work_only_with_debug_on(settings, debug):
    settings.DEBUG = debug
    get_user_model().objects.create_superuser(demo.ADMIN_USERNAME, "", demo.ADMIN_PASSWORD)
    portal, admin = Client(), Client()
    sign_in(portal, demo.ADMIN_USERNAME, demo.ADMIN_PASSWORD)
    admin.post(
        "/admin/login/?next=/admin/",
        {"username": demo.ADMIN_USERNAME, "password": demo.ADMIN_PASSWORD},
    )
    assert signed_in(portal) is debug
    assert signed_in(admin) is debug


def test_a_demo_staff_password_is_refused_with_debug_off(clinic, settings):
    settings.DEBUG = False
    make_staff(clinic, "desk2", role="coordinator", password=demo.STAFF_PASSWORD)
    client = Client()
    response = sign_in(client, "desk2", demo.STAFF_PASSWORD)
    assert response.status_code == 200  # the form again, with its error
    assert not signed_in(client)


# --- session limits ---------------------------------------------------------------------------


def test_an_idle_session_ends(doctor, clinic, settings):
    settings.SESSION_IDLE_TIMEOUT_SECONDS = 30 * 60
    today = reverse("portal:today", args=[clinic.slug])
    with time_machine.travel(dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC), tick=False) as clock:
        client = Client()
        sign_in(client, "drhouse")
        assert client.get(today).status_code == 200
        clock.shift(dt.timedelta(minutes=29))
        assert client.get(today).status_code == 200  # active: the idle time starts again
        clock.shift(dt.timedelta(minutes=29))
        assert client.get(today).status_code == 200
        clock.shift(dt.timedelta(minutes=31))
        response = client.get(today)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("portal:login"))
    assert not signed_in(client)


def test_a_busy_session_still_ends_at_its_maximum_age(doctor, clinic, settings):
    settings.SESSION_IDLE_TIMEOUT_SECONDS = 30 * 60
    settings.SESSION_MAX_AGE_SECONDS = 2 * 3600
    today = reverse("portal:today", args=[clinic.slug])
    with time_machine.travel(dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC), tick=False) as clock:
        client = Client()
        sign_in(client, "drhouse")
        for _ in range(7):  # a request every 20 minutes: never idle
            assert client.get(today).status_code == 200
            clock.shift(dt.timedelta(minutes=20))
        response = client.get(today)  # 2 h 20 after sign-in
    assert response.status_code == 302
    assert not signed_in(client)


# --- two-factor authentication ----------------------------------------------------------------


def test_a_clinic_admin_sets_up_totp_on_first_sign_in_then_verifies_each_time(chief, clinic):
    today = reverse("portal:today", args=[clinic.slug])
    client = Client()
    sign_in(client, "chief")
    # Password accepted, but every page waits for the second step: set up a device first.
    response = client.get(today)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("portal:two_factor"))
    setup = client.get(response["Location"])
    assert "Scan this code" in setup.content.decode()
    assert "<svg" in setup.content.decode()
    device = TOTPDevice.objects.get(user=chief.user, confirmed=False)
    wrong = client.post(reverse("portal:two_factor"), {"token": "000000", "next": today})
    assert wrong.status_code == 200
    assert client.get(today).status_code == 302
    # A failure holds the device back a second (django-otp's throttling), then the code works.
    with time_machine.travel(dt.datetime.now(tz=dt.UTC) + dt.timedelta(seconds=5)):
        code = current_code(device)
        done = client.post(reverse("portal:two_factor"), {"token": code, "next": today})
        assert done.status_code == 302
        assert done["Location"] == today
        assert client.get(today).status_code == 200
    device.refresh_from_db()
    assert device.confirmed

    # The next sign-in asks for a code from the same device.
    later = Client()
    sign_in(later, "chief")
    assert later.get(today).status_code == 302
    page = later.get(reverse("portal:two_factor"))
    assert "Scan this code" not in page.content.decode()
    with time_machine.travel(dt.datetime.now(tz=dt.UTC) + dt.timedelta(minutes=2)):
        code = current_code(device)  # a fresh time step: a code is accepted once
        assert later.post(reverse("portal:two_factor"), {"token": code}).status_code == 302
        assert later.get(today).status_code == 200


def test_the_admin_site_waits_for_a_superusers_second_step(root):
    client = Client()
    client.post("/admin/login/?next=/admin/", {"username": "root", "password": PASSWORD})
    assert signed_in(client)
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("portal:two_factor"))


def test_a_clinician_may_opt_in_and_is_then_asked_for_codes(doctor, clinic):
    today = reverse("portal:today", args=[clinic.slug])
    client = Client()
    sign_in(client, "drhouse")
    assert client.get(today).status_code == 200  # optional: no second step yet
    assert "Set up" in client.get(reverse("portal:two_factor")).content.decode()
    client.get(reverse("portal:two_factor") + "?setup=1")
    device = TOTPDevice.objects.get(user=doctor.user)
    client.post(reverse("portal:two_factor"), {"token": current_code(device)})
    device.refresh_from_db()
    assert device.confirmed

    later = Client()
    sign_in(later, "drhouse")
    assert later.get(today).status_code == 302  # opted in: the step is owed from now on


def test_a_clinic_admin_cannot_turn_two_factor_off(chief, client_for):
    client = client_for(chief)
    client.post(reverse("portal:two_factor"), {"action": "disable"})
    assert TOTPDevice.objects.filter(user=chief.user, confirmed=True).exists()


def test_the_demo_superuser_skips_two_factor_only_with_debug_on(settings):
    settings.DEBUG = True
    get_user_model().objects.create_superuser(demo.ADMIN_USERNAME, "", demo.ADMIN_PASSWORD)
    client = Client()
    client.post(
        "/admin/login/?next=/admin/",
        {"username": demo.ADMIN_USERNAME, "password": demo.ADMIN_PASSWORD},
    )
    assert client.get("/admin/").status_code == 200
    settings.DEBUG = False
    assert client.get("/admin/").status_code == 302


# --- password reset ---------------------------------------------------------------------------


def test_password_reset_by_email(doctor, clinic):
    doctor.user.email = "house@example.com"
    doctor.user.save()
    client = Client()
    page = client.get(reverse("portal:login"))
    assert reverse("portal:password_reset") in page.content.decode()
    response = client.post(reverse("portal:password_reset"), {"email": "house@example.com"})
    assert response["Location"] == reverse("portal:password_reset_done")
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/\s]+(/account/reset/\S+/)", mail.outbox[0].body)
    assert link is not None, mail.outbox[0].body
    form = client.get(link[1], follow=True)
    assert "Choose a new password" in form.content.decode()
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a-new-long-passphrase", "new_password2": "a-new-long-passphrase"},
    )
    assert done["Location"] == reverse("portal:password_reset_complete")
    assert sign_in(Client(), "drhouse", "a-new-long-passphrase").status_code == 302
    assert sign_in(Client(), "drhouse", PASSWORD).status_code == 200
    # The link works once.
    assert "does not work" in client.get(link[1], follow=True).content.decode()


def test_password_reset_through_a_real_smtp_server(doctor, smtp_server):
    """The same reset, with the email sent by Django's SMTP backend (signed in to the server)
    and read back from what the server received."""
    doctor.user.email = "house@example.com"
    doctor.user.save()
    client = Client()
    response = client.post(reverse("portal:password_reset"), {"email": "house@example.com"})
    assert response["Location"] == reverse("portal:password_reset_done")
    (received,) = smtp_server.messages
    assert received.rcpt_tos == ["house@example.com"]
    assert received.login == smtp_server.username
    assert received.message["To"] == "house@example.com"
    link = re.search(r"https?://[^/\s]+(/account/reset/\S+/)", received.text)
    assert link is not None, received.text
    form = client.get(link[1], follow=True)
    assert "Choose a new password" in form.content.decode()
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a-new-long-passphrase", "new_password2": "a-new-long-passphrase"},
    )
    assert done["Location"] == reverse("portal:password_reset_complete")
    assert sign_in(Client(), "drhouse", "a-new-long-passphrase").status_code == 302
    assert sign_in(Client(), "drhouse", PASSWORD).status_code == 200


def _reset_mail_failure_is_quiet(client: Client, caplog, user) -> None:
    """The page says "sent" as usual; one warning names the user's id, no log line names the
    address (nor carries a traceback that would)."""
    with caplog.at_level(logging.DEBUG):
        response = client.post(reverse("portal:password_reset"), {"email": "house@example.com"})
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:password_reset_done")
    assert client.get(response["Location"]).status_code == 200
    assert "house@example.com" not in caplog.text  # the formatted lines, tracebacks included
    assert all(r.exc_info is None for r in caplog.records)
    failures = [r for r in caplog.records if "password reset email failed" in r.getMessage()]
    assert [(r.levelno, r.getMessage().split(": ")[0]) for r in failures] == [
        (logging.WARNING, f"password reset email failed for user {user.pk}")
    ]


def test_password_reset_when_the_smtp_server_is_down(doctor, smtp_server, caplog):
    doctor.user.email = "house@example.com"
    doctor.user.save()
    smtp_server.stop()
    _reset_mail_failure_is_quiet(Client(raise_request_exception=True), caplog, doctor.user)


def test_password_reset_when_the_smtp_server_refuses_the_address(doctor, smtp_server, caplog):
    doctor.user.email = "house@example.com"
    doctor.user.save()
    smtp_server.refuse("house@example.com")
    _reset_mail_failure_is_quiet(Client(raise_request_exception=True), caplog, doctor.user)
    assert smtp_server.messages == []


def test_password_reset_for_an_unknown_address_sends_nothing_and_says_the_same():
    response = Client().post(reverse("portal:password_reset"), {"email": "nobody@example.com"})
    assert response["Location"] == reverse("portal:password_reset_done")
    assert mail.outbox == []
