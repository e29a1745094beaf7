"""The one rule for a person's language (docs/architecture.md, "Languages").

The languages are `settings.LANGUAGES` (English, French, Spanish, German, Portuguese, Arabic).
A patient hears from the clinic in their `preferred_language` when it is one of them; else, on
a page, in the browser's language (`Accept-Language`, as `LocaleMiddleware` chose it); else in
English. A guest (family, a carer: nothing is stored for them) reads their pages in the
language their own browser asks for when it is one of ours, else in the patient's, else in
English; what is sent to a guest (messages) has only the patient's language to go on.
A tag names its language however it is written: "fr-CA", "FR" and "fr_FR" are "fr", "pt-BR"
is "pt". What is stored is checked by the same rule (`language_normalise`), so an
unknown language is refused where patients are created or edited, never stored.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils import translation
from django.utils.translation import gettext_lazy
from django.utils.translation.trans_real import parse_accept_lang_header  # Django's own parser


def codes() -> list[str]:
    return [code for code, _name in settings.LANGUAGES]


def choices() -> list[tuple[str, str]]:
    """(code, the language's own name): what a form offers."""
    return [(code, str(name)) for code, name in settings.LANGUAGES]


def supported(tag: str | None) -> str | None:
    """The code of ours that a language tag names ("fr-CA" → "fr"), or None."""
    if not isinstance(tag, str):
        return None
    tag = tag.strip().replace("_", "-").lower()
    known = codes()
    if tag in known:
        return tag
    primary = tag.split("-", 1)[0]
    return primary if primary in known else None


def language_normalise(value: str) -> str:
    """A stored preference: one of ours ("" is none), or ValidationError."""
    if not (value or "").strip():
        return ""
    code = supported(value)
    if code is None:
        raise ValidationError(
            gettext_lazy("Choose one of these languages: %(languages)s."),
            code="language",
            params={"languages": ", ".join(codes())},
        )
    return code


def browser_language(request: HttpRequest) -> str | None:
    """The first of our languages the browser asks for (`Accept-Language`, in its order of
    preference: "de-CH, fr;q=0.9" is German), or None when it asks for none of them. Unlike
    LocaleMiddleware's choice this is never the default: "none of ours" is not "English"."""
    header = request.META.get("HTTP_ACCEPT_LANGUAGE", "")
    for tag, _quality in parse_accept_lang_header(header):
        if code := supported(tag):
            return code
    return None


def language_for(
    preferred: str | None, request: HttpRequest | None = None, *, guest: bool = False
) -> str:
    """The language to speak to someone in: their preference if it is one of ours, else the
    request's (Accept-Language, as LocaleMiddleware chose it), else the default (English).

    `guest`: a guest's page, where `preferred` is the patient's. A guest's own browser is the
    better signal (the patient's language is only a guess at theirs), so it comes first when
    it asks for one of ours (`browser_language`); else the patient's; else English."""
    if guest and request is not None and (code := browser_language(request)):
        return code
    if guest:
        request = None  # not LocaleMiddleware's default: the patient's comes before English
    code = supported(preferred)
    if code is None and request is not None:
        code = supported(getattr(request, "LANGUAGE_CODE", None)) or supported(
            translation.get_language_from_request(request)
        )
    return code or supported(settings.LANGUAGE_CODE) or "en"


def activate_for(request: HttpRequest, preferred: str | None, *, guest: bool = False) -> str:
    """Speak `language_for(preferred, request, guest=guest)` for the rest of this request (the
    page, its answer's Content-Language) and return it."""
    code = language_for(preferred, request, guest=guest)
    translation.activate(code)
    request.LANGUAGE_CODE = code  # type: ignore[attr-defined]
    return code
