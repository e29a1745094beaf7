"""The join pages' JavaScript texts (the `djangojs` catalogue, bin/js_messages.py): every
language's catalogue is complete, compiled, consistent in its placeholders, and holds every text
the scripts mark; the page loads it in its own language, and right-to-left languages render the
page mirrored."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import polib
import pytest
from django.conf import settings

from appointments.links import join_link_path
from appointments.services.booking import appointment_cancel
from tests.calls.push.standins import vapid_keypair
from tests.factories import make_appointment

BASE_DIR = Path(settings.BASE_DIR)
LOCALE = BASE_DIR / "locale"
PLACEHOLDER = re.compile(r"%\(\w+\)s|%[sd%]")


def _load_script():
    path = BASE_DIR / "bin" / "js_messages.py"
    spec = importlib.util.spec_from_file_location("js_messages", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


js_messages = _load_script()
LANGUAGES = js_messages.LANGUAGES


def catalogue(language: str) -> polib.POFile:
    return polib.pofile(str(LOCALE / language / "LC_MESSAGES" / "djangojs.po"))


def entry_key(entry) -> tuple[str, str, str]:
    return (entry.msgctxt or "", entry.msgid, entry.msgid_plural or "")


def problems_of(po: polib.POFile, nplurals: int) -> list[str]:
    """What makes a catalogue incomplete: untranslated, fuzzy or obsolete entries, plural
    entries without every form, and placeholders that differ from the English."""
    found = []
    for entry in po:
        name = entry.msgid[:60]
        if "fuzzy" in entry.flags:
            found.append(f"fuzzy: {name}")
        if entry.obsolete:
            found.append(f"obsolete: {name}")
        if entry.msgid_plural:
            forms = [entry.msgstr_plural.get(i, "") for i in range(nplurals)]
            if len(entry.msgstr_plural) != nplurals or not all(forms):
                found.append(f"plural forms missing: {name}")
            wanted = set(PLACEHOLDER.findall(entry.msgid)) | set(
                PLACEHOLDER.findall(entry.msgid_plural)
            )
        else:
            forms = [entry.msgstr]
            if not entry.msgstr:
                found.append(f"untranslated: {name}")
            wanted = set(PLACEHOLDER.findall(entry.msgid))
        for form in forms:
            if form and set(PLACEHOLDER.findall(form)) != wanted:
                found.append(f"placeholders differ: {name} → {form}")
    found += [f"obsolete: {e.msgid[:60]}" for e in po.obsolete_entries()]
    return found


def nplurals_of(po: polib.POFile) -> int:
    match = re.search(r"nplurals\s*=\s*(\d+)", po.metadata.get("Plural-Forms", ""))
    return int(match.group(1)) if match else 0


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_catalogue_is_complete(language):
    po = catalogue(language)
    assert po.metadata["Language"] == language
    assert nplurals_of(po) == (6 if language == "ar" else 2)
    assert not po.metadata_is_fuzzy
    assert len(po) > 50  # the scripts' texts, not an empty file
    assert problems_of(po, nplurals_of(po)) == []


def test_the_completeness_check_can_fail(tmp_path):
    """Untranslated, fuzzy, a missing Arabic plural form, a changed placeholder: each is named."""
    po = polib.POFile()
    po.metadata = {"Plural-Forms": js_messages.PLURAL_FORMS["ar"]}
    po.append(polib.POEntry(msgid="Chat", msgstr=""))
    po.append(polib.POEntry(msgid="Live", msgstr="مباشر", flags=["fuzzy"]))
    po.append(
        polib.POEntry(
            msgid="in about %(n)s minute",
            msgid_plural="in about %(n)s minutes",
            msgstr_plural=dict.fromkeys(range(5), "خلال %(n)s دقيقة"),
        )
    )
    po.append(polib.POEntry(msgid="%(name)s joined.", msgstr="انضم %(nom)s إلى المكالمة."))
    found = problems_of(po, nplurals_of(po))
    assert [p.split(":")[0] for p in found] == [
        "untranslated",
        "fuzzy",
        "plural forms missing",
        "placeholders differ",
    ]


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_compiled_catalogue_matches_its_source(language):
    """The committed .mo holds exactly the .po's translations (run bin/js_messages.py after
    editing a .po): the README's commands serve the .mo, never compile it."""
    po = catalogue(language)
    mo = polib.mofile(str(LOCALE / language / "LC_MESSAGES" / "djangojs.mo"))

    def translations(entries):
        out = {}
        for e in entries:
            if e.msgid == "":
                continue
            value = tuple(sorted(e.msgstr_plural.items())) if e.msgid_plural else e.msgstr
            out[entry_key(e)] = value
        return out

    assert translations(mo) == translations(po.translated_entries())
    assert mo.metadata.get("Plural-Forms") == po.metadata.get("Plural-Forms")


