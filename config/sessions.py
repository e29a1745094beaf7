"""Staff sessions end when idle and at a hard limit: SESSION_IDLE_TIMEOUT_SECONDS after the
last request, SESSION_MAX_AGE_SECONDS after sign-in (whichever comes first), then the next
request is anonymous (a page sends the person to sign in again).

The last-seen time is written at most once a minute (ACTIVITY_GRANULARITY_S), not on every
request, so a busy page costs no session write per request."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse

SEEN_KEY = "_last_seen"
STARTED_KEY = "_signed_in_at"
ACTIVITY_GRANULARITY_S = 60


class IdleSessionMiddleware:
    """After AuthenticationMiddleware: ends expired sessions of signed-in users."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = request.session
        if session.get("_auth_user_id") is not None:
            now = time.time()
            seen = session.get(SEEN_KEY)
            started = session.setdefault(STARTED_KEY, now)
            idle = seen is not None and now - seen > settings.SESSION_IDLE_TIMEOUT_SECONDS
            if idle or now - started > settings.SESSION_MAX_AGE_SECONDS:
                logout(request)  # flushes the session; request.user is anonymous from here
            elif seen is None or now - seen >= ACTIVITY_GRANULARITY_S:
                session[SEEN_KEY] = now
        return self.get_response(request)
