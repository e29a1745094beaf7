"""The join page's end states, in a real browser: each is said once, with a next step that
works (issue 15: "You were removed from the call" three times and a "Join again" that could
not work after the link was replaced; "The call has ended" twice beside "starts at")."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from appointments.links import join_link_path
from appointments.services.join_links import appointment_link_replace
from appointments.services.status import appointment_call_action
from tests.factories import make_appointment

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def in_the_lobby(app_server, launch_chromium, appointment):
    page = launch_chromium(width=390, height=844)
    page.goto(f"{app_server.url}{join_link_path(appointment)}")
    join = page.get_by_role("button", name="Enter the waiting room")
    expect(join).to_be_enabled()
    join.click()
    expect(page.locator("#room-status")).to_contain_text("running late")
    return page


def visible_text(page) -> str:
    return page.locator("body").inner_text()


def test_a_replaced_link_says_so_once_and_offers_no_join_again(
    app_server, launch_chromium, console, eager_tasks, clinic, doctor, patient
):
    start = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=2)
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=start)
    page = in_the_lobby(app_server, launch_chromium, appointment)

    appointment_link_replace(appointment=appointment, by=doctor)
    expect(page.locator("#h-finished")).to_have_text("This link no longer works")
    expect(page.locator("#finished-text")).to_contain_text("new link")
    expect(page.get_by_role("button", name="Join again")).to_be_hidden()
    page.wait_for_timeout(1500)  # the second close (the token re-check) changes nothing
    expect(page.locator("#h-finished")).to_have_text("This link no longer works")
    text = visible_text(page)
    assert "removed" not in text.lower()
    assert text.count("This link no longer works") == 1
    assert "starts at" not in text
    assert console.errors == []  # the link check is answered with JSON, not a 403


def test_the_end_of_the_call_is_said_once_without_the_start_time(
    app_server, launch_chromium, console, eager_tasks, clinic, doctor, patient
):
    start = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=2)
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=start)
    page = in_the_lobby(app_server, launch_chromium, appointment)

    appointment_call_action(appointment=appointment, staff=doctor, action="end")
    expect(page.locator("#h-finished")).to_have_text("The call has ended")
    text = visible_text(page)
    assert text.count("The call has ended") == 1
    assert "starts at" not in text
    expect(page.get_by_role("button", name="Join again")).to_be_hidden()
    assert console.errors == []
