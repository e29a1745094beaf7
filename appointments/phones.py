"""Phone numbers: the one rule for what the clinic stores (E.164, validated with
`phonenumbers`). Numbers typed without a country code are read in PHONE_DEFAULT_REGION."""

from __future__ import annotations

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError


def phone_normalise(value: str) -> str:
    """'' stays ''; anything else becomes E.164 (+33612345678) or a ValidationError."""
    value = (value or "").strip()
    if not value:
        return ""
    region = settings.PHONE_DEFAULT_REGION or None
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        hint = "" if region else " with its country code (+44 …)"
        raise ValidationError(f"Enter a valid phone number{hint}.", code="invalid_phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
