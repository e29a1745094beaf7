"""The patient's call experience in French and in Arabic, in real browsers: a patient whose
browser asks for the language (Playwright's `locale` sets Accept-Language and the browser's own
language) opens their link in a live call. The waiting room's words (lobby.js) and, once the
clinician is in, the call screen's (room.js, stage.js) come from the JavaScript catalogue in
that language; the Arabic page is right to left and mirrored: its self-view sits at the left,
its Leave button at the left end of the control bar, its chat panel on the left.

Screenshots (phone 390x844, desktop 1280x800) go to the temporary directory: looked at, never
committed."""

from __future__ import annotations

import datetime as dt
import re
import tempfile

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from appointments.links import guest_link_path, join_link_path
from appointments.services.guests import appointment_guest_invite
from appointments.services.status import appointment_call_action
from appointments.services.waiting import appointment_lobby_message
from tests.browser.test_video_browser import enter, sign_in
from tests.factories import make_appointment

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SHOTS = tempfile.gettempdir()
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

# What each language's page says, from the committed catalogues (bin/js_messages.py).
WORDS = {
    "fr": {
        "locale": "fr-FR",
        "dir": "ltr",
        "enter": "Entrer dans la salle d’attente",  # noqa: RUF001 (French apostrophe)
        "lobby": "Votre praticien va vous recevoir dans quelques instants. Merci de garder "
        "cette page ouverte.",
        "in_call": "Vous êtes dans l’appel.",  # noqa: RUF001
        "live": "En direct",
        "mute": "Couper le micro",
        "unmute": "Activer le micro",
        "camera_off": "Couper la caméra",
        "message": "Message de la clinique\u00a0: Nous arrivons",
    },
    "ar": {
        "locale": "ar",
        "dir": "rtl",
        "enter": "الدخول إلى غرفة الانتظار",
        "lobby": "سيكون طبيبك معك قريبًا. يُرجى إبقاء هذه الصفحة مفتوحة.",
        "in_call": "أنت الآن في المكالمة.",
        "live": "مباشر",
        "mute": "كتم الصوت",
        "unmute": "إلغاء الكتم",
        "camera_off": "إيقاف الكاميرا",
        "message": "رسالة من العيادة: Nous arrivons",
    },
}

BOXES = """() => {
  const box = (sel) => { const r = document.querySelector(sel).getBoundingClientRect();
    return {left: r.left, right: r.right, width: r.width}; };
  return {width: window.innerWidth, self: box("#self-tile"), leave: box("#leave"),
          mic: box("#mic-toggle"), chat: box("#chat-toggle")};
}"""

# Everything on the call screen lies inside the viewport, and no label spills out of its button.
OVERFLOWS = """() => {
  const out = [];
  for (const el of document.querySelectorAll("#call button, #call .ctl-label, #call p")) {
    if (el.offsetParent === null) continue;
    const r = el.getBoundingClientRect();
    if (r.left < -1 || r.right > window.innerWidth + 1 || r.bottom > window.innerHeight + 1) {
      out.push((el.id || el.className) + " outside");
    }
    if (el.classList.contains("ctl-label") && el.scrollWidth > el.clientWidth + 1) {
      out.push(el.parentElement.id + " label clipped");
    }
  }
  return out;
}"""


def live_appointment(clinic, doctor, patient, *, preferred_language: str):
    """An appointment that started a minute ago, its call live, for a patient with this
    language ("": none chosen)."""
    patient.preferred_language = preferred_language
    patient.save(update_fields=["preferred_language"])
    start = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=1)
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=start)
    appointment_call_action(appointment=appointment, staff=doctor, action="go_live")
    return appointment


