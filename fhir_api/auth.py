"""SMART Backend Services: the token endpoint's checks and the access tokens it mints.

A client (`models.Client`, registered by a clinic admin with its public keys) asks
`/fhir/auth/token` with `grant_type=client_credentials` and a `private_key_jwt` assertion
signed RS384 or ES384 with a key of its JWK set. The assertion must name the client as `iss`
and `sub`, the token URL as `aud`, expire within `ASSERTION_MAX_LIFETIME`, and carry a `jti`
never used before (kept until it expires: `UsedAssertion`'s unique constraint). The answer is a
bearer token (HS256 under a key derived from SECRET_KEY) for one clinic and the granted
scopes, living `FHIR_ACCESS_TOKEN_TTL_SECONDS`. Each FHIR request re-reads the client: a
deactivated client's tokens stop at once, narrowed scopes apply at once.

The keys are the JWK set stored with the client and, when it has a JWKS URL, the set its
EHR publishes there (`jwks`: fetched through the SSRF guard, cached, fetched again for an
unknown `kid`)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from appointments.rates import Exceeded, Limit, rate_limit

from . import jwks, scopes
from .models import Client, UsedAssertion
from .outcome import FhirError

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS384", "ES384")
ASSERTION_MAX_LIFETIME = timedelta(minutes=5)
CLOCK_SKEW = timedelta(seconds=30)
MAX_ASSERTION_BYTES = 8 * 1024
_ISSUER = "appointment-calls/fhir"


def _token_limit(kind: str) -> Limit:
    """The token endpoint's rate limits (`appointments.rates`, Django's cache): `ip`, every
    request of a client IP counts, before anything is parsed; `client`, the requests whose
    assertion the client's key signed (nobody without the key can use up its allowance)."""
    maximum = settings.FHIR_TOKEN_MAX_PER_IP if kind == "ip" else settings.FHIR_TOKEN_MAX_PER_CLIENT
    return Limit(
        f"token-{kind}", maximum, settings.FHIR_TOKEN_RATE_WINDOW_SECONDS, namespace="fhir"
    )


def token_rate_limit_ip(ip: str) -> None:
    """Count a token request of this IP; OAuthError 429 past the allowance."""
    _limited(_token_limit("ip"), ip)


def _limited(limit: Limit, subject: str) -> None:
    try:
        rate_limit(limit, subject)
    except Exceeded as exc:
        raise OAuthError(
            "slow_down",
            "Too many token requests; try again later.",
            status=429,
            headers={"Retry-After": str(exc.retry_after)},
        ) from None


