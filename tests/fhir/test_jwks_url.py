"""A client registered with a JWKS URL: the token endpoint fetches the EHR's published JWK set
through the SSRF guard from a real local server (http and https), keeps it for its max-age
within bounds, picks the key by `kid`, fetches again once for an unknown `kid` (rate-limited:
key rotation works, a stream of made-up kids does not make us fetch), and refuses answers
that are too large, hold a private key, or come from an address the guard refuses."""

from __future__ import annotations

import ssl
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import cache
from django.test import Client

from calls import netguard
from fhir_api import jwks as fhir_jwks
from fhir_api.models import Client as EhrClient
from tests.calls.push.standins import self_signed_cert
from tests.factories import login_verified, make_staff

from .ehr import ALL_SCOPES, EC_KEY, RSA_KEY, assertion, public_jwk, token_request
from .jwks_server import JwksServer

pytestmark = pytest.mark.django_db

NEW_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def jwks_rules(settings):
    settings.FHIR_JWKS_ALLOW_HTTP = True
    settings.FHIR_JWKS_ALLOW_PRIVATE_NETWORKS = True  # the server is on 127.0.0.1
    return settings


@pytest.fixture
def server():
    published = JwksServer().start()
    published.document = {"keys": [public_jwk(RSA_KEY, "rsa-1"), public_jwk(EC_KEY, "ec-1")]}
    yield published
    published.stop()


def by_url(clinic, url: str) -> EhrClient:
    return EhrClient.objects.create(
        clinic=clinic, name="Published keys", jwks={}, jwks_url=url, scopes=ALL_SCOPES
    )


def token(ehr, **kwargs):
    return token_request(Client(), assertion(ehr.client_id, **kwargs))


def test_keys_are_fetched_once_and_kept(clinic, jwks_rules, server):
    ehr = by_url(clinic, server.url)
    assert token(ehr).status_code == 200
    assert token(ehr, key=EC_KEY, alg="ES384", kid="ec-1").status_code == 200
    assert token(ehr, kid=None).status_code == 200  # no kid: each key of the family
    assert server.gets == 1
    assert "jwk-set+json" in server.requests[0]["Accept"]


def test_key_rotation_refetches_once_for_the_new_kid(clinic, jwks_rules, server):
    ehr = by_url(clinic, server.url)
    assert token(ehr).status_code == 200
    # The EHR rotates: the new key is published, the old one withdrawn.
    server.document = {"keys": [public_jwk(NEW_KEY, "rsa-2")]}
    cache.delete(fhir_jwks._gate_key(ehr))  # past the refetch gate's interval
    assert token(ehr, key=NEW_KEY, kid="rsa-2").status_code == 200
    assert server.gets == 2
    # The withdrawn key is gone from the set we keep; asking for it again fetches nothing
    # (the gate), and is refused.
    answer = token(ehr, kid="rsa-1")
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_client"
    assert server.gets == 2


def test_unknown_kids_fetch_at_most_once_per_interval(clinic, jwks_rules, server):
    ehr = by_url(clinic, server.url)
    assert token(ehr).status_code == 200
    cache.delete(fhir_jwks._gate_key(ehr))
    for n in range(5):
        answer = token(ehr, kid=f"made-up-{n}")
        assert answer.json()["error"] == "invalid_client"
    assert server.gets == 2  # the first, and one forced refetch


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("max-age=900", 900),
        ("public, max-age=5", 60),  # the minimum
        ("max-age=999999", 3600),  # the maximum
        ("no-store", 60),
        ("no-cache, max-age=900", 60),
        ("", 600),  # the default
        ("max-age=abc", 600),
    ],
)
def test_cache_control_max_age_within_bounds(header, seconds):
    assert fhir_jwks.lifetime(header) == seconds


def _ttl(key: str) -> float:
    """Seconds the cache keeps `key` (Redis in CI; Django's local memory without it)."""
    full = cache.make_and_validate_key(key)
    if hasattr(cache, "_expire_info"):
        return cache._expire_info[full] - time.time()
    return cache._cache.get_client(full).ttl(full)


