"""The one settings module. Everything comes from the environment (or an optional `.env`).

With no environment at all the app runs in its *embedded default*: SQLite, tasks run in-process,
development credentials. Production sets DJANGO_DEBUG=false, which makes the secrets mandatory.
"""

import os
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# The real environment wins over .env (read_env never overrides variables already set).
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DJANGO_DEBUG", default=True)

# Development defaults are explicit and printed by the run command; production has none.
DEV_SECRET_KEY = "dev-insecure-secret-key-change-me"  # noqa: S105
DEV_CALLS_API_KEY = "dev-key"
DEV_CALLS_API_SECRET = "dev-secret-change-me-0123456789abcdef"  # noqa: S105

if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default=DEV_SECRET_KEY)
    CALLS_API_KEY = env.str("CALLS_API_KEY", default=DEV_CALLS_API_KEY)
    CALLS_API_SECRET = env.str("CALLS_API_SECRET", default=DEV_CALLS_API_SECRET)
else:
    SECRET_KEY = env.str("SECRET_KEY")
    CALLS_API_KEY = env.str("CALLS_API_KEY")
    CALLS_API_SECRET = env.str("CALLS_API_SECRET")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "channels",  # WebSockets (calls.realtime), served by uvicorn: no "daphne"
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from here, not from a CDN
    "axes",  # staff sign-in throttling (docs/security.md)
    "django_otp",
    "django_otp.plugins.otp_totp",  # staff two-factor authentication
    "csp",
    "calls",
    "appointments",
    "audit",
    "fhir_api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",  # Accept-Language; a patient's own language wins
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.sessions.IdleSessionMiddleware",  # idle and absolute session limits
    "django_otp.middleware.OTPMiddleware",
    "appointments.portal.security.TwoFactorMiddleware",  # verified before any staff page
    "audit.middleware.AuditContextMiddleware",  # who and from where, for audit.record
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",  # last: answers a locked-out sign-in
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # One process, several threads (web + in-process worker): wait for the write lock instead of
    # failing, and take it at BEGIN so two writers never deadlock on a lock upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )
    # Tests on SQLite use a file too: an in-memory shared-cache database has table locks
    # without a busy timeout, which real servers in threads (uvicorn, WebSockets) trip over.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test-db.sqlite3")}
else:
    # A pool per process (psycopg_pool, Django's `pool` option). Under ASGI every request runs
    # in a thread of its own, so a persistent connection (CONN_MAX_AGE) would be opened per
    # request and closed only when the garbage collector finds its thread's leftovers; the
    # pool hands a request an open connection and takes it back when the request ends.
    # Size it per process: web workers x DB_POOL_MAX_SIZE (plus workers and schedulers) must
    # stay under PostgreSQL's max_connections.
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DB_POOL_MIN_SIZE", default=2),
        "max_size": env.int("DB_POOL_MAX_SIZE", default=20),
        "timeout": env.float("DB_POOL_TIMEOUT", default=10.0),
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
# The languages patients hear from the clinic in (docs/architecture.md, "Languages"). Arabic is
# written right to left: the pages render mirrored. Catalogues live in locale/ and are committed
# compiled (.mo) so the README's commands need no gettext tools.
LANGUAGES = [
    ("en", "English"),
    ("fr", "Français"),
    ("es", "Español"),
    ("de", "Deutsch"),
    ("pt", "Português"),
    ("ar", "العربية"),
]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise serves static files from the web process; in development straight from the apps.
WHITENOISE_USE_FINDERS = DEBUG

# The calls API is wire-compatible with Stream: no trailing slashes, no redirects (§1.8).
APPEND_SLASH = True  # API paths always resolve (catch-all answers 404 JSON), so no redirect

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    # JSON under calls.limits (size, depth, NaN, NUL: 413 / 400, never a 500); forms as usual.
    "DEFAULT_PARSER_CLASSES": [
        "calls.limits.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "appointment-calls patient API",
    "DESCRIPTION": "REST endpoints for patient apps: sign-in, appointments, join info, devices.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/patient/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # `check --deploy` would generate an OpenAPI schema of every URL, the calls API (Stream's
    # wire format, which has no OpenAPI here) included, and warn about each of its views. The
    # patient API's schema, the one served, is checked by its own tests.
    "ENABLE_DJANGO_DEPLOY_CHECK": False,
}

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

# Sign-in codes and password resets go out by email. The development default prints them to
# the console; with DEBUG off the backend must be chosen explicitly, and never the console (the
# codes would end up in the worker's log).
CONSOLE_EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
if DEBUG:
    EMAIL_BACKEND = env.str("EMAIL_BACKEND", default=CONSOLE_EMAIL_BACKEND)