class OAuthError(Exception):
    """An RFC 6749 error answer (`{"error": ..., "error_description": ...}`, 400)."""

    def __init__(
        self,
        error: str,
        description: str,
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status
        self.headers = headers or {}


def _key() -> bytes:
    return salted_hmac("fhir_api.access-token", "key", algorithm="sha256").digest()


def _public_keys(client: Client, kid: str | None, alg: str) -> list[Any]:
    """The client's keys of the assertion's family (`kid` picks one when given): stored with
    the client and published at its JWKS URL (`jwks`, fetched and cached)."""
    try:
        candidates = jwks.keys_of(client, kid=kid)
    except jwks.Unavailable as exc:
        if exc.temporary:
            raise OAuthError(
                "temporarily_unavailable",
                "The client's JWK set could not be fetched; try again later.",
                status=503,
            ) from None
        raise OAuthError("invalid_client", "The client's JWK set is not usable.") from None
    family = "RSA" if alg.startswith("RS") else "EC"
    keys = []
    for data in candidates:
        if data.get("kty") != family or (kid is not None and data.get("kid") != kid):
            continue
        try:
            keys.append(jwt.PyJWK.from_dict(data).key)
        except (jwt.PyJWKError, jwt.InvalidKeyError, TypeError, ValueError):
            continue
    return keys


def token_issue(*, form: Mapping[str, str], token_url: str) -> dict[str, Any]:
    """Check a token request and mint the access token, or raise OAuthError."""
    if form.get("grant_type") != "client_credentials":
        raise OAuthError("unsupported_grant_type", "Only client_credentials is supported.")
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError("invalid_client", "client_assertion_type must be jwt-bearer.")
    assertion = form.get("client_assertion") or ""
    if not assertion or len(assertion) > MAX_ASSERTION_BYTES:
        raise OAuthError("invalid_client", "A client_assertion is required.")
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise OAuthError("invalid_client", "The client assertion is not a JWT.") from None
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise OAuthError("invalid_client", "The assertion must be signed RS384 or ES384.")
    client_id = unverified.get("iss")
    client = (
        Client.objects.select_related("clinic").filter(client_id=client_id, is_active=True).first()
        if isinstance(client_id, str)
        else None
    )
    if client is None:
        raise OAuthError("invalid_client", "Unknown client.")
    claims = None
    for key in _public_keys(client, header.get("kid"), alg):
        try:
            claims = jwt.decode(
                assertion,
                key,
                algorithms=[alg],
                audience=token_url,
                issuer=client.client_id,
                leeway=CLOCK_SKEW,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError:
            raise OAuthError("invalid_client", "The client assertion has expired.") from None
        except jwt.PyJWTError as exc:
            raise OAuthError("invalid_client", f"The client assertion is invalid: {exc}") from None
    if claims is None:
        raise OAuthError("invalid_client", "The assertion's signature matches no key.")
    _limited(_token_limit("client"), client.client_id)
    if claims["sub"] != client.client_id:
        raise OAuthError("invalid_client", "The assertion's sub must be the client id.")
    now = timezone.now()
    expires = datetime.fromtimestamp(claims["exp"], tz=UTC)
    if expires > now + ASSERTION_MAX_LIFETIME + CLOCK_SKEW:
        raise OAuthError("invalid_client", "The assertion must expire within five minutes.")
    jti = claims["jti"]
    if not isinstance(jti, str) or not 0 < len(jti) <= 255:
        raise OAuthError("invalid_client", "The assertion's jti is invalid.")
    try:
        with transaction.atomic():
            UsedAssertion.objects.filter(client=client, expires_at__lt=now - CLOCK_SKEW).delete()
            UsedAssertion.objects.create(client=client, jti=jti, expires_at=expires + CLOCK_SKEW)
    except IntegrityError:
        raise OAuthError("invalid_client", "This assertion was already used.") from None
    granted = scopes.grant(requested=form.get("scope", ""), allowed=client.scopes)
    if ("Practitioner", "c") in granted and not client.may_create_staff():
        granted -= {("Practitioner", "c")}  # creating staff: a clinic admin's client only
    if not granted:
        raise OAuthError("invalid_scope", "None of the requested scopes can be granted.")
    ttl = settings.FHIR_ACCESS_TOKEN_TTL_SECONDS
    scope = scopes.render(granted)
    token = jwt.encode(
        {
            "iss": _ISSUER,
            "sub": client.client_id,
            "clinic": client.clinic_id,
            "scope": scope,
            "iat": int(now.timestamp()),
            "exp": int(now.timestamp()) + ttl,
            "jti": secrets.token_urlsafe(12),
        },
        _key(),
        algorithm="HS256",
    )
    return {"access_token": token, "token_type": "bearer", "expires_in": ttl, "scope": scope}


def principal_of(authorization: str) -> scopes.Principal:
    """The caller of a FHIR request, from its `Authorization: Bearer` header, or 401."""
    kind, _, token = authorization.partition(" ")
    if kind.lower() != "bearer" or not token:
        raise _unauthorized("A bearer access token is required (SMART Backend Services).")
    try:
        claims = jwt.decode(
            token.strip(),
            _key(),
            algorithms=["HS256"],
            issuer=_ISSUER,
            options={"require": ["sub", "exp", "scope", "clinic"]},
        )
    except jwt.ExpiredSignatureError:
        raise _unauthorized("The access token has expired.") from None
    except jwt.PyJWTError:
        raise _unauthorized("The access token is invalid.") from None
    client = (
        Client.objects.select_related("clinic")
        .filter(client_id=claims["sub"], is_active=True, clinic_id=claims["clinic"])
        .first()
    )
    if client is None:
        raise _unauthorized("The access token's client is no longer active.")
    return scopes.Principal(client, scopes.parse_all(claims["scope"]))


def _unauthorized(message: str) -> FhirError:
    return FhirError(
        401, message, code="login", headers={"WWW-Authenticate": 'Bearer realm="fhir"'}
    )


def jwks_problem(jwks: Any) -> str | None:
    """Why a JWK set cannot be registered (None: it can): public RSA or P-384 keys only."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        return 'A JWK set is an object {"keys": [...]} with at least one key.'
    for key in jwks["keys"]:
        if not isinstance(key, dict):
            return "Each key is a JSON object."
        if "d" in key:
            return "That is a private key: register the public key only."
        if key.get("kty") not in ("RSA", "EC") or (
            key.get("kty") == "EC" and key.get("crv") != "P-384"
        ):
            return "Keys are RSA (RS384) or EC P-384 (ES384)."
    try:
        jwt.PyJWKSet.from_dict(jwks)
    except (jwt.PyJWKSetError, jwt.InvalidKeyError, TypeError, ValueError) as exc:
        return f"Not a usable JWK set: {exc}"
    return None
