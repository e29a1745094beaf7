"""A clinic admin's first sign-in in a real browser: password, then the two-factor set-up (the
QR code and the key, a code from the "authenticator app" computed here), then the schedule;
the page keeps to the content security policy (no console errors)."""

from __future__ import annotations

import base64
import re

import pytest
from django_otp.oath import totp
from playwright.sync_api import expect

from tests.factories import make_staff

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_clinic_admin_sets_up_two_factor_on_first_sign_in(app_server, new_page, console, clinic):
    make_staff(clinic, "chief", role="admin", display_name="Dr Chief")
    page = new_page()
    page.goto(f"{app_server.url}/c/clinic-a/today/")
    expect(page).to_have_title(re.compile("Sign in"))
    page.get_by_label("Username").fill("chief")
    page.get_by_label("Password").fill("pw-test-1")
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_title(re.compile("Two-factor"))
    expect(page.locator(".qr svg")).to_be_visible()
    secret = page.locator("code.secret").inner_text()
    code = totp(base64.b32decode(secret), step=30, digits=6)
    page.get_by_label("Code from your authenticator app").fill(f"{code:06d}")
    page.get_by_role("button", name="Turn on").click()

    expect(page).to_have_url(f"{app_server.url}/c/clinic-a/today/")
    expect(page.get_by_role("link", name="Schedule")).to_be_visible()
    assert console.errors == []