else:
    EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="")
    if not EMAIL_BACKEND or EMAIL_BACKEND == CONSOLE_EMAIL_BACKEND:
        raise ImproperlyConfigured(
            "EMAIL_BACKEND must be set with DJANGO_DEBUG=false (e.g. "
            "django.core.mail.backends.smtp.EmailBackend with EMAIL_HOST, EMAIL_PORT, "
            "EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS); the console backend would "
            "print sign-in codes into the log"
        )
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="appointments@localhost")

# ---- Patient messages (appointments.messaging; docs/architecture.md) -----------------------
# Where the links in emails and texts point, and where the SMS provider posts its status
# callbacks (the signature covers this exact URL): the site as patients reach it.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")
# Numbers typed without a country code are read in this region (ISO 3166, e.g. "GB"); empty:
# a country code is required.
PHONE_DEFAULT_REGION = env.str("PHONE_DEFAULT_REGION", default="")
# A message is tried this many times (transient errors: backoff from MESSAGE_RETRY_BASE_SECONDS,
# doubling); a send still `sending` past MESSAGE_SENDING_STALE_SECONDS died with its worker.
MESSAGE_MAX_ATTEMPTS = env.int("MESSAGE_MAX_ATTEMPTS", default=5)
# The delivery record of a message ("Reminder emailed 09:00 · SMS delivered") is kept this many
# days after its appointment's start, then deleted by the hourly retention (0: for ever). It
# holds no address and no text: kinds, channels, states and times.
MESSAGE_RETENTION_DAYS = env.int("MESSAGE_RETENTION_DAYS", default=400)
MESSAGE_RETRY_BASE_SECONDS = env.float("MESSAGE_RETRY_BASE_SECONDS", default=30.0)
MESSAGE_SEND_TIME_LIMIT_SECONDS = env.float("MESSAGE_SEND_TIME_LIMIT_SECONDS", default=40.0)
MESSAGE_SENDING_STALE_SECONDS = env.float(
    "MESSAGE_SENDING_STALE_SECONDS", default=MESSAGE_SEND_TIME_LIMIT_SECONDS + 20
)
if MESSAGE_SENDING_STALE_SECONDS <= MESSAGE_SEND_TIME_LIMIT_SECONDS:
    raise ImproperlyConfigured(
        "MESSAGE_SENDING_STALE_SECONDS must exceed MESSAGE_SEND_TIME_LIMIT_SECONDS"
    )
# SMS: "" (none: texts are not sent) or "twilio" (Programmable Messaging REST API). The base
# URL is Twilio's unless a test or a compatible provider says otherwise. Either a sender
# number (E.164) or a Messaging Service SID.
SMS_PROVIDER = env.str("SMS_PROVIDER", default="")
SMS_TIMEOUT_SECONDS = env.float("SMS_TIMEOUT_SECONDS", default=10.0)
TWILIO_BASE_URL = env.str("TWILIO_BASE_URL", default="https://api.twilio.com").rstrip("/")
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM_NUMBER = env.str("TWILIO_FROM_NUMBER", default="")
TWILIO_MESSAGING_SERVICE_SID = env.str("TWILIO_MESSAGING_SERVICE_SID", default="")
if SMS_PROVIDER not in ("", "twilio"):
    raise ImproperlyConfigured('SMS_PROVIDER must be "" or "twilio"')
if SMS_PROVIDER == "twilio" and not (
    TWILIO_ACCOUNT_SID
    and TWILIO_AUTH_TOKEN
    and (TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID)
):
    raise ImproperlyConfigured(
        "SMS_PROVIDER=twilio needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and "
        "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"
    )

# ---- Staff sign-in and sessions (docs/security.md) -----------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out username + address
    "appointments.portal.security.StaffBackend",  # refuses the demo passwords with DEBUG off
]
# Lock out a username from one address after this many failures, for this long (the portal's
# and the Django admin's sign-in forms alike). By username + address: an attacker cannot lock
# a colleague out from elsewhere, and one address cannot guess forever.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_DISABLE_ACCESS_LOG = True  # failures are recorded; successes need no row of their own
# The client address is REMOTE_ADDR: behind a proxy, run uvicorn with --proxy-headers and
# --forwarded-allow-ips (bin/web) so it is the real client's, never a header anyone can send.
AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]

