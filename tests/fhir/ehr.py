"""EHR clients for the FHIR tests (the fixtures are in conftest): a registered client with an
RSA (RS384) and an EC P-384 (ES384) key, the assertions it signs, `Fhir`, a test client holding
an access token, and an Appointment body."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.test import Client

from fhir_api.models import Client as EhrClient

TOKEN_URL = "http://testserver/fhir/auth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FHIR_JSON = "application/fhir+json"
ALL_SCOPES = (
    "system/Appointment.cruds system/Patient.crus system/Practitioner.rs system/Schedule.rs "
    "system/Slot.s"
)

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP384R1())
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: Any, kid: str) -> dict[str, Any]:
    algorithm = (
        jwt.algorithms.RSAAlgorithm
        if isinstance(key, rsa.RSAPrivateKey)
        else (jwt.algorithms.ECAlgorithm)
    )
    jwk = json.loads(algorithm.to_jwk(key.public_key()))
    jwk["kid"] = kid
    return jwk


def jwks() -> dict[str, Any]:
    return {"keys": [public_jwk(RSA_KEY, "rsa-1"), public_jwk(EC_KEY, "ec-1")]}


def register(clinic, scopes: str = ALL_SCOPES, **kwargs) -> EhrClient:
    return EhrClient.objects.create(
        clinic=clinic, name="Epic test", jwks=jwks(), scopes=scopes, **kwargs
    )


def assertion(
    client_id: str,
    *,
    key: Any = RSA_KEY,
    alg: str = "RS384",
    kid: str | None = "rsa-1",
    aud: str = TOKEN_URL,
    expires_in: int = 240,
    jti: str | None = None,
    **claims: Any,
) -> str:
    now = int(time.time())
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": now + expires_in,
        "jti": jti or uuid.uuid4().hex,
        **claims,
    }
    headers = {"kid": kid} if kid else {}
    return jwt.encode(body, key, algorithm=alg, headers=headers)


def token_request(client: Client, signed: str, scope: str = ALL_SCOPES, **extra: str):
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
        "scope": scope,
        **extra,
    }
    return client.post(
        "/fhir/auth/token", urlencode(form), content_type="application/x-www-form-urlencoded"
    )


@dataclass
class Fhir:
    """The FHIR API as an EHR calls it: bearer token, application/fhir+json."""

    http: Client
    token: str

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": FHIR_JSON, **(headers or {})}

    def get(self, path: str, params: Any = None, **headers: str):
        return self.http.get(f"/fhir/r4/{path}", params, headers=self._headers(headers))

    def post(self, path: str, body: Any, **headers: str):
        return self.http.post(
            f"/fhir/r4/{path}",
            json.dumps(body),
            content_type=FHIR_JSON,
            headers=self._headers(headers),
        )

    def put(self, path: str, body: Any, **headers: str):
        return self.http.put(
            f"/fhir/r4/{path}",
            json.dumps(body),
            content_type=FHIR_JSON,
            headers=self._headers(headers),
        )


def token_for(ehr: EhrClient, scope: str = ALL_SCOPES) -> str:
    answer = token_request(Client(), assertion(ehr.client_id), scope)
    assert answer.status_code == 200, answer.content
    return answer.json()["access_token"]


def appointment_body(patient, host, start: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "start": start,
        "minutesDuration": 20,
        "identifier": [{"system": "urn:oid:1.2.3.4", "value": "EHR-1"}],
        "participant": [
            {"actor": {"reference": f"Patient/{patient.pk}"}, "status": "accepted"},
            {
                "actor": {"reference": f"Practitioner/{host.pk}"},
                "type": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "PPRF",
                            }
                        ]
                    }
                ],
                "status": "accepted",
            },
        ],
        **extra,
    }