@pytest.mark.parametrize("language", ["fr", "ar"])
def test_the_patient_waits_and_calls_in_their_language(
    app_server, launch_chromium, console, eager_tasks, clinic, doctor, patient, language
):
    words = WORDS[language]
    # No language chosen for the patient: their browser's (appointments.languages).
    appointment = live_appointment(clinic, doctor, patient, preferred_language="")
    base = app_server.url

    # --- the waiting room, in the patient's language ---
    page = launch_chromium(locale=words["locale"], **PHONE)
    page.goto(f"{base}{join_link_path(appointment)}")
    assert page.evaluate("document.documentElement.lang") == language
    assert page.evaluate("document.documentElement.dir") == words["dir"]
    enter(page, words["enter"])
    expect(page.locator("#room-status")).to_have_text(words["lobby"])
    # The clinic's lobby message, its bar on the side the text starts from.
    appointment_lobby_message(appointment=appointment, text="Nous arrivons")
    expect(page.locator("#lobby-message")).to_have_text(words["message"])
    bar = "right" if words["dir"] == "rtl" else "left"
    borders = page.eval_on_selector(
        "#lobby-message",
        "e => [getComputedStyle(e).borderLeftWidth, getComputedStyle(e).borderRightWidth]",
    )
    assert borders == (["0px", "4px"] if bar == "right" else ["4px", "0px"])
    page.screenshot(path=f"{SHOTS}/i18n-{language}-lobby-390x844.png", full_page=True)
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=f"{SHOTS}/i18n-{language}-lobby-1280x800.png", full_page=True)
    page.set_viewport_size(PHONE)

    # --- the clinician (an English browser) joins: the patient's call screen ---
    clinician = launch_chromium()
    sign_in(clinician, base, "drhouse")
    clinician.goto(f"{base}/c/clinic-a/appointments/{appointment.id}/join/")
    enter(clinician, "Join the call")
    expect(page.locator("#call")).to_be_visible()
    expect(page.locator(".tile-remote .tile-name")).to_have_text("Dr House")
    expect(page.locator("#room-status")).to_have_text(words["in_call"])
    expect(page.locator("#call-banner")).to_have_text(words["live"])
    expect(page.locator("#mic-toggle")).to_have_accessible_name(words["mute"])
    expect(page.locator("#cam-toggle")).to_have_accessible_name(words["camera_off"])
    expect(page.locator("#call-timer")).to_have_text(re.compile(r"^\d+:\d\d$"))
    expect(page.locator("#self-off")).to_be_hidden()
    # The clinician's English page keeps its own words.
    expect(clinician.locator("#mic-toggle")).to_have_accessible_name("Mute")

    # A control relabelled by the script stays in the language.
    page.locator("#mic-toggle").click()
    expect(page.locator("#mic-toggle")).to_have_accessible_name(words["unmute"])
    page.locator("#mic-toggle").click()
    expect(page.locator("#mic-toggle")).to_have_accessible_name(words["mute"])

    # --- the layout: mirrored right to left, as it was left to right otherwise ---
    for size, name in ((PHONE, "390x844"), (DESKTOP, "1280x800")):
        page.set_viewport_size(size)
        page.wait_for_timeout(300)  # the stage's layout after the resize
        boxes = page.evaluate(BOXES)
        middle = boxes["width"] / 2
        self_centre = boxes["self"]["left"] + boxes["self"]["width"] / 2
        if words["dir"] == "rtl":
            assert self_centre < middle, boxes  # the self-view at the inline end: left
            assert boxes["leave"]["right"] <= boxes["mic"]["left"], boxes  # Leave at the left end
        else:
            assert self_centre > middle, boxes
            assert boxes["leave"]["left"] >= boxes["mic"]["right"], boxes
        assert page.evaluate(OVERFLOWS) == [], name
        page.screenshot(path=f"{SHOTS}/i18n-{language}-call-{name}.png")

    # --- the chat panel opens at the inline end too ---
    page.locator("#chat-toggle").click()
    panel = page.locator("#chat-panel")
    expect(panel).to_be_visible()
    box = panel.bounding_box()
    width = DESKTOP["width"]
    if words["dir"] == "rtl":
        assert box["x"] < width / 2
    else:
        assert box["x"] + box["width"] > width / 2
    page.locator("#chat-input").fill("Bonjour" if language == "fr" else "مرحبًا")
    page.locator("#chat-send").click()
    expect(page.locator("#chat-log li.is-mine .chat-text")).to_have_count(1)
    page.screenshot(path=f"{SHOTS}/i18n-{language}-chat-1280x800.png")
    assert console.errors == []