# Sessions end after SESSION_IDLE_TIMEOUT_SECONDS without a request, and at the latest
# SESSION_MAX_AGE_SECONDS after sign-in (config.sessions).
SESSION_IDLE_TIMEOUT_SECONDS = env.int("SESSION_IDLE_TIMEOUT_SECONDS", default=30 * 60)
SESSION_MAX_AGE_SECONDS = env.int("SESSION_MAX_AGE_SECONDS", default=12 * 3600)
SESSION_COOKIE_AGE = SESSION_MAX_AGE_SECONDS
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

# Two-factor authentication (django-otp, TOTP): required for clinic admins and superusers,
# optional for other staff (appointments.portal.security).
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="Appointment Calls")

# ---- HTTPS, cookies and the content security policy ----------------------------------------
# Production (DEBUG off) defaults to HTTPS everywhere; the embedded default (http://127.0.0.1)
# sets none of it. Behind a TLS-terminating proxy, uvicorn's --proxy-headers tells Django the
# request was https (bin/web), or set SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = env.list("SECURE_REDIRECT_EXEMPT", default=[])
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
if _proxy_ssl_header := env.str("SECURE_PROXY_SSL_HEADER", default=""):
    SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header, "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# django-csp: scripts and styles only from our origin (or with the page's nonce); the call page
# needs camera and microphone (getUserMedia, no CSP directive), WebRTC and its WebSockets, which
# 'self' covers (ws:/wss: to the page's own host); CSP_CONNECT_SRC adds other origins.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF, *env.list("CSP_CONNECT_SRC", default=[])],
        "media-src": [SELF, "blob:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        **({"report-uri": [_report]} if (_report := env.str("CSP_REPORT_URI", default="")) else {}),
    },
}
if env.bool("CSP_REPORT_ONLY", default=False):
    CONTENT_SECURITY_POLICY_REPORT_ONLY, CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY, None
# ---- end of staff sign-in, sessions and HTTPS ----------------------------------------------

# Redis is the broker in production; with no REDIS_URL tasks run in-process (embedded default).
REDIS_URL = env.str("REDIS_URL", default="")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "memory://")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not REDIS_URL)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = 60
CELERY_TASK_SOFT_TIME_LIMIT = 50
CELERY_TIMEZONE = "UTC"
# A broker outage (calls.outbox.queue): enqueues happen after a commit and are a best effort,
# so a publish must give up quickly (the outbox row waits for the scheduler's sweep): a short
# connect timeout and two quick retries, about 4 s at worst on an unreachable host, well under
# a second on a refused connection. Workers, on the other hand, never give up: they retry the
# broker forever, at start-up too, and come back by themselves after any number of restarts
# (tests/calls/test_broker_restart.py restarts a real Redis under a real worker).
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=1.0)
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_TASK_PUBLISH_RETRY = True
CELERY_BROKER_CHANNEL_ERROR_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
# Rings jump the queue (calls.outbox.queue.URGENT = 0): every other message has priority 5,
# which kombu's Redis transport keeps in a list of its own (step 3 of its priority steps) and
# reads after the urgent one.
CELERY_TASK_DEFAULT_PRIORITY = 5
# The relay (calls.outbox.relay) has a queue of its own, so a go-live's socket event never
# waits behind the pushes and webhooks of earlier ones. A worker started without `-Q` takes
# both queues, the relay's first (`queue_order_strategy` below: a free worker process takes a
# waiting relay before a send of the same priority); a dedicated relay worker (`-Q relay`,
# README "Production") keeps relaying while the others send, and they relay while it is down
# (bench/scheduler.py kills it).
# Webhook deliveries (calls.outbox.webhooks: machines' receivers) have a queue of their own
# too, listed after the default one: a worker that takes both takes a waiting push (a
# person's phone) before a webhook of the same priority; a webhook worker (`-Q webhooks`,
# README "Production") keeps slow receivers off the processes that send pushes.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CALLS_RELAY_QUEUE = "relay"
CALLS_WEBHOOK_QUEUE = "webhooks"
CELERY_TASK_QUEUES = {
    CALLS_RELAY_QUEUE: {"routing_key": CALLS_RELAY_QUEUE},
    CELERY_TASK_DEFAULT_QUEUE: {"routing_key": CELERY_TASK_DEFAULT_QUEUE},
    CALLS_WEBHOOK_QUEUE: {"routing_key": CALLS_WEBHOOK_QUEUE},
}
CELERY_TASK_ROUTES = {
    "calls.outbox.tasks.relay_events": {"queue": CALLS_RELAY_QUEUE},
    "calls.outbox.tasks.deliver_webhooks": {"queue": CALLS_WEBHOOK_QUEUE},
    "calls.outbox.tasks.deliver_webhook": {"queue": CALLS_WEBHOOK_QUEUE},
}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 3600,
    # A worker's queues are read in the order it lists them (CELERY_TASK_QUEUES, or `-Q`),
    # within each priority step: not round robin.
    "queue_order_strategy": "priority",
    # redis-py's own timeouts for the broker's sockets: connecting is bounded like the
    # publish; reads (a publish's reply on a half-open connection) allow for the worker's
    # blocking BRPOP (1 s) with a margin.
    "socket_connect_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
    "socket_timeout": 5,
    "socket_keepalive": True,
    "retry_on_timeout": False,
    "health_check_interval": 10,
}