def test_the_catalogues_hold_every_text_the_scripts_mark(tmp_path):
    """A fresh extraction (makemessages -d djangojs, GNU gettext) over a copy of the scripts
    finds the same texts as the committed catalogues: a new gettext("…") in a script, or a
    changed one, fails here until bin/js_messages.py has translated it."""
    if not shutil.which("xgettext"):
        pytest.fail("GNU gettext is not installed (apt-get install gettext; bin/test does it)")
    js_messages.copy_scripts(tmp_path)
    for language in LANGUAGES:
        (tmp_path / "locale" / language / "LC_MESSAGES").mkdir(parents=True)
    js_messages.extract(tmp_path, LANGUAGES)
    for language in LANGUAGES:
        fresh = polib.pofile(str(tmp_path / "locale" / language / "LC_MESSAGES" / "djangojs.po"))
        committed = catalogue(language)
        extracted = {entry_key(e) for e in fresh}
        kept = {entry_key(e) for e in committed}
        assert extracted - kept == set(), f"{language}: texts the catalogue lacks"
        assert kept - extracted == set(), f"{language}: texts no script marks any more"


def test_the_extraction_check_sees_a_new_text(tmp_path):
    """The comparison above can fail: a script with one more marked text extracts it."""
    if not shutil.which("xgettext"):
        pytest.fail("GNU gettext is not installed (apt-get install gettext; bin/test does it)")
    js_messages.copy_scripts(tmp_path)
    extra = tmp_path / "appointments" / "static" / "join" / "extra.js"
    extra.write_text('var label = gettext("A text nobody translated");\n')
    (tmp_path / "locale" / "fr" / "LC_MESSAGES").mkdir(parents=True)
    js_messages.extract(tmp_path, ["fr"])
    fresh = polib.pofile(str(tmp_path / "locale" / "fr" / "LC_MESSAGES" / "djangojs.po"))
    extracted = {entry_key(e) for e in fresh}
    kept = {entry_key(e) for e in catalogue("fr")}
    assert extracted - kept == {("", "A text nobody translated", "")}


# --- the pages ----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("accept", "lang", "direction"),
    [("fr-FR,fr;q=0.9", "fr", "ltr"), ("ar", "ar", "rtl"), ("en-GB", "en", "ltr")],
)
def test_the_join_page_names_its_language_and_direction_and_loads_its_catalogue(
    client, clinic, doctor, patient, accept, lang, direction
):
    patient.preferred_language = ""  # none chosen: the browser's (appointments.languages)
    patient.save(update_fields=["preferred_language"])
    appointment = make_appointment(clinic, host=doctor, patient=patient)
    page = client.get(join_link_path(appointment), HTTP_ACCEPT_LANGUAGE=accept)
    assert page.status_code == 200
    html = page.content.decode()
    assert f'<html lang="{lang}" dir="{direction}">' in html
    # The catalogue comes first, in the page's language, then the scripts that use it.
    catalogue_at = html.index(f'src="/jsi18n/{lang}/"')
    assert catalogue_at < html.index("join/room.js")
    assert catalogue_at < html.index("join/lobby.js")


# The scripts that show a text, each of which reads gettext & co from the window.
TEXT_SCRIPTS = ["join/stage.js", "join/chat.js", "join/room.js", "join/lobby.js", "join/notify.js"]


def _scripts_after_catalogue_and_fallback(html: str, lang: str) -> list[str]:
    """The text scripts this page loads, each checked to come after the catalogue and then
    join/i18n.js (deferred scripts run in document order)."""
    catalogue_at = html.index(f'src="/jsi18n/{lang}/"')
    fallback_at = html.index("join/i18n.js")
    assert catalogue_at < fallback_at
    loaded = [name for name in TEXT_SCRIPTS if name in html]
    for name in loaded:
        assert fallback_at < html.index(name), name
    return loaded