def test_the_call_still_works_in_english_when_the_catalogue_fails_to_load(
    app_server, launch_chromium, console, eager_tasks, clinic, doctor, patient
):
    """/jsi18n/ answers 500: join/i18n.js's fallback gives the scripts gettext, ngettext,
    pgettext and interpolate, so the waiting room (lobby.js), the call screen (room.js,
    stage.js) and the chat (chat.js) still work, their words in English (the source texts)
    on a page whose server-rendered words are French. Nothing throws."""
    appointment = live_appointment(clinic, doctor, patient, preferred_language="fr")
    base = app_server.url

    page = launch_chromium(locale="fr-FR", **PHONE)
    refused = []

    def fail(route):
        refused.append(route.request.url)
        route.fulfill(status=500, content_type="text/plain", body="down")

    page.route("**/jsi18n/**", fail)
    page.goto(f"{base}{join_link_path(appointment)}")
    assert page.evaluate("document.documentElement.lang") == "fr"
    # room.js's label, in English
    expect(page.locator("#join-button")).to_have_text("Enter the waiting room")
    enter(page, "Enter the waiting room")
    expect(page.locator("#room-status")).to_have_text(
        "Your clinician will be with you shortly. Please keep this page open."
    )
    appointment_lobby_message(appointment=appointment, text="Nous arrivons")
    expect(page.locator("#lobby-message")).to_have_text("Message from the clinic: Nous arrivons")

    clinician = launch_chromium()
    sign_in(clinician, base, "drhouse")
    clinician.goto(f"{base}/c/clinic-a/appointments/{appointment.id}/join/")
    enter(clinician, "Join the call")
    expect(page.locator("#room-status")).to_have_text("You are in the call.")
    expect(page.locator("#call-banner")).to_have_text("Live")
    expect(page.locator("#mic-toggle")).to_have_accessible_name("Mute")
    expect(page.locator("#cam-toggle")).to_have_accessible_name("Camera off")
    expect(page.locator("#call-timer")).to_have_text(re.compile(r"^\d+:\d\d$"))
    page.locator("#chat-toggle").click()
    page.locator("#chat-input").fill("Bonjour")
    page.locator("#chat-send").click()
    expect(page.locator("#chat-log li.is-mine .chat-text")).to_have_text("Bonjour")

    assert refused == [f"{base}/jsi18n/fr/"]
    # The one error is the refused catalogue itself.
    assert [e for e in console.errors if "status of 500" not in e] == []
    assert len(console.errors) == 1


def test_a_guest_reads_their_browsers_language_else_the_patients(
    app_server, launch_chromium, console, eager_tasks, clinic, doctor, patient
):
    """The patient chose German. A guest whose browser asks for French gets French, the
    server's words and the scripts' (the catalogue follows the page); a guest whose browser
    asks for none of ours (Japanese) gets the patient's German, not English
    (appointments.languages, `guest=True`)."""
    patient.preferred_language = "de"
    patient.save(update_fields=["preferred_language"])
    start = timezone.now().replace(microsecond=0) + dt.timedelta(minutes=5)
    appointment = make_appointment(clinic, host=doctor, patient=patient, starts_at=start)
    french = appointment_guest_invite(appointment=appointment, by=doctor, name="Léa")
    japanese = appointment_guest_invite(appointment=appointment, by=doctor, name="Kenji")

    seen = [
        # (the guest, their browser's language, the page's, its title, button, status)
        (
            french,
            "fr-FR",
            "fr",
            "Rendez-vous vidéo à Riverside Clinic",
            WORDS["fr"]["enter"],
            "Vous êtes dans la salle d’attente. Le rendez-vous commence à",  # noqa: RUF001
        ),
        (
            japanese,
            "ja-JP",
            "de",
            "Videotermin bei Riverside Clinic",
            "Wartezimmer betreten",
            "Sie sind im Wartezimmer. Der Termin beginnt um",
        ),
    ]
    for guest, locale, lang, title, button, status in seen:
        page = launch_chromium(locale=locale, **PHONE)
        page.goto(f"{app_server.url}{guest_link_path(guest)}")
        assert page.evaluate("document.documentElement.lang") == lang
        expect(page.locator("#room-title")).to_have_text(title)
        enter(page, button)
        expect(page.locator("#room-status")).to_contain_text(status)
    assert console.errors == []