# WebSocket groups (calls.realtime): Redis in production and CI, so every web process sees
# every event; in-memory in the embedded default, where web and relay share one process.
# redis-py 8 defaults to a 5 s socket timeout, the length of channels-redis' blocking reads
# (every idle socket would die), and to at most 100 pooled connections (a burst of
# subscriptions or disconnects would fail): hence both options.
CHANNEL_LAYERS = {
    "default": (
        {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 15, "max_connections": 1000}]
            },
        }
        if REDIS_URL
        else {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    )
}

# The web process's garbage collector (config.lifespan, at ASGI startup). With 500 sockets a
# full collection walks ~200,000 objects and stops every connection for ~100 ms on a 2-core
# machine: freezing what the app loaded leaves the collector only the connections' objects,
# and a larger first generation lets request garbage die before it is promoted, so full
# collections become rare (bench/events.py).
# The app's name in the calls API's GET /api/v2/app.
CALLS_APP_NAME = env.str("CALLS_APP_NAME", default="appointment-calls")

# On SIGTERM, how long a web process lets open connections finish before it exits anyway
# (bin/web passes the same variable to uvicorn; `manage.py serve` reads this).
WEB_GRACEFUL_SHUTDOWN_SECONDS = env.int("WEB_GRACEFUL_SHUTDOWN_SECONDS", default=5)

WEB_GC_FREEZE = env.bool("WEB_GC_FREEZE", default=True)
WEB_GC_GEN0_THRESHOLD = env.int("WEB_GC_GEN0_THRESHOLD", default=10_000)

# Shared by all web processes (patient sign-in rate limits): Redis in production.
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# Patient API access tokens (appointments/api/auth.py).
PATIENT_TOKEN_TTL_SECONDS = env.int("PATIENT_TOKEN_TTL_SECONDS", default=3600)
# Patient sign-in limits per 10 minutes (appointments/api/auth.py), besides 5 per address: per
# client IP (REMOTE_ADDR, as above), and over all clients (a circuit breaker).
PATIENT_SIGN_IN_IP_MAX_CODE_REQUESTS = env.int("PATIENT_SIGN_IN_IP_MAX_CODE_REQUESTS", default=20)
PATIENT_SIGN_IN_IP_MAX_ATTEMPTS = env.int("PATIENT_SIGN_IN_IP_MAX_ATTEMPTS", default=20)
PATIENT_SIGN_IN_GLOBAL_MAX_CODE_REQUESTS = env.int(
    "PATIENT_SIGN_IN_GLOBAL_MAX_CODE_REQUESTS", default=2000
)
PATIENT_SIGN_IN_GLOBAL_MAX_FAILURES = env.int("PATIENT_SIGN_IN_GLOBAL_MAX_FAILURES", default=1000)

# Calls engine knobs.
CALLS_TOKEN_LEEWAY_SECONDS = env.int("CALLS_TOKEN_LEEWAY_SECONDS", default=5)
# The calls API's hot reads are prepared once per database session (calls.selectors.execute_hot).
# Turn off behind a pooler that does not keep sessions (PgBouncer in transaction mode).
CALLS_PREPARED_STATEMENTS = env.bool("CALLS_PREPARED_STATEMENTS", default=True)
# Browser origins (besides the page's own host) allowed to open the events WebSocket.
CALLS_WS_ALLOWED_ORIGINS = env.list("CALLS_WS_ALLOWED_ORIGINS", default=[])

