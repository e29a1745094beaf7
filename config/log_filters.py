"""Secrets never reach the log: the join links' `?t=` tokens, the sockets' `?token=` JWTs,
codes and the password-reset links' tokens are blanked in every record (settings.LOGGING puts
this filter on the one handler, which uvicorn's access and WebSocket loggers use too)."""

from __future__ import annotations

import logging
import re

# Query parameters whose values are secrets (case-insensitive), wherever a URL shows up.
SENSITIVE_PARAMETERS = (
    "t",
    "token",
    "access_token",
    "refresh_token",
    "code",
    "key",
    "secret",
    "password",
    "signature",
    "sig",
    "api_secret",
)
REDACTED = "[redacted]"

_QUERY = re.compile(
    r"(?P<lead>[?&;](?:" + "|".join(re.escape(p) for p in SENSITIVE_PARAMETERS) + r")=)"
    r"[^&;\s\"'#]*",
    re.IGNORECASE,
)
# Django's password-reset link: /account/reset/<uidb64>/<token>/ (the token before Django
# swaps it for the session's "set-password").
_RESET_PATH = re.compile(
    r"(?P<lead>/reset/[0-9A-Za-z_\-]+/)(?!set-password/)[0-9A-Za-z]+-[0-9A-Za-z]+"
)


def redact(text: str) -> str:
    """`text` with the values of sensitive query parameters and reset tokens blanked."""
    text = _QUERY.sub(lambda m: m["lead"] + REDACTED, text)
    return _RESET_PATH.sub(lambda m: m["lead"] + REDACTED, text)


def _clean(value: object) -> object:
    return redact(value) if isinstance(value, str) else value


class RedactSecrets(logging.Filter):
    """Rewrites the record's message and its string arguments (uvicorn's access log passes
    the path with its query string as an argument)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_clean(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _clean(value) for key, value in record.args.items()}
        return True
