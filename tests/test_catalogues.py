"""The translation catalogues (locale/<lang>/LC_MESSAGES/django.po, docs/architecture.md
"Languages") are complete and the committed compiled files (.mo, so that a fresh machine needs
no gettext tools) are theirs:

- every entry of every language is translated, none fuzzy or obsolete, each plural entry has
  the language's number of forms (Arabic six), and the placeholders of a translation are the
  original's (`%(clinic)s`, `{name}`);
- each .mo holds exactly its .po's translations (a .po edited without compiling fails);
- the code's texts are the catalogues' texts: `makemessages` run over a copy of the project
  finds no text missing from them and none they keep for nothing.

The djangojs domain (the join pages' scripts) is checked the same way when it exists."""

from __future__ import annotations

import gettext
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polib
import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[1]
LOCALE = ROOT / "locale"
LANGUAGES = [code for code, _name in settings.LANGUAGES if code != "en"]
NPLURALS = {"fr": 2, "es": 2, "de": 2, "pt": 2, "ar": 6}
# What makemessages reads (the django domain's sources); the rest is not the app's text.
IGNORE = [
    ".venv",
    "tests",
    "bench",
    "node_modules",
    "test-artifacts",
    "docs",
    ".git",
    "staticfiles",
]
PLACEHOLDER = re.compile(r"%\(\w+\)[sdif]|%[sdif]|\{\w*\}")


def catalogue(lang: str, domain: str = "django") -> Path:
    return LOCALE / lang / "LC_MESSAGES" / f"{domain}.po"


def domains() -> list[str]:
    return [d for d in ("django", "djangojs") if catalogue("fr", d).exists()]


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text.replace("%%", "")))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_text_is_translated_with_its_placeholders(lang):
    assert set(LANGUAGES) == set(NPLURALS)
    for domain in domains():
        po = polib.pofile(str(catalogue(lang, domain)))
        assert not po.metadata_is_fuzzy, f"{lang} {domain}: the header is fuzzy"
        forms = re.match(r"nplurals=(\d+);", po.metadata.get("Plural-Forms", ""))
        assert forms, po.metadata.get("Plural-Forms")
        assert int(forms.group(1)) == NPLURALS[lang], po.metadata.get("Plural-Forms")
        assert po.metadata.get("Language") == lang
        problems = []
        for entry in po:
            name = f"{lang} {domain} {entry.msgid!r}"
            if entry.obsolete:
                problems.append(f"{name}: obsolete")
            elif "fuzzy" in entry.flags:
                problems.append(f"{name}: fuzzy")
            elif entry.msgid_plural:
                msgstrs = [entry.msgstr_plural.get(i, "") for i in range(NPLURALS[lang])]
                if len(entry.msgstr_plural) != NPLURALS[lang] or not all(msgstrs):
                    problems.append(f"{name}: {len(entry.msgstr_plural)} plural forms")
                    continue
                allowed = placeholders(entry.msgid) | placeholders(entry.msgid_plural)
                # A form for one number may leave the number out ("une minute"); the last
                # form (the general one) says it.
                if any(not placeholders(m) <= allowed for m in msgstrs) or placeholders(
                    msgstrs[-1]
                ) != placeholders(entry.msgid_plural):
                    problems.append(f"{name}: placeholders {msgstrs}")
            elif not entry.msgstr:
                problems.append(f"{name}: untranslated")
            elif placeholders(entry.msgstr) != placeholders(entry.msgid):
                problems.append(f"{name}: placeholders {entry.msgstr!r}")
        assert problems == []


@pytest.mark.parametrize("lang", LANGUAGES)
def test_each_compiled_catalogue_is_its_source(lang):
    for domain in domains():
        po = polib.pofile(str(catalogue(lang, domain)))
        mo_path = catalogue(lang, domain).with_suffix(".mo")
        assert mo_path.exists(), f"{mo_path} is not compiled: manage.py compilemessages"
        with mo_path.open("rb") as fp:
            compiled = gettext.GNUTranslations(fp)
        expected: dict = {}
        for entry in po.translated_entries():
            key = f"{entry.msgctxt}\x04{entry.msgid}" if entry.msgctxt else entry.msgid
            if entry.msgid_plural:
                for i, text in entry.msgstr_plural.items():
                    expected[(key, int(i))] = text
            else:
                expected[key] = entry.msgstr
        found = {k: v for k, v in compiled._catalog.items() if k != ""}  # "" is the header
        assert found == expected, f"{mo_path} is stale: manage.py compilemessages"
        assert compiled.plural(11) == (4 if lang == "ar" else 1)


def test_the_code_has_no_text_the_catalogues_lack(tmp_path):
    """makemessages over a copy of the project (its catalogues included) must change no
    entry: a text marked in the code and missing from the catalogues, or kept there after the
    code dropped it, fails here."""
    if shutil.which("xgettext") is None:
        pytest.fail("xgettext is not installed (apt-get install gettext; bin/test installs it)")
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*IGNORE, "__pycache__", "*.mo"))
    ignores = [f"--ignore={name}" for name in IGNORE]
    for domain in domains():
        subprocess.run(  # noqa: S603 - our own manage.py, with fixed arguments
            [
                sys.executable,
                "manage.py",
                "makemessages",
                "--domain",
                domain,
                "--locale",
                "fr",
                "--add-location=file",
                *ignores,
            ],
            cwd=copy,
            check=True,
            capture_output=True,
            timeout=120,
        )
        ours = polib.pofile(str(catalogue("fr", domain)))
        theirs = polib.pofile(str(copy / "locale" / "fr" / "LC_MESSAGES" / f"{domain}.po"))

        def ids(po):
            return {(e.msgctxt, e.msgid, e.msgid_plural) for e in po if not e.obsolete}

        missing = ids(theirs) - ids(ours)
        unused = {(e.msgctxt, e.msgid, e.msgid_plural) for e in theirs if e.obsolete}
        assert missing == set(), f"{domain}: texts in the code, not in the catalogues"
        assert unused == set(), f"{domain}: texts in the catalogues, not in the code"