# What one client may send or hold (calls.limits, docs/limits.md). Bodies above the limit are
# answered 413 (code 22); `custom` objects above theirs 400 (code 4), before anything is stored.
CALLS_API_MAX_BODY_BYTES = env.int("CALLS_API_MAX_BODY_BYTES", default=1024 * 1024)
CALLS_CUSTOM_MAX_BYTES = env.int("CALLS_CUSTOM_MAX_BYTES", default=5 * 1024)
# Sockets: the largest client message (uvicorn's --ws-max-size should say the same), live
# messages a connection may have queued before it is closed as a slow consumer (4008), and
# open sockets per user across all web processes (4009 above it).
CALLS_WS_MAX_MESSAGE_BYTES = env.int("CALLS_WS_MAX_MESSAGE_BYTES", default=128 * 1024)
CALLS_WS_SEND_QUEUE = env.int("CALLS_WS_SEND_QUEUE", default=256)
# An events socket is slow (4008) once over CALLS_WS_SEND_QUEUE events wait while a write has
# waited this long for its client to read (a client that reads is never closed for a burst;
# docs/limits.md); or over 40 times that many wait, reading or not.
CALLS_WS_STALL_SECONDS = env.float("CALLS_WS_STALL_SECONDS", default=2.0)
CALLS_WS_MAX_CONNECTIONS_PER_USER = env.int("CALLS_WS_MAX_CONNECTIONS_PER_USER", default=20)
# In-call chat (calls.services.chat): the longest message in characters, messages one person
# may send per minute in one call, and messages one call may hold in all.
CALLS_CHAT_MAX_CHARS = env.int("CALLS_CHAT_MAX_CHARS", default=1000)
CALLS_CHAT_PER_MINUTE = env.int("CALLS_CHAT_PER_MINUTE", default=20)
CALLS_CHAT_MAX_PER_CALL = env.int("CALLS_CHAT_MAX_PER_CALL", default=1000)
# uvicorn's WebSocket options, for `serve` and the tests' servers (the README gives the same as
# flags): frames above the message limit are refused by uvicorn itself (close 1009), at most
# 16 client messages wait per connection, and no per-message compression (bench/events.py).
UVICORN_WS_OPTIONS = {
    "ws_max_size": CALLS_WS_MAX_MESSAGE_BYTES,
    "ws_max_queue": 16,
    "ws_per_message_deflate": False,
    # uvicorn's protocol with a close that never waits for a client that stopped reading.
    "ws": "calls.realtime.wsprotocol:WebSocketProtocol",
}

# In-browser media (calls.media, docs/media.md). The mesh needs no server of its own; STUN /
# TURN servers help browsers behind NAT (none: host candidates only, which work on a LAN).
CALLS_MEDIA_BACKEND = env.str("CALLS_MEDIA_BACKEND", default="calls.media.MeshMedia")
# A JSON list of RTCIceServer, e.g. [{"urls": "stun:stun.example.org:3478"}].
CALLS_ICE_SERVERS: list[dict] = env.json("CALLS_ICE_SERVERS", default=[])
# TURN with coturn's shared secret (`use-auth-secret`): credentials minted per join.
CALLS_TURN_URLS = env.list("CALLS_TURN_URLS", default=[])
CALLS_TURN_SECRET = env.str("CALLS_TURN_SECRET", default="")
CALLS_TURN_TTL_SECONDS = env.int("CALLS_TURN_TTL_SECONDS", default=6 * 3600)

# Who receives every committed call event (calls.outbox.relay), in this order.
CALLS_EVENT_CONSUMERS: list[str] = [
    "calls.realtime.publish",  # WebSocket groups: clients subscribed to the call or team
    # pushes: ring / notify / missed → devices (may send inline)
    "calls.outbox.push.dispatch.on_event",
    "calls.outbox.webhooks.on_event",  # webhooks: every event → matching endpoints (signed POST)
    "appointments.events.on_event",  # the appointment follows its call; reminders, "ready"
    # FHIR Subscriptions: an appointment's status moved → notifications (after the line above,
    # which moves it)
    "fhir_api.subscriptions.on_event",
]

# Sweeps of other apps' outbox rows, run by the scheduler beside its own
# (calls.scheduling.scheduler.run_sweeps): the patient messages; the FHIR Subscriptions'
# heartbeats and ends.
CALLS_EXTRA_SWEEPS: list[str] = [
    "appointments.messaging.delivery.sweep",
    "fhir_api.subscriptions.sweep",
]
# Retention of other apps' rows, run with the calls' own (hourly, calls.services.retention):
# the patient messages' delivery rows (MESSAGE_RETENTION_DAYS).
CALLS_EXTRA_RETENTION: list[str] = ["appointments.messaging.delivery.retention_sweep"]

# Calls tokens minted under a grant (a patient's join link, an app session) live while this
# says the grant does (calls/tokens.py `grant_is_live`).
CALLS_TOKEN_GRANT_CHECK = "appointments.links.grant_is_live"  # noqa: S105 - a function path

