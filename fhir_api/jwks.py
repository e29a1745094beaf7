"""A client's public keys: the JWK set stored with it, and the one its EHR publishes at its
JWKS URL, fetched through the SSRF guard (`calls.netguard.get`: https, public addresses only
unless allowed, no redirects, at most `FHIR_JWKS_MAX_BYTES`).

A fetched set is kept in Django's cache (Redis in production) for the `max-age` its server
gives, within `FHIR_JWKS_CACHE_MIN_SECONDS` .. `FHIR_JWKS_CACHE_MAX_SECONDS`
(`FHIR_JWKS_CACHE_DEFAULT_SECONDS` without one; `no-store` / `no-cache` is the minimum). An
assertion whose `kid` is in neither set fetches it again at once, at most once per
`FHIR_JWKS_REFETCH_MIN_SECONDS` per client (anyone may send an assertion naming a client: the
gate keeps them from making us fetch on every request). A refetch that fails keeps the copy
we have. Nothing here logs the URL (it may carry a token): the client id and the reason only.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

import httpx
import orjson
from django.conf import settings
from django.core.cache import cache

from calls import netguard

from .models import Client

logger = logging.getLogger("fhir_api.jwks")

JWKS_SETTINGS = {
    "http_setting": "FHIR_JWKS_ALLOW_HTTP",
    "private_setting": "FHIR_JWKS_ALLOW_PRIVATE_NETWORKS",
}
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)


class Unavailable(Exception):
    """The JWK set could not be had. `temporary`: a network error or a 5xx / 429 (try again
    later); else the URL or the document is wrong (the registration must be fixed)."""

    def __init__(self, reason: str, *, temporary: bool) -> None:
        super().__init__(reason)
        self.reason, self.temporary = reason, temporary


def url_rules() -> dict[str, Any]:
    """The guard's rules for JWKS URLs, at registration and at every fetch."""
    return {
        "allow_http": settings.FHIR_JWKS_ALLOW_HTTP,
        "allow_private": settings.FHIR_JWKS_ALLOW_PRIVATE_NETWORKS,
        **JWKS_SETTINGS,
    }


def usable(document: Any) -> list[dict[str, Any]]:
    """The keys of a published JWK set we may verify with: RSA, or EC on P-384, not marked for
    encryption. Keys of other kinds are skipped (a set may hold keys for other uses); a
    private key anywhere refuses the whole set."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise Unavailable('not a JWK set ({"keys": [...]})', temporary=False)
    keys = []
    for key in document["keys"]:
        if not isinstance(key, dict):
            continue
        if "d" in key:
            raise Unavailable("the set holds a private key", temporary=False)
        if key.get("use") not in (None, "sig"):
            continue
        if key.get("kty") == "RSA" or (key.get("kty") == "EC" and key.get("crv") == "P-384"):
            keys.append(key)
    return keys


def _cache_key(client: Client) -> str:
    digest = hashlib.sha256(client.jwks_url.encode()).hexdigest()[:24]
    return f"fhir:jwks:{client.pk}:{digest}"


def _gate_key(client: Client) -> str:
    return f"fhir:jwks-refetch:{client.pk}"


def lifetime(cache_control: str | None) -> int:
    """How long to keep a fetched set: its max-age within the configured bounds."""
    low, high = settings.FHIR_JWKS_CACHE_MIN_SECONDS, settings.FHIR_JWKS_CACHE_MAX_SECONDS
    value = (cache_control or "").lower()
    if "no-store" in value or "no-cache" in value:
        return low
    match = _MAX_AGE.search(value)
    seconds = int(match[1]) if match else settings.FHIR_JWKS_CACHE_DEFAULT_SECONDS
    return max(low, min(high, seconds))


def fetch(client: Client) -> list[dict[str, Any]]:
    """GET the client's JWKS URL through the guard, check it and cache it. Raises Unavailable."""
    # Whatever happens, no other forced fetch for a while.
    cache.set(_gate_key(client), 1, timeout=settings.FHIR_JWKS_REFETCH_MIN_SECONDS)
    try:
        answer = netguard.get(
            client.jwks_url,
            headers={"Accept": "application/jwk-set+json, application/json"},
            timeout=settings.FHIR_JWKS_TIMEOUT_SECONDS,
            max_bytes=settings.FHIR_JWKS_MAX_BYTES,
            **url_rules(),
        )
    except netguard.Refused as exc:
        raise Unavailable(f"refused by the SSRF guard ({exc.code})", temporary=False) from None
    except httpx.HTTPError as exc:
        raise Unavailable(f"network error ({type(exc).__name__})", temporary=True) from None
    if answer.status_code != 200:
        temporary = answer.status_code >= 500 or answer.status_code == 429
        raise Unavailable(f"HTTP {answer.status_code}", temporary=temporary)
    try:
        document = orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        raise Unavailable("not JSON", temporary=False) from None
    keys = usable(document)
    cache.set(_cache_key(client), keys, timeout=lifetime(answer.headers.get("Cache-Control")))
    return keys


def keys_of(client: Client, *, kid: str | None) -> list[dict[str, Any]]:
    """The client's keys (JWKs): the stored set's, then the published set's. A `kid` found in
    neither makes one forced fetch, when the gate allows."""
    stored = [k for k in (client.jwks or {}).get("keys", []) if isinstance(k, dict)]
    if not client.jwks_url:
        return stored
    published = cache.get(_cache_key(client))
    if published is None:
        try:
            published = fetch(client)
        except Unavailable as exc:
            logger.warning("JWKS of FHIR client %s unavailable: %s", client.client_id, exc.reason)
            if stored:
                return stored
            raise
    elif (
        kid is not None
        and not any(k.get("kid") == kid for k in [*stored, *published])
        and cache.add(_gate_key(client), 1, timeout=settings.FHIR_JWKS_REFETCH_MIN_SECONDS)
    ):
        try:
            published = fetch(client)
        except Unavailable as exc:  # keep what we have
            logger.warning(
                "JWKS of FHIR client %s refetch failed: %s", client.client_id, exc.reason
            )
    return [*stored, *published]


def forget(client: Client) -> None:
    """Drop the cached set (the registration changed)."""
    cache.delete_many([_cache_key(client), _gate_key(client)])
