"""Rate limits in Django's cache (Redis in production; shared by every web process): a fixed
window per limit and subject, counted with an atomic increment. The patient API's sign-in
(`appointments.api.auth`) and the FHIR token endpoint (`fhir_api`) count through here; each
door turns `Exceeded` into its own 429 answer with `Retry-After`.

Keys are HMACs of the subject (an address, an IP, a client id), so the cache holds none."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.utils.crypto import salted_hmac

_KEY_SALT = "appointments.api.rate-key"  # as first used by the patient API: its keys stay


@dataclass(frozen=True)
class Limit:
    name: str
    default_max: int
    window_seconds: int
    setting: str | None = None  # a setting that overrides `default_max`
    namespace: str = "patient-api"

    @property
    def max_hits(self) -> int:
        if self.setting is None:
            return self.default_max
        return int(getattr(settings, self.setting, self.default_max))


class Exceeded(Exception):
    """A limit is used up: try again in `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limit exceeded; retry after {retry_after} s")
        self.retry_after = retry_after


def _keys(limit: Limit, subject: str) -> tuple[str, str]:
    digest = salted_hmac(_KEY_SALT, subject, algorithm="sha256").hexdigest()
    base = f"{limit.namespace}:{limit.name}:{digest[:32]}"
    return f"{base}:count", f"{base}:since"


def _exceeded(limit: Limit, since_key: str) -> Exceeded:
    since = cache.get(since_key) or time.time()
    return Exceeded(max(1, int(since + limit.window_seconds - time.time())))


def rate_count(limit: Limit, subject: str) -> int:
    """Count a hit for `subject`; the count so far in this window. Counting first makes
    concurrent hits safe: each gets its own number. The window starts at the first hit and
    lasts `window_seconds`."""
    count_key, since_key = _keys(limit, subject)
    cache.add(since_key, time.time(), timeout=limit.window_seconds)
    cache.add(count_key, 0, timeout=limit.window_seconds)
    try:
        return cache.incr(count_key)
    except ValueError:  # expired between add and incr
        cache.set(count_key, 1, timeout=limit.window_seconds)
        return 1


def rate_limit(limit: Limit, subject: str) -> None:
    """Count a hit and raise Exceeded past the allowance. Refused hits count too but do not
    extend the window."""
    if rate_count(limit, subject) > limit.max_hits:
        raise _exceeded(limit, _keys(limit, subject)[1])


def rate_check(limit: Limit, subject: str) -> None:
    """Raise Exceeded if the allowance is used up, without counting (`rate_count` counts
    what should count, e.g. only failures)."""
    count_key, since_key = _keys(limit, subject)
    if (cache.get(count_key) or 0) >= limit.max_hits:
        raise _exceeded(limit, since_key)


def rate_reset(limit: Limit, subject: str) -> None:
    cache.delete_many(list(_keys(limit, subject)))