# The scheduler sleeps until the next due action, never longer than this (seconds); a new
# nearer action wakes it at once (PostgreSQL NOTIFY, or in-process).
CALLS_SCHEDULER_MAX_SLEEP = env.float("CALLS_SCHEDULER_MAX_SLEEP", default=1.0)
# How many due actions a scheduler claims in one transaction (go-lives due together are applied
# in one go). 1 disables the batching (bench/scheduler.py measures design "ours-b1" so).
CALLS_SCHEDULER_BATCH_SIZE = env.int("CALLS_SCHEDULER_BATCH_SIZE", default=200)
if CALLS_SCHEDULER_BATCH_SIZE < 1:
    raise ImproperlyConfigured("CALLS_SCHEDULER_BATCH_SIZE must be at least 1")
# How many due go-lives a scheduler claims and applies in one transaction (go-lives due at
# the same time: a clinic's top of the hour; bench/scheduler.py's burst).
CALLS_SCHEDULER_GO_LIVE_BATCH_SIZE = env.int("CALLS_SCHEDULER_GO_LIVE_BATCH_SIZE", default=1000)
if CALLS_SCHEDULER_GO_LIVE_BATCH_SIZE < 1:
    raise ImproperlyConfigured("CALLS_SCHEDULER_GO_LIVE_BATCH_SIZE must be at least 1")

# Every record goes through one handler whose filter blanks secrets in URLs (join-link `?t=`,
# socket `?token=`, codes, password-reset paths: config.log_filters). uvicorn's own loggers are
# configured here too, so its access log (a request line per request, with the query string)
# and its WebSocket lines go through the same filter: the app's settings are applied after
# uvicorn's default logging config, in every worker (bin/web, `manage.py serve`).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "config.log_filters.RedactSecrets"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Django's own default sends its records to a handler of its own too: ours only.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},  # a line per sign-in: the audit trail records those
        "uvicorn": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},  # propagates to "uvicorn"
        "uvicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

# ---- Push providers (calls.push) -----------------------------------------------------------
# A provider whose credentials are not set is disabled: it logs one warning and its deliveries
# are recorded as failed ("provider disabled"); nothing crashes.
# Web Push (RFC 8030/8291/8292): the VAPID private key (raw base64url, DER base64, PEM content
# or a PEM path) and the subject the push services may contact (mailto: or https:).
WEBPUSH_VAPID_PRIVATE_KEY = env.str("WEBPUSH_VAPID_PRIVATE_KEY", default="")
WEBPUSH_VAPID_SUBJECT = env.str("WEBPUSH_VAPID_SUBJECT", default="")
# Tests only: real subscription endpoints are https; local stand-in push services are not.
WEBPUSH_ALLOW_HTTP_ENDPOINTS = env.bool("WEBPUSH_ALLOW_HTTP_ENDPOINTS", default=False)
# Subscription endpoints come from browsers: loopback, private and CGNAT addresses are refused
# (calls.netguard) unless this is on (tests' local stand-in push service).
WEBPUSH_ALLOW_PRIVATE_NETWORKS = env.bool("WEBPUSH_ALLOW_PRIVATE_NETWORKS", default=False)
# APNs (HTTP/2, token auth): the .p8 key (PEM content or path), its key id, the team id, the
# app's bundle id (VoIP pushes go to "<bundle id>.voip").
APNS_KEY_ID = env.str("APNS_KEY_ID", default="")
APNS_TEAM_ID = env.str("APNS_TEAM_ID", default="")
APNS_PRIVATE_KEY = env.str("APNS_PRIVATE_KEY", default="")
APNS_TOPIC = env.str("APNS_TOPIC", default="")
APNS_BASE_URL = env.str("APNS_BASE_URL", default="https://api.push.apple.com")
APNS_CA_FILE = env.str("APNS_CA_FILE", default="")  # empty: the system's CA store
# FCM HTTP v1: the project and a service account key (JSON content or path).
FCM_PROJECT_ID = env.str("FCM_PROJECT_ID", default="")
FCM_SERVICE_ACCOUNT_JSON = env.str("FCM_SERVICE_ACCOUNT_JSON", default="")
FCM_BASE_URL = env.str("FCM_BASE_URL", default="https://fcm.googleapis.com")
FCM_TOKEN_URL = env.str("FCM_TOKEN_URL", default="https://oauth2.googleapis.com/token")
# Push devices one user may have (calls.services.devices): a new registration beyond it
# replaces the least recently registered.
PUSH_MAX_DEVICES_PER_USER = env.int("PUSH_MAX_DEVICES_PER_USER", default=10)
# Delivery: per-request timeout, attempts per push (429/5xx/timeouts), first retry delay.
PUSH_TIMEOUT_SECONDS = env.float("PUSH_TIMEOUT_SECONDS", default=10.0)
PUSH_MAX_ATTEMPTS = env.int("PUSH_MAX_ATTEMPTS", default=5)
PUSH_RETRY_BASE_SECONDS = env.float("PUSH_RETRY_BASE_SECONDS", default=5.0)
# One delivery run sends at most two requests (FCM: token, then push); its task is stopped at
# this limit (soft at 80%). A push left `sending` longer than PUSH_SENDING_STALE_SECONDS lost
# its worker and is sent again with the same collapse ids (calls.outbox.push.delivery), so the bound
# must exceed the limit, and stay well under a minute (older rings are not sent at all).
PUSH_SEND_TIME_LIMIT_SECONDS = env.float(
    "PUSH_SEND_TIME_LIMIT_SECONDS", default=2 * PUSH_TIMEOUT_SECONDS + 5
)
PUSH_SENDING_STALE_SECONDS = env.float(
    "PUSH_SENDING_STALE_SECONDS", default=PUSH_SEND_TIME_LIMIT_SECONDS + 5
)
if PUSH_SENDING_STALE_SECONDS <= PUSH_SEND_TIME_LIMIT_SECONDS:
    raise ImproperlyConfigured(
        "PUSH_SENDING_STALE_SECONDS must exceed PUSH_SEND_TIME_LIMIT_SECONDS: a live send "
        "would be taken for dead and sent twice at once"
    )