def test_the_fetched_set_is_kept_for_its_max_age(clinic, jwks_rules, server):
    server.cache_control = "public, max-age=1200"
    ehr = by_url(clinic, server.url)
    assert token(ehr).status_code == 200
    assert 1190 <= _ttl(fhir_jwks._cache_key(ehr)) <= 1200
    cache.clear()
    server.cache_control = "max-age=86400"
    assert token(ehr).status_code == 200
    assert 3590 <= _ttl(fhir_jwks._cache_key(ehr)) <= 3600  # FHIR_JWKS_CACHE_MAX_SECONDS


def test_an_answer_over_the_size_limit_is_refused(clinic, jwks_rules, server):
    jwks_rules.FHIR_JWKS_MAX_BYTES = 4096
    server.document["keys"] += [{"kty": "oct", "k": "x" * 4000}]
    ehr = by_url(clinic, server.url)
    answer = token(ehr)
    assert answer.status_code == 400
    assert answer.json() == {
        "error": "invalid_client",
        "error_description": "The client's JWK set is not usable.",
    }


def test_a_published_private_key_refuses_the_set(clinic, jwks_rules, server):
    private = public_jwk(RSA_KEY, "rsa-1") | {"d": "AQAB"}
    server.document = {"keys": [private]}
    answer = token(by_url(clinic, server.url))
    assert answer.json()["error"] == "invalid_client"


def test_a_server_error_is_temporary(clinic, jwks_rules, server):
    server.status = 503
    answer = token(by_url(clinic, server.url))
    assert answer.status_code == 503
    assert answer.json()["error"] == "temporarily_unavailable"


def test_the_ssrf_guard_refuses_loopback_unless_allowed(clinic, jwks_rules, server):
    jwks_rules.FHIR_JWKS_ALLOW_PRIVATE_NETWORKS = False
    answer = token(by_url(clinic, server.url))
    assert answer.json()["error"] == "invalid_client"
    assert server.gets == 0  # never connected


def test_stored_keys_still_work_when_the_url_fails(clinic, jwks_rules, server):
    server.status = 500
    ehr = EhrClient.objects.create(
        clinic=clinic,
        name="Both",
        jwks={"keys": [public_jwk(RSA_KEY, "rsa-1")]},
        jwks_url=server.url,
        scopes=ALL_SCOPES,
    )
    assert token(ehr).status_code == 200


def test_https_with_the_certificate_verified(clinic, jwks_rules, monkeypatch):
    jwks_rules.FHIR_JWKS_ALLOW_HTTP = False
    cert, key = self_signed_cert(common_name="jwks-standin")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    published = JwksServer().start(ssl_context=context)
    published.document = {"keys": [public_jwk(RSA_KEY, "rsa-1")]}
    try:
        ehr = by_url(clinic, published.url)
        # Not trusted yet: the certificate is checked (a network error: temporary).
        assert token(ehr).status_code == 503
        monkeypatch.setenv("SSL_CERT_FILE", cert)
        netguard._ssl_context_for.cache_clear()
        cache.clear()
        assert token(ehr).status_code == 200
    finally:
        netguard._ssl_context_for.cache_clear()
        published.stop()
    # http is refused when only https is allowed.
    answer = token(by_url(clinic, published.url.replace("https:", "http:")))
    assert answer.json()["error"] == "invalid_client"


def test_a_clinic_admin_registers_a_jwks_url(client, clinic, jwks_rules, server):
    admin = make_staff(clinic, "boss", role="admin")
    login_verified(client, admin.user)
    form = {
        "clinic": clinic.pk,
        "name": "Published",
        "jwks": "",
        "jwks_url": server.url,
        "scopes": "system/Appointment.rs",
        "is_active": "on",
    }
    assert client.post("/admin/fhir_api/client/add/", form).status_code == 302
    ehr = EhrClient.objects.get(name="Published")
    assert (ehr.jwks, ehr.jwks_url, ehr.registered_by) == ({}, server.url, admin.user)
    assert (
        token_request(Client(), assertion(ehr.client_id), "system/Appointment.rs").status_code
        == 200
    )
    # Neither keys nor a URL; a URL the guard refuses.
    answer = client.post("/admin/fhir_api/client/add/", dict(form, name="None", jwks_url=""))
    assert "JWKS URL" in answer.content.decode()
    jwks_rules.FHIR_JWKS_ALLOW_HTTP = False
    answer = client.post("/admin/fhir_api/client/add/", dict(form, name="Plain"))
    assert "must use https" in answer.content.decode()
    assert not EhrClient.objects.filter(name__in=["None", "Plain"]).exists()