@pytest.mark.django_db
def test_every_text_script_comes_after_the_catalogue_and_its_one_fallback(
    client, clinic, doctor, patient, settings
):
    """Open, the room loads all five (the waiting room's and "Notify me"'s included); closed
    (cancelled), none of them, so it needs neither."""
    settings.WEBPUSH_VAPID_PRIVATE_KEY, _public = vapid_keypair()
    settings.WEBPUSH_VAPID_SUBJECT = "mailto:ops@clinic.example"
    patient.preferred_language = "fr"
    patient.save(update_fields=["preferred_language"])
    appointment = make_appointment(clinic, host=doctor, patient=patient)
    html = client.get(join_link_path(appointment)).content.decode()
    assert _scripts_after_catalogue_and_fallback(html, "fr") == TEXT_SCRIPTS
    appointment_cancel(appointment=appointment, by=doctor)
    html = client.get(join_link_path(appointment)).content.decode()
    assert 'id="room-closed"' in html
    assert [name for name in TEXT_SCRIPTS if name in html] == []


def test_no_script_keeps_a_fallback_of_its_own():
    """join/i18n.js is the one fallback for a catalogue that did not load: a script that
    defined its own (`window.gettext || …`) would drift from it."""
    static = BASE_DIR / "appointments" / "static" / "join"
    own = re.compile(r"window\.(n|p)?gettext\s*\|\||window\.interpolate\s*\|\|")
    keeping = sorted(f.name for f in static.glob("*.js") if own.search(f.read_text()))
    assert keeping == ["i18n.js"]


@pytest.mark.django_db
def test_the_catalogue_is_in_the_language_its_url_names_whatever_the_browser_says(client):
    """The page's language may be the patient's choice, not the browser's: the URL wins."""
    answer = client.get("/jsi18n/ar/", HTTP_ACCEPT_LANGUAGE="fr")
    assert answer.status_code == 200
    assert answer["Content-Language"] == "ar"
    body = answer.content.decode()
    catalog = json.loads(re.search(r"const newcatalog = (\{.*?\});\n", body, re.S).group(1))
    assert catalog["Live"] == "مباشر"
    assert len(catalog["in about %(n)s minute"]) == 6
    assert "n%100>=11" in body  # Arabic's plural rule, for ngettext
    french = client.get("/jsi18n/fr/", HTTP_ACCEPT_LANGUAGE="ar").content.decode()
    assert "En direct" in french
    assert client.get("/jsi18n/xx/").status_code == 404


@pytest.mark.django_db
def test_the_pages_csp_lets_the_catalogue_run(client, clinic, doctor, patient):
    """Same origin: the page's script-src ('self') covers /jsi18n/."""
    appointment = make_appointment(clinic, host=doctor, patient=patient)
    page = client.get(join_link_path(appointment), HTTP_ACCEPT_LANGUAGE="fr")
    policy = page["Content-Security-Policy"]
    script_src = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
    assert "'self'" in script_src.split()


def differing_translations(server: polib.POFile, script: polib.POFile) -> list[str]:
    """Texts both the templates (`django`) and the scripts (`djangojs`) say, translated two
    ways: a control would change its words when a script relabels it (Mute → Unmute → Mute),
    and an aria-label set by a script would stop matching the visible label."""
    said = {entry_key(e): e for e in server.translated_entries()}
    found = []
    for entry in script.translated_entries():
        other = said.get(entry_key(entry))
        if other is None:
            continue
        if (other.msgstr, other.msgstr_plural) != (entry.msgstr, entry.msgstr_plural):
            found.append(f"{entry.msgid!r}: {other.msgstr!r} / {entry.msgstr!r}")
    return found


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_text_in_both_catalogues_reads_the_same(language):
    server = LOCALE / language / "LC_MESSAGES" / "django.po"
    if not server.exists():  # the templates' catalogue comes from its own branch
        return
    assert differing_translations(polib.pofile(str(server)), catalogue(language)) == []


def test_the_cross_catalogue_check_can_fail():
    server, script = polib.POFile(), polib.POFile()
    server.append(polib.POEntry(msgid="Mute", msgstr="Muet"))
    server.append(polib.POEntry(msgid="Chat", msgstr="Discussion"))
    script.append(polib.POEntry(msgid="Mute", msgstr="Couper le micro"))
    script.append(polib.POEntry(msgid="Chat", msgstr="Discussion"))
    assert differing_translations(server, script) == ["'Mute': 'Muet' / 'Couper le micro'"]