# One delivery task sends up to PUSH_BATCH_SIZE rows (a ring's deliveries leave in a few
# tasks, not one each), on PUSH_SEND_CONCURRENCY threads per worker process over keep-alive
# connections (at most that many per push service address). The rows of one hand-off are
# spread over PUSH_BATCH_SPREAD tasks (the worker processes: Celery's prefork default is the
# CPU count) of at least PUSH_PIPELINE_DEPTH rows (calls.outbox.push.dispatch.batch_size).
PUSH_BATCH_SIZE = env.int("PUSH_BATCH_SIZE", default=500)
PUSH_BATCH_SPREAD = env.int("PUSH_BATCH_SPREAD", default=os.cpu_count() or 1)
PUSH_SEND_CONCURRENCY = env.int("PUSH_SEND_CONCURRENCY", default=8)
# Web Push connections per push service address in a worker process, each pipelined
# PUSH_PIPELINE_DEPTH deep: a few deep pipelines cost less CPU per push than many shallow ones
# (a thread each; bench/push.py, a ring to 1,000: 8 -> 2 took its sends from 0.5-0.7 s to
# about 0.45 s).
WEBPUSH_CONNECTIONS = env.int("WEBPUSH_CONNECTIONS", default=2)
# Web Push requests written ahead of their answers on one connection (HTTP/1.1 pipelining,
# calls.netguard.Pool); 1 sends one at a time, for a push service that mishandles pipelining.
PUSH_PIPELINE_DEPTH = env.int("PUSH_PIPELINE_DEPTH", default=32)
# A ring push is not sent once its event is older than this (a phone ringing for a call that
# started long ago); a ring that could not be sent in time falls back to a notify push and a
# staff alert (calls.services.ringing.rings_unsent_sweep).
PUSH_RING_MAX_AGE_SECONDS = env.float("PUSH_RING_MAX_AGE_SECONDS", default=60.0)
# httpx logs every request URL at INFO, and APNs URLs carry device tokens.
LOGGING["loggers"]["httpx"] = {"level": "WARNING"}
# ---- end of push providers -----------------------------------------------------------------

# ---- Webhooks (calls.outbox.webhooks) ------------------------------------------------------
# Attempts per delivery (408/429/5xx, timeouts, network errors) before it is dead, and the
# timeout of each attempt (Stream's is 6 s).
WEBHOOK_MAX_ATTEMPTS = env.int("WEBHOOK_MAX_ATTEMPTS", default=5)

# Retention (calls.services.retention.retention_sweep, run by the scheduler's sweep): call
# events older than this many days (once relayed) are deleted, with their deliveries; finished
# push and webhook deliveries go sooner. 0 keeps them for ever.
CALLS_EVENT_RETENTION_DAYS = env.int("CALLS_EVENT_RETENTION_DAYS", default=400)
DELIVERY_RETENTION_DAYS = env.int("DELIVERY_RETENTION_DAYS", default=30)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=6.0)
# Endpoint URLs must be https, except in development (DEBUG) or with this set (local receivers).
WEBHOOKS_ALLOW_HTTP = env.bool("WEBHOOKS_ALLOW_HTTP", default=False)
# The SSRF guard (calls.netguard) refuses endpoints that resolve to loopback, private (RFC 1918,
# fc00::/7) or CGNAT (100.64.0.0/10) addresses, at save and at send time. A self-hosted clinic
# that delivers to its own intranet turns this on. Link-local (cloud metadata), multicast and
# reserved addresses stay refused.
WEBHOOKS_ALLOW_PRIVATE_NETWORKS = env.bool("WEBHOOKS_ALLOW_PRIVATE_NETWORKS", default=False)
# Endpoints that another layer owns (WebhookEndpoint.kind) → the module that makes their
# requests and hears their outcomes (calls.outbox.webhooks).
WEBHOOK_KINDS: dict[str, str] = {"fhir-subscription": "fhir_api.subscriptions"}
# ---- end of webhooks -----------------------------------------------------------------------

