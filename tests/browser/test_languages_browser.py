"""The join page in the patient's language, in a real browser (issue 16: "French and Arabic
pages are rendered in the browser and checked (text and `dir`)"): a patient whose preferred
language is French, then Arabic, opens their link in a browser that asks for English, enters
the waiting room of a live call with no clinician yet, and reads the page in their language;
Arabic is laid out right to left, on a phone and on a desktop, with nothing wider than the
screen. Screenshots (phone and desktop) go to the temporary directory, to be looked at."""

from __future__ import annotations

import datetime as dt
import html
import tempfile
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from appointments.links import join_link_path
from appointments.services.status import appointment_call_action
from tests.factories import make_appointment, make_patient

SHOTS = Path(tempfile.gettempdir())  # looked at, never committed

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# (language, time zone, the page's heading, the join button, the waiting room's words, a word
# of the start's date)
CASES = {
    "fr": (
        "Europe/Paris",
        "Votre rendez-vous vidéo",
        "Entrer dans la salle d’attente",  # noqa: RUF001 - French typography
        "Votre praticien va vous recevoir dans quelques instants. "
        "Merci de garder cette page ouverte.",
        "votre heure",
    ),
    "ar": (
        "Asia/Riyadh",
        "موعدك عبر الفيديو",
        "الدخول إلى غرفة الانتظار",
        "سيكون طبيبك معك قريبًا. يُرجى إبقاء هذه الصفحة مفتوحة.",
        "بتوقيتك:",
    ),
}

# Where the heading's text sits in its card: its gaps to the card's left and right edges.
TEXT_GAPS = """() => {
  const h1 = document.getElementById("room-title");
  const range = document.createRange();
  range.selectNodeContents(h1);
  const text = range.getBoundingClientRect();
  const card = h1.closest(".card").getBoundingClientRect();
  return {left: text.left - card.left, right: card.right - text.right};
}"""
# Elements whose content is cut off sideways (wider than their box and hidden), and whether
# the page scrolls sideways.
CLIPPED = """() => {
  const cut = [...document.querySelectorAll("main *")].filter(el => {
    if (!el.offsetParent) return false;
    const style = getComputedStyle(el);
    return el.scrollWidth > el.clientWidth + 1 && ["hidden", "clip"].includes(style.overflowX);
  }).map(el => el.id || el.className || el.tagName);
  return {cut, sideways: document.documentElement.scrollWidth > window.innerWidth};
}"""


@pytest.mark.parametrize("language", list(CASES))
def test_the_join_page_speaks_the_patients_language(
    language, app_server, launch_chromium, console, eager_tasks, clinic, doctor
):
    zone, heading, button, waiting, date_words = CASES[language]
    patient = make_patient(
        clinic,
        name="Patient",
        email=f"{language}@example.com",
        time_zone=zone,
        preferred_language=language,
    )
    # Starts in 5 minutes, already live, no clinician in it: the patient waits in the lobby.
    start = timezone.now().replace(microsecond=0) + dt.timedelta(minutes=5)
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=start)
    appointment_call_action(appointment=appointment, staff=doctor, action="go_live")
    url = f"{app_server.url}{join_link_path(appointment)}"

    for width, height, size in ((390, 844, "phone"), (1280, 800, "desktop")):
        page = launch_chromium(width=width, height=height)
        page.set_extra_http_headers({"Accept-Language": "en-US,en;q=0.9"})
        response = page.goto(url)
        # The join button's label as the server wrote it (the page's scripts then keep it in
        # step with the call, in the djangojs domain).
        assert button in html.unescape(response.text())
        expect(page.locator("html")).to_have_attribute("lang", language)
        direction = "rtl" if language == "ar" else "ltr"
        assert page.evaluate("document.documentElement.dir") == direction
        expect(page.locator("#room-title")).to_have_text(heading)
        expect(page.locator("#room-when")).to_contain_text(date_words)
        expect(page.locator("#room-when")).to_contain_text(zone)
        expect(page.locator("#join-button")).to_be_enabled()
        expect(page.locator("#h-prejoin")).not_to_have_text("Check your camera and microphone")
        page.locator("#join-button").click()
        expect(page.locator("#room-status")).to_have_text(waiting)
        expect(page.locator("#call")).to_be_hidden()

        gaps = page.evaluate(TEXT_GAPS)
        if language == "ar":  # mirrored: the heading starts at the card's right edge
            assert gaps["right"] < gaps["left"], gaps
        else:
            assert gaps["left"] < gaps["right"], gaps
        assert page.evaluate(CLIPPED) == {"cut": [], "sideways": False}
        page.screenshot(path=str(SHOTS / f"join-{language}-{size}.png"), full_page=True)
    assert console.errors == []
