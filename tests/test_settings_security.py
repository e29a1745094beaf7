"""Deployment settings: production (DJANGO_DEBUG=false) passes `check --deploy` with no warning,
the embedded default stays plain http, the email backend must be chosen in production, the
content security policy, and the log filter that blanks secrets in URLs.

Settings are read once per process, so each configuration is imported in a subprocess."""

from __future__ import annotations

import io
import logging
import logging.config
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "SECRET_KEY": "a-production-like-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz",
    "CALLS_API_KEY": "prod-key",
    "CALLS_API_SECRET": "a-production-like-api-secret-0123456789",
    "ALLOWED_HOSTS": "calls.example.org",
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "EMAIL_HOST": "smtp.example.org",
}
# Whatever the developer's or CI's environment says about these, each case sets its own.
OURS = {*PRODUCTION, "EMAIL_HOST", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", ".env"}


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in OURS}
    environ.update(env, DJANGO_SETTINGS_MODULE="config.settings")
    return subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run(
        "import sys; from django.core.management import execute_from_command_line; "
        f"execute_from_command_line(['manage.py', *{list(args)!r}])",
        **env,
    )


SHOW = (
    "import json; from django.conf import settings as s; print(json.dumps({k: getattr(s, k) "
    "for k in ['DEBUG', 'SECURE_SSL_REDIRECT', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', "
    "'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD', "
    "'EMAIL_BACKEND']}))"
)


def test_check_deploy_passes_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_defaults_are_https_only():
    result = run(SHOW, **PRODUCTION)
    assert result.returncode == 0, result.stderr
    shown = result.stdout.strip().splitlines()[-1]
    assert '"SECURE_SSL_REDIRECT": true' in shown
    assert '"SESSION_COOKIE_SECURE": true' in shown
    assert '"CSRF_COOKIE_SECURE": true' in shown
    assert '"SECURE_HSTS_SECONDS": 31536000' in shown


def test_the_embedded_default_stays_plain_http():
    result = run(SHOW)
    assert result.returncode == 0, result.stderr
    shown = result.stdout.strip().splitlines()[-1]
    assert '"DEBUG": true' in shown
    assert '"SECURE_SSL_REDIRECT": false' in shown
    assert '"SESSION_COOKIE_SECURE": false' in shown
    assert '"SECURE_HSTS_SECONDS": 0' in shown
    assert "console" in shown  # development prints emails


def test_https_settings_come_from_the_environment():
    result = run(SHOW, **PRODUCTION, SECURE_SSL_REDIRECT="false", SECURE_HSTS_SECONDS="300")
    shown = result.stdout.strip().splitlines()[-1]
    assert '"SECURE_SSL_REDIRECT": false' in shown
    assert '"SECURE_HSTS_SECONDS": 300' in shown


@pytest.mark.parametrize(
    "backend", [None, "", "django.core.mail.backends.console.EmailBackend"], ids=str
)
def test_production_refuses_to_start_without_a_real_email_backend(backend):
    env = {k: v for k, v in PRODUCTION.items() if k != "EMAIL_BACKEND"}
    if backend is not None:
        env["EMAIL_BACKEND"] = backend
    result = run("import django; django.setup()", **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "EMAIL_BACKEND" in result.stderr


def test_production_email_settings_come_from_the_standard_variables():
    code = (
        "from django.conf import settings as s; print(s.EMAIL_HOST, s.EMAIL_PORT, "
        "s.EMAIL_HOST_USER, s.EMAIL_HOST_PASSWORD, s.EMAIL_USE_TLS)"
    )
    env = {**PRODUCTION, "EMAIL_PORT": "587", "EMAIL_HOST_USER": "mailer"}
    env.update(EMAIL_HOST_PASSWORD="pw", EMAIL_USE_TLS="true")
    result = run(code, **env)
    assert result.stdout.split() == ["smtp.example.org", "587", "mailer", "pw", "True"]


# --- content security policy ------------------------------------------------------------------


@pytest.mark.django_db
def test_pages_carry_a_content_security_policy(client):
    policy = client.get(reverse("portal:login"))["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    assert directives["default-src"] == "'self'"
    assert directives["script-src"].startswith("'self'")
    assert "'unsafe-inline'" not in policy
    assert directives["connect-src"] == "'self'"  # the page's own ws:/wss: included
    assert directives["frame-ancestors"] == "'none'"


@pytest.mark.django_db
def test_the_api_docs_inline_script_carries_the_policys_nonce(client):
    response = client.get("/api/patient/v1/docs")
    nonce = re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"])
    assert nonce is not None
    html = response.content.decode()
    assert f'<script nonce="{nonce[1]}">' in html
    assert f'<style nonce="{nonce[1]}">' in html


# --- secrets in the log -----------------------------------------------------------------------


def through_configured_logging(logger_name: str, msg: str, *args: object) -> str:
    """A record of `logger_name` formatted by the handler settings.LOGGING gives it. The
    configuration is applied again first, as a web process applies it after uvicorn's own
    (an in-process uvicorn of another test may have replaced it)."""
    logging.config.dictConfig(settings.LOGGING)
    logger = logging.getLogger(logger_name)
    while not logger.handlers and logger.parent is not None:
        logger = logger.parent
    handler = logger.handlers[0]
    record = logging.getLogger(logger_name).makeRecord(
        logger_name, logging.INFO, __file__, 1, msg, args, None
    )
    out = io.StringIO()
    stream, handler.stream = handler.stream, out
    try:
        handler.handle(record)
    finally:
        handler.stream = stream
    return out.getvalue()


def test_uvicorns_access_log_blanks_tokens_in_urls():
    line = through_configured_logging(
        "uvicorn.access",
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5000",
        "GET",
        "/join/abc/?t=LINK-SECRET&lang=pt",
        "1.1",
        200,
    )
    assert '"GET /join/abc/?t=[redacted]&lang=pt HTTP/1.1" 200' in line
    assert "LINK-SECRET" not in line


def test_uvicorns_websocket_lines_blank_tokens_in_urls():
    line = through_configured_logging(
        "uvicorn.error",
        '%s - "WebSocket %s" [accepted]',
        "127.0.0.1:5000",
        "/ws/v1/events?api_key=k&token=eyJhbGciOi.JWT.sig",
    )
    assert "/ws/v1/events?api_key=k&token=[redacted]" in line
    assert "eyJ" not in line


def test_djangos_request_log_and_reset_links_are_blanked_too():
    line = through_configured_logging(
        "django.request", "Not Found: %s", "/account/reset/MQ/cd4abc-0123456789abcdef/?code=123456"
    )
    assert "/account/reset/MQ/[redacted]/?code=[redacted]" in line


def test_twilio_without_credentials_refuses_to_start():
    env = {**PRODUCTION, "SMS_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": "AC1"}
    environ_clean = {"TWILIO_AUTH_TOKEN": "", "TWILIO_FROM_NUMBER": ""}
    result = run("import django; django.setup()", **env, **environ_clean)
    assert result.returncode != 0
    assert "SMS_PROVIDER=twilio needs" in result.stderr
    ok = run(
        "import django; django.setup()",
        **env,
        TWILIO_AUTH_TOKEN="token",
        TWILIO_FROM_NUMBER="+15005550006",
    )
    assert ok.returncode == 0, ok.stderr