# --- FHIR facade (fhir_api, docs/fhir.md) ---------------------------------------------------
# Subscriptions (R4B backport) one EHR client may hold (docs/limits.md).
FHIR_MAX_SUBSCRIPTIONS = env.int("FHIR_MAX_SUBSCRIPTIONS", default=10)
# Access tokens from /fhir/auth/token live this long (SMART recommends at most 5 minutes).
FHIR_ACCESS_TOKEN_TTL_SECONDS = env.int("FHIR_ACCESS_TOKEN_TTL_SECONDS", default=300)
# The largest FHIR request body (413 OperationOutcome above it; docs/limits.md).
FHIR_MAX_BODY_BYTES = env.int("FHIR_MAX_BODY_BYTES", default=64 * 1024)
# Search paging: _count's default and maximum, the deepest _offset, parameters per search.
FHIR_DEFAULT_COUNT = env.int("FHIR_DEFAULT_COUNT", default=20)
FHIR_MAX_COUNT = env.int("FHIR_MAX_COUNT", default=100)
FHIR_MAX_OFFSET = env.int("FHIR_MAX_OFFSET", default=10_000)
FHIR_MAX_SEARCH_PARAMS = env.int("FHIR_MAX_SEARCH_PARAMS", default=20)
# Our identifiers' system URIs start with this (`<it>:appointment`, `<it>:patient`, ...).
FHIR_IDENTIFIER_SYSTEM = env.str("FHIR_IDENTIFIER_SYSTEM", default="urn:appointment-calls")
# The token endpoint's rate limits (docs/limits.md): per client IP every request counts, per
# client the requests whose assertion is signed by the client's key; per window, then 429.
FHIR_TOKEN_RATE_WINDOW_SECONDS = env.int("FHIR_TOKEN_RATE_WINDOW_SECONDS", default=60)
FHIR_TOKEN_MAX_PER_IP = env.int("FHIR_TOKEN_MAX_PER_IP", default=60)
FHIR_TOKEN_MAX_PER_CLIENT = env.int("FHIR_TOKEN_MAX_PER_CLIENT", default=20)
# A client's JWKS URL (fhir_api.jwks): https only unless FHIR_JWKS_ALLOW_HTTP; public addresses
# only unless FHIR_JWKS_ALLOW_PRIVATE_NETWORKS (an EHR inside the clinic's own network), as the
# SSRF guard rules webhooks. The set is kept for its Cache-Control max-age within the MIN and
# MAX bounds (DEFAULT without one); an unknown `kid` refetches at most once per
# FHIR_JWKS_REFETCH_MIN_SECONDS per client. A larger answer than FHIR_JWKS_MAX_BYTES is refused.
FHIR_JWKS_ALLOW_HTTP = env.bool("FHIR_JWKS_ALLOW_HTTP", default=False)
FHIR_JWKS_ALLOW_PRIVATE_NETWORKS = env.bool("FHIR_JWKS_ALLOW_PRIVATE_NETWORKS", default=False)
FHIR_JWKS_TIMEOUT_SECONDS = env.float("FHIR_JWKS_TIMEOUT_SECONDS", default=5.0)
FHIR_JWKS_MAX_BYTES = env.int("FHIR_JWKS_MAX_BYTES", default=64 * 1024)
FHIR_JWKS_CACHE_MIN_SECONDS = env.int("FHIR_JWKS_CACHE_MIN_SECONDS", default=60)
FHIR_JWKS_CACHE_DEFAULT_SECONDS = env.int("FHIR_JWKS_CACHE_DEFAULT_SECONDS", default=600)
FHIR_JWKS_CACHE_MAX_SECONDS = env.int("FHIR_JWKS_CACHE_MAX_SECONDS", default=3600)
FHIR_JWKS_REFETCH_MIN_SECONDS = env.int("FHIR_JWKS_REFETCH_MIN_SECONDS", default=60)
